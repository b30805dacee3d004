//! Task-scoped credentials against the real PostgreSQL server: a database and a template role
//! of their own per test (the provider's side), the released login used for real, and its
//! revocation watched from the provider's side (sessions killed, role gone).
//!
//! The template role is made a member of `countersign_password_checked`, for which `.ci/setup`
//! has the server check passwords (SCRAM) although it trusts other local logins: a released
//! login gets in only with its password, and only while it is valid.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, Row};

use crate::common::*;

/// The provider's side: a database with a table, and the template role that may read and
/// write it.
struct Downstream {
    db: String,
    template: String,
    /// The admin connection string given to Countersign, with a password only it should know
    /// (the server trusts this login, so any password works; it is there to be looked for).
    admin_dsn: String,
    admin_password: String,
}

fn pg_url() -> String {
    std::env::var("COUNTERSIGN_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

async fn superuser(db: &str) -> PgConnection {
    PgConnection::connect(&format!("{}/{db}", pg_url()))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} is required: {e}", pg_url()))
}

impl Downstream {
    async fn new() -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let db = format!("cs_down_{}", &tag[..12]);
        let template = format!("orders_rw_{}", &tag[..12]);
        let mut admin = superuser("postgres").await;
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .await
            .unwrap();
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "CREATE ROLE {template} NOLOGIN IN ROLE countersign_password_checked"
            )))
            .await
            .unwrap_or_else(|e| {
                panic!("{e}: the role countersign_password_checked comes from .ci/setup --pg")
            });
        let mut conn = superuser(&db).await;
        for sql in [
            "CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)".to_string(),
            "INSERT INTO orders (item) VALUES ('anvil')".to_string(),
            format!("GRANT SELECT, INSERT ON orders TO {template}"),
            format!("GRANT USAGE ON SEQUENCE orders_id_seq TO {template}"),
            format!("GRANT CREATE ON SCHEMA public TO {template}"),
        ] {
            conn.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
        }
        let admin_password = format!("adm-{tag}");
        let admin_dsn = pg_url().replacen(
            "postgres://postgres@",
            &format!("postgres://postgres:{admin_password}@"),
            1,
        ) + "/"
            + &db;
        Self {
            db,
            template,
            admin_dsn,
            admin_password,
        }
    }

    /// Our logins that are members of the template role.
    async fn logins(&self) -> Vec<String> {
        let mut conn = superuser("postgres").await;
        sqlx::query(
            "SELECT r.rolname FROM pg_roles r JOIN pg_auth_members m ON m.member = r.oid \
             JOIN pg_roles t ON t.oid = m.roleid WHERE t.rolname = $1 AND r.rolname LIKE 'cs\\_%'",
        )
        .bind(&self.template)
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
    }

    /// How many sessions a login has open.
    async fn sessions_of(&self, login: &str) -> i64 {
        let mut conn = superuser("postgres").await;
        sqlx::query("SELECT COUNT(*) FROM pg_stat_activity WHERE usename = $1")
            .bind(login)
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0)
    }
}

const POLICY: &str = r#"
[[rule]]
id = "orders-read"
action = "db.query"
target = "orders-db"
outcome = "allow"
credential = "orders-db"
credential_ttl_seconds = 600

[[rule]]
id = "orders-write"
action = "db.write"
target = "orders-db"
outcome = "require"
approvals = 1
approvers = ["owner"]
credential = "orders-db"
"#;

fn query_request(n: usize) -> Value {
    json!({
        "action": { "type": "db.query", "target": "orders-db",
                    "params": { "sql": "SELECT * FROM orders", "n": n } },
        "intent": { "goal": "Count today's orders" }
    })
}

