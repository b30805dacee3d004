//! Intake decides without reading the agent's row or the policy version on every request (see
//! `service::agents`, "Credentials cached for intake", and `service::policies`). These tests
//! hold those shortcuts to what they stand in for: with the cache warm, a suspension or a new
//! key refuses the old credential at the very next request, on this replica and on another; a
//! resumed agent works again at once; a parent given meanwhile counts; a policy applied by
//! another process decides the next request; and under concurrent load, no request decided
//! under the old policy commits after the new one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{json_of, problem, transfer, Agent, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::Value;

/// Transfers below 100 EUR are allowed at once; the rest wait for a person (the default).
const SMALL_ALLOWED: &str = r#"
[[rule]]
id = "small"
action = "payments.*"
amount_below = { value = "100.00", currency = "EUR" }
outcome = "allow"
"#;

/// The same, but now every transfer waits for a person.
const ALL_WAIT: &str = r#"
[[rule]]
id = "all-transfers"
action = "payments.*"
outcome = "require"
"#;

/// A sub-agent's transfers are denied outright.
const NO_SUB_AGENTS: &str = r#"
[[rule]]
id = "no-sub-agents"
delegation_depth_at_least = 1
outcome = "deny"
reason = "Sub-agents may not move money."
"#;

async fn post(app: &TestApp, bearer: &str, amount: &str) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/requests"))
        .bearer_auth(bearer)
        .json(&transfer(amount))
        .send()
        .await
        .unwrap()
}

