//! `countersign-bench`: measures the figures the README reports, against the real release
//! server running as its own process on loopback (so its memory is measured alone), with a
//! fresh SQLite database per scenario:
//!
//! 1. **Intake**: 64 agents creating requests (authenticate, validate, policy, persist, audit)
//!    as fast as 32 concurrent connections can; requests per second and latency. Everything
//!    stays pending, so the cap of waiting requests per agent is raised to 2,000 here.
//! 2. **Decision delivery**: 1,000 agents long-waiting on requests nobody decides while the
//!    owner approves 200 others one by one with a passkey; for each, the time from its commit
//!    to the waiting agent having its answer. The server measures commit-to-answer-ready
//!    (the histogram `countersign_decision_delivery_seconds`, whose quantiles are estimated
//!    from its buckets as Prometheus does); we also measure, on the client, from sending
//!    the passkey assertion to the waiting agent receiving the grant (this adds verifying the
//!    assertion and the deciding transaction).
//! 3. **10,000 waiting**: 10,000 agents long-waiting at once; the server's resident memory
//!    then; every one of them answered (their agents cancel) and the peak memory.
//!
//! 4. **Request page**: an owner's browser loading the server-rendered page of a pending
//!    request (`GET /requests/{id}` with the session cookie: session, authorisation, the
//!    stored request, its approvals, risks and recent requests, and the HTML render), one at a
//!    time, measured on the client over loopback.
//!
//! 5. **MCP against HTTP**: 200 approvals delivered to an agent waiting in the MCP tool
//!    `wait_for_approval` and 200 to one waiting on `GET /api/v1/requests/{id}?wait=`,
//!    alternating, each measured on the client from sending the passkey assertion to the
//!    waiting call's answer: the MCP edge's cost is the difference between the two.
//!
//! 6. **Callbacks**: 200 approvals of requests whose agent has a callback URL (a receiver on
//!    loopback in this process, allowed by `COUNTERSIGN_CALLBACK_ALLOW`), each measured from
//!    sending the passkey assertion to the signed callback's arrival.
//!
//! 7. **Task-scoped credentials**: a PostgreSQL provider on the local server (a database and a
//!    template role made for the run, password logins checked as `.ci/setup` configures):
//!    200 times, the time from redeeming a grant for a login to that login having run
//!    `SELECT 1` on a connection of its own; then, with that session open, from sending the
//!    outcome report to the session being gone.
//!
//! 8. **Gateway overhead**: an upstream API on loopback in this process, called 200 times
//!    directly (with its secret) and 200 times through `/gw/{provider}/…` (with a grant),
//!    alternating; the difference is what the gateway adds (grant check, its single use, the
//!    audit events, the second hop).
//!
//! 9. **Standing approvals**: 64 agents, each with a standing approval given by a passkey
//!    ceremony; alternating 5-second bursts (three of each) of requests it covers (approved
//!    at once: a use taken in the intake transaction, a grant signed) and of the same requests
//!    to another target (pending, as in 1), on one server; rates, p99 and their ratio.
//!
//! 10. **Side by side with a CIBA server** (`peer`, issue 15): node `oidc-provider` (pinned in
//!     bench/peer, run by bench/peer/ciba.mjs with CIBA in poll mode and a store that never
//!     evicts) and Countersign (64 agents; a policy that sends transfers to a human and allows
//!     refunds with a grant) under one load generator, Debian's `wrk` (2 threads,
//!     32 connections, `--latency`), with the Lua scripts in bench/wrk making every body
//!     unique. Rounds alternate: the peer's `POST /backchannel`, Countersign's pending path
//!     (202), its allowed path (200 with a grant); each round and the median ratios to the peer
//!     are printed, with a Markdown table. `BENCH_PEER_ROUNDS` (3) and `BENCH_PEER_SECONDS` (10)
//!     override the rounds and their length. Any answer but the expected status, and any socket
//!     error, is counted, reported and fails the scenario.
//! 11. **The same on PostgreSQL** (`peer-pg`): as 10 with Countersign on the local PostgreSQL
//!     (`COUNTERSIGN_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432`), in a database
//!     made for the run and dropped after it.
//!
//! Run it with `make bench` (which raises the open-file limit these connection counts need);
//! `bash .ci/bench intake` (or `delivery`, `waiters`, `page`, `mcp`, `callbacks`, `credentials`,
//! `gateway`, `standing`, `peer`, `peer-pg`) runs one scenario. Without arguments it runs all
//! but `peer` and `peer-pg`, which need node and wrk (`bash .ci/bench` installs both) and run
//! only when named.
//! It prints the machine, the figures, and a Markdown table for the README.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use url::Url;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;

const INTAKE_SECONDS: u64 = 10;
const INTAKE_CONCURRENCY: usize = 32;
const INTAKE_AGENTS: usize = 64;
const IDLE_WAITERS: usize = 10_000;
const MEASURED_DECISIONS: usize = 200;
const MANY_WAITERS: usize = 10_000;
const PAGE_LOADS: usize = 1_000;

