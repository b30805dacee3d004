//! Guards against approval fatigue, enforced by the server: identical pending requests
//! collapse, a denied action cools down, the pending cap follows the admin's setting, mails to
//! one approver are rationed per minute, and approving waits until the page has been open a
//! moment. Only admins change them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{transfer, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn identical_pending_requests_collapse_into_one(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_COLLAPSE_IDENTICAL", "true")]).await;
    let mut alice = app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    let first = app.ask_id(&agent, &transfer("50.00")).await;
    let again = app.ask(&agent, &transfer("50.00")).await;
    assert_eq!(again["id"], first, "the same request, not a second prompt");
    assert_eq!(again["status"], "pending");
    let other = app.ask_id(&agent, &transfer("51.00")).await;
    assert_ne!(other, first);
    // Another agent asking the same is its own request.
    let agent_b = app.agent("alice@example.com").await;
    assert_ne!(app.ask_id(&agent_b, &transfer("50.00")).await, first);
    // Once decided, asking again is a new request.
    alice.approve(&app.http, &first).await;
    assert_ne!(app.ask_id(&agent, &transfer("50.00")).await, first);
    let kinds = app.all_audit_kinds().await;
    assert_eq!(kinds.iter().filter(|k| *k == "request.created").count(), 4);
}

/// Identical requests sent at once collapse as surely as ones sent in a row: the writer looks
/// for the identical request in the transaction that would add it, and among the requests it
/// writes with it.
async fn identical_requests_at_once_collapse_into_one(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_COLLAPSE_IDENTICAL", "true")]).await;
    let _alice = app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    // A first request, so the agent's key is already checked and the sixteen are not spread
    // out by checking it.
    app.ask_id(&agent, &transfer("1.00")).await;
    let body = transfer("50.00");
    let answers = futures::future::join_all((0..16).map(|_| app.ask(&agent, &body))).await;
    let ids: std::collections::BTreeSet<&str> =
        answers.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.len(),
        1,
        "one request for sixteen identical asks: {ids:?}"
    );
    assert!(answers.iter().all(|a| a["status"] == "pending"));
    let kinds = app.all_audit_kinds().await;
    assert_eq!(kinds.iter().filter(|k| *k == "request.created").count(), 2);
}

