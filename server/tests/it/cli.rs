//! The `countersign` command line, run as a separate process against the same SQLite database
//! as a running server (as operators use it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{transfer, Backend, TestApp};
use serde_json::Value;

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

const POLICY: &str = r#"
[[rule]]
id = "small-payments"
description = "Small payments run without a human"
action = "payments.*"
amount_below = { value = "100.00", currency = "EUR" }
outcome = "allow"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policy_apply_show_check_round_trip() {
    let (app, _alice, agent) = TestApp::with_alice(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let out = stdout(&app.cli(&["policy", "apply", file.to_str().unwrap()]));
    assert!(out.contains("Policy version 1 is active"), "{out}");
    // The server picks the new version up at the next request.
    let r = app
        .agent_post(&agent, "/api/v1/requests", &transfer("5.00"))
        .await;
    assert_eq!(r.status(), 200);

    // show prints exactly what apply takes: applying it again changes nothing.
    let shown = stdout(&app.cli(&["policy", "show"]));
    std::fs::write(&file, &shown).unwrap();
    let again = stdout(&app.cli(&["policy", "apply", file.to_str().unwrap()]));
    assert!(again.contains("Policy version 1 is active"), "{again}");
    assert_eq!(stdout(&app.cli(&["policy", "show"])), shown);

    let body = serde_json::to_string(&transfer("500.00")).unwrap();
    let check = stdout(&app.cli(&[
        "policy",
        "check",
        file.to_str().unwrap(),
        "--request",
        &body,
    ]));
    assert!(check.contains("passed over small-payments"), "{check}");
    assert!(check.contains("matched default"), "{check}");

    // An invalid file is refused whole, naming the rule and key; the active policy stays.
    std::fs::write(
        &file,
        "[[rule]]\nid = \"bad\"\noutcome = \"require\"\napprovals = 99\n",
    )
    .unwrap();
    let refused = app.cli(&["policy", "apply", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    let err = String::from_utf8(refused.stderr).unwrap();
    assert!(err.contains("bad") && err.contains("approvals"), "{err}");
    assert_eq!(stdout(&app.cli(&["policy", "show"])), shown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guards_show_and_set_from_the_command_line() {
    let (app, _alice, agent) = TestApp::with_alice(Backend::Sqlite).await;
    let shown: serde_json::Value =
        serde_json::from_str(&stdout(&app.cli(&["guards", "show"]))).unwrap();
    // The CLI reads the environment's defaults, not the test server's.
    assert_eq!(shown["approve_delay_ms"], 1500);
    assert_eq!(shown["max_pending_per_agent"], 100);
    let set: serde_json::Value = serde_json::from_str(&stdout(&app.cli(&[
        "guards",
        "set",
        "--max-pending-per-agent",
        "1",
        "--approve-delay-ms",
        "0",
    ])))
    .unwrap();
    assert_eq!(set["max_pending_per_agent"], 1);
    assert_eq!(set["approve_delay_ms"], 0);
    assert_eq!(
        set["deny_cooldown_seconds"], shown["deny_cooldown_seconds"],
        "others kept"
    );
    // The running server follows within its cache time.
    app.clock
        .advance_ms(countersign::service::guards::CACHE_MS + 1);
    app.ask_id(&agent, &transfer("1.00")).await;
    let r = app
        .agent_post(&agent, "/api/v1/requests", &transfer("2.00"))
        .await;
    assert_eq!(r.status(), 429);
    // Out of range: refused, naming the setting; nothing changes.
    let refused = app.cli(&["guards", "set", "--approve-delay-ms", "999999"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("approve_delay_ms"));
    assert!(app
        .all_audit_kinds()
        .await
        .contains(&"settings.changed".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_users_and_the_audit_chain_from_the_command_line() {
    let (app, _alice, _agent) = TestApp::with_alice(Backend::Sqlite).await;
    let created: Value = serde_json::from_str(&stdout(&app.cli(&[
        "agent",
        "create",
        "--name",
        "cli-bot",
        "--owner",
        "alice@example.com",
        "--json",
    ])))
    .unwrap();
    let key = created["api_key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with(&format!("cs_agent_{id}_")));
    // The key works against the running server at once.
    let r = app
        .http
        .post(app.url("/api/v1/requests"))
        .bearer_auth(&key)
        .json(&transfer("1.00"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let request_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Unknown owner: a clear error, non-zero exit.
    let bad = app.cli(&[
        "agent",
        "create",
        "--name",
        "x",
        "--owner",
        "nobody@example.com",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nobody@example.com"));

    let invite = stdout(&app.cli(&[
        "user",
        "invite",
        "--email",
        "bob@example.com",
        "--group",
        "finance",
    ]));
    assert!(invite.contains(&format!("{}/enrol/", app.base)), "{invite}");

    // The kill switch, from another process while the server runs.
    let out = stdout(&app.cli(&["agent", "suspend", &id]));
    assert!(out.contains("1 pending requests cancelled"), "{out}");
    let r = app
        .http
        .post(app.url("/api/v1/requests"))
        .bearer_auth(&key)
        .json(&transfer("1.00"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // One request's evidence, then the whole chain, then a tampered chain.
    let lines = stdout(&app.cli(&["audit", "export", "--request", &request_id]));
    let kinds: Vec<String> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["request.created", "request.cancelled"]);
    assert!(stdout(&app.cli(&["audit", "verify"])).contains("Audit chain intact"));
    sqlx::query("UPDATE audit_events SET actor = 'user:mallory' WHERE seq = 2")
        .execute(app.core.db.writer())
        .await
        .unwrap();
    let verify = app.cli(&["audit", "verify"]);
    assert!(!verify.status.success());
    assert!(String::from_utf8_lossy(&verify.stdout).contains("BROKEN at event 2"));
}

#[test]
fn first_start_prints_a_one_time_admin_link_and_keeps_the_key_private() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .arg("serve")
        .env("COUNTERSIGN_LISTEN", format!("127.0.0.1:{port}"))
        .env("COUNTERSIGN_PUBLIC_URL", format!("http://localhost:{port}"))
        .env("COUNTERSIGN_DATA_DIR", dir.path())
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut link = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(l) = line.split_whitespace().find(|w| w.contains("/enrol/")) {
            link = Some(l.to_string());
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    let _ = child.kill();
    let logs = {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut s).unwrap();
        s
    };
    child.wait().unwrap();
    let link = link.expect("no enrolment link printed");
    assert!(link.starts_with(&format!("http://localhost:{port}/enrol/")));
    // The link is a secret: printed for the operator, never in the logs.
    assert!(
        !logs.contains(link.rsplit('/').next().unwrap()),
        "the enrolment token reached the log"
    );
    assert!(dir.path().join("countersign.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("grant-signing-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the signing key is readable by others: {mode:o}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_sqlite_never_see_a_locked_database() {
    let (app, _alice, agent) = TestApp::with_alice(Backend::Sqlite).await;
    let requests: Vec<_> = (0..64)
        .map(|i| {
            let (http, url, bearer) = (
                app.http.clone(),
                app.url("/api/v1/requests"),
                agent.bearer.clone(),
            );
            tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(bearer)
                    .json(&transfer(&format!("{i}.00")))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    // Meanwhile other processes write to the same file.
    let invites: Vec<_> = (0..4)
        .map(|i| {
            let mut invite = app.cli_command();
            invite.args(["user", "invite", "--email", &format!("p{i}@example.com")]);
            std::thread::spawn(move || invite.output().unwrap())
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap(), 202);
    }
    for i in invites {
        let out = i.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(matches!(
        app.core.verify_audit().await.unwrap(),
        countersign::service::audit::Verification::Intact { .. }
    ));
}

// --- agents admin ---

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_keys_are_rotated_and_replaced_from_the_command_line() {
    let (app, _alice, agent) = TestApp::with_alice(Backend::Sqlite).await;
    let post = |bearer: String| {
        let (http, url) = (app.http.clone(), app.url("/api/v1/requests"));
        async move {
            http.post(url)
                .bearer_auth(bearer)
                .json(&transfer("1.00"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let rotated: Value = serde_json::from_str(&stdout(&app.cli(&[
        "agent",
        "rotate-key",
        &agent.id,
        "--json",
    ])))
    .unwrap();
    let key = rotated["api_key"].as_str().unwrap().to_string();
    assert_eq!(
        post(agent.bearer.clone()).await,
        401,
        "the old key is retired"
    );
    assert_eq!(post(key.clone()).await, 202, "the new key works at once");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.jwk");
    let signer = countersign::domain::jose::GrantSigningKey::generate(&mut rand_core::OsRng);
    std::fs::write(&file, serde_json::to_string(&signer.public_jwk()).unwrap()).unwrap();
    let out = stdout(&app.cli(&[
        "agent",
        "set-key",
        &agent.id,
        "--jwk",
        file.to_str().unwrap(),
    ]));
    assert!(out.contains(&signer.public_jwk().thumbprint()), "{out}");
    assert_eq!(
        post(key).await,
        401,
        "the API key is retired by a public key"
    );

    // A bad key file: a clear error naming the field, non-zero exit.
    std::fs::write(&file, r#"{"kty":"RSA"}"#).unwrap();
    let bad = app.cli(&[
        "agent",
        "set-key",
        &agent.id,
        "--jwk",
        file.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("jwk"));
}