/// How many agents wait at once in the last scenario (BENCH_WAITERS overrides, for profiling).
fn many() -> usize {
    std::env::var("BENCH_WAITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MANY_WAITERS)
}

/// A port free at the time of asking, on loopback.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A Countersign server process with its own data directory.
struct Server {
    child: Child,
    base: String,
    env: Vec<(String, String)>,
    bin: std::path::PathBuf,
    enrol_link: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Ask for a graceful shutdown (SIGINT, as Ctrl-C would), so a profiler wrapping the
        // server gets to write its report; kill it if it has not gone in 15 s.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(http: &Client, settings: &[(&str, &str)]) -> Result<Self> {
        let port = free_port()?;
        let base = format!("http://localhost:{port}");
        let env = vec![
            ("COUNTERSIGN_PUBLIC_URL".to_string(), base.clone()),
            ("RUST_LOG".to_string(), "warn".to_string()),
            // The software owner approves without opening each request's page first; the
            // approve delay would only add its own wait to what we measure.
            ("COUNTERSIGN_APPROVE_DELAY_MS".to_string(), "0".to_string()),
        ];
        let env: Vec<(String, String)> = env
            .into_iter()
            .chain(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        Self::spawn(http, port, base, env, true).await
    }

    /// A second replica on this server's (PostgreSQL) database, with its own port and data
    /// directory; `COUNTERSIGN_PUBLIC_URL` stays the first one's, as behind one load balancer.
    async fn replica(&self, http: &Client) -> Result<Self> {
        let port = free_port()?;
        let base = format!("http://localhost:{port}");
        let env = self
            .env
            .iter()
            .filter(|(k, _)| k != "COUNTERSIGN_LISTEN" && k != "COUNTERSIGN_DATA_DIR")
            .cloned()
            .collect();
        Self::spawn(http, port, base, env, false).await
    }

    async fn spawn(
        http: &Client,
        port: u16,
        base: String,
        mut env: Vec<(String, String)>,
        first: bool,
    ) -> Result<Self> {
        let bin = std::env::current_exe()?.with_file_name("countersign");
        let dir = tempfile::tempdir()?;
        env.push((
            "COUNTERSIGN_LISTEN".to_string(),
            format!("127.0.0.1:{port}"),
        ));
        env.push((
            "COUNTERSIGN_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        ));
        // BENCH_SERVER_WRAPPER runs the server under a profiler (e.g. "valgrind --tool=massif").
        let wrapper = std::env::var("BENCH_SERVER_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let mut child = command
            .arg("serve")
            // Our own DATABASE_URL is not inherited; a scenario may set one in `settings`.
            .env_remove("DATABASE_URL")
            .envs(env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        // The first start on a database prints the one-time link to enrol the first admin.
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(link) = line.split_whitespace().find(|w| w.contains("/enrol/")) {
                    let _ = tx.send(link.to_string());
                }
            }
        });
        let enrol_link = if first {
            rx.recv_timeout(Duration::from_secs(30))
                .context("no enrolment link printed")?
        } else {
            String::new()
        };
        for _ in 0..300 {
            if http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
            {
                return Ok(Self {
                    child,
                    base,
                    env,
                    bin,
                    enrol_link,
                    _dir: dir,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the server did not become ready")
    }

    /// Runs a `countersign` subcommand against this server's database.
    fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .args(args)
            .env_remove("DATABASE_URL")
            .envs(self.env.iter().cloned())
            .output()?;
        if !out.status.success() {
            bail!(
                "countersign {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Registers an agent for the owner and returns its API key.
    fn agent(&self, owner: &str, name: &str) -> Result<String> {
        let out: Value = serde_json::from_str(&self.cli(&[
            "agent", "create", "--name", name, "--owner", owner, "--json",
        ])?)?;
        out["api_key"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no api key"))
    }

    /// Registers `n` agents for the owner; returns their API keys.
    fn agents(&self, owner: &str, n: usize) -> Result<Vec<String>> {
        (0..n)
            .map(|i| self.agent(owner, &format!("agent-{i}")))
            .collect()
    }

    /// Resident and peak resident memory of the server process, in MiB.
    fn memory_mib(&self) -> Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| -> Result<f64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .ok_or_else(|| anyhow!("no {name}"))?;
            let kib: f64 = line
                .split_whitespace()
                .nth(1)
                .ok_or_else(|| anyhow!("bad {name}"))?
                .parse()?;
            Ok(kib / 1024.0)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    async fn metric(&self, http: &Client, name: &str) -> Result<f64> {
        let text = http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?;
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow!("no metric {name}"))?;
        Ok(line.rsplit(' ').next().unwrap_or("nan").parse()?)
    }

    /// The `q` quantile of histogram `name`, estimated from its buckets as Prometheus's
    /// `histogram_quantile` does: linear within the bucket the rank falls in.
    async fn quantile(&self, http: &Client, name: &str, q: f64) -> Result<f64> {
        let text = http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?;
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(&prefix) {
                let (le, count) = rest
                    .split_once("\"} ")
                    .ok_or_else(|| anyhow!("bad bucket line {line}"))?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse()?
                };
                buckets.push((le, count.parse::<f64>()?));
            }
        }
        let total = buckets
            .last()
            .map(|b| b.1)
            .ok_or_else(|| anyhow!("no {name}"))?;
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for (le, count) in buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Ok(lower);
                }
                let share = if count > below {
                    (rank - below) / (count - below)
                } else {
                    1.0
                };
                return Ok(lower + (le - lower) * share);
            }
            (lower, below) = (le, count);
        }
        Ok(f64::NAN)
    }
}

/// The owner, in a browser session, with a software passkey.
struct Owner {
    origin: Url,
    cookie: Option<String>,
    passkey: SoftPasskey,
}

impl Owner {
    async fn enrol(http: &Client, server: &Server, email: &str) -> Result<Self> {
        let mut me = Self {
            origin: Url::parse(&server.base)?,
            cookie: None,
            passkey: SoftPasskey::new(true),
        };
        let token = server.enrol_link.rsplit('/').next().unwrap_or_default();
        let start = me
            .post(http, "/api/ui/enrol/start", &json!({ "token": token, "email": email, "display_name": "Bench Owner", "passkey_name": "soft" }))
            .await?;
        let options = serde_json::from_value(start["options"].clone())?;
        let credential = me
            .passkey
            .do_registration(me.origin.clone(), options)
            .map_err(|e| anyhow!("register: {e:?}"))?;
        me.post(
            http,
            "/api/ui/enrol/finish",
            &json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
        )
        .await?;
        Ok(me)
    }

    async fn post(&mut self, http: &Client, path: &str, body: &Value) -> Result<Value> {
        let base = self.origin.as_str().trim_end_matches('/');
        let mut req = http
            .post(format!("{base}{path}"))
            .header("origin", base)
            .header("sec-fetch-site", "same-origin")
            .json(body);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await?;
        for v in r.headers().get_all("set-cookie") {
            if let Some(pair) = v
                .to_str()?
                .split(';')
                .next()
                .filter(|p| p.starts_with("__Host-countersign="))
            {
                self.cookie = Some(pair.to_string());
            }
        }
        let status = r.status();
        let body: Value = r.json().await?;
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    }
}

impl Owner {
    /// Approves request `id` with the passkey (start, assertion, finish); returns when the
    /// assertion was sent, which is where the scenarios start their clocks.
    async fn approve(&mut self, http: &Client, id: &str) -> Result<Instant> {
        self.decide(http, id, &json!({ "decision": "approve" }))
            .await
    }

    /// Decides request `id` as `decision` says (with any terms) with the passkey; returns when
    /// the assertion was sent.
    async fn decide(&mut self, http: &Client, id: &str, decision: &Value) -> Result<Instant> {
        let path = format!("/api/ui/requests/{id}/decision");
        let start = self.post(http, &format!("{path}/start"), decision).await?;
        let options = serde_json::from_value(start["options"].clone())?;
        let credential = self
            .passkey
            .do_authentication(self.origin.clone(), options)
            .map_err(|e| anyhow!("assert: {e:?}"))?;
        let body = json!({ "ceremony_id": start["ceremony_id"], "credential": credential });
        let sent = Instant::now();
        self.post(http, &format!("{path}/finish"), &body).await?;
        Ok(sent)
    }

    /// A page load by this owner's browser; returns the status and the HTML.
    async fn get(&self, http: &Client, path: &str) -> Result<(StatusCode, String)> {
        let base = self.origin.as_str().trim_end_matches('/');
        let mut req = http
            .get(format!("{base}{path}"))
            .header("accept", "text/html");
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await?;
        Ok((r.status(), r.text().await?))
    }
}

fn transfer(n: usize) -> Value {
    json!({
        "action": { "type": "payments.transfer", "target": "bank-api", "operation": "POST /v2/transfers",
                    "params": { "to": "DE89 3704 0044 0532 0130 00", "amount": format!("{}.00", 50 + n % 9000), "reference": format!("INV-{n}") } },
        "intent": { "goal": format!("Pay supplier invoice INV-{n}"), "rationale": "Invoice approved in ticket FIN-77; due today" },
        "context": { "environment": "production", "data_sensitivity": "confidential",
                     "amount": { "value": format!("{}.00", 50 + n % 9000), "currency": "EUR" },
                     "delegation": [ { "actor": "planner-agent", "on_behalf_of": "owner@example.com" } ] },
        "expires_in": 900
    })
}

const POLICY: &str = r#"
[[rule]]
id = "small-payments"
action = "payments.*"
amount_below = { value = "10.00", currency = "EUR" }
outcome = "allow"

[[rule]]
id = "no-production-drops"
action = "db.drop_*"
environment = ["production"]
outcome = "deny"
reason = "Agents never drop production tables."

[[rule]]
id = "large-payments"
action = "payments.*"
amount_at_least = { value = "100000.00", currency = "EUR" }
outcome = "require"
approvals = 2
approvers = ["owner", "admins"]
"#;

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn create(http: &Client, base: &str, key: &str, body: &Value) -> Result<String> {
    let r = http
        .post(format!("{base}/api/v1/requests"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await?;
    if r.status() != StatusCode::ACCEPTED {
        bail!("create: {}", r.status());
    }
    let v: Value = r.json().await?;
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no id"))
}

/// An agent's API key and one of its request ids.
type Owned = (String, String);

/// Creates `n` requests, spread over the agents, with bounded concurrency.
async fn create_many(http: &Client, base: &str, keys: &[String], n: usize) -> Result<Vec<Owned>> {
    let gate = Arc::new(Semaphore::new(INTAKE_CONCURRENCY));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (http, base, key, gate) = (
            http.clone(),
            base.to_string(),
            keys[i % keys.len()].clone(),
            gate.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let id = create(&http, &base, &key, &transfer(i)).await?;
            Ok::<Owned, anyhow::Error>((key, id))
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for t in tasks {
        ids.push(t.await??);
    }
    Ok(ids)
}

/// Starts a long-wait on each request; each task returns (status, when it got its answer).
fn wait_all(
    http: &Client,
    base: &str,
    ids: &[Owned],
) -> Vec<tokio::task::JoinHandle<Result<(String, Instant)>>> {
    ids.iter()
        .map(|(key, id)| {
            let (http, url, key) = (
                http.clone(),
                format!("{base}/api/v1/requests/{id}?wait=55"),
                key.clone(),
            );
            tokio::spawn(async move {
                let v: Value = http.get(url).bearer_auth(key).send().await?.json().await?;
                let at = Instant::now();
                Ok((v["status"].as_str().unwrap_or("?").to_string(), at))
            })
        })
        .collect()
}

async fn until_waiting(http: &Client, server: &Server, n: usize) -> Result<Duration> {
    let started = Instant::now();
    while (server.metric(http, "countersign_waiting_agents").await? as usize) < n {
        if started.elapsed() > Duration::from_secs(45) {
            bail!(
                "only {} of {n} agents got to wait",
                server.metric(http, "countersign_waiting_agents").await?
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(started.elapsed())
}

struct Figures {
    rows: Vec<(String, String, String)>,
}

async fn intake(http: &Client, figures: &mut Figures) -> Result<()> {
    // Ten seconds of intake leave every request pending, far past the default cap of 100
    // waiting requests per agent; the cap is raised so intake is measured, not the refusal.
    let server = Server::start(http, &[("COUNTERSIGN_MAX_PENDING_PER_AGENT", "2000")]).await?;
    Owner::enrol(http, &server, "owner@example.com").await?;
    let policy = tempfile::NamedTempFile::new()?;
    std::fs::write(policy.path(), POLICY)?;
    server.cli(&["policy", "apply", &policy.path().display().to_string()])?;
    let keys = server.agents("owner@example.com", INTAKE_AGENTS)?;

    let Load {
        latencies: lat,
        errors,
        rate,
        elapsed,
    } = load(
        http,
        &server.base,
        &keys,
        Duration::from_secs(INTAKE_SECONDS),
        transfer,
        StatusCode::ACCEPTED,
    )
    .await?;
    println!(
        "intake: {} requests in {:.1} s = {rate:.0}/s ({} errors), latency p50 {} p99 {}",
        lat.len(),
        elapsed.as_secs_f64(),
        errors,
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );
    if errors > 0 {
        bail!("{errors} intake calls failed");
    }
    figures.rows.push((
        "Request intake (SQLite, 32 connections)".into(),
        format!("{rate:.0} requests/s"),
        "5,000/s".into(),
    ));
    figures.rows.push((
        "Intake latency p50 / p99".into(),
        format!(
            "{} / {}",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        ),
        "—".into(),
    ));
    Ok(())
}

/// What one burst of intake measured.
struct Load {
    /// Latencies of the calls answered as expected, sorted.
    latencies: Vec<Duration>,
    /// Calls answered otherwise, or not at all.
    errors: u64,
    /// Answered-as-expected calls per second.
    rate: f64,
    /// How long the burst took.
    elapsed: Duration,
}

/// Creates requests (`body(n)` for the n-th) for `seconds` from [`INTAKE_CONCURRENCY`]
/// connections, each to the next agent so the load spreads over all of them, and measures
/// the calls answered with `expect`.
async fn load(
    http: &Client,
    base: &str,
    keys: &[String],
    seconds: Duration,
    body: fn(usize) -> Value,
    expect: StatusCode,
) -> Result<Load> {
    let deadline = Instant::now() + seconds;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let keys: Arc<[String]> = keys.into();
    let started = Instant::now();
    let tasks: Vec<_> = (0..INTAKE_CONCURRENCY)
        .map(|w| {
            let (http, base, keys) = (http.clone(), base.to_string(), keys.clone());
            let (latencies, errors) = (latencies.clone(), errors.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut n = w;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let answered = http
                        .post(format!("{base}/api/v1/requests"))
                        .bearer_auth(&keys[n % keys.len()])
                        .json(&body(n))
                        .send()
                        .await;
                    match answered {
                        Ok(r) if r.status() == expect => mine.push(t.elapsed()),
                        _ => {
                            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    n += INTAKE_CONCURRENCY;
                }
                latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(mine);
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed();
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    latencies.sort();
    Ok(Load {
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        latencies,
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        elapsed,
    })
}

/// How long each burst of the standing scenario lasts, and how many of each kind it runs.
const STANDING_BURST_SECONDS: u64 = 5;
const STANDING_ROUNDS: usize = 3;

/// A rule whose approvals may stand: the standing scenario's policy.
const STANDING_POLICY: &str = r#"
[[rule]]
id = "payments"
action = "payments.*"
outcome = "require"
approvals = 1
approvers = ["owner"]
standing_max_seconds = 3600
standing_max_uses = 10000
"#;

/// A transfer like [`transfer`] to another target, which no standing approval covers.
fn uncovered_transfer(n: usize) -> Value {
    let mut body = transfer(n);
    body["action"]["target"] = json!("other-bank");
    body
}

/// Intake of requests a standing approval covers (approved at once: one use taken in the
/// intake transaction, a grant signed) next to plain intake of the same requests to another
/// target (pending), in alternating bursts on one server.
async fn standing(http: &Client, figures: &mut Figures) -> Result<()> {
    let server = Server::start(http, &[("COUNTERSIGN_MAX_PENDING_PER_AGENT", "2000")]).await?;
    let mut owner = Owner::enrol(http, &server, "owner@example.com").await?;
    let policy = tempfile::NamedTempFile::new()?;
    std::fs::write(policy.path(), STANDING_POLICY)?;
    server.cli(&["policy", "apply", &policy.path().display().to_string()])?;
    let keys = server.agents("owner@example.com", INTAKE_AGENTS)?;
    // One standing approval per agent, each given with a passkey ceremony.
    for (i, key) in keys.iter().enumerate() {
        let id = create(http, &server.base, key, &transfer(i)).await?;
        owner
            .decide(
                http,
                &id,
                &json!({ "decision": "approve",
                         "standing": { "pin": ["to"], "amount_max": "10000.00", "uses": 10000,
                                       "valid_for_seconds": 3600 } }),
            )
            .await?;
    }
    let burst = Duration::from_secs(STANDING_BURST_SECONDS);
    let (mut plain, mut covered) = (Vec::new(), Vec::new());
    for round in 1..=STANDING_ROUNDS {
        for (kind, body, expect) in [
            (
                "plain",
                uncovered_transfer as fn(usize) -> Value,
                StatusCode::ACCEPTED,
            ),
            ("covered", transfer, StatusCode::OK),
        ] {
            let l = load(http, &server.base, &keys, burst, body, expect).await?;
            println!(
                "standing round {round}, {kind}: {:.0}/s ({} errors), p50 {} p99 {}",
                l.rate,
                l.errors,
                ms(percentile(&l.latencies, 0.5)),
                ms(percentile(&l.latencies, 0.99))
            );
            if l.errors > 0 {
                bail!("{} {kind} intake calls failed", l.errors);
            }
            if kind == "plain" {
                plain.push(l);
            } else {
                covered.push(l);
            }
        }
    }
    let summary = |loads: &[Load]| {
        let rates: Vec<String> = loads.iter().map(|l| format!("{:.0}", l.rate)).collect();
        let p99s: Vec<String> = loads
            .iter()
            .map(|l| ms(percentile(&l.latencies, 0.99)))
            .collect();
        format!("{}/s, p99 {}", rates.join(" / "), p99s.join(" / "))
    };
    let ratio: Vec<String> = covered
        .iter()
        .zip(&plain)
        .map(|(c, p)| format!("{:.2}", c.rate / p.rate))
        .collect();
    println!(
        "standing: covered/plain rate per round {}",
        ratio.join(" / ")
    );
    figures.rows.push((
        "Plain intake (pending), per round".into(),
        summary(&plain),
        "—".into(),
    ));
    figures.rows.push((
        "Intake a standing approval covers (approved + grant), per round".into(),
        summary(&covered),
        format!("ratio to plain {}", ratio.join(" / ")),
    ));
    Ok(())
}

/// Decision → waiting agent, with `IDLE_WAITERS` more agents waiting meanwhile. On SQLite one
/// server; on PostgreSQL two replicas of one database: the owner decides on the first, every
/// agent waits on the second, so each answer crosses replicas (`pg_notify`).
async fn delivery(http: &Client, figures: &mut Figures, database_url: Option<&str>) -> Result<()> {
    let mut settings = Vec::new();
    if let Some(url) = database_url {
        settings.push(("DATABASE_URL", url));
    }
    let deciding = Server::start(http, &settings).await?;
    // Enrolled before the replica starts: a server starting on a database with no admin yet
    // issues a new enrolment link, which replaces the first one's.
    let mut owner = Owner::enrol(http, &deciding, "owner@example.com").await?;
    let waiting_on = match database_url {
        Some(_) => Some(deciding.replica(http).await?),
        None => None,
    };
    let server = waiting_on.as_ref().unwrap_or(&deciding);
    // Spread over enough agents to stay under the default cap of pending requests per agent.
    let keys = deciding.agents(
        "owner@example.com",
        (IDLE_WAITERS + MEASURED_DECISIONS).div_ceil(90),
    )?;
    // One batch, so every request is distinct (an identical pending request would be answered
    // as the same request, and one decision would wake two waiters).
    let mut idle =
        create_many(http, &server.base, &keys, IDLE_WAITERS + MEASURED_DECISIONS).await?;
    let measured = idle.split_off(IDLE_WAITERS);
    let idle_waits = wait_all(http, &server.base, &idle);
    let measured_waits: HashMap<String, _> = measured
        .iter()
        .map(|(_, id)| id.clone())
        .zip(wait_all(http, &server.base, &measured))
        .collect();
    until_waiting(http, server, IDLE_WAITERS + MEASURED_DECISIONS).await?;
    let (rss_waiting, _) = server.memory_mib()?;

    let mut end_to_end = Vec::with_capacity(MEASURED_DECISIONS);
    for (id, waiter) in measured_waits {
        let sent = owner.approve(http, &id).await?;
        let (status, at) = waiter.await??;
        if status != "approved" {
            bail!("waiter got {status}");
        }
        end_to_end.push(at.duration_since(sent));
    }
    end_to_end.sort();
    let still_waiting = server.metric(http, "countersign_waiting_agents").await?;
    let p50 = server
        .quantile(http, "countersign_decision_delivery_seconds", 0.5)
        .await?;
    let p99 = server
        .quantile(http, "countersign_decision_delivery_seconds", 0.99)
        .await?;
    let count = server
        .metric(http, "countersign_decision_delivery_seconds_count")
        .await?;
    let setup = match database_url {
        Some(_) => "PostgreSQL, decided on one replica, waiting on another",
        None => "SQLite",
    };
    println!(
        "delivery ({setup}) with {} waiting ({} still waiting after; waiting server's RSS {rss_waiting:.0} MiB): \
         server wake→answer p50 {:.3} ms p99 {:.3} ms over {count} decisions; \
         client assertion-sent→waiter-received p50 {} p99 {}",
        IDLE_WAITERS + MEASURED_DECISIONS,
        still_waiting,
        p50 * 1000.0,
        p99 * 1000.0,
        ms(percentile(&end_to_end, 0.5)),
        ms(percentile(&end_to_end, 0.99))
    );
    for w in idle_waits {
        w.abort();
    }
    figures.rows.push((
        format!("Decision → waiting agent's answer, {IDLE_WAITERS}+ agents waiting, {setup} (server-measured: waiter woken → answer sent)"),
        format!("p50 {:.2} ms, p99 {:.2} ms", p50 * 1000.0, p99 * 1000.0),
        "p99 ≤ 5 ms".into(),
    ));
    figures.rows.push((
        format!("Passkey assertion sent → waiting agent has the grant, {setup} (client-measured; includes verification, the deciding transaction and, across replicas, the notification)"),
        format!("p50 {}, p99 {}", ms(percentile(&end_to_end, 0.5)), ms(percentile(&end_to_end, 0.99))),
        match database_url {
            Some(_) => "p99 ≤ 20 ms".into(),
            None => "—".into(),
        },
    ));
    Ok(())
}

/// `delivery` on two replicas of a fresh PostgreSQL database (dropped afterwards).
async fn delivery_pg(http: &Client, figures: &mut Figures) -> Result<()> {
    with_pg_database(|url| async move { delivery(http, figures, Some(&url)).await }).await
}

async fn many_waiters(http: &Client, figures: &mut Figures) -> Result<()> {
    let server = Server::start(http, &[]).await?;
    Owner::enrol(http, &server, "owner@example.com").await?;
    let keys = server.agents("owner@example.com", many().div_ceil(90))?;
    let (rss_idle, _) = server.memory_mib()?;
    let ids = create_many(http, &server.base, &keys, many()).await?;
    let (rss_created, _) = server.memory_mib()?;
    println!(
        "{} requests created; server RSS {rss_created:.1} MiB",
        many()
    );
    let waits = wait_all(http, &server.base, &ids);
    let took = until_waiting(http, &server, many()).await?;
    let (rss_waiting, _) = server.memory_mib()?;
    println!(
        "{} agents waiting after {:.1} s; server RSS {rss_waiting:.1} MiB (idle {rss_idle:.1} MiB)",
        many(),
        took.as_secs_f64()
    );

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(INTAKE_CONCURRENCY));
    let cancels: Vec<_> = ids
        .iter()
        .map(|(key, id)| {
            let (http, url, key, gate) = (
                http.clone(),
                format!("{}/api/v1/requests/{id}/cancel", server.base),
                key.clone(),
                gate.clone(),
            );
            tokio::spawn(async move {
                let _permit = gate.acquire().await?;
                let r = http.post(url).bearer_auth(key).send().await?;
                if r.status() != StatusCode::OK {
                    bail!("cancel: {}", r.status());
                }
                Ok(())
            })
        })
        .collect();
    for c in cancels {
        c.await??;
    }
    let mut answered = 0;
    for w in waits {
        let (status, _) = w.await??;
        if status == "cancelled" {
            answered += 1;
        }
    }
    let (_, rss_peak) = server.memory_mib()?;
    println!(
        "all {answered} answered {:.1} s after the first cancel; server peak RSS {rss_peak:.1} MiB",
        started.elapsed().as_secs_f64()
    );
    if answered != many() {
        bail!("only {answered} of {} waiters were answered", many());
    }
    figures.rows.push((
        format!("{} agents long-waiting at once", many()),
        format!("all {answered} answered; server RSS {rss_waiting:.0} MiB while waiting, peak {rss_peak:.0} MiB"),
        "all answered, ≤ 200 MB".into(),
    ));
    Ok(())
}

async fn request_page(http: &Client, figures: &mut Figures) -> Result<()> {
    let server = Server::start(http, &[]).await?;
    let owner = Owner::enrol(http, &server, "owner@example.com").await?;
    let key = server.agent("owner@example.com", "page-agent")?;
    // A few earlier requests, so the page has recent requests to list.
    for n in 0..5 {
        create(http, &server.base, &key, &transfer(n)).await?;
    }
    let id = create(http, &server.base, &key, &transfer(99)).await?;
    let path = format!("/requests/{id}");
    let (status, html) = owner.get(http, &path).await?;
    if status != StatusCode::OK || !html.contains("Pay supplier invoice INV-99") {
        bail!("the request page did not render: {status}");
    }
    for _ in 0..50 {
        owner.get(http, &path).await?;
    }
    let mut times = Vec::with_capacity(PAGE_LOADS);
    for _ in 0..PAGE_LOADS {
        let t = Instant::now();
        owner.get(http, &path).await?;
        times.push(t.elapsed());
    }
    times.sort();
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    println!(
        "request page: {PAGE_LOADS} loads, p50 {}, p99 {}, {} bytes of HTML",
        ms(p50),
        ms(p99),
        html.len()
    );
    figures.rows.push((
        "Request page rendered on the server for a signed-in owner (client-measured over loopback, one at a time)".into(),
        format!("p50 {}, p99 {} ({} KB of HTML)", ms(p50), ms(p99), html.len() / 1024),
        "≤ 5 ms".into(),
    ));
    Ok(())
}

/// An MCP session of one agent at `/mcp`, spoken as plain JSON-RPC (a benchmark measures the
/// server, so the client stays as thin as possible; the tests use the official SDKs).
struct McpSession {
    url: String,
    key: String,
    id: String,
}

impl McpSession {
    async fn open(http: &Client, base: &str, key: &str) -> Result<Self> {
        let url = format!("{base}/mcp");
        let hello = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": { "name": "countersign-bench", "version": "1" } } });
        let r = Self::post(http, &url, key, None, &hello).await?;
        let id = r
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("initialize: no session id"))?
            .to_string();
        Self::message(r).await?;
        let session = Self {
            url,
            key: key.to_string(),
            id,
        };
        let done = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        Self::post(http, &session.url, key, Some(&session.id), &done).await?;
        Ok(session)
    }

    async fn post(
        http: &Client,
        url: &str,
        key: &str,
        session: Option<&str>,
        body: &Value,
    ) -> Result<reqwest::Response> {
        let mut req = http
            .post(url)
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(body);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        let r = req.send().await?;
        if !r.status().is_success() {
            bail!("/mcp: {}", r.status());
        }
        Ok(r)
    }

    /// The JSON-RPC answer in a response (JSON, or the first message of an SSE stream).
    async fn message(r: reqwest::Response) -> Result<Value> {
        let text = r.text().await?;
        let data = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|d| !d.is_empty())
            .unwrap_or(text.as_str());
        Ok(serde_json::from_str(data)?)
    }

    /// Calls a tool; returns its structured content.
    async fn call(&self, http: &Client, n: u64, tool: &str, arguments: Value) -> Result<Value> {
        let body = json!({ "jsonrpc": "2.0", "id": n, "method": "tools/call",
            "params": { "name": tool, "arguments": arguments } });
        let r = Self::post(http, &self.url, &self.key, Some(&self.id), &body).await?;
        let answer = Self::message(r).await?;
        Ok(answer["result"]["structuredContent"].clone())
    }
}

/// Scenario 5: the same approvals delivered through `wait_for_approval` and through the HTTP
/// long-wait, alternating so that both see the same machine.
async fn mcp_against_http(http: &Client, figures: &mut Figures) -> Result<()> {
    let server = Server::start(http, &[]).await?;
    let mut owner = Owner::enrol(http, &server, "owner@example.com").await?;
    let keys = server.agents("owner@example.com", 1)?;
    let key = &keys[0];
    let session = McpSession::open(http, &server.base, key).await?;
    let (mut over_mcp, mut over_http) = (Vec::new(), Vec::new());
    for round in 0..2 * MEASURED_DECISIONS {
        let id = create(http, &server.base, key, &transfer(round)).await?;
        let via_mcp = round % 2 == 0;
        // Both calls on this task (`join!` below), so the session is simply borrowed.
        let waiter = async {
            let answer = if via_mcp {
                let args = json!({ "request_id": id, "wait_seconds": 50 });
                session
                    .call(http, round as u64 + 1, "wait_for_approval", args)
                    .await?
            } else {
                let url = format!("{}/api/v1/requests/{id}?wait=50", server.base);
                http.get(url).bearer_auth(key).send().await?.json().await?
            };
            let at = Instant::now();
            Ok::<_, anyhow::Error>((answer["status"].as_str().unwrap_or("?").to_string(), at))
        };
        let approve = async {
            until_waiting(http, &server, 1).await?;
            owner.approve(http, &id).await
        };
        let (answer, sent) = tokio::join!(waiter, approve);
        let (status, at) = answer?;
        let sent = sent?;
        if status != "approved" {
            bail!("round {round}: the waiting call got {status}");
        }
        if via_mcp {
            &mut over_mcp
        } else {
            &mut over_http
        }
        .push(at.duration_since(sent));
    }
    over_mcp.sort();
    over_http.sort();
    let line = |d: &[Duration]| {
        format!(
            "p50 {}, p99 {}",
            ms(percentile(d, 0.5)),
            ms(percentile(d, 0.99))
        )
    };
    println!(
        "mcp: assertion sent → answer, {MEASURED_DECISIONS} approvals each: MCP wait_for_approval {}; HTTP long-wait {}",
        line(&over_mcp),
        line(&over_http)
    );
    figures.rows.push((
        format!("Passkey assertion sent → MCP `wait_for_approval` answered ({MEASURED_DECISIONS} approvals, alternating with the HTTP long-wait below)"),
        line(&over_mcp),
        "within 10 ms of the HTTP long-wait".into(),
    ));
    figures.rows.push((
        format!(
            "The same through `GET /api/v1/requests/{{id}}?wait=` ({MEASURED_DECISIONS} approvals)"
        ),
        line(&over_http),
        "—".into(),
    ));
    Ok(())
}

/// The `request_id` a callback names: the payload of its compact JWS (the receiver here only
/// times arrivals; verifying the signature is the tests' job).
fn callback_request_id(jws: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = jws.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["request_id"].as_str().map(str::to_string)
}

/// Scenario 6: decision → signed callback received, over 200 approvals.
async fn callbacks(http: &Client, figures: &mut Figures) -> Result<()> {
    let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let receiver = axum::Router::new().route(
        "/cb",
        axum::routing::post(move |body: String| {
            let at = Instant::now();
            if let Some(id) = callback_request_id(&body) {
                let _ = arrived.send((id, at));
            }
            async { axum::http::StatusCode::NO_CONTENT }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://127.0.0.1:{}/cb", listener.local_addr()?.port());
    let serving = tokio::spawn(async move { axum::serve(listener, receiver).await });

    let server = Server::start(http, &[("COUNTERSIGN_CALLBACK_ALLOW", "127.0.0.1")]).await?;
    let mut owner = Owner::enrol(http, &server, "owner@example.com").await?;
    let created: Value = serde_json::from_str(&server.cli(&[
        "agent",
        "create",
        "--name",
        "called-back",
        "--owner",
        "owner@example.com",
        "--json",
    ])?)?;
    let (agent_id, key) = (
        created["id"].as_str().ok_or_else(|| anyhow!("no id"))?,
        created["api_key"]
            .as_str()
            .ok_or_else(|| anyhow!("no api key"))?,
    );
    server.cli(&["agent", "callback", "set", agent_id, &hook])?;

    let mut latencies = Vec::with_capacity(MEASURED_DECISIONS);
    for round in 0..MEASURED_DECISIONS {
        let id = create(http, &server.base, key, &transfer(round)).await?;
        let sent = owner.approve(http, &id).await?;
        let at = loop {
            let (got, at) = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
                .await
                .context("no callback within 30 s")?
                .ok_or_else(|| anyhow!("the receiver stopped"))?;
            if got == id {
                break at;
            }
        };
        latencies.push(at.duration_since(sent));
    }
    serving.abort();
    latencies.sort();
    let line = format!(
        "p50 {}, p99 {}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    println!(
        "callbacks: assertion sent → callback received over {MEASURED_DECISIONS} approvals: {line}"
    );
    figures.rows.push((
        format!("Passkey assertion sent → signed callback received on loopback ({MEASURED_DECISIONS} approvals)"),
        line,
        "—".into(),
    ));
    Ok(())
}

/// An agent's request that the policy allows at once; returns the grant's jti and token.
async fn allowed(http: &Client, base: &str, key: &str, body: &Value) -> Result<(String, String)> {
    let r = http
        .post(format!("{base}/api/v1/requests"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await?;
    if r.status() != StatusCode::OK {
        bail!("create (allowed): {} {}", r.status(), r.text().await?);
    }
    let v: Value = r.json().await?;
    let field = |k: &str| {
        v["grant"][k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no grant {k}"))
    };
    Ok((field("jti")?, field("token")?))
}

fn p50_p99(mut d: Vec<Duration>) -> String {
    d.sort();
    format!(
        "p50 {}, p99 {}",
        ms(percentile(&d, 0.5)),
        ms(percentile(&d, 0.99))
    )
}

/// Scenario 7: grant → usable PostgreSQL login, and outcome report → its session gone.
async fn credentials(http: &Client, figures: &mut Figures) -> Result<()> {
    use sqlx::{Connection, Executor};
    let pg = std::env::var("COUNTERSIGN_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (db, template) = (
        format!("cs_bench_{}", &tag[..12]),
        format!("bench_rw_{}", &tag[..12]),
    );
    let mut admin = sqlx::PgConnection::connect(&format!("{pg}/postgres")).await?;
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .await?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {template} NOLOGIN IN ROLE countersign_password_checked"
        )))
        .await
        .context("the role countersign_password_checked comes from .ci/setup --pg")?;
    let server = Server::start(http, &[]).await?;
    let _owner = Owner::enrol(http, &server, "owner@example.com").await?;
    let key = server.agent("owner@example.com", "db-agent")?;
    let secret = server._dir.path().join("orders.secret");
    std::fs::write(&secret, format!("{pg}/{db}"))?;
    server.cli(&[
        "credential",
        "add",
        "orders-db",
        "--kind",
        "postgres",
        "--template-role",
        &template,
        "--secret-file",
        &secret.display().to_string(),
    ])?;
    let policy = server._dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[rule]]\nid = \"orders\"\naction = \"db.*\"\noutcome = \"allow\"\ncredential = \"orders-db\"\n",
    )?;
    server.cli(&["policy", "apply", &policy.display().to_string()])?;

    let (mut usable, mut gone) = (Vec::new(), Vec::new());
    for round in 0..MEASURED_DECISIONS {
        let body = json!({ "action": { "type": "db.query", "target": "orders-db",
                                       "params": { "round": round } },
                           "intent": { "goal": "Read today's orders" } });
        let (jti, _) = allowed(http, &server.base, &key, &body).await?;
        let started = Instant::now();
        let r = http
            .post(format!("{}/api/v1/grants/{jti}/credential", server.base))
            .bearer_auth(&key)
            .send()
            .await?;
        if r.status() != StatusCode::OK {
            bail!("credential: {} {}", r.status(), r.text().await?);
        }
        let cred: Value = r.json().await?;
        let dsn = cred["connection_string"]
            .as_str()
            .ok_or_else(|| anyhow!("no connection string"))?;
        let mut session = sqlx::PgConnection::connect(dsn).await?;
        session.execute("SELECT 1").await?;
        usable.push(started.elapsed());

        let reported = Instant::now();
        http.post(format!("{}/api/v1/grants/{jti}/report", server.base))
            .bearer_auth(&key)
            .json(&json!({ "outcome": "succeeded" }))
            .send()
            .await?
            .error_for_status()?;
        loop {
            if session.execute("SELECT 1").await.is_err() {
                break;
            }
            if reported.elapsed() > Duration::from_secs(10) {
                bail!("round {round}: the session outlived its task by 10 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        gone.push(reported.elapsed());
    }
    drop(server);
    let _ = admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
        )))
        .await;
    let _ = admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP ROLE IF EXISTS {template}"
        )))
        .await;
    let (usable, gone) = (p50_p99(usable), p50_p99(gone));
    println!(
        "credentials: redemption → usable login {usable}; outcome report → session gone {gone}"
    );
    figures.rows.push((
        format!("Grant redeemed → released PostgreSQL login has run `SELECT 1` on its own connection ({MEASURED_DECISIONS} tasks)"),
        usable,
        "—".into(),
    ));
    figures.rows.push((
        format!("Outcome reported → that login's open session gone ({MEASURED_DECISIONS} tasks)"),
        gone,
        "under 1 s".into(),
    ));
    Ok(())
}

/// Scenario 8: the gateway's cost per call, against calling the upstream directly.
async fn gateway(http: &Client, figures: &mut Figures) -> Result<()> {
    let upstream = axum::Router::new().fallback(|body: String| async move {
        (
            axum::http::StatusCode::CREATED,
            [("content-type", "application/json")],
            format!("{{\"received\":{}}}", body.len()),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://127.0.0.1:{}/api", listener.local_addr()?.port());
    let serving = tokio::spawn(async move { axum::serve(listener, upstream).await });
    let server = Server::start(http, &[]).await?;
    let _owner = Owner::enrol(http, &server, "owner@example.com").await?;
    let key = server.agent("owner@example.com", "payer")?;
    let secret_value = format!("Bearer upstream-{}", uuid::Uuid::new_v4().simple());
    let secret = server._dir.path().join("bank.secret");
    std::fs::write(&secret, &secret_value)?;
    server.cli(&[
        "credential",
        "add",
        "bank-api",
        "--kind",
        "http",
        "--base-url",
        &base_url,
        "--operation",
        "POST /v2/transfers",
        "--secret-file",
        &secret.display().to_string(),
    ])?;
    let policy = server._dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[rule]]\nid = \"transfers\"\naction = \"payments.*\"\noutcome = \"allow\"\ncredential = \"bank-api\"\n",
    )?;
    server.cli(&["policy", "apply", &policy.display().to_string()])?;

    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for round in 0..MEASURED_DECISIONS {
        let body = transfer(round);
        let params = body["action"]["params"].clone();
        // Every other round starts with the gateway, so neither path always runs first.
        for via_gateway in [round % 2 == 0, round % 2 == 1] {
            if via_gateway {
                let (_, token) = allowed(http, &server.base, &key, &body).await?;
                let started = Instant::now();
                let r = http
                    .post(format!("{}/gw/bank-api/v2/transfers", server.base))
                    .bearer_auth(&key)
                    .header("Countersign-Grant", token)
                    .json(&params)
                    .send()
                    .await?;
                let status = r.status();
                r.bytes().await?;
                through.push(started.elapsed());
                if status != StatusCode::CREATED {
                    bail!("gateway: {status}");
                }
            } else {
                let started = Instant::now();
                let r = http
                    .post(format!("{base_url}/v2/transfers"))
                    .header("Authorization", &secret_value)
                    .json(&params)
                    .send()
                    .await?;
                r.bytes().await?;
                direct.push(started.elapsed());
            }
        }
    }
    serving.abort();
    let (direct, through) = (p50_p99(direct), p50_p99(through));
    println!("gateway: direct {direct}; through the gateway {through}");
    figures.rows.push((
        format!("Upstream called directly on loopback ({MEASURED_DECISIONS} calls)"),
        direct,
        "—".into(),
    ));
    figures.rows.push((
        format!("The same call through `/gw/bank-api/…` with a grant ({MEASURED_DECISIONS} calls, alternating)"),
        through,
        "—".into(),
    ));
    Ok(())
}

/// The side-by-side scenario (issue 15): how many rounds, how long each wrk run lasts, and
/// wrk's threads and connections.
const PEER_ROUNDS: usize = 3;
const PEER_SECONDS: u64 = 10;
const PEER_THREADS: usize = 2;
const PEER_CONNECTIONS: usize = 32;

/// The side-by-side scenario's policy: transfers wait for one approval (the pending path),
/// refunds are allowed at once with a grant (the allowed path).
const PEER_POLICY: &str = r#"
[[rule]]
id = "transfers"
action = "payments.transfer"
outcome = "require"
approvals = 1
approvers = ["owner"]

[[rule]]
id = "refunds"
action = "payments.refund"
outcome = "allow"
"#;

/// The action types and targets of the two Countersign paths, as bench/wrk/requests.lua takes
/// them, with the status each must be answered with.
const PENDING_PATH: (&str, &str, u16) = ("payments.transfer", "bank-api", 202);
const ALLOWED_PATH: (&str, &str, u16) = ("payments.refund", "bank-api", 200);

/// The client the peer registers (its defaults in bench/peer/ciba.mjs).
const PEER_CLIENT: (&str, &str) = ("bench-client", "bench-secret");

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The repository's root (this file is server/src/bin/bench.rs).
fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

/// The CIBA peer: node oidc-provider (bench/peer/ciba.mjs) as its own process on loopback.
struct Peer {
    child: Child,
    base: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    /// Starts the peer (`npm ci` in bench/peer must have run: `bash .ci/bench` does it) and
    /// waits for its ready line.
    fn start() -> Result<Self> {
        let dir = repo_root().join("bench/peer");
        if !dir.join("node_modules/oidc-provider").is_dir() {
            bail!(
                "{}/node_modules is missing: run `npm ci` there (`bash .ci/bench` does)",
                dir.display()
            );
        }
        let port = free_port()?;
        let mut child = Command::new("node")
            .arg("ciba.mjs")
            .arg(port.to_string())
            .current_dir(&dir)
            .env("NODE_ENV", "production")
            .env_remove("DEBUG")
            .env_remove("NODE_OPTIONS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting node bench/peer/ciba.mjs (is node on PATH?)")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("ready on") {
                    let _ = tx.send(line.clone());
                }
                println!("peer: {line}");
            }
        });
        let peer = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        rx.recv_timeout(Duration::from_secs(30))
            .context("the CIBA peer printed no ready line within 30 s")?;
        Ok(peer)
    }

    /// Resident memory of the peer process, in MiB.
    fn memory_mib(&self) -> Result<f64> {
        resident_mib(self.child.id())
    }
}

fn resident_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))?
        .parse()?;
    Ok(kib / 1024.0)
}

/// CPU time (user + system) process `pid` has used so far, in seconds; Linux's `/proc` counts
/// it in ticks of 1/100 s (USER_HZ).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow!("short /proc/{pid}/stat"))?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// What one wrk run measured, from its printed report.
#[derive(Debug, Clone)]
struct WrkRun {
    requests: u64,
    rate: f64,
    p50: Duration,
    p99: Duration,
    /// Answers with status >= 400 (wrk's "Non-2xx or 3xx responses").
    non_2xx: u64,
    /// Connect, read, write errors and timeouts together.
    socket_errors: u64,
    /// Answers whose status was not the one the script expects (its `done` hook prints these).
    unexpected: u64,
    first_unexpected: Option<String>,
}

impl WrkRun {
    fn errors(&self) -> u64 {
        self.non_2xx.max(self.unexpected) + self.socket_errors
    }

    fn cell(&self) -> String {
        format!(
            "{}/s; p50 {}, p99 {}{}",
            thousands(self.rate),
            ms(self.p50),
            ms(self.p99),
            match self.errors() {
                0 => String::new(),
                n => format!("; **{n} errors**"),
            }
        )
    }
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration as wrk prints it: `812.00us`, `10.31ms`, `1.02s`, `1.50m`.
fn wrk_duration(s: &str) -> Result<Duration> {
    let split = s
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| anyhow!("no unit in {s:?}"))?;
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().with_context(|| format!("{s:?}"))?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => bail!("unknown unit in {s:?}"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// Reads wrk's `--latency` report (and the `unexpected responses` line of our scripts).
fn parse_wrk(out: &str) -> Result<WrkRun> {
    let mut run = WrkRun {
        requests: 0,
        rate: f64::NAN,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
        non_2xx: 0,
        socket_errors: 0,
        unexpected: 0,
        first_unexpected: None,
    };
    let (mut saw_rate, mut saw_p50, mut saw_p99, mut saw_unexpected) = (false, false, false, false);
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(rate) = line.strip_prefix("Requests/sec:") {
            run.rate = rate.trim().parse()?;
            saw_rate = true;
        } else if words.len() >= 3 && words[1] == "requests" && words[2] == "in" {
            run.requests = words[0].parse()?;
        } else if words.len() == 2 && words[0] == "50%" {
            run.p50 = wrk_duration(words[1])?;
            saw_p50 = true;
        } else if words.len() == 2 && words[0] == "99%" {
            run.p99 = wrk_duration(words[1])?;
            saw_p99 = true;
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.non_2xx = n.trim().parse()?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in rest.split(',') {
                if let Some(n) = part.split_whitespace().nth(1) {
                    run.socket_errors += n.parse::<u64>()?;
                }
            }
        } else if let Some(n) = line.strip_prefix("unexpected responses:") {
            run.unexpected = n.trim().parse()?;
            saw_unexpected = true;
        } else if let Some(first) = line.strip_prefix("first unexpected:") {
            run.first_unexpected = Some(first.trim().to_string());
        }
    }
    if !(saw_rate && saw_p50 && saw_p99 && saw_unexpected) {
        bail!(
            "wrk's report lacks the rate, the latency distribution or the script's count:\n{out}"
        );
    }
    Ok(run)
}

/// One wrk run: `PEER_THREADS` threads, `PEER_CONNECTIONS` connections, `seconds` long, with
/// the latency distribution; `args` go to the script.
async fn wrk(script: &str, url: &str, seconds: u64, args: Vec<String>) -> Result<WrkRun> {
    let script = repo_root().join("bench/wrk").join(script);
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("wrk")
            .arg(format!("-t{PEER_THREADS}"))
            .arg(format!("-c{PEER_CONNECTIONS}"))
            .arg(format!("-d{seconds}s"))
            .arg("--latency")
            .arg("-s")
            .arg(&script)
            .arg(&url)
            .arg("--")
            .args(&args)
            .output()
            .context("running wrk (bash .ci/bench installs it)")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "wrk {}: {}\n{stdout}{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        parse_wrk(&stdout)
    })
    .await?
}

/// One request to each of the three paths, checked, before anything is measured.
async fn peer_sanity(http: &Client, peer: &Peer, base: &str, key: &str) -> Result<()> {
    let (client_id, secret) = PEER_CLIENT;
    let r = http
        .post(format!("{}/backchannel", peer.base))
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("scope", "openid"),
            ("login_hint", "sanity-user"),
            ("binding_message", "sanity-1"),
        ])
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await.context("peer /backchannel: not JSON")?;
    let auth_req_id = v["auth_req_id"].as_str().unwrap_or_default().to_string();
    if status != StatusCode::OK || auth_req_id.is_empty() || !v["expires_in"].is_number() {
        bail!("peer /backchannel answered {status} {v}, not 200 with an auth_req_id");
    }
    // The request is pending at the token endpoint, as a CIBA client polling would see it.
    let r = http
        .post(format!("{}/token", peer.base))
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("grant_type", "urn:openid:params:grant-type:ciba"),
            ("auth_req_id", auth_req_id.as_str()),
        ])
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await.context("peer /token: not JSON")?;
    if status != StatusCode::BAD_REQUEST || v["error"] != "authorization_pending" {
        bail!("peer /token answered {status} {v}, not 400 authorization_pending");
    }

    for (kind, (action, target, expect)) in [("pending", PENDING_PATH), ("allowed", ALLOWED_PATH)] {
        let mut body = transfer(0);
        body["action"]["type"] = json!(action);
        body["action"]["target"] = json!(target);
        body["action"]["params"]["reference"] = json!(format!("SANITY-{kind}"));
        let r = http
            .post(format!("{base}/api/v1/requests"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r
            .json()
            .await
            .with_context(|| format!("{kind}: not JSON"))?;
        let ok = status.as_u16() == expect
            && match kind {
                "pending" => v["status"] == "pending" && v["id"].is_string(),
                _ => v["status"] == "approved" && v["grant"]["token"].is_string(),
            };
        if !ok {
            bail!("Countersign {kind} path: {action} answered {status} {v}, not {expect} {kind}");
        }
    }
    Ok(())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if !n.is_multiple_of(2) => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Scenario 10 (issue 15): Countersign's intake side by side with a real CIBA server's, under
/// one load generator, in alternating rounds. `database_url` is the database Countersign uses
/// (None: a fresh SQLite file).
async fn peer(
    http: &Client,
    figures: &mut Figures,
    label: &str,
    database_url: Option<&str>,
) -> Result<()> {
    let rounds = env_number("BENCH_PEER_ROUNDS", PEER_ROUNDS).max(1);
    let seconds = env_number("BENCH_PEER_SECONDS", PEER_SECONDS).max(1);
    let mut settings = vec![("COUNTERSIGN_MAX_PENDING_PER_AGENT", "100000")];
    if let Some(url) = database_url {
        settings.push(("DATABASE_URL", url));
    }
    let server = Server::start(http, &settings).await?;
    Owner::enrol(http, &server, "owner@example.com").await?;
    let policy = tempfile::NamedTempFile::new()?;
    std::fs::write(policy.path(), PEER_POLICY)?;
    server.cli(&["policy", "apply", &policy.path().display().to_string()])?;
    let keys = server.agents("owner@example.com", INTAKE_AGENTS)?;
    let keys_file = tempfile::NamedTempFile::new()?;
    std::fs::write(keys_file.path(), keys.join("\n") + "\n")?;
    let keys_path = keys_file.path().display().to_string();
    // wrk connects to the address the server listens on (localhost may resolve to ::1 first).
    let base = server.base.replace("//localhost:", "//127.0.0.1:");
    let peer = Peer::start()?;
    peer_sanity(http, &peer, &base, &keys[0]).await?;
    println!(
        "{label}: {rounds} rounds of {seconds} s each (wrk -t{PEER_THREADS} -c{PEER_CONNECTIONS}), \
         {INTAKE_AGENTS} agents; order per round: peer, pending, allowed"
    );

    let mut rows: Vec<[WrkRun; 3]> = Vec::new();
    for round in 1..=rounds {
        let tag = format!("r{round}");
        let (client_id, secret) = PEER_CLIENT;
        // What the side not under load does meanwhile (background work, or nothing) is
        // measured as CPU time, since it shares the two cores with the side measured.
        let idle_before = cpu_seconds(server.child.id())?;
        let on_peer = wrk(
            "backchannel.lua",
            &peer.base,
            seconds,
            vec![client_id.into(), secret.into(), tag.clone()],
        )
        .await?;
        let server_idle_cpu = cpu_seconds(server.child.id())? - idle_before;
        let peer_before = cpu_seconds(peer.child.id())?;
        let path_args = |(action, target, expect): (&str, &str, u16)| {
            vec![
                keys_path.clone(),
                action.to_string(),
                target.to_string(),
                expect.to_string(),
                tag.clone(),
            ]
        };
        let pending = wrk("requests.lua", &base, seconds, path_args(PENDING_PATH)).await?;
        let allowed = wrk("requests.lua", &base, seconds, path_args(ALLOWED_PATH)).await?;
        let peer_idle_cpu = cpu_seconds(peer.child.id())? - peer_before;
        for (what, run) in [
            ("peer /backchannel", &on_peer),
            ("Countersign pending", &pending),
            ("Countersign allowed", &allowed),
        ] {
            println!(
                "{label} round {round}, {what}: {} requests, {:.0}/s, p50 {} p99 {}, \
                 errors {} (non-2xx {}, unexpected status {}, socket {}){}",
                run.requests,
                run.rate,
                ms(run.p50),
                ms(run.p99),
                run.errors(),
                run.non_2xx,
                run.unexpected,
                run.socket_errors,
                run.first_unexpected
                    .as_deref()
                    .map(|f| format!("; first: {f}"))
                    .unwrap_or_default()
            );
        }
        println!(
            "{label} round {round}: pending/peer {:.2}, allowed/peer {:.2}; CPU used by the \
             side not under load: Countersign {server_idle_cpu:.2} s during the peer's run, \
             the peer {peer_idle_cpu:.2} s during Countersign's two",
            pending.rate / on_peer.rate,
            allowed.rate / on_peer.rate
        );
        rows.push([on_peer, pending, allowed]);
    }
    let peer_mib = peer.memory_mib()?;
    let (server_mib, _) = server.memory_mib()?;
    drop(peer);
    drop(server);

    let ratio = |i: usize| median(rows.iter().map(|r| r[i].rate / r[0].rate).collect());
    let rate = |i: usize| median(rows.iter().map(|r| r[i].rate).collect());
    let (pending_ratio, allowed_ratio) = (ratio(1), ratio(2));
    let errors: u64 = rows.iter().flatten().map(WrkRun::errors).sum();
    println!(
        "{label}: median pending/peer {pending_ratio:.2}, allowed/peer {allowed_ratio:.2} \
         (median rates: peer {:.0}/s, pending {:.0}/s, allowed {:.0}/s); {errors} errors; \
         resident memory after the rounds: peer {peer_mib:.0} MiB, Countersign {server_mib:.0} MiB",
        rate(0),
        rate(1),
        rate(2)
    );
    println!(
        "\n| Round | CIBA peer (`oidc-provider` /backchannel) | Countersign pending ({label}) | Countersign allowed + grant ({label}) | pending / peer | allowed / peer |\n| --- | --- | --- | --- | --- | --- |"
    );
    for (i, [p, pe, al]) in rows.iter().enumerate() {
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.2} |",
            i + 1,
            p.cell(),
            pe.cell(),
            al.cell(),
            pe.rate / p.rate,
            al.rate / p.rate
        );
    }
    println!(
        "| median | {}/s | {}/s | {}/s | **{pending_ratio:.2}** | **{allowed_ratio:.2}** |\n",
        thousands(rate(0)),
        thousands(rate(1)),
        thousands(rate(2))
    );
    figures.rows.push((
        format!("Intake pending ({label}) / CIBA peer, median of {rounds} rounds of {seconds} s"),
        format!(
            "{pending_ratio:.2}× ({:.0}/s against {:.0}/s)",
            rate(1),
            rate(0)
        ),
        "≥ 2×".into(),
    ));
    figures.rows.push((
        format!("Intake allowed + grant ({label}) / CIBA peer, median of {rounds} rounds"),
        format!(
            "{allowed_ratio:.2}× ({:.0}/s against {:.0}/s)",
            rate(2),
            rate(0)
        ),
        "≥ 1.5×".into(),
    ));
    if errors > 0 {
        bail!("{label}: {errors} calls were not answered as expected (see the rounds above)");
    }
    Ok(())
}

