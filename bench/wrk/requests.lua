-- wrk script: Countersign's agent intake, POST /api/v1/requests, every body unique (thread id +
-- per-thread counter + a run tag), the agents' API keys taken in turn from a file.
--
--   wrk -t2 -c32 -d10s --latency -s bench/wrk/requests.lua http://127.0.0.1:3000 \
--       -- <keys file> [action type] [target] [expected status] [tag]
--
-- The keys file has one API key per line (COUNTERSIGN_BENCH_KEYS names it when no argument
-- does). The body is the benchmark's transfer (see `transfer` in server/src/bin/bench.rs)
-- with the action type and target given here (defaults payments.transfer, bank-api): pick a
-- type the policy sends to a human for the pending path (expected status 202, the default) or
-- one it allows for the allowed path (200, a grant signed). The tag (default: the start time in
-- seconds) keeps bodies of one run apart from another's, so no request repeats an earlier one
-- (which the identical-request guard would collapse). Any answer but the expected status is
-- counted and reported at the end as "unexpected responses: N".

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local path = args[1] or os.getenv("COUNTERSIGN_BENCH_KEYS")
  if not path then
    error("requests.lua: name the keys file (first script argument or COUNTERSIGN_BENCH_KEYS)")
  end
  keys = {}
  for line in io.lines(path) do
    if line ~= "" then keys[#keys + 1] = "Bearer " .. line end
  end
  if #keys == 0 then error("requests.lua: no keys in " .. path) end
  action_type = args[2] or "payments.transfer"
  target = args[3] or "bank-api"
  expected = tonumber(args[4] or "202")
  tag = args[5] or tostring(os.time())
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = keys[1] }
  counter = 0
  -- Threads start at different agents, so together they go round all of them.
  offset = id * 7919
  unexpected = 0
  first_unexpected = ""
end

function request()
  counter = counter + 1
  headers["Authorization"] = keys[(offset + counter) % #keys + 1]
  local ref = string.format("INV-%s-%d-%d", tag, id, counter)
  local amount = string.format("%d.00", 50 + counter % 9000)
  local body = string.format(
    '{"action":{"type":"%s","target":"%s","operation":"POST /v2/transfers",' ..
    '"params":{"to":"DE89 3704 0044 0532 0130 00","amount":"%s","reference":"%s"}},' ..
    '"intent":{"goal":"Pay supplier invoice %s","rationale":"Invoice approved in ticket FIN-77; due today"},' ..
    '"context":{"environment":"production","data_sensitivity":"confidential",' ..
    '"amount":{"value":"%s","currency":"EUR"},' ..
    '"delegation":[{"actor":"planner-agent","on_behalf_of":"owner@example.com"}]},' ..
    '"expires_in":900}',
    action_type, target, amount, ref, ref, amount)
  return wrk.format("POST", "/api/v1/requests", headers, body)
end

function response(status, _headers, body)
  if status ~= expected then
    unexpected = unexpected + 1
    if first_unexpected == "" then
      first_unexpected = status .. " " .. string.sub(body or "", 1, 200)
    end
  end
end

function done(_summary, _latency, _requests)
  local total, first = 0, ""
  for _, thread in ipairs(threads) do
    total = total + thread:get("unexpected")
    if first == "" then first = thread:get("first_unexpected") end
  end
  io.write(string.format("unexpected responses: %d\n", total))
  if total > 0 then
    io.write(string.format("first unexpected: %s\n", first))
  end
end
