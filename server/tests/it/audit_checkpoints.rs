//! Signed audit checkpoints: the one tampering the chain's hashes cannot show on their own —
//! the newest events deleted together with the head row — is caught by `countersign audit
//! verify --checkpoint FILE|URL`, run as a separate process (as operators and monitors run it)
//! against the server's database; checkpoints that do not verify under a trusted key are
//! refused; important events are checkpointed without waiting for the interval.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::process::Output;

use common::{problem, transfer, Backend, TestApp};
use countersign::domain::checkpoint::{CheckpointKey, Head, SignedCheckpoint};
use countersign::service::checkpoints::Tick;
use reqwest::StatusCode;
use serde_json::Value;

/// Standard output and error, for assertions and their messages.
fn texts(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn verify(app: &TestApp, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    let o = app.cli(&args);
    let (out, err) = texts(&o);
    (o.status.success(), out, err)
}

fn checkpoint_file(app: &TestApp) -> String {
    app.core
        .config
        .data_dir
        .join("audit-checkpoints.jsonl")
        .display()
        .to_string()
}

fn feed_url(app: &TestApp) -> String {
    app.url("/api/v1/audit/checkpoints")
}

/// The newest event's position and hash, read from the table.
async fn head(app: &TestApp) -> (i64, String) {
    sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_one(app.core.db.reader())
        .await
        .unwrap()
}

/// Runs one check (as the background task does every second) and returns the newest
/// checkpoint, whoever signed it.
async fn checkpoint(app: &TestApp) -> SignedCheckpoint {
    app.core.checkpoint_tick().await.unwrap();
    app.core.latest_checkpoint().await.unwrap().unwrap()
}

/// The attack: delete every event after `keep` and set the head row back to event `keep`, so
/// what is left is a shorter chain whose every link holds.
async fn truncate(app: &TestApp, keep: i64) {
    let (hash,): (String,) = sqlx::query_as("SELECT hash FROM audit_events WHERE seq = $1")
        .bind(keep)
        .fetch_one(app.core.db.reader())
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_events WHERE seq > $1")
        .bind(keep)
        .execute(app.core.db.writer())
        .await
        .unwrap();
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(keep)
        .bind(hash)
        .execute(app.core.db.writer())
        .await
        .unwrap();
}

async fn a_shortened_chain_is_caught_against_a_checkpoint_from_the_file_or_the_url(
    backend: Backend,
) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("1.00")).await;
    alice.approve(&app.http, &id).await;
    let cp = checkpoint(&app).await;
    assert_eq!(cp.seq, head(&app).await.0, "the checkpoint covers the head");
    // The chain grows after it.
    for amount in ["2.00", "3.00"] {
        app.ask_id(&agent, &transfer(amount)).await;
    }

    // Remove the newest events, back past the checkpoint (the approval goes with them).
    let keep = cp.seq - 2;
    truncate(&app, keep).await;

    // Without a checkpoint, nothing shows: every link of what is left holds.
    let (ok, out, err) = verify(&app, &[]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("Audit chain intact: {keep} events")),
        "{out}"
    );

    // Against the checkpoint, from the data directory's file or from the server's feed (the
    // signature checked with the key in the data directory), it is caught, naming it.
    let file = checkpoint_file(&app);
    let url = feed_url(&app);
    for source in [&file, &url] {
        let (ok, out, err) = verify(&app, &["--checkpoint", source]);
        assert!(!ok, "a shortened chain passed against {source}: {out}{err}");
        assert!(out.contains("Audit chain TAMPERED"), "{out}{err}");
        assert!(
            out.contains(&format!("checkpoint at event {} ({})", cp.seq, cp.hash)),
            "{out}"
        );
        assert!(
            out.contains(&format!("the chain now ends at event {keep}")),
            "{out}"
        );
        assert!(
            out.contains(source.as_str()),
            "names where it came from: {out}"
        );
    }
    // Trusting the key the server publishes (its data directory's, over the feed) instead.
    let (ok, out, err) = verify(&app, &["--checkpoint", &url, "--checkpoint-key", &url]);
    assert!(!ok && out.contains("TAMPERED"), "{out}{err}");

    // Ordinary traffic then fills the gap: the chain is as long as before, its links all
    // hold, but at the checkpoint's position there is another event now.
    while head(&app).await.0 < cp.seq + 1 {
        app.ask_id(&agent, &transfer("4.00")).await;
    }
    let (ok, out, err) = verify(&app, &[]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = verify(&app, &["--checkpoint", &file]);
    assert!(!ok, "{out}{err}");
    assert!(
        out.contains("TAMPERED") && out.contains(&format!("event {} now has hash", cp.seq)),
        "{out}"
    );

    // The server itself refuses to sign anything over the rewritten chain, and says why.
    match app.core.checkpoint_tick().await.unwrap() {
        Tick::Refused(reason) => {
            assert!(reason.contains("no longer extends"), "{reason}")
        }
        other => panic!("signed over a rewritten chain: {other:?}"),
    }
    assert_eq!(app.core.latest_checkpoint().await.unwrap(), Some(cp));
    assert!(app.core.checkpoint_alarm().await.is_some());
}