/// At the pending cap, an identical request already waiting is still the answer (the cap
/// refuses only what would add a request).
async fn at_the_cap_the_identical_request_is_still_the_answer(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_COLLAPSE_IDENTICAL", "true")]).await;
    let alice = app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    let mut guards = app.core.guards().await.unwrap();
    guards.max_pending_per_agent = 2;
    let who = app.signed_in(&alice).await;
    app.core.set_guards(&who, guards).await.unwrap();
    let first = app.ask_id(&agent, &transfer("1.00")).await;
    app.ask_id(&agent, &transfer("2.00")).await;
    let again = app.ask(&agent, &transfer("1.00")).await;
    assert_eq!(again["id"], first);
    let r = app
        .agent_post(&agent, "/api/v1/requests", &transfer("3.00"))
        .await;
    common::problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

async fn a_denied_action_cools_down(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_DENY_COOLDOWN_SECONDS", "600")]).await;
    let mut alice = app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    let id = app.ask_id(&agent, &transfer("50.00")).await;
    let r = alice
        .decide(
            &app.http,
            &id,
            &json!({"decision": "deny", "reason_code": "too_risky"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // The same action, even with other words around it, is refused for the cooldown.
    let mut reworded = transfer("50.00");
    reworded["intent"]["goal"] = json!("Please, it is really urgent");
    let r = app.agent_post(&agent, "/api/v1/requests", &reworded).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((590..=600).contains(&retry), "Retry-After {retry}");
    common::problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another action is fine; so is the same one after the cooldown.
    app.ask_id(&agent, &transfer("49.00")).await;
    app.clock.advance_ms(601000);
    app.ask_id(&agent, &transfer("50.00")).await;
}

async fn the_pending_cap_follows_the_admin_setting(backend: Backend) {
    let (app, alice, agent) = TestApp::with_alice(backend).await;
    let mut guards = app.core.guards().await.unwrap();
    guards.max_pending_per_agent = 2;
    let who = app.signed_in(&alice).await;
    app.core.set_guards(&who, guards).await.unwrap();
    app.ask_id(&agent, &transfer("1.00")).await;
    app.ask_id(&agent, &transfer("2.00")).await;
    let r = app
        .agent_post(&agent, "/api/v1/requests", &transfer("3.00"))
        .await;
    assert!(r.headers().contains_key("retry-after"));
    common::problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert!(app
        .all_audit_kinds()
        .await
        .contains(&"settings.changed".to_string()));
}

async fn only_admins_change_the_guards(backend: Backend) {
    let (app, alice, _agent) = TestApp::with_alice(backend).await;
    let bob = app.enrol("bob@example.com", "owner", &[]).await;
    let who = app.signed_in(&bob).await;
    let before = app.core.guards().await.unwrap();
    let mut wanted = before;
    wanted.approve_delay_ms = 0;
    wanted.max_pending_per_agent = 100_000;
    let e = app.core.set_guards(&who, wanted).await.unwrap_err();
    assert_eq!(e.code(), "forbidden");
    assert_eq!(app.core.guards().await.unwrap(), before);
    // Out-of-range values are refused, naming the setting.
    let admin = app.signed_in(&alice).await;
    let mut bad = before;
    bad.prompts_per_approver_per_minute = 0;
    let e = app.core.set_guards(&admin, bad).await.unwrap_err();
    assert!(
        matches!(e, countersign::service::Error::InvalidRequest { ref field, .. } if field.as_deref() == Some("prompts_per_approver_per_minute")),
        "{e:?}"
    );
}

async fn mails_to_one_approver_are_rationed_per_minute(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[("COUNTERSIGN_PROMPTS_PER_APPROVER_PER_MINUTE", "2")],
    )
    .await;
    app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    // Asked at the same time: each request's mail is judged in a task of its own, all at once,
    // and still only two go out.
    let bodies: Vec<_> = (0..4).map(|n| transfer(&format!("{n}.00"))).collect();
    futures::future::join_all(bodies.iter().map(|b| app.ask_id(&agent, b))).await;
    let alice = app.person_id("alice@example.com").await;
    let mail = &app.core.metrics.mail;
    let count = |c: &prometheus_client::metrics::counter::Counter| c.get();
    // Mail goes out from a task of its own per request; wait until each was judged.
    let settle = |n: u64| async move {
        let judged = || async { count(&mail.logged) + count(&mail.held) >= n };
        common::eventually(
            "every mail judged",
            std::time::Duration::from_secs(5),
            judged,
        )
        .await;
    };
    settle(4).await;
    assert_eq!(count(&mail.logged), 2, "two mails");
    assert_eq!(count(&mail.held), 2, "two wait in the inbox, unmailed");
    let now = app.core.now();
    let prompts = countersign::store::guards::prompts_since_each(
        app.core.db.reader(),
        &[alice.as_str()],
        now - 60_000,
    )
    .await
    .unwrap();
    assert_eq!(prompts.get(&alice), Some(&2));
    // A minute later, the next request is mailed again.
    app.clock.advance_ms(61000);
    app.ask_id(&agent, &transfer("9.00")).await;
    settle(5).await;
    assert_eq!(count(&mail.logged), 3, "mailed after a minute");
}

async fn approving_waits_until_the_page_has_been_open_a_moment(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_APPROVE_DELAY_MS", "1500")]).await;
    let mut alice = app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    let id = app.ask_id(&agent, &transfer("50.00")).await;

    // Without opening the page: refused.
    let r = alice
        .start_decision(&app.http, &id, &json!({"decision": "approve"}))
        .await;
    let body = common::problem(r, StatusCode::CONFLICT, "conflict").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("open the request"),
        "{body}"
    );

    // Opening it tells the page how long to wait; approving at once is refused.
    let page: Value = alice
        .server_json(&app.http, "request_page", &[("id", &id)])
        .await;
    let wait = page["approve_delay_ms"].as_i64().unwrap();
    assert!((1_000..=1_500).contains(&wait), "wait {wait}");
    let r = alice
        .start_decision(&app.http, &id, &json!({"decision": "approve"}))
        .await;
    common::problem(r, StatusCode::CONFLICT, "conflict").await;

    // Denying needs no delay; approving works once the moment has passed, and reopening the
    // page does not restart it.
    app.clock.advance_ms(1_000);
    let page: Value = alice
        .server_json(&app.http, "request_page", &[("id", &id)])
        .await;
    // (The test clock also moves with real time, so a little less than 500 remains.)
    let wait = page["approve_delay_ms"].as_i64().unwrap();
    assert!(
        (1..=500).contains(&wait),
        "reopening does not restart the delay: {wait}"
    );
    app.clock.advance_ms(500);
    alice.approve(&app.http, &id).await;
}

on_both_backends!(
    identical_pending_requests_collapse_into_one,
    identical_requests_at_once_collapse_into_one,
    at_the_cap_the_identical_request_is_still_the_answer,
    a_denied_action_cools_down,
    the_pending_cap_follows_the_admin_setting,
    only_admins_change_the_guards,
    mails_to_one_approver_are_rationed_per_minute,
    approving_waits_until_the_page_has_been_open_a_moment,
);