/// A server with the provider `orders-db` (added through the command line, as admins do) and
/// the policy above.
async fn set_up(backend: Backend) -> (TestApp, Person, Agent, Downstream) {
    let (app, alice, agent) = TestApp::with_alice(backend).await;
    let down = Downstream::new().await;
    let secret = app.core.config.data_dir.join("orders-db.secret");
    std::fs::write(&secret, format!("{}\n", down.admin_dsn)).unwrap();
    let out = app.cli(&[
        "credential",
        "add",
        "orders-db",
        "--kind",
        "postgres",
        "--template-role",
        &down.template,
        "--connection-limit",
        "3",
        "--statement-timeout-ms",
        "4000",
        "--secret-file",
        secret.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&secret).unwrap();
    app.core.apply_policy(POLICY, "cli").await.unwrap();
    (app, alice, agent, down)
}

/// Asks for an allowed query and returns its grant's jti.
async fn allowed_grant(app: &TestApp, agent: &Agent, n: usize) -> String {
    let r = app
        .agent_post(agent, "/api/v1/requests", &query_request(n))
        .await;
    let v = json_of(r, StatusCode::OK).await;
    v["grant"]["jti"].as_str().unwrap().to_string()
}

/// The request a grant was issued for.
async fn request_of(app: &TestApp, jti: &str) -> String {
    sqlx::query_scalar("SELECT request_id FROM grants WHERE jti = $1")
        .bind(jti)
        .fetch_one(app.core.db.reader())
        .await
        .unwrap()
}

async fn release(app: &TestApp, agent: &Agent, jti: &str) -> reqwest::Response {
    app.agent_post(
        agent,
        &format!("/api/v1/grants/{jti}/credential"),
        &json!({}),
    )
    .await
}

/// Waits until `conn`'s session has been ended from the outside, for at most `within`.
async fn until_killed(conn: &mut PgConnection, within: Duration) -> Duration {
    let started = std::time::Instant::now();
    loop {
        if conn.execute("SELECT 1").await.is_err() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "the released login's session was still open after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn a_released_login_works_until_the_outcome_is_reported(backend: Backend) {
    let (app, _alice, agent, down) = set_up(backend).await;
    let jti = allowed_grant(&app, &agent, 1).await;
    let r = release(&app, &agent, &jti).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let cred = json_of(r, StatusCode::OK).await;
    assert_eq!(cred["provider"], "orders-db");
    assert_eq!(cred["type"], "postgres");
    let login = cred["username"].as_str().unwrap().to_string();
    assert!(login.starts_with("cs_") && login.len() == 35, "{login}");
    let dsn = cred["connection_string"].as_str().unwrap().to_string();
    assert!(dsn.contains(&down.db) && !dsn.contains(&down.admin_password));

    // It is a real login, with its template's privileges and the provider's limits.
    let mut session = PgConnection::connect(&dsn).await.unwrap();
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM orders")
        .fetch_one(&mut session)
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let timeout: String = sqlx::query("SHOW statement_timeout")
        .fetch_one(&mut session)
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "4s");
    let mut admin = superuser("postgres").await;
    let row = sqlx::query(
        "SELECT rolconnlimit, rolsuper, rolcreaterole, \
         (EXTRACT(EPOCH FROM rolvaliduntil) * 1000)::bigint FROM pg_roles WHERE rolname = $1",
    )
    .bind(&login)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(row.get::<i32, _>(0), 3);
    assert!(!row.get::<bool, _>(1) && !row.get::<bool, _>(2));
    let valid_until: i64 = row.get(3);
    let expires_in = cred["expires_in"].as_i64().unwrap();
    assert!((595..=600).contains(&expires_in), "{expires_in}");
    assert!((valid_until - app.core.now() - 600_000).abs() < 10_000);
    // The password is checked: a wrong one does not get in.
    let wrong = dsn.replace(cred["password"].as_str().unwrap(), "not-the-password");
    assert!(PgConnection::connect(&wrong).await.is_err());

    // Once: the grant is used up, whichever way it is redeemed again.
    problem(
        release(&app, &agent, &jti).await,
        StatusCode::CONFLICT,
        "grant_already_redeemed",
    )
    .await;

    // The outcome ends the task: the open session is killed and the login is gone.
    let r = app
        .agent_post(
            &agent,
            &format!("/api/v1/grants/{jti}/report"),
            &json!({ "outcome": "succeeded" }),
        )
        .await;
    json_of(r, StatusCode::OK).await;
    let took = until_killed(&mut session, Duration::from_secs(1)).await;
    eprintln!("session killed {took:?} after the outcome report");
    eventually("the login is dropped", Duration::from_secs(5), || async {
        down.logins().await.is_empty()
    })
    .await;
    assert!(PgConnection::connect(&dsn).await.is_err());

    // The evidence reads intent → policy → grant → credential → revoked → outcome.
    let request_id = request_of(&app, &jti).await;
    eventually(
        "the revocation is on the chain",
        Duration::from_secs(5),
        || async {
            app.audit_kinds(&request_id)
                .await
                .contains(&"credential.revoked".to_string())
        },
    )
    .await;
    let kinds = app.audit_kinds(&request_id).await;
    let expected = [
        "request.created",
        "request.approved",
        "grant.issued",
        "grant.redeemed",
        "credential.issued",
        "grant.outcome",
        "credential.revoking",
        "credential.revoke_step",
        "credential.revoke_step",
        "credential.revoke_step",
        "credential.revoke_step",
        "credential.revoked",
    ];
    let got: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .filter(|k| expected.contains(k))
        .collect();
    assert_eq!(got, expected, "{kinds:?}");
    let lines = app.audit_lines(&request_id).await.join("\n");
    assert!(lines.contains("\"terminate_sessions\"") && lines.contains("\"sessions\":1"));
    assert!(!lines.contains(cred["password"].as_str().unwrap()));
    assert!(!lines.contains(&down.admin_password));
}

async fn the_kill_switch_and_a_revoke_end_the_task_at_once(backend: Backend) {
    let (app, alice, agent, down) = set_up(backend).await;
    // A revoke of the redeemed grant, by its owner's agent.
    let jti = allowed_grant(&app, &agent, 1).await;
    let cred = json_of(release(&app, &agent, &jti).await, StatusCode::OK).await;
    let mut session = PgConnection::connect(cred["connection_string"].as_str().unwrap())
        .await
        .unwrap();
    let r = app
        .agent_post(&agent, &format!("/api/v1/grants/{jti}/revoke"), &json!({}))
        .await;
    json_of(r, StatusCode::OK).await;
    until_killed(&mut session, Duration::from_secs(1)).await;

    // The kill switch, with two live credentials, one of them released after an approval.
    let jti = allowed_grant(&app, &agent, 2).await;
    let first = json_of(release(&app, &agent, &jti).await, StatusCode::OK).await;
    let write = json!({ "action": { "type": "db.write", "target": "orders-db" },
                        "intent": { "goal": "Add an order" } });
    let id = app.ask_id(&agent, &write).await;
    let mut alice = alice;
    alice.approve(&app.http, &id).await;
    let state = app.state(&agent, &id).await;
    let jti = state["grant"]["jti"].as_str().unwrap().to_string();
    let second = json_of(release(&app, &agent, &jti).await, StatusCode::OK).await;
    let mut a = PgConnection::connect(first["connection_string"].as_str().unwrap())
        .await
        .unwrap();
    let mut b = PgConnection::connect(second["connection_string"].as_str().unwrap())
        .await
        .unwrap();
    sqlx::query("INSERT INTO orders (item) VALUES ('rope')")
        .execute(&mut b)
        .await
        .unwrap();
    app.core.suspend_agent(&agent.id, "cli").await.unwrap();
    until_killed(&mut a, Duration::from_secs(1)).await;
    until_killed(&mut b, Duration::from_secs(1)).await;
    eventually("every login is dropped", Duration::from_secs(5), || async {
        down.logins().await.is_empty()
    })
    .await;
    assert_eq!(
        down.sessions_of(second["username"].as_str().unwrap()).await,
        0
    );
}

async fn time_running_out_ends_the_task(backend: Backend) {
    let (app, _alice, agent, down) = set_up(backend).await;
    let jti = allowed_grant(&app, &agent, 1).await;
    let cred = json_of(release(&app, &agent, &jti).await, StatusCode::OK).await;
    let dsn = cred["connection_string"].as_str().unwrap();
    let mut session = PgConnection::connect(dsn).await.unwrap();
    app.clock.advance_ms(601_000);
    until_killed(&mut session, Duration::from_secs(5)).await;
    eventually("the login is dropped", Duration::from_secs(5), || async {
        down.logins().await.is_empty()
    })
    .await;
    assert!(PgConnection::connect(dsn).await.is_err());
    let request_id = request_of(&app, &jti).await;
    let lines = app.audit_lines(&request_id).await.join("\n");
    assert!(lines.contains("\"reason\":\"expired\""), "{lines}");
}

async fn an_unreachable_provider_uses_nothing_up(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let down = Downstream::new().await;
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dsn = format!("postgres://postgres@127.0.0.1:{closed}/{}", down.db);
    app.core
        .add_credential_provider(
            "orders-db",
            countersign::domain::credential::ProviderSettings::Postgres(
                countersign::domain::credential::PostgresSettings {
                    template_role: down.template.clone(),
                    connection_limit: 1,
                    statement_timeout_ms: 1000,
                },
            ),
            countersign::domain::secrets::Secret::new(dsn),
            "cli",
        )
        .await
        .unwrap();
    app.core.apply_policy(POLICY, "cli").await.unwrap();
    let r = app
        .agent_post(&agent, "/api/v1/requests", &query_request(1))
        .await;
    let v = json_of(r, StatusCode::OK).await;
    let jti = v["grant"]["jti"].as_str().unwrap();
    let p = problem(
        release(&app, &agent, jti).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "provider_unavailable",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("orders-db"), "{p}");
    // Nothing was used up: the approval stays good until its grant expires.
    let redeemed = app.redeem(v["grant"]["token"].as_str().unwrap()).await;
    json_of(redeemed, StatusCode::OK).await;
    assert!(down.logins().await.is_empty());
}

async fn policy_and_removal_check_the_provider(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let file = app.core.config.data_dir.join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let out = app.cli(&["policy", "apply", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"orders-read\"") && err.contains("orders-db"),
        "{err}"
    );
    // A deny rule releases nothing, and a lifetime needs a provider.
    for (bad, key) in [
        (
            "outcome = \"deny\"\nreason = \"no\"\ncredential = \"x\"",
            "credential",
        ),
        (
            "outcome = \"allow\"\ncredential_ttl_seconds = 60",
            "credential_ttl_seconds",
        ),
        (
            "outcome = \"allow\"\ncredential = \"x\"\ncredential_ttl_seconds = 5",
            "credential_ttl_seconds",
        ),
    ] {
        let e = app
            .core
            .apply_policy(&format!("[[rule]]\nid = \"r\"\n{bad}\n"), "cli")
            .await
            .unwrap_err();
        assert!(e.to_string().contains(key), "{e}");
    }

    let down = Downstream::new().await;
    let secret = app.core.config.data_dir.join("s");
    std::fs::write(&secret, &down.admin_dsn).unwrap();
    let add = |name: &str| {
        app.cli(&[
            "credential",
            "add",
            name,
            "--kind",
            "postgres",
            "--template-role",
            &down.template,
            "--secret-file",
            secret.to_str().unwrap(),
        ])
    };
    let out = add("orders-db");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = add("orders-db");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    let out = add("Orders");
    assert!(String::from_utf8_lossy(&out.stderr).contains("name"));
    let out = app.cli(&["policy", "apply", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Listing shows the fingerprint, never the secret, and removal waits for the policy.
    let out = app.cli(&["credential", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["name"], "orders-db");
    assert_eq!(
        listed[0]["settings"]["template_role"],
        down.template.as_str()
    );
    assert!(listed[0]["fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("hmac-sha256:"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&down.admin_password));
    let out = app.cli(&["credential", "remove", "orders-db"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("orders-read"));
    app.core.apply_policy("", "cli").await.unwrap();
    let out = app.cli(&["credential", "remove", "orders-db"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The secret is nowhere in the database in clear, nor on the chain.
    let mut export = Vec::new();
    app.core.export_audit(None, &mut export).await.unwrap();
    let export = String::from_utf8(export).unwrap();
    assert!(export.contains("credential_provider.added") && export.contains("hmac-sha256:"));
    assert!(!export.contains(&down.admin_password));
    let sealed: Vec<(String,)> = sqlx::query_as("SELECT name FROM credential_providers")
        .fetch_all(app.core.db.reader())
        .await
        .unwrap();
    assert!(sealed.is_empty());
}

async fn a_crash_before_the_record_leaves_no_login(backend: Backend) {
    let (app, _alice, agent, down) = set_up(backend).await;
    let jti = allowed_grant(&app, &agent, 1).await;
    let (reached, paused) = tokio::sync::oneshot::channel();
    app.core.credentials.pause_next_issue_after_create(reached);
    let core = app.core.clone();
    let identity = core.authenticate_agent(&agent.bearer).await.unwrap();
    let issuing = tokio::spawn({
        let jti = jti.clone();
        async move { core.release_credential(&identity, &jti).await }
    });
    paused.await.unwrap();
    // The role exists on the provider's server now, in a transaction not yet committed; the
    // process dies here.
    issuing.abort();
    let _ = issuing.await;
    eventually(
        "the half-made login is gone",
        Duration::from_secs(5),
        || async { down.logins().await.is_empty() },
    )
    .await;
    // A restarted server (a replica on the same database) releases the credential as if
    // nothing happened: the grant was never used up.
    let key = app.core.config.credential_key_file.display().to_string();
    let restarted = app
        .replica_with(&[("COUNTERSIGN_CREDENTIAL_KEY_FILE", &key)])
        .await;
    let cred = json_of(release(&restarted, &agent, &jti).await, StatusCode::OK).await;
    assert_eq!(
        down.logins().await,
        vec![cred["username"].as_str().unwrap().to_string()]
    );

    // A login of ours that nothing accounts for (a lost record, a restored backup) is reaped.
    let stray = format!("cs_{}", uuid::Uuid::new_v4().simple());
    let mut admin = superuser("postgres").await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {stray} LOGIN IN ROLE {}",
            down.template
        )))
        .await
        .unwrap();
    assert_eq!(restarted.core.reap_credentials().await.unwrap(), 1);
    assert_eq!(
        down.logins().await,
        vec![cred["username"].as_str().unwrap().to_string()]
    );
    assert!(app
        .all_audit_kinds()
        .await
        .contains(&"credential.reaped".to_string()));
}

async fn a_thousand_tasks_leave_no_login(backend: Backend) {
    let (app, _alice, agent, down) = set_up(backend).await;
    let app = std::sync::Arc::new(app);
    let mut workers = Vec::new();
    for w in 0..8 {
        let (app, agent) = (app.clone(), agent.clone());
        workers.push(tokio::spawn(async move {
            for i in 0..125 {
                let jti = allowed_grant(&app, &agent, w * 1000 + i).await;
                json_of(release(&app, &agent, &jti).await, StatusCode::OK).await;
                let r = app
                    .agent_post(
                        &agent,
                        &format!("/api/v1/grants/{jti}/report"),
                        &json!({ "outcome": "succeeded" }),
                    )
                    .await;
                json_of(r, StatusCode::OK).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    eventually("no login remains", Duration::from_secs(60), || async {
        down.logins().await.is_empty()
    })
    .await;
    // Every lease ends recorded as revoked (the last step's record follows its statement).
    eventually(
        "every lease is recorded revoked",
        Duration::from_secs(30),
        || async {
            let revoked: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM credential_leases WHERE state = 'revoked'",
            )
            .fetch_one(app.core.db.reader())
            .await
            .unwrap();
            revoked == 1000
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// The gateway, against a real HTTP server on loopback
// ---------------------------------------------------------------------------------------------

/// What the upstream received: method, path with query, its Authorization header, body.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String, Option<String>, String)>>>;

/// A real HTTP server on loopback standing in for a bank's API: it records every call and
/// answers 201 with a small JSON body; `/slow` answers after 3 s.
async fn upstream() -> (String, Seen) {
    use axum::extract::State;
    let seen: Seen = Default::default();
    async fn record(
        State(seen): State<Seen>,
        method: axum::http::Method,
        uri: axum::http::Uri,
        headers: axum::http::HeaderMap,
        body: String,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        if uri.path().ends_with("/slow") {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        seen.lock().unwrap().push((
            method.to_string(),
            uri.path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            auth,
            body,
        ));
        (
            StatusCode::CREATED,
            [("content-type", "application/json")],
            r#"{"transfer":"tr_1","state":"booked"}"#,
        )
            .into_response()
    }
    let app = axum::Router::new()
        .fallback(record)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "http://127.0.0.1:{}/api",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

const GATEWAY_POLICY: &str = r#"
[[rule]]
id = "transfers"
action = "payments.*"
target = "bank-api"
outcome = "allow"
credential = "bank-api"
"#;

fn transfer_to(operation: &str, params: Value) -> Value {
    json!({
        "action": { "type": "payments.transfer", "target": "bank-api",
                    "operation": operation, "params": params },
        "intent": { "goal": "Pay supplier invoice INV-1042" }
    })
}

/// A server with the gateway `bank-api` in front of a loopback upstream.
async fn gateway(backend: Backend) -> (TestApp, Person, Agent, Seen, String) {
    let (app, alice, agent) = TestApp::with_alice(backend).await;
    let (base, seen) = upstream().await;
    let secret = format!("Bearer upstream-{}", uuid::Uuid::new_v4().simple());
    app.core
        .add_credential_provider(
            "bank-api",
            countersign::domain::credential::ProviderSettings::Http(
                countersign::domain::credential::HttpSettings {
                    base_url: base,
                    header: "Authorization".into(),
                    operations: vec!["POST /v2/transfers".into(), "GET /slow".into()],
                    timeout_seconds: 1,
                },
            ),
            countersign::domain::secrets::Secret::new(secret.clone()),
            "cli",
        )
        .await
        .unwrap();
    app.core.apply_policy(GATEWAY_POLICY, "cli").await.unwrap();
    (app, alice, agent, seen, secret)
}

async fn through(
    app: &TestApp,
    agent: &Agent,
    method: reqwest::Method,
    path: &str,
    grant: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut call = app
        .http
        .request(method, app.url(&format!("/gw/bank-api{path}")))
        .bearer_auth(&agent.bearer)
        .header("Countersign-Grant", grant);
    if let Some(body) = body {
        call = call.json(body);
    }
    call.send().await.unwrap()
}

async fn the_gateway_forwards_exactly_the_approved_call(backend: Backend) {
    let (app, _alice, agent, seen, secret) = gateway(backend).await;
    let params = json!({ "to": "DE89 3704 0044 0532 0130 00", "amount": "125.00" });
    let asked = app
        .agent_post(
            &agent,
            "/api/v1/requests",
            &transfer_to("POST /v2/transfers", params.clone()),
        )
        .await;
    let v = json_of(asked, StatusCode::OK).await;
    let grant = v["grant"]["token"].as_str().unwrap().to_string();
    let post = reqwest::Method::POST;

    // Anything else than the approved call is refused before it reaches the upstream, and
    // leaves the grant unused.
    let other_amount = json!({ "to": "DE89 3704 0044 0532 0130 00", "amount": "9125.00" });
    let reordered = json!({ "amount": "125.00", "to": "DE89 3704 0044 0532 0130 00" });
    for (method, path, body) in [
        (reqwest::Method::PUT, "/v2/transfers", Some(&params)),
        (post.clone(), "/v2/transfers/other", Some(&params)),
        (post.clone(), "/v2/transfers?force=1", Some(&params)),
        (post.clone(), "/v2/transfers", Some(&other_amount)),
        (post.clone(), "/v2/transfers", None),
    ] {
        let r = through(&app, &agent, method.clone(), path, &grant, body).await;
        let p = problem(r, StatusCode::FORBIDDEN, "forbidden").await;
        assert!(
            p["detail"].as_str().unwrap().contains("approved"),
            "{method} {path}: {p}"
        );
    }
    assert!(seen.lock().unwrap().is_empty());

    // The approved call (its JSON in any key order: the canonical form is compared) goes
    // through with the secret, and the upstream's answer comes back as it was.
    let r = through(
        &app,
        &agent,
        post.clone(),
        "/v2/transfers",
        &grant,
        Some(&reordered),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"transfer":"tr_1","state":"booked"}"#
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (method, path, auth, body) = &seen[0];
        assert_eq!(
            (method.as_str(), path.as_str()),
            ("POST", "/api/v2/transfers")
        );
        assert_eq!(auth.as_deref(), Some(secret.as_str()));
        assert_eq!(serde_json::from_str::<Value>(body).unwrap(), params);
    }

    // A replay is refused, and reaches nothing.
    let r = through(
        &app,
        &agent,
        post.clone(),
        "/v2/transfers",
        &grant,
        Some(&params),
    )
    .await;
    problem(r, StatusCode::CONFLICT, "grant_already_redeemed").await;
    assert_eq!(seen.lock().unwrap().len(), 1);

    // The evidence: forwarded, with the status and sizes; never the secret.
    let id = v["id"].as_str().unwrap();
    let lines = app.audit_lines(id).await.join("\n");
    assert!(
        lines.contains("gateway.forwarded") && lines.contains("\"status\":201"),
        "{lines}"
    );
    assert!(!lines.contains(&secret));
    let answer = app
        .agent_get(&agent, &format!("/api/v1/requests/{id}"))
        .await;
    assert!(!answer.text().await.unwrap().contains(&secret));
}

async fn the_gateway_refuses_what_is_not_yours_to_send(backend: Backend) {
    let (app, _alice, agent, seen, _secret) = gateway(backend).await;
    let params = json!({ "amount": "1.00" });
    let grant_for = |v: Value| v["grant"]["token"].as_str().unwrap().to_string();

    // Another agent's grant is refused, even for the approved call.
    let other = app.agent("alice@example.com").await;
    let theirs = grant_for(
        json_of(
            app.agent_post(
                &other,
                "/api/v1/requests",
                &transfer_to("POST /v2/transfers", params.clone()),
            )
            .await,
            StatusCode::OK,
        )
        .await,
    );
    let r = through(
        &app,
        &agent,
        reqwest::Method::POST,
        "/v2/transfers",
        &theirs,
        Some(&params),
    )
    .await;
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;

    // A revoked grant is refused.
    let v = json_of(
        app.agent_post(
            &agent,
            "/api/v1/requests",
            &transfer_to("POST /v2/transfers", params.clone()),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let jti = v["grant"]["jti"].as_str().unwrap();
    json_of(
        app.agent_post(&agent, &format!("/api/v1/grants/{jti}/revoke"), &json!({}))
            .await,
        StatusCode::OK,
    )
    .await;
    let r = through(
        &app,
        &agent,
        reqwest::Method::POST,
        "/v2/transfers",
        &grant_for(v),
        Some(&params),
    )
    .await;
    problem(r, StatusCode::GONE, "grant_revoked").await;

    // An operation the gateway does not cover is refused, though policy approved it.
    let v = json_of(
        app.agent_post(
            &agent,
            "/api/v1/requests",
            &transfer_to("DELETE /v2/accounts", params.clone()),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let r = through(
        &app,
        &agent,
        reqwest::Method::DELETE,
        "/v2/accounts",
        &grant_for(v),
        Some(&params),
    )
    .await;
    let p = problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(
        p["detail"].as_str().unwrap().contains("does not cover"),
        "{p}"
    );

    // No grant, no call; a gateway that does not exist is not found.
    let r = app
        .http
        .post(app.url("/gw/bank-api/v2/transfers"))
        .bearer_auth(&agent.bearer)
        .json(&params)
        .send()
        .await
        .unwrap();
    let p = problem(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(p["field"], "Countersign-Grant");
    let r = through(
        &app,
        &agent,
        reqwest::Method::POST,
        "/v2/transfers",
        "x",
        Some(&params),
    )
    .await;
    problem(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let r = app
        .http
        .post(app.url("/gw/no-such/v2/transfers"))
        .bearer_auth(&agent.bearer)
        .header("Countersign-Grant", "x")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "not_found").await;
    assert!(seen.lock().unwrap().is_empty());

    // An upstream that does not answer in time is cut off at the provider's timeout.
    let v = json_of(
        app.agent_post(
            &agent,
            "/api/v1/requests",
            &json!({
            "action": { "type": "payments.status", "target": "bank-api", "operation": "GET /slow" },
            "intent": { "goal": "Check" } }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let started = std::time::Instant::now();
    let r = through(
        &app,
        &agent,
        reqwest::Method::GET,
        "/slow",
        &grant_for(v),
        None,
    )
    .await;
    problem(r, StatusCode::GATEWAY_TIMEOUT, "upstream_timeout").await;
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
}

async fn the_approver_reads_what_will_be_released(backend: Backend) {
    let (app, alice, agent, _seen, _secret) = gateway(backend).await;
    let down = Downstream::new().await;
    let secret = app.core.config.data_dir.join("s");
    std::fs::write(&secret, &down.admin_dsn).unwrap();
    let out = app.cli(&[
        "credential",
        "add",
        "orders-db",
        "--kind",
        "postgres",
        "--template-role",
        &down.template,
        "--secret-file",
        secret.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy = r#"
[[rule]]
id = "transfers"
action = "payments.*"
outcome = "require"
credential = "bank-api"

[[rule]]
id = "orders"
action = "db.*"
outcome = "require"
credential = "orders-db"
credential_ttl_seconds = 900
"#;
    app.core.apply_policy(policy, "cli").await.unwrap();
    let who = app.signed_in(&alice).await;
    let payment = app
        .ask_id(
            &agent,
            &transfer_to("POST /v2/transfers", json!({ "amount": "1.00" })),
        )
        .await;
    let view = app.core.approval_view(&who, &payment).await.unwrap();
    assert_eq!(
        view.releases.as_deref(),
        Some("one POST /v2/transfers to bank-api through the gateway")
    );
    let query = app
        .ask_id(
            &agent,
            &json!({ "action": { "type": "db.query", "target": "orders" },
                                "intent": { "goal": "Count" } }),
        )
        .await;
    let view = app.core.approval_view(&who, &query).await.unwrap();
    let expected = format!(
        "a PostgreSQL login in role {} on orders-db for 15 minutes",
        down.template
    );
    assert_eq!(view.releases.as_deref(), Some(expected.as_str()));
    // It is part of what the approver's passkey binds to.
    let mut bare = view.clone();
    bare.releases = None;
    assert_ne!(bare.display_hash(), view.display_hash());
}

async fn only_admins_configure_providers_from_the_page(backend: Backend) {
    let (app, mut alice, _agent) = TestApp::with_alice(backend).await;
    let mut bob = app.enrol("bob@example.com", "owner", &[]).await;
    let down = Downstream::new().await;
    let form = [
        ("provider[name]", "orders-db"),
        ("provider[kind]", "postgres"),
        ("provider[template_role]", down.template.as_str()),
        ("provider[connection_limit]", "2"),
        ("provider[statement_timeout_ms]", ""),
        ("provider[secret]", down.admin_dsn.as_str()),
    ];
    // An owner who is not an admin is refused, and nothing is added.
    let refused = bob
        .server_fn(&app.http, "admin/add_credential_provider", &form)
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(app.core.credential_providers().await.unwrap().is_empty());
    // The admin's form adds it; the list shows its fingerprint and never the secret.
    let added = alice
        .server_json(&app.http, "admin/add_credential_provider", &form)
        .await;
    assert_eq!(added["name"], "orders-db");
    let listed = alice
        .server_json(&app.http, "admin/credential_providers", &[])
        .await;
    let text = listed.to_string();
    assert!(
        text.contains("hmac-sha256:") && text.contains(&down.template),
        "{text}"
    );
    assert!(!text.contains(&down.admin_password));
    // A bad number names its field.
    let bad = alice
        .server_fn(
            &app.http,
            "admin/add_credential_provider",
            &[
                ("provider[name]", "x"),
                ("provider[kind]", "postgres"),
                ("provider[template_role]", "r"),
                ("provider[connection_limit]", "many"),
                ("provider[secret]", "postgres://a@b/c"),
            ],
        )
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("connection_limit"));
    // Removal, by the admin.
    let gone = alice
        .server_fn(
            &app.http,
            "admin/remove_credential_provider",
            &[("name", "orders-db")],
        )
        .await;
    assert!(gone.status().is_success(), "{}", gone.status());
    assert!(app.core.credential_providers().await.unwrap().is_empty());
}

/// Every log line this test process writes from the first call on, at debug level (trace for
/// Countersign's own), kept in memory (the newest 64 MiB): whatever the server logs while
/// credentials are released, used and revoked is searched for their secrets.
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut log = self.0.lock().unwrap();
        if log.len() > 64 << 20 {
            log.drain(..32 << 20);
        }
        log.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn captured_log() -> CapturedLog {
    static LOG: std::sync::OnceLock<CapturedLog> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log = CapturedLog::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,countersign=trace",
            ))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test installs a global log subscriber");
        log
    })
    .clone()
}

async fn secrets_stay_out_of_logs_and_answers(backend: Backend) {
    let log = captured_log();
    let (app, mut alice, agent, down) = set_up(backend).await;
    // The command line, at its most talkative, shows no secret either.
    let listed = app
        .cli_command()
        .env("RUST_LOG", "trace")
        .args(["credential", "list"])
        .output()
        .unwrap();
    let mut seen = String::from_utf8_lossy(&listed.stdout).to_string()
        + &String::from_utf8_lossy(&listed.stderr);

    let jti = allowed_grant(&app, &agent, 1).await;
    let cred = json_of(release(&app, &agent, &jti).await, StatusCode::OK).await;
    let password = cred["password"].as_str().unwrap().to_string();
    let mut session = PgConnection::connect(cred["connection_string"].as_str().unwrap())
        .await
        .unwrap();
    let r = app
        .agent_post(
            &agent,
            &format!("/api/v1/grants/{jti}/report"),
            &json!({ "outcome": "failed" }),
        )
        .await;
    seen += &r.text().await.unwrap();
    until_killed(&mut session, Duration::from_secs(1)).await;
    eventually("the login is dropped", Duration::from_secs(5), || async {
        down.logins().await.is_empty()
    })
    .await;
    app.core.reap_credentials().await.unwrap();
    let request_id = request_of(&app, &jti).await;
    for path in [
        format!("/api/v1/requests/{request_id}"),
        "/api/v1/openapi.json".to_string(),
    ] {
        seen += &app.agent_get(&agent, &path).await.text().await.unwrap();
    }
    seen += &alice
        .server_json(&app.http, "admin/credential_providers", &[])
        .await
        .to_string();
    seen += &alice
        .get(
            &app.http,
            &format!("/api/ui/audit/export?request={request_id}"),
        )
        .await
        .text()
        .await
        .unwrap();
    let mut export = Vec::new();
    app.core.export_audit(None, &mut export).await.unwrap();
    seen += &String::from_utf8(export).unwrap();
    assert!(seen.contains("credential.revoked"), "the evidence was read");

    let logged = log.text();
    assert!(
        logged.contains("credential released"),
        "the log was captured"
    );
    for secret in [&password, &down.admin_password] {
        assert!(
            !seen.contains(secret.as_str()),
            "a secret in an answer or export"
        );
        assert!(!logged.contains(secret.as_str()), "a secret in the log");
    }
}

async fn the_rust_client_takes_a_task_credential(backend: Backend) {
    let (app, _alice, agent, down) = set_up(backend).await;
    let client = app.client(&agent);
    let request = countersign_client::ApprovalRequest::new("db.query", "orders-db")
        .params(json!({ "sql": "SELECT 1" }))
        .goal("Count today's orders");
    let grant = client.request_approval(&request).await.unwrap();
    let credential = client.task_credential(&grant.jti).await.unwrap();
    assert_eq!(credential.provider, "orders-db");
    assert!(!format!("{credential:?}").contains(&credential.password));
    let mut session = PgConnection::connect(&credential.connection_string)
        .await
        .unwrap();
    session.execute("SELECT 1").await.unwrap();
    let again = client.task_credential(&grant.jti).await.unwrap_err();
    assert_eq!(again.code(), "grant_already_redeemed");
    client
        .report_outcome(&grant.jti, countersign_client::Outcome::Succeeded, None)
        .await
        .unwrap();
    until_killed(&mut session, Duration::from_secs(1)).await;
    eventually("the login is dropped", Duration::from_secs(5), || async {
        down.logins().await.is_empty()
    })
    .await;
}

/// The kill switch pulled while the agent's redemptions are in flight: whatever each call
/// answered, once the suspension has returned no login it released gets in or stays in, and
/// no login of ours remains once the revocations (and the reaper) have run.
async fn the_kill_switch_holds_against_releases_in_flight(backend: Backend) {
    let (app, _alice, agent, down) = set_up(backend).await;
    let app = std::sync::Arc::new(app);
    let mut jtis = Vec::new();
    for n in 0..16 {
        jtis.push(allowed_grant(&app, &agent, n).await);
    }
    let releases: Vec<_> = jtis
        .into_iter()
        .map(|jti| {
            let (app, agent) = (app.clone(), agent.clone());
            tokio::spawn(async move {
                let r = release(&app, &agent, &jti).await;
                let status = r.status();
                (status, r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    // Suspend while some releases are still on their way.
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.core.suspend_agent(&agent.id, "cli").await.unwrap();
    let mut released = Vec::new();
    for task in releases {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::OK => {
                released.push(body["connection_string"].as_str().unwrap().to_string())
            }
            // Refused: the agent's credential, or the grant, was revoked first.
            StatusCode::UNAUTHORIZED | StatusCode::GONE => {}
            other => panic!("unexpected {other}: {body}"),
        }
    }
    eprintln!("{} of 16 released before the switch", released.len());
    for dsn in &released {
        eventually(
            "a released login is refused after the kill switch",
            Duration::from_secs(5),
            || async { PgConnection::connect(dsn).await.is_err() },
        )
        .await;
    }
    app.core.reap_credentials().await.unwrap();
    eventually(
        "no login of the suspended agent remains",
        Duration::from_secs(10),
        || async { down.logins().await.is_empty() },
    )
    .await;
    let live: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM credential_leases WHERE state = 'active'")
            .fetch_one(app.core.db.reader())
            .await
            .unwrap();
    assert_eq!(live, 0, "no lease is active after the kill switch");
}

on_both_backends!(
    a_released_login_works_until_the_outcome_is_reported,
    the_kill_switch_and_a_revoke_end_the_task_at_once,
    time_running_out_ends_the_task,
    an_unreachable_provider_uses_nothing_up,
    policy_and_removal_check_the_provider,
    a_crash_before_the_record_leaves_no_login,
    a_thousand_tasks_leave_no_login,
    the_gateway_forwards_exactly_the_approved_call,
    the_gateway_refuses_what_is_not_yours_to_send,
    the_approver_reads_what_will_be_released,
    only_admins_configure_providers_from_the_page,
    secrets_stay_out_of_logs_and_answers,
    the_rust_client_takes_a_task_credential,
    the_kill_switch_holds_against_releases_in_flight,
);