async fn a_chain_that_grew_after_its_checkpoints_verifies(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let first = checkpoint(&app).await;
    let id = app.ask_id(&agent, &transfer("1.00")).await;
    alice.approve(&app.http, &id).await;
    let second = checkpoint(&app).await;
    assert!(second.seq > first.seq);
    app.ask_id(&agent, &transfer("2.00")).await;

    let (file, url) = (checkpoint_file(&app), feed_url(&app));
    let (ok, out, err) = verify(&app, &["--checkpoint", &file, "--checkpoint", &url]);
    assert!(ok, "{out}{err}");
    let (events, _) = head(&app).await;
    assert!(
        out.contains(&format!("Audit chain intact: {events} events")),
        "{out}"
    );
    assert!(out.contains("it extends all"), "{out}");
    assert!(
        out.contains(&format!("the checkpoint at event {}", second.seq)),
        "names the newest: {out}"
    );
    assert!(err.is_empty(), "{err}");
}

async fn checkpoints_that_do_not_verify_under_a_trusted_key_are_refused(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    app.ask_id(&agent, &transfer("1.00")).await;
    let cp = checkpoint(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };

    // Altered: the same header and signature over a payload claiming a later head.
    let mut parts: Vec<String> = cp.jws.split('.').map(str::to_string).collect();
    let claims =
        serde_json::json!({ "iss": cp.iss, "seq": cp.seq + 100, "hash": cp.hash, "time": cp.time });
    parts[1] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&claims).unwrap(),
    );
    let altered = write("altered.jsonl", &format!("{}\n", parts.join(".")));
    let (ok, out, err) = verify(&app, &["--checkpoint", &altered]);
    assert!(!ok, "{out}{err}");
    assert!(err.contains("REFUSED"), "{err}");
    assert!(err.contains("signature that does not verify"), "{err}");
    assert!(err.contains(&format!("{altered} line 1")), "{err}");

    // Signed by a key nobody said to trust, though it states the truth.
    let stranger = CheckpointKey::generate(&mut rand_core::OsRng);
    let truthful = stranger
        .sign(
            &app.base,
            &Head {
                seq: cp.seq,
                hash: cp.hash.clone(),
                time: cp.time,
            },
        )
        .unwrap();
    let foreign = write(
        "foreign.jsonl",
        &format!("{}\n", serde_json::to_string(&truthful).unwrap()),
    );
    let (ok, out, err) = verify(&app, &["--checkpoint", &foreign]);
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains("REFUSED") && err.contains(stranger.kid()),
        "{err}"
    );
    assert!(err.contains("not one of the keys trusted"), "{err}");
    assert!(
        err.contains(&cp.kid) && err.contains("audit-checkpoint-key"),
        "says which key it trusted and where from: {err}"
    );

    // Trust is what the verifier is told: with the stranger's key pinned, its checkpoint is
    // accepted and the server's own are not.
    let jwk = write(
        "stranger.jwk",
        &serde_json::to_string(&stranger.public_jwk()).unwrap(),
    );
    let (ok, out, err) = verify(&app, &["--checkpoint", &foreign, "--checkpoint-key", &jwk]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = verify(
        &app,
        &[
            "--checkpoint",
            &checkpoint_file(&app),
            "--checkpoint-key",
            &jwk,
        ],
    );
    assert!(
        !ok && err.contains("REFUSED") && err.contains(&cp.kid),
        "{out}{err}"
    );

    // A file with nothing in it that could be a checkpoint is refused too.
    let junk = write("junk.txt", "hello\n");
    let (ok, _, err) = verify(&app, &["--checkpoint", &junk]);
    assert!(!ok && err.contains("holds no checkpoint"), "{err}");

    // The key to pin: printed by the command line, served by the feed, named by every
    // checkpoint; its seed is readable by this user only.
    let printed: Value =
        serde_json::from_str(&texts(&app.cli(&["audit", "checkpoint-key"])).0).unwrap();
    assert_eq!(printed["kid"], cp.kid.as_str());
    assert!(printed.get("d").is_none(), "never the private part");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(app.core.config.data_dir.join("audit-checkpoint-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the checkpoint key is readable by others: {mode:o}"
        );
    }
    assert_ne!(
        cp.kid,
        app.core.signer.kid(),
        "checkpoints have a key of their own, not the grant key"
    );
}