/// The side-by-side scenario with Countersign on the local PostgreSQL: a database made for
/// the run and dropped after it.
async fn peer_pg(http: &Client, figures: &mut Figures) -> Result<()> {
    with_pg_database(|url| async move { peer(http, figures, "PostgreSQL", Some(&url)).await }).await
}

/// Runs `scenario` on a fresh database of the PostgreSQL server at `COUNTERSIGN_TEST_PG_URL`
/// (default: the local one), dropping it afterwards whatever the outcome.
async fn with_pg_database<F, Fut>(scenario: F) -> Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    use sqlx::{Connection, Executor};
    let pg = std::env::var("COUNTERSIGN_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let db = format!(
        "cs_bench_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut admin = sqlx::PgConnection::connect(&format!("{pg}/postgres"))
        .await
        .with_context(|| format!("PostgreSQL at {pg} (COUNTERSIGN_TEST_PG_URL)"))?;
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .await?;
    let measured = scenario(format!("{pg}/{db}")).await;
    let dropped = admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
        )))
        .await;
    measured?;
    dropped.with_context(|| format!("dropping {db}"))?;
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores ({cpu}); server and load generator on the same machine")
}

#[tokio::main]
async fn main() -> Result<()> {
    let http = Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .build()?;
    let mut figures = Figures { rows: Vec::new() };
    // Scenarios to run: all but `peer`, `peer-pg` and `delivery-pg` by default, or any of
    // `intake`, `delivery`, `waiters`, `page`, `mcp`, `callbacks`, `credentials`, `gateway`,
    // `standing`, `peer`, `peer-pg`, `delivery-pg`.
    let only: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|a| a == name);
    println!("machine: {}", machine());
    if wanted("intake") {
        intake(&http, &mut figures).await?;
    }
    if wanted("delivery") {
        delivery(&http, &mut figures, None).await?;
    }
    if wanted("waiters") {
        many_waiters(&http, &mut figures).await?;
    }
    if wanted("page") {
        request_page(&http, &mut figures).await?;
    }
    if wanted("mcp") {
        mcp_against_http(&http, &mut figures).await?;
    }
    if wanted("callbacks") {
        callbacks(&http, &mut figures).await?;
    }
    if wanted("credentials") {
        credentials(&http, &mut figures).await?;
    }
    if wanted("gateway") {
        gateway(&http, &mut figures).await?;
    }
    if wanted("standing") {
        standing(&http, &mut figures).await?;
    }
    // The side-by-side scenarios need node and wrk (`bash .ci/bench` installs them), the
    // PostgreSQL ones a server: they run only when named.
    let named = |name: &str| only.iter().any(|a| a == name);
    if named("peer") {
        peer(&http, &mut figures, "SQLite", None).await?;
    }
    if named("peer-pg") {
        peer_pg(&http, &mut figures).await?;
    }
    if named("delivery-pg") {
        delivery_pg(&http, &mut figures).await?;
    }
    println!("\n| measure | result | target |\n| --- | --- | --- |");
    for (m, r, t) in &figures.rows {
        println!("| {m} | {r} | {t} |");
    }
    Ok(())
}
