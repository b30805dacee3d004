-- wrk script: CIBA backchannel authentication requests to the peer (bench/peer/ciba.mjs),
-- POST /backchannel, every body unique (thread id + per-thread counter + a run tag).
--
--   wrk -t2 -c32 -d10s --latency -s bench/wrk/backchannel.lua http://127.0.0.1:4000 \
--       -- [client_id] [client_secret] [tag]
--
-- client_id / client_secret default to bench-client / bench-secret (the peer's defaults) and
-- are sent as client_secret_basic. The tag (default: the start time in seconds) keeps bodies
-- of one run apart from another's. Any answer but 200 is counted and reported at the end as
-- "unexpected responses: N" (wrk itself counts only status >= 400, as "Non-2xx or 3xx").

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for k = 3, 0, -1 do
      local v = math.floor(n / 64 ^ k) % 64
      chars[#chars + 1] = b64chars:sub(v + 1, v + 1)
    end
    if not b then chars[3] = "=" end
    if not c then chars[4] = "=" end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local client_id = args[1] or "bench-client"
  local client_secret = args[2] or "bench-secret"
  tag = args[3] or tostring(os.time())
  headers = {
    ["Authorization"] = "Basic " .. base64(client_id .. ":" .. client_secret),
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }
  counter = 0
  unexpected = 0
  first_unexpected = ""
end

function request()
  counter = counter + 1
  local body = string.format(
    "scope=openid&login_hint=user-%s-%d-%d&binding_message=m%d-%d",
    tag, id, counter, id, counter)
  return wrk.format("POST", "/backchannel", headers, body)
end

function response(status, _headers, body)
  if status ~= 200 then
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