async fn the_feed_is_public_and_says_which_key_signs(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let first = checkpoint(&app).await;
    app.ask_id(&agent, &transfer("1.00")).await;
    app.clock.advance_ms(3_600_000);
    let second = checkpoint(&app).await;
    assert!(second.seq > first.seq);

    // No credentials: a monitor polls it as it is.
    let r = app
        .http
        .get(format!("{}?limit=1", feed_url(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let feed: Value = r.json().await.unwrap();
    assert_eq!(feed["issuer"], app.base.as_str());
    assert_eq!(feed["keys"][0]["kid"], second.kid.as_str());
    let listed: Vec<SignedCheckpoint> =
        serde_json::from_value(feed["checkpoints"].clone()).unwrap();
    assert_eq!(listed, vec![second.clone()], "the newest only");
    let all: Value = app
        .http
        .get(feed_url(&app))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all: Vec<SignedCheckpoint> = serde_json::from_value(all["checkpoints"].clone()).unwrap();
    assert!(all.contains(&first), "{all:?}");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
    assert_eq!(all.last(), Some(&second));

    for bad in ["0", "1001", "x", "-1"] {
        let r = app
            .http
            .get(format!("{}?limit={bad}", feed_url(&app)))
            .send()
            .await
            .unwrap();
        let p = problem(r, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert_eq!(p["field"], "limit", "{bad}: {p}");
    }
}

async fn important_events_are_checkpointed_without_waiting_for_the_interval(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[("COUNTERSIGN_CHECKPOINT_INTERVAL_SECONDS", "3600")],
    )
    .await;
    app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    // The first check signs the head at once.
    let first = checkpoint(&app).await;
    assert_eq!(first.seq, head(&app).await.0);

    // A request is ordinary traffic: it waits for the interval.
    app.ask_id(&agent, &transfer("1.00")).await;
    assert_eq!(app.core.checkpoint_tick().await.unwrap(), Tick::Waiting);
    assert_eq!(app.core.latest_checkpoint().await.unwrap(), Some(first));

    // The kill switch is not: the next check signs it, the interval notwithstanding.
    app.core.suspend_agent(&agent.id, "test").await.unwrap();
    let (seq, hash) = head(&app).await;
    let suspended = checkpoint(&app).await;
    assert_eq!((suspended.seq, &suspended.hash), (seq, &hash));
    assert!(app
        .all_audit_kinds()
        .await
        .contains(&"agent.suspended".to_string()));

    // Nor is a policy applied (here from the command line, another process).
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[rule]]\nid = \"everything\"\noutcome = \"require\"\napprovals = 1\napprovers = [\"owner\"]\n",
    )
    .unwrap();
    let (out, err) = texts(&app.cli(&["policy", "apply", policy.to_str().unwrap()]));
    assert!(out.contains("is active"), "{out}{err}");
    assert_eq!(checkpoint(&app).await.seq, head(&app).await.0);

    // Ordinary traffic again waits, until the interval has passed by the injected clock.
    app.core.resume_agent(&agent.id, "test").await.unwrap();
    assert_eq!(checkpoint(&app).await.seq, head(&app).await.0);
    app.ask_id(&agent, &transfer("2.00")).await;
    assert_eq!(app.core.checkpoint_tick().await.unwrap(), Tick::Waiting);
    app.clock.advance_ms(3_600_000);
    let later = checkpoint(&app).await;
    assert_eq!(later.seq, head(&app).await.0);
    assert!(later.time - suspended.time >= 3_600_000);

    // Every one of them is in the file, and the chain extends them all.
    let file = std::fs::read_to_string(checkpoint_file(&app)).unwrap();
    for c in [&suspended, &later] {
        assert!(file.contains(&c.jws), "{c} is not in the file");
    }
    let (ok, out, err) = verify(&app, &["--checkpoint", &checkpoint_file(&app)]);
    assert!(ok && out.contains("it extends all"), "{out}{err}");
}

/// The admin audit page checks the chain against this server's newest checkpoint: it says
/// which one the chain extends, and after a truncation that the chain no longer does.
async fn the_audit_page_checks_the_chain_against_the_newest_checkpoint(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    app.ask_id(&agent, &transfer("1.00")).await;
    let cp = checkpoint(&app).await;
    app.ask_id(&agent, &transfer("2.00")).await;
    let page = alice.server_json(&app.http, "admin/audit", &[]).await;
    assert_eq!(page["chain"]["intact"], true, "{}", page["chain"]);
    let shown = page["chain"]["checkpoint"].as_str().unwrap_or_default();
    assert!(
        shown.contains(&format!("checkpoint at event {}", cp.seq)) && shown.contains(&cp.kid),
        "{}",
        page["chain"]
    );

    truncate(&app, cp.seq - 1).await;
    let page = alice.server_json(&app.http, "admin/audit", &[]).await;
    assert_eq!(page["chain"]["intact"], false, "{}", page["chain"]);
    assert_eq!(page["chain"]["broken_seq"], cp.seq);
    let reason = page["chain"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("the chain now ends at event {}", cp.seq - 1)),
        "{reason}"
    );
}

