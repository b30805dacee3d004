//! Several replicas on one PostgreSQL database: a decision committed on one wakes the agent
//! long-waiting on another (LISTEN/NOTIFY), and grants signed by either verify on both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{problem, transfer, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decision_on_one_replica_wakes_the_agent_waiting_on_another() {
    let (a, mut alice, agent) = TestApp::with_alice(Backend::Postgres).await;
    let b = a.replica().await;
    assert_ne!(
        a.core.signer.kid(),
        b.core.signer.kid(),
        "each replica has its own key"
    );

    // The agent asks and waits on replica B.
    let r = b
        .agent_post(&agent, "/api/v1/requests", &transfer("10.00"))
        .await;
    let id = common::created_id(r).await;
    let waiter = b.wait_in_background(&agent, &id);
    common::eventually(
        "the waiter registered on B",
        Duration::from_secs(10),
        || async { b.core.waiters.waiting() > 0 },
    )
    .await;

    // The owner approves on replica A; B has no in-process notification of it.
    alice.approve(&a.http, &id).await;
    let (got, elapsed) = waiter.await.unwrap();
    assert_eq!(got["status"], "approved");
    assert!(
        elapsed < Duration::from_secs(30),
        "B's waiter held {elapsed:?}: NOTIFY did not wake it"
    );

    // B signed the delivered grant with its own key; A verifies it from the shared key table,
    // and the single-use rule holds across replicas.
    let token = got["grant"]["token"].as_str().unwrap();
    let (header, _) = countersign::domain::jose::peek_unverified(token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(b.core.signer.kid()));
    assert_eq!(a.redeem(token).await.status(), StatusCode::OK);
    problem(
        b.redeem(token).await,
        StatusCode::CONFLICT,
        "grant_already_redeemed",
    )
    .await;

    // JWKS on either replica lists both keys.
    let jwks: Value = a
        .http
        .get(a.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&a.core.signer.kid()) && kids.contains(&b.core.signer.kid()),
        "{kids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_request_of_a_burst_on_one_replica_reaches_the_inboxes_of_another() {
    let (a, _alice, agent) = TestApp::with_alice(Backend::Postgres).await;
    let b = a.replica().await;
    let mut heard = b.core.waiters.subscribe();

    // Sent at once, so the intake writer on A commits several in one transaction and announces
    // them together (one NOTIFY statement per batch).
    let created = futures::future::join_all((0..40).map(|i| {
        let (a, agent) = (&a, &agent);
        async move {
            let r = a
                .agent_post(agent, "/api/v1/requests", &transfer(&format!("{i}.00")))
                .await;
            common::created_id(r).await
        }
    }))
    .await;

    let mut missing: std::collections::HashSet<String> = created.into_iter().collect();
    assert_eq!(missing.len(), 40, "forty distinct requests");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !missing.is_empty() {
        let id = tokio::time::timeout_at(deadline, heard.recv())
            .await
            .unwrap_or_else(|_| panic!("B never heard of {} requests: {missing:?}", missing.len()))
            .unwrap();
        missing.remove(&id);
    }
}
