//! Batch approval, on SQLite and PostgreSQL: several of one agent's pending requests of one
//! action type approved with one passkey ceremony, one `approval.recorded` each naming the
//! batch; a request that stopped being pending is skipped and named; quorum counts people.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{json_of, problem, transfer, Backend, Person, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn start(app: &TestApp, person: &mut Person, ids: &[&str]) -> reqwest::Response {
    person
        .post(
            &app.http,
            "/api/ui/batch/start",
            &json!({ "request_ids": ids }),
        )
        .await
}

async fn finish(app: &TestApp, person: &mut Person, started: &Value) -> Value {
    let body = person.answer(started);
    let r = person.post(&app.http, "/api/ui/batch/finish", &body).await;
    json_of(r, StatusCode::OK).await
}

fn events(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn five_requests_one_ceremony_one_event_each(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let mut ids = Vec::new();
    let mut hashes = Vec::new();
    for i in 0..5 {
        let created = app.ask(&agent, &transfer(&format!("{}.00", 100 + i))).await;
        ids.push(created["id"].as_str().unwrap().to_string());
        hashes.push(created["action_hash"].as_str().unwrap().to_string());
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let started = json_of(start(&app, &mut alice, &refs).await, StatusCode::OK).await;
    // The ceremony binds every request's action_hash.
    let bound: Vec<&str> = started["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action_hash"].as_str().unwrap())
        .collect();
    assert_eq!(bound, hashes);
    assert_eq!(started["skipped"], json!([]));
    let done = finish(&app, &mut alice, &started).await;
    let statuses: Vec<&str> = done["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["approved"; 5]);

    let ceremony = started["ceremony_id"].as_str().unwrap();
    for (id, hash) in ids.iter().zip(&hashes) {
        let state = app.state(&agent, id).await;
        assert_eq!(state["status"], "approved");
        assert!(state["grant"]["token"].is_string());
        let evts = events(&app.audit_lines(id).await);
        let recorded: Vec<&Value> = evts
            .iter()
            .filter(|e| e["kind"] == "approval.recorded")
            .collect();
        assert_eq!(recorded.len(), 1);
        let data = &recorded[0]["data"];
        assert_eq!(data["ceremony_id"], ceremony);
        assert_eq!(data["batch"]["ceremony_id"], ceremony);
        assert_eq!(data["batch"]["requests"], json!(ids));
        assert_eq!(data["action_hash"], *hash);
    }
    // The ceremony is spent.
    let replay = alice.answer(&started);
    let again = alice.post(&app.http, "/api/ui/batch/finish", &replay).await;
    assert!(again.status().is_client_error());
}

async fn a_request_no_longer_pending_is_skipped_and_named(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let ids: Vec<String> = pending_ids(&app, &agent, 3).await;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let started = json_of(start(&app, &mut alice, &refs).await, StatusCode::OK).await;
    // The agent withdraws one while the passkey prompt is open.
    let r = app
        .agent_post(
            &agent,
            &format!("/api/v1/requests/{}/cancel", ids[1]),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let done = finish(&app, &mut alice, &started).await;
    let results = done["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "approved");
    assert_eq!(results[2]["status"], "approved");
    assert_eq!(results[1]["request_id"], ids[1]);
    assert!(results[1].get("status").is_none());
    assert!(
        results[1]["skipped"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{results:?}"
    );
    assert_eq!(app.request_status(&ids[1]).await, "cancelled");

    // Already decided at the start: left out and named there.
    let more = pending_ids(&app, &agent, 2).await;
    let refs = [ids[0].as_str(), more[0].as_str(), more[1].as_str()];
    let started = json_of(start(&app, &mut alice, &refs).await, StatusCode::OK).await;
    assert_eq!(started["requests"].as_array().unwrap().len(), 2);
    assert_eq!(started["skipped"][0]["request_id"], ids[0]);
}

async fn pending_ids(app: &TestApp, agent: &common::Agent, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(
            app.ask_id(agent, &transfer(&format!("{}.00", 200 + distinct())))
                .await,
        );
    }
    ids
}

/// Distinct amounts, so requests never collapse into one (the identical-request guard).
fn distinct() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(7, Ordering::Relaxed)
}

async fn a_batch_is_one_agent_and_one_action_type(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let other_agent = app.agent("alice@example.com").await;
    let a = pending_ids(&app, &agent, 2).await;
    let b = app.ask_id(&other_agent, &transfer("301.00")).await;
    let mut deploy = transfer("302.00");
    deploy["action"]["type"] = json!("payments.refund");
    let c = app.ask_id(&agent, &deploy).await;
    for (ids, what) in [
        (vec![a[0].as_str(), b.as_str()], "two agents"),
        (vec![a[0].as_str(), c.as_str()], "two action types"),
        (vec![a[0].as_str()], "one request"),
        (vec![a[0].as_str(), a[0].as_str()], "a duplicate"),
    ] {
        let p = problem(
            start(&app, &mut alice, &ids).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
        assert_eq!(p["field"], "request_ids", "{what}");
    }
    // Someone else's requests are nobody's business: skipped as unknown, and with nothing
    // left the batch is refused.
    let mut carol = app.enrol("carol@example.com", "owner", &[]).await;
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    let r = start(&app, &mut carol, &refs).await;
    let p = problem(r, StatusCode::CONFLICT, "conflict").await;
    assert!(p["detail"].as_str().unwrap().contains("no such request"));
    assert_eq!(app.request_status(&a[0]).await, "pending");
}

async fn quorum_counts_people_not_clicks(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    app.core
        .apply_policy(
            r#"
[[rule]]
id = "two-people"
action = "payments.*"
outcome = "require"
approvals = 2
approvers = ["owner", "group:finance"]
"#,
            "cli",
        )
        .await
        .unwrap();
    let mut bob = app.enrol("bob@example.com", "owner", &["finance"]).await;
    let ids = pending_ids(&app, &agent, 2).await;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let started = json_of(start(&app, &mut alice, &refs).await, StatusCode::OK).await;
    let done = finish(&app, &mut alice, &started).await;
    assert_eq!(done["results"][0]["status"], "pending");
    assert_eq!(done["results"][1]["status"], "pending");
    // The same person again is not a second approval.
    let r = start(&app, &mut alice, &refs).await;
    let p = problem(r, StatusCode::CONFLICT, "conflict").await;
    assert!(p["detail"].as_str().unwrap().contains("already approved"));
    // A second person completes both.
    let started = json_of(start(&app, &mut bob, &refs).await, StatusCode::OK).await;
    let done = finish(&app, &mut bob, &started).await;
    assert_eq!(done["results"][0]["status"], "approved");
    assert_eq!(done["results"][1]["status"], "approved");
    let state = app.state(&agent, &ids[0]).await;
    assert_eq!(state["approvals"], json!({ "required": 2, "received": 2 }));
}

/// The approve delay holds for batches too: it counts from when the person was first shown
/// each request, here as a row of their inbox.
async fn the_approve_delay_counts_from_the_inbox(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_APPROVE_DELAY_MS", "1500")]).await;
    let mut alice = app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    let ids = pending_ids(&app, &agent, 2).await;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let p = problem(
        start(&app, &mut alice, &refs).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("open the request"),
        "{p}"
    );
    let inbox = alice.server_json(&app.http, "inbox", &[]).await;
    assert_eq!(inbox.as_array().unwrap().len(), 2);
    let p = problem(
        start(&app, &mut alice, &refs).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("take a moment"),
        "{p}"
    );
    app.clock.advance_ms(1_500);
    let started = json_of(start(&app, &mut alice, &refs).await, StatusCode::OK).await;
    let done = finish(&app, &mut alice, &started).await;
    assert_eq!(done["results"][1]["status"], "approved");
}

on_both_backends!(
    the_approve_delay_counts_from_the_inbox,
    five_requests_one_ceremony_one_event_each,
    a_request_no_longer_pending_is_skipped_and_named,
    a_batch_is_one_agent_and_one_action_type,
    quorum_counts_people_not_clicks,
);