on_both_backends!(
    a_shortened_chain_is_caught_against_a_checkpoint_from_the_file_or_the_url,
    the_audit_page_checks_the_chain_against_the_newest_checkpoint,
    a_chain_that_grew_after_its_checkpoints_verifies,
    checkpoints_that_do_not_verify_under_a_trusted_key_are_refused,
    the_feed_is_public_and_says_which_key_signs,
    important_events_are_checkpointed_without_waiting_for_the_interval,
);

/// Replicas (PostgreSQL) each sign with their own key into their own data directory; all of
/// their checkpoints describe the one chain, and a verifier trusting both keys checks both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_replica_keeps_checkpoints_of_the_one_chain() {
    let (a, mut alice, agent) = TestApp::with_alice(Backend::Postgres).await;
    let b = a.replica().await;
    let id = b.ask_id(&agent, &transfer("1.00")).await;
    alice.approve(&a.http, &id).await;
    let on_a = checkpoint(&a).await;
    let on_b = checkpoint(&b).await;
    assert_ne!(on_a.kid, on_b.kid, "each replica has its own key");
    assert_eq!((on_a.seq, &on_a.hash), (on_b.seq, &on_b.hash));
    b.ask_id(&agent, &transfer("2.00")).await;

    let (file_a, url_a, url_b) = (checkpoint_file(&a), feed_url(&a), feed_url(&b));
    let both = [
        "--checkpoint",
        file_a.as_str(),
        "--checkpoint",
        url_b.as_str(),
        "--checkpoint-key",
        url_a.as_str(),
        "--checkpoint-key",
        url_b.as_str(),
    ];
    let (ok, out, err) = verify(&a, &both);
    assert!(ok && out.contains("it extends all"), "{out}{err}");
    // Trusting only this data directory's key, B's checkpoints are refused.
    let (ok, _, err) = verify(&a, &["--checkpoint", &file_a, "--checkpoint", &url_b]);
    assert!(
        !ok && err.contains("REFUSED") && err.contains(&on_b.kid),
        "{err}"
    );

    truncate(&a, on_a.seq - 1).await;
    let (ok, out, err) = verify(&a, &both);
    assert!(!ok && out.contains("TAMPERED"), "{out}{err}");
}
