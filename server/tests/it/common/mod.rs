//! Test harness: starts the real server on port 0 against a temporary SQLite file or a fresh
//! PostgreSQL database, and drives people through real passkey ceremonies (`SoftPasskey`) over
//! HTTP, exactly as a browser would. Every call a test makes under `/api/` is checked against
//! the served OpenAPI document when its server goes away ([`contract`]).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod contract;

use std::collections::HashMap;
use std::sync::Arc;

use countersign::clock::ManualClock;
use countersign::config::Config;
use countersign::service::Countersign;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use url::Url;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend from an `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() { super::$name($crate::common::Backend::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() { super::$name($crate::common::Backend::Postgres).await }
            )*
        }
    };
}

/// A running server.
pub struct TestApp {
    pub base: String,
    pub core: Arc<Countersign>,
    pub clock: Arc<ManualClock>,
    pub http: Client,
    pub backend: Backend,
    /// Every call answered under `/api/`, checked against `openapi` on drop.
    pub recorder: contract::Recorder,
    /// The OpenAPI document this server serves.
    pub openapi: Value,
    _dir: tempfile::TempDir,
    pg_db: Option<String>,
}

fn pg_admin_url() -> String {
    std::env::var("COUNTERSIGN_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// A server with extra settings (environment variables) on top of the test defaults.
    pub async fn spawn_with(backend: Backend, settings: &[(&'static str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (database_url, pg_db) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display()),
                None,
            ),
            Backend::Postgres => {
                // A database of our own per test, dropped afterwards. A PostgreSQL that is not
                // running is a failure, never a skip.
                use sqlx::Connection;
                let name = format!("countersign_test_{}", uuid::Uuid::new_v4().simple());
                let admin = format!("{}/postgres", pg_admin_url());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PostgreSQL at {admin} is required for these tests: {e}")
                    });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                (format!("{}/{name}", pg_admin_url()), Some(name))
            }
        };
        let mut vars: HashMap<&str, String> = HashMap::from([
            ("COUNTERSIGN_LISTEN", format!("127.0.0.1:{port}")),
            ("COUNTERSIGN_PUBLIC_URL", format!("http://localhost:{port}")),
            ("COUNTERSIGN_DATA_DIR", dir.path().display().to_string()),
            ("DATABASE_URL", database_url),
            // The fatigue guards are off unless a test turns them on: most tests approve
            // without opening the page, and send the same request body more than once.
            ("COUNTERSIGN_APPROVE_DELAY_MS", "0".into()),
            ("COUNTERSIGN_DENY_COOLDOWN_SECONDS", "0".into()),
            ("COUNTERSIGN_COLLAPSE_IDENTICAL", "false".into()),
        ]);
        vars.extend(settings.iter().map(|(k, v)| (*k, v.to_string())));
        Self::start(vars, dir, listener, backend, pg_db).await
    }

    /// Opens Countersign with these settings and serves it on `listener`.
    async fn start(
        vars: HashMap<&str, String>,
        dir: tempfile::TempDir,
        listener: tokio::net::TcpListener,
        backend: Backend,
        pg_db: Option<String>,
    ) -> Self {
        let port = listener.local_addr().unwrap().port();
        let config = Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
        let clock = ManualClock::new();
        let core = Countersign::open(config, clock.clone()).await.unwrap();
        let served = core.clone();
        let recorder = contract::Recorder::default();
        let app = countersign::http::router(core.clone()).layer(
            axum::middleware::from_fn_with_state(recorder.clone(), contract::record),
        );
        tokio::spawn(async move {
            countersign::http::serve_router(served, app, listener, std::future::pending())
                .await
                .unwrap();
        });
        // A request the server never answers fails its test, naming the URL, instead of
        // hanging the run (no test waits anywhere near this long on purpose).
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .unwrap();
        let base = format!("http://localhost:{port}");
        let openapi = http
            .get(format!("{base}/api/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        TestApp {
            base,
            core,
            clock,
            http,
            backend,
            recorder,
            openapi,
            _dir: dir,
            pg_db,
        }
    }

    /// Fails the test, listing them, if the calls so far show the OpenAPI document wrong (see
    /// [`contract`]). Also done when the server goes away.
    pub fn check_contract(&self) {
        let violations = self.recorder.violations(&self.openapi);
        assert!(
            violations.is_empty(),
            "the server answered what its OpenAPI document does not say ({} findings):\n  {}",
            violations.len(),
            violations.join("\n  ")
        );
    }

    /// A server with its first admin, alice@example.com, who owns one agent.
    pub async fn with_alice(backend: Backend) -> (Self, Person, Agent) {
        let app = Self::spawn(backend).await;
        let alice = app.enrol_first_admin("alice@example.com").await;
        let agent = app.agent("alice@example.com").await;
        (app, alice, agent)
    }

    /// Asks for approval (expecting 202) and returns the request id.
    pub async fn ask_id(&self, agent: &Agent, body: &Value) -> String {
        self.ask(agent, body).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The request as its agent sees it, after waiting up to a second for a decision.
    pub async fn state(&self, agent: &Agent, id: &str) -> Value {
        self.agent_get(agent, &format!("/api/v1/requests/{id}?wait=1"))
            .await
            .json()
            .await
            .unwrap()
    }

    /// Starts a long-wait (`wait=55`) in the background; yields the answer and how long it took.
    pub fn wait_in_background(
        &self,
        agent: &Agent,
        id: &str,
    ) -> tokio::task::JoinHandle<(Value, std::time::Duration)> {
        let (http, url, bearer) = (
            self.http.clone(),
            self.url(&format!("/api/v1/requests/{id}?wait=55")),
            agent.bearer.clone(),
        );
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let v: Value = http
                .get(url)
                .bearer_auth(bearer)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (v, started.elapsed())
        })
    }

    /// The kinds of one request's audit events, in order.
    pub async fn audit_kinds(&self, id: &str) -> Vec<String> {
        self.audit_lines(id)
            .await
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// The kinds of every audit event, in order.
    pub async fn all_audit_kinds(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.core.export_audit(None, &mut out).await.unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// How many agents exist.
    pub async fn agent_count(&self) -> usize {
        countersign::store::agents::list(self.core.db.reader(), None)
            .await
            .unwrap()
            .len()
    }

    /// A request's status, read from the database.
    pub async fn request_status(&self, id: &str) -> String {
        countersign::store::requests::get(self.core.db.reader(), id)
            .await
            .unwrap()
            .unwrap()
            .status
            .to_string()
    }

    /// A person as the services see them when they act from a browser session.
    pub async fn signed_in(&self, person: &Person) -> countersign::service::people::SignedIn {
        countersign::service::people::SignedIn {
            person: self.core.person(&person.id).await.unwrap().unwrap(),
            session_binding: "test-session".into(),
        }
    }

    /// A person's user id, by e-mail.
    pub async fn person_id(&self, email: &str) -> String {
        let mut conn = self.core.db.read_conn().await.unwrap();
        countersign::store::users::get_by_email(&mut conn, email)
            .await
            .unwrap()
            .unwrap()
            .id
    }

    /// A browser with no session.
    pub fn stranger(&self) -> Person {
        Person::new(self.base.clone())
    }

    /// One request's audit events as exported, one JSON line each.
    pub async fn audit_lines(&self, id: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.core.export_audit(Some(id), &mut out).await.unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A second server on the same database and public URL (another replica behind the same
    /// load balancer), with its own port, data directory and signing key.
    pub async fn replica(&self) -> TestApp {
        self.replica_with(&[]).await
    }

    /// A replica (see [`Self::replica`]) with extra settings.
    pub async fn replica_with(&self, settings: &[(&'static str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut vars: HashMap<&str, String> = HashMap::from([
            ("COUNTERSIGN_LISTEN", format!("127.0.0.1:{port}")),
            ("COUNTERSIGN_PUBLIC_URL", self.base.clone()),
            ("COUNTERSIGN_DATA_DIR", dir.path().display().to_string()),
            (
                "DATABASE_URL",
                self.core.config.database_url.expose().to_string(),
            ),
        ]);
        vars.extend(settings.iter().map(|(k, v)| (*k, v.to_string())));
        // The first replica owns (and drops) the database.
        Self::start(vars, dir, listener, self.backend, None).await
    }

    /// The `countersign` command line, set up to run as a separate process against this
    /// server's database, data directory and public URL, as operators run it (warnings only
    /// in its log unless the caller sets `RUST_LOG`).
    pub fn cli_command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"));
        cmd.env("DATABASE_URL", self.core.config.database_url.expose())
            .env("COUNTERSIGN_DATA_DIR", &self.core.config.data_dir)
            .env("COUNTERSIGN_PUBLIC_URL", &self.base)
            .env("RUST_LOG", "warn");
        cmd
    }

    /// Runs the command line with these arguments (see [`Self::cli_command`]).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_command().args(args).output().unwrap()
    }

    /// One series of `/metrics`, by its name and labels, e.g.
    /// `countersign_mails_total{outcome="sent"}`.
    pub async fn metric(&self, series: &str) -> u64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{series} not in /metrics:\n{text}"))
            .parse()
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Enrols the first admin through the one-time link.
    pub async fn enrol_first_admin(&self, email: &str) -> Person {
        let link = self
            .core
            .bootstrap_admin_link()
            .await
            .unwrap()
            .expect("no admin yet");
        self.enrol_with_link(link.expose(), Some(email), "Ada Admin")
            .await
    }

    /// Invites someone and enrols their passkey.
    pub async fn enrol(&self, email: &str, role: &str, groups: &[&str]) -> Person {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let invite = self
            .core
            .invite(email, role, &groups, "test")
            .await
            .unwrap();
        self.enrol_with_link(invite.link.expose(), None, email)
            .await
    }

    pub async fn enrol_with_link(&self, link: &str, email: Option<&str>, name: &str) -> Person {
        let token = link.rsplit('/').next().unwrap().to_string();
        let mut person = Person::new(self.base.clone());
        let mut body =
            json!({ "token": token, "display_name": name, "passkey_name": "SoftPasskey" });
        if let Some(e) = email {
            body["email"] = json!(e);
        }
        let start = person.post(&self.http, "/api/ui/enrol/start", &body).await;
        assert_eq!(start.status(), StatusCode::OK, "enrol start");
        let start: Value = start.json().await.unwrap();
        let options = serde_json::from_value(start["options"].clone()).unwrap();
        let credential = person
            .authenticator
            .do_registration(person.origin.clone(), options)
            .unwrap();
        let finish = person
            .post(
                &self.http,
                "/api/ui/enrol/finish",
                &json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
            )
            .await;
        assert_eq!(finish.status(), StatusCode::OK, "enrol finish");
        let me: Value = finish.json().await.unwrap();
        person.id = me["id"].as_str().unwrap().to_string();
        person.email = me["email"].as_str().unwrap().to_string();
        person
    }

    /// Registers an agent with an API key for `owner_email`.
    pub async fn agent(&self, owner_email: &str) -> Agent {
        let created = self
            .core
            .create_agent("test-agent", owner_email, None, "test")
            .await
            .unwrap();
        Agent {
            id: created.id,
            bearer: created.api_key.unwrap().expose().to_string(),
        }
    }

    /// The Rust client (`sdk/rust`) as this agent, with its API key.
    pub fn client(&self, agent: &Agent) -> countersign_client::Client {
        countersign_client::Client::new(
            &self.base,
            countersign_client::Credentials::ApiKey(agent.bearer.clone()),
        )
        .unwrap()
    }

    /// The Rust client as a downstream system of this server.
    pub fn downstream(&self) -> countersign_client::Downstream {
        countersign_client::Downstream::new(&self.base).unwrap()
    }

    /// Registers an agent with a fresh Ed25519 key for `owner_email` (its public JWK written
    /// by the Rust client, as an agent author would); returns the agent's id and its key.
    pub async fn key_agent(&self, owner_email: &str) -> (String, ed25519_dalek::SigningKey) {
        let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
        let jwk = countersign_client::public_jwk(&key).to_string();
        let created = self
            .core
            .create_agent("key-agent", owner_email, Some(&jwk), "test")
            .await
            .unwrap();
        (created.id, key)
    }

    /// An agent call.
    pub async fn agent_post(&self, agent: &Agent, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&agent.bearer)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn agent_get(&self, agent: &Agent, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&agent.bearer)
            .send()
            .await
            .unwrap()
    }

    /// Creates a request needing approval; returns its JSON (status 202).
    pub async fn ask(&self, agent: &Agent, body: &Value) -> Value {
        let r = self.agent_post(agent, "/api/v1/requests", body).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        r.json().await.unwrap()
    }

    pub async fn redeem(&self, token: &str) -> Response {
        self.http
            .post(self.url("/api/v1/grants/redeem"))
            .json(&json!({ "token": token }))
            .send()
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.drop_database();
        // Not while the test is failing already: a second panic would abort the run and hide
        // the first failure.
        if !std::thread::panicking() {
            self.check_contract();
        }
    }
}

impl TestApp {
    fn drop_database(&mut self) {
        if let Some(name) = self.pg_db.take() {
            // Drop the database from a separate thread with its own runtime: we may be inside
            // the test's runtime, which cannot block.
            let admin = format!("{}/postgres", pg_admin_url());
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A person with a browser session and a passkey.
pub struct Person {
    pub id: String,
    pub email: String,
    pub cookie: Option<String>,
    pub origin: Url,
    pub authenticator: SoftPasskey,
}

impl Person {
    fn new(base: String) -> Self {
        Self {
            id: String::new(),
            email: String::new(),
            cookie: None,
            origin: Url::parse(&base).unwrap(),
            // `true`: this soft authenticator performs user verification.
            authenticator: SoftPasskey::new(true),
        }
    }

    fn base(&self) -> String {
        self.origin.as_str().trim_end_matches('/').to_string()
    }

    fn remember_cookie(&mut self, r: &Response) {
        for v in r.headers().get_all(reqwest::header::SET_COOKIE) {
            let v = v.to_str().unwrap();
            if let Some(pair) = v.split(';').next() {
                if pair.starts_with("__Host-countersign=") {
                    self.cookie = Some(pair.to_string());
                }
            }
        }
    }

    /// A same-origin POST from this person's browser.
    pub async fn post(&mut self, http: &Client, path: &str, body: &Value) -> Response {
        let mut req = http
            .post(format!("{}{path}", self.base()))
            .header("origin", self.base())
            .header("sec-fetch-site", "same-origin")
            .json(body);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        self.remember_cookie(&r);
        r
    }

    pub async fn get(&mut self, http: &Client, path: &str) -> Response {
        let mut req = http.get(format!("{}{path}", self.base()));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        self.remember_cookie(&r);
        r
    }

    /// Calls one of the app's server functions (`/api/app/<name>`) the way the browser does:
    /// a same-origin, form-encoded POST.
    pub async fn server_fn(
        &mut self,
        http: &Client,
        name: &str,
        args: &[(&str, &str)],
    ) -> Response {
        let mut req = http
            .post(format!("{}/api/app/{name}", self.base()))
            .header("origin", self.base())
            .header("sec-fetch-site", "same-origin")
            .form(args);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        self.remember_cookie(&r);
        r
    }

    /// Calls a server function that must succeed and returns its JSON answer.
    pub async fn server_json(&mut self, http: &Client, name: &str, args: &[(&str, &str)]) -> Value {
        let r = self.server_fn(http, name, args).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{name}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Starts a decision; returns the start response (status checked by the caller).
    pub async fn start_decision(
        &mut self,
        http: &Client,
        request_id: &str,
        decision: &Value,
    ) -> Response {
        self.post(
            http,
            &format!("/api/ui/requests/{request_id}/decision/start"),
            decision,
        )
        .await
    }

    /// This person's passkey answer to a started decision: the body of the finish call, not
    /// yet sent.
    pub fn answer(&mut self, start: &Value) -> Value {
        let options = serde_json::from_value(start["options"].clone()).unwrap();
        let credential = self
            .authenticator
            .do_authentication(self.origin.clone(), options)
            .unwrap();
        json!({ "ceremony_id": start["ceremony_id"], "credential": credential })
    }

    /// Answers a started decision with this person's passkey.
    pub async fn finish_decision(
        &mut self,
        http: &Client,
        request_id: &str,
        start: &Value,
    ) -> Response {
        let body = self.answer(start);
        self.post(
            http,
            &format!("/api/ui/requests/{request_id}/decision/finish"),
            &body,
        )
        .await
    }

    /// Approves (or denies) with the passkey; returns the finish response.
    pub async fn decide(&mut self, http: &Client, request_id: &str, decision: &Value) -> Response {
        let start = self.start_decision(http, request_id, decision).await;
        assert_eq!(
            start.status(),
            StatusCode::OK,
            "decision start: {}",
            start.text().await.unwrap()
        );
        let start: Value = start.json().await.unwrap();
        self.finish_decision(http, request_id, &start).await
    }

    pub async fn approve(&mut self, http: &Client, request_id: &str) -> Value {
        let r = self
            .decide(http, request_id, &json!({ "decision": "approve" }))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "approve");
        r.json().await.unwrap()
    }
}

/// An agent's credentials.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub bearer: String,
}

/// A typical request body.
pub fn transfer(amount: &str) -> Value {
    json!({
        "action": { "type": "payments.transfer", "target": "bank-api", "operation": "POST /v2/transfers",
                    "params": { "to": "DE89 3704 0044 0532 0130 00", "amount": amount } },
        "intent": { "goal": "Pay supplier invoice INV-1042", "rationale": "Invoice approved in ticket FIN-77" },
        "context": { "environment": "production", "data_sensitivity": "confidential",
                     "amount": { "value": amount, "currency": "EUR" } },
        "expires_in": 300
    })
}

/// The JSON body of an answer that must have `status` (its body is shown when it has not): the
/// "check the status, then read the JSON" chain that tests repeat.
pub async fn json_of(r: Response, status: StatusCode) -> Value {
    let got = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The id of a request the agent API accepted (202).
pub async fn created_id(r: Response) -> String {
    json_of(r, StatusCode::ACCEPTED).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Reads a problem+json body and checks its code.
pub async fn problem(r: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(r.status(), status, "status for {code}");
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "content type for {code}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], code, "error code in {body}");
    assert_eq!(body["status"], status.as_u16());
    body
}

/// Polls `condition` every 20 ms until it holds, for at most `within`; panics saying what never
/// became true. For tests that wait on something happening in the background, instead of
/// sleeping and hoping it happened.
pub async fn eventually<F, Fut>(what: &str, within: std::time::Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