/// The audit chain as exported, one JSON value per event.
async fn chain(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    app.core.export_audit(None, &mut out).await.unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn a_cached_key_is_refused_the_moment_its_agent_is_suspended(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    // Two requests: the second is recognised from the cache.
    app.ask_id(&agent, &transfer("1.00")).await;
    app.ask_id(&agent, &transfer("2.00")).await;

    app.core.suspend_agent(&agent.id, "test").await.unwrap();
    problem(
        post(&app, &agent.bearer, "3.00").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let kinds: Vec<String> = chain(&app)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    let suspended = kinds.iter().position(|k| k == "agent.suspended").unwrap();
    assert!(
        !kinds[suspended..].contains(&"request.created".to_string()),
        "a request committed after the suspension: {kinds:?}"
    );

    // Resumed, the same key works again at once (the cached identity is from before the
    // suspension, at an older epoch: it is checked again, not refused).
    assert!(app.core.resume_agent(&agent.id, "test").await.unwrap());
    json_of(
        post(&app, &agent.bearer, "4.00").await,
        StatusCode::ACCEPTED,
    )
    .await;
}

async fn a_rotated_key_is_refused_at_once_and_the_new_one_works(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    app.ask_id(&agent, &transfer("1.00")).await;
    let rotated = app.core.rotate_api_key(&agent.id, "test").await.unwrap();
    problem(
        post(&app, &agent.bearer, "2.00").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    json_of(
        post(&app, rotated.api_key.expose(), "3.00").await,
        StatusCode::ACCEPTED,
    )
    .await;
}

/// Another replica's cache is as warm as can be when the change is made on the first: it
/// refuses the old credential at the next request all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_replica_refuses_a_cached_key_once_rotated_or_suspended() {
    let (a, _alice, agent) = TestApp::with_alice(Backend::Postgres).await;
    let b = a.replica().await;
    json_of(post(&b, &agent.bearer, "1.00").await, StatusCode::ACCEPTED).await;
    json_of(post(&b, &agent.bearer, "2.00").await, StatusCode::ACCEPTED).await;

    let rotated = a.core.rotate_api_key(&agent.id, "test").await.unwrap();
    problem(
        post(&b, &agent.bearer, "3.00").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let new_key = rotated.api_key.expose().to_string();
    json_of(post(&b, &new_key, "4.00").await, StatusCode::ACCEPTED).await;
    json_of(post(&b, &new_key, "5.00").await, StatusCode::ACCEPTED).await;

    a.core.suspend_agent(&agent.id, "test").await.unwrap();
    problem(
        post(&b, &new_key, "6.00").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert!(
        b.core.db.backend() == countersign::store::Backend::Postgres,
        "the replicas share one PostgreSQL database"
    );
}

async fn a_parent_given_meanwhile_decides_the_next_request(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    app.core.apply_policy(NO_SUB_AGENTS, "test").await.unwrap();
    let parent = app.agent("alice@example.com").await;
    app.ask_id(&agent, &transfer("1.00")).await;
    app.ask_id(&agent, &transfer("2.00")).await;
    app.core
        .set_parent(&agent.id, Some(&parent.id), "test")
        .await
        .unwrap();
    let denied = problem(
        post(&app, &agent.bearer, "3.00").await,
        StatusCode::FORBIDDEN,
        "denied_by_policy",
    )
    .await;
    assert_eq!(denied["rule"], "no-sub-agents", "{denied}");
}

/// The policy is applied by another process (the command line) on the same database, so this
/// server's cached policy is out of date when the next request arrives.
async fn a_policy_applied_by_another_process_decides_the_next_request(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    app.core.apply_policy(SMALL_ALLOWED, "test").await.unwrap();
    let first = json_of(post(&app, &agent.bearer, "1.00").await, StatusCode::OK).await;
    assert_eq!(first["policy"]["rule"], "small");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, ALL_WAIT).unwrap();
    let out = app.cli(&["policy", "apply", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let next = json_of(
        post(&app, &agent.bearer, "2.00").await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(next["policy"]["rule"], "all-transfers", "{next}");
    assert!(next.get("grant").is_none());
}

/// Requests stream in from several clients while the policy changes from allowing small
/// transfers to making every transfer wait. Each request is decided under the policy in force
/// when it commits: on the audit chain, every request created after `policy.applied` names the
/// new version, and none approved by the old rule follows it.
async fn requests_racing_a_policy_change_commit_under_the_policy_in_force(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let mut guards = app.core.guards().await.unwrap();
    guards.max_pending_per_agent = 100_000;
    let who = app.signed_in(&_alice).await;
    app.core.set_guards(&who, guards).await.unwrap();
    let (old_version, _) = app.core.apply_policy(SMALL_ALLOWED, "test").await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (http, url, bearer, stop) = (
            app.http.clone(),
            app.url("/api/v1/requests"),
            agent.bearer.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut answered = 0usize;
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let r = http
                    .post(&url)
                    .bearer_auth(&bearer)
                    .json(&transfer(&format!("{}.{:02}", i % 90 + 1, c)))
                    .send()
                    .await
                    .unwrap();
                assert!(
                    [StatusCode::OK, StatusCode::ACCEPTED].contains(&r.status()),
                    "{}: {}",
                    r.status(),
                    r.text().await.unwrap()
                );
                answered += 1;
            }
            answered
        }));
    }
    common::eventually(
        "the load is under way",
        std::time::Duration::from_secs(30),
        || async { app.core.metrics.requests_allowed.get() >= 40 },
    )
    .await;
    let (new_version, _) = app.core.apply_policy(ALL_WAIT, "test").await.unwrap();
    assert!(new_version > old_version);
    // Let the load run on under the new policy, then stop it.
    let after = app.core.metrics.requests_pending.get();
    common::eventually(
        "requests arrive under the new policy",
        std::time::Duration::from_secs(30),
        || async { app.core.metrics.requests_pending.get() >= after + 40 },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut answered = 0;
    for c in clients {
        answered += c.await.unwrap();
    }
    assert!(answered >= 80);

    let events = chain(&app).await;
    let applied = events
        .iter()
        .position(|e| e["kind"] == "policy.applied" && e["data"]["version"] == new_version)
        .expect("the new policy's event");
    let mut before = 0;
    for (at, e) in events.iter().enumerate() {
        if e["kind"] == "request.created" {
            let version = e["data"]["policy"]["version"].as_i64().unwrap();
            if at > applied {
                assert_eq!(
                    version, new_version,
                    "a request decided under v{version} committed after v{new_version}: {e}"
                );
            } else {
                assert_eq!(version, old_version);
                before += 1;
            }
        }
        if at > applied && e["kind"] == "request.approved" {
            panic!("the old rule approved a request after the new policy: {e}");
        }
    }
    assert!(before >= 40, "{before} requests before the change");
}

/// With the pending cap reached, a request the agent withdraws frees its place for the very
/// next request (the per-process bound counts again at the cap; see `service::guards`).
async fn a_place_freed_under_the_cap_is_usable_at_once(backend: Backend) {
    let (app, alice, agent) = TestApp::with_alice(backend).await;
    let mut guards = app.core.guards().await.unwrap();
    guards.max_pending_per_agent = 3;
    let who = app.signed_in(&alice).await;
    app.core.set_guards(&who, guards).await.unwrap();
    let first = app.ask_id(&agent, &transfer("1.00")).await;
    app.ask_id(&agent, &transfer("2.00")).await;
    app.ask_id(&agent, &transfer("3.00")).await;
    problem(
        post(&app, &agent.bearer, "4.00").await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
    let r = app
        .agent_post(
            &agent,
            &format!("/api/v1/requests/{first}/cancel"),
            &Value::Null,
        )
        .await;
    json_of(r, StatusCode::OK).await;
    json_of(
        post(&app, &agent.bearer, "4.00").await,
        StatusCode::ACCEPTED,
    )
    .await;
    problem(
        post(&app, &agent.bearer, "5.00").await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
    // Another agent of the same owner has a cap of its own.
    let other: Agent = app.agent("alice@example.com").await;
    json_of(
        post(&app, &other.bearer, "5.00").await,
        StatusCode::ACCEPTED,
    )
    .await;
}

on_both_backends!(
    a_cached_key_is_refused_the_moment_its_agent_is_suspended,
    a_rotated_key_is_refused_at_once_and_the_new_one_works,
    a_parent_given_meanwhile_decides_the_next_request,
    a_policy_applied_by_another_process_decides_the_next_request,
    requests_racing_a_policy_change_commit_under_the_policy_in_force,
    a_place_freed_under_the_cap_is_usable_at_once,
);
