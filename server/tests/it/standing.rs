//! Approvals that fit how people work, on SQLite and PostgreSQL: an approval narrowed to less
//! than was asked (bound by the passkey, carried by the grant, enforced at redemption), and
//! standing approvals (a bounded pattern approved once, each later use counted, one winner
//! for the last use, ended at once by a revocation, the kill switch, a key change or a policy
//! that no longer allows it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{json_of, problem, transfer, Agent, Backend, Person, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A policy whose payments rule lets the owner give standing approvals of up to an hour and
/// ten uses, for amounts below 1000 EUR.
const STANDING_POLICY: &str = r#"
[[rule]]
id = "payments"
action = "payments.*"
amount_below = { value = "1000.00", currency = "EUR" }
outcome = "require"
approvals = 1
approvers = ["owner"]
standing_max_seconds = 3600
standing_max_uses = 10
"#;

fn payment(amount: &str, to: &str) -> Value {
    let mut body = transfer(amount);
    body["action"]["params"]["to"] = json!(to);
    body
}

const TO: &str = "DE89 3704 0044 0532 0130 00";

/// The grant's claims, without checking the signature (the approval flow tests do that).
fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Posts a request and returns its answer, whatever the status (200 or 202).
async fn ask_any(app: &TestApp, agent: &Agent, body: &Value) -> Value {
    let r = app.agent_post(agent, "/api/v1/requests", body).await;
    let status = r.status();
    assert!(
        status == StatusCode::OK || status == StatusCode::ACCEPTED,
        "{status}"
    );
    r.json().await.unwrap()
}

/// Approves `id` with a standing approval of `uses` uses for ten minutes, pinned to `to`,
/// each at most 100 EUR; returns the finish answer.
async fn approve_standing(app: &TestApp, alice: &mut Person, id: &str, uses: u32) -> Value {
    let r = alice
        .decide(
            &app.http,
            id,
            &json!({ "decision": "approve",
                     "standing": { "pin": ["to"], "amount_max": "100", "uses": uses,
                                   "valid_for_seconds": 600 } }),
        )
        .await;
    json_of(r, StatusCode::OK).await
}

/// The one event of `kind` in the whole audit log with `data.standing_id == id`.
async fn standing_events(app: &TestApp, kind: &str) -> Vec<Value> {
    let mut out = Vec::new();
    app.core.export_audit(None, &mut out).await.unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == kind)
        .collect()
}

async fn a_narrowed_approval_is_bound_carried_and_enforced(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    let page: Value = alice
        .get(&app.http, &format!("/api/ui/requests/{id}"))
        .await
        .json()
        .await
        .unwrap();
    let shown_hash = page["display_hash"].as_str().unwrap().to_string();

    let start = alice
        .start_decision(
            &app.http,
            &id,
            &json!({ "decision": "approve", "display_hash": shown_hash,
                     "narrow": { "amount_max": "3000.00", "grant_ttl_seconds": 30 } }),
        )
        .await;
    let start = json_of(start, StatusCode::OK).await;
    // The ceremony binds the page as shown plus the narrowed terms: another hash.
    let bound_hash = start["display_hash"].as_str().unwrap().to_string();
    assert_ne!(bound_hash, shown_hash);
    assert_eq!(start["terms"]["narrow"]["amount_max"]["value"], "3000.00");
    let done = alice.finish_decision(&app.http, &id, &start).await;
    assert_eq!(json_of(done, StatusCode::OK).await["status"], "approved");

    let got = app.state(&agent, &id).await;
    let token = got["grant"]["token"].as_str().unwrap().to_string();
    let c = claims(&token);
    assert_eq!(
        c["authorization_details"][0]["amount_max"],
        json!({ "value": "3000.00", "currency": "EUR" })
    );
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 30);

    // Redemption enforces the cap, and a refusal leaves the grant unused.
    let redeem = |amount: Option<Value>| {
        let mut body = json!({ "token": token });
        if let Some(a) = amount {
            body["amount"] = a;
        }
        app.http
            .post(app.url("/api/v1/grants/redeem"))
            .json(&body)
            .send()
    };
    for amount in [
        None,
        Some(json!({ "value": "3000.01", "currency": "EUR" })),
        Some(json!({ "value": "5000.00", "currency": "EUR" })),
        Some(json!({ "value": "10.00", "currency": "USD" })),
    ] {
        let p = problem(
            redeem(amount.clone()).await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
        assert_eq!(p["field"], "amount", "{amount:?}");
    }
    let p = problem(
        redeem(Some(json!({ "value": "1e3", "currency": "EUR" })))
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_eq!(p["field"], "amount.value");
    let ok = redeem(Some(json!({ "value": "2999.99", "currency": "EUR" })))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    // The evidence: the approval records the terms and the hash they were bound into.
    let lines = app.audit_lines(&id).await;
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let recorded = events
        .iter()
        .find(|e| e["kind"] == "approval.recorded")
        .unwrap();
    assert_eq!(recorded["data"]["display_hash"], bound_hash);
    assert_eq!(recorded["data"]["terms"]["narrow"]["grant_ttl_seconds"], 30);
    let approved = events
        .iter()
        .find(|e| e["kind"] == "request.approved")
        .unwrap();
    assert_eq!(
        approved["data"]["narrowed"]["amount_max"]["value"],
        "3000.00"
    );
}

/// The Rust client reads the cap and redeems within it.
async fn the_rust_client_redeems_a_narrowed_grant_within_its_cap(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    let r = alice
        .decide(
            &app.http,
            &id,
            &json!({ "decision": "approve", "narrow": { "amount_max": "3000.00" } }),
        )
        .await;
    json_of(r, StatusCode::OK).await;
    let token = app.state(&agent, &id).await["grant"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let bank = app.downstream();
    let claims = bank.verify_grant(&token, "bank-api").await.unwrap();
    let cap = claims.authorization_details[0].amount_max.clone().unwrap();
    assert_eq!(
        (cap.value.as_str(), cap.currency.as_str()),
        ("3000.00", "EUR")
    );
    let over = countersign_client::Amount {
        value: "3000.50".into(),
        currency: "EUR".into(),
    };
    let refused = bank.redeem_amount(&token, &over).await.unwrap_err();
    assert_eq!(refused.code(), "invalid_request");
    assert_eq!(refused.field(), Some("amount"));
    let within = countersign_client::Amount {
        value: "2500.00".into(),
        currency: "EUR".into(),
    };
    let redeemed = bank.redeem_amount(&token, &within).await.unwrap();
    assert_eq!(redeemed.authorization_details[0].amount_max, Some(cap));
}

async fn narrowing_never_widens(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    let cases = [
        (json!({ "amount_max": "5000.01" }), "narrow.amount_max"),
        (json!({ "amount_max": "0" }), "narrow.amount_max"),
        (json!({ "amount_max": "lots" }), "narrow.amount_max"),
        (
            json!({ "grant_ttl_seconds": 61 }),
            "narrow.grant_ttl_seconds",
        ),
        (
            json!({ "grant_ttl_seconds": 0 }),
            "narrow.grant_ttl_seconds",
        ),
    ];
    for (narrow, field) in cases {
        let r = alice
            .start_decision(
                &app.http,
                &id,
                &json!({ "decision": "approve", "narrow": narrow }),
            )
            .await;
        let p = problem(r, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert_eq!(p["field"], field, "{narrow}");
    }
    // A denial cannot carry terms.
    let r = alice
        .start_decision(
            &app.http,
            &id,
            &json!({ "decision": "deny", "reason_code": "too_risky",
                     "narrow": { "grant_ttl_seconds": 5 } }),
        )
        .await;
    let p = problem(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(p["field"], "narrow");
    // The default rule allows no standing approvals.
    let r = alice
        .start_decision(
            &app.http,
            &id,
            &json!({ "decision": "approve",
                     "standing": { "uses": 1, "valid_for_seconds": 60, "amount_max": "1" } }),
        )
        .await;
    let p = problem(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(p["field"], "standing");
    // Nothing was decided: a plain approval still goes through, with the rule's terms.
    assert_eq!(app.request_status(&id).await, "pending");
    alice.approve(&app.http, &id).await;
    let c = claims(
        app.state(&agent, &id).await["grant"]["token"]
            .as_str()
            .unwrap(),
    );
    assert!(c["authorization_details"][0].get("amount_max").is_none());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 60);
}

async fn a_quorum_grant_takes_the_tightest_terms(backend: Backend) {
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
grant_ttl_seconds = 120
"#,
            "cli",
        )
        .await
        .unwrap();
    let mut bob = app.enrol("bob@example.com", "owner", &["finance"]).await;
    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    let narrow = |n: Value| json!({ "decision": "approve", "narrow": n });
    let r = alice
        .decide(
            &app.http,
            &id,
            &narrow(json!({ "amount_max": "4000", "grant_ttl_seconds": 90 })),
        )
        .await;
    assert_eq!(json_of(r, StatusCode::OK).await["status"], "pending");
    let r = bob
        .decide(
            &app.http,
            &id,
            &narrow(json!({ "amount_max": "4500", "grant_ttl_seconds": 20 })),
        )
        .await;
    assert_eq!(json_of(r, StatusCode::OK).await["status"], "approved");
    let c = claims(
        app.state(&agent, &id).await["grant"]["token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(c["authorization_details"][0]["amount_max"]["value"], "4000");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 20);
}

async fn a_standing_approval_covers_its_pattern_and_nothing_wider(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    app.core.apply_policy(STANDING_POLICY, "cli").await.unwrap();
    let origin = app.ask_id(&agent, &payment("50.00", TO)).await;
    let done = approve_standing(&app, &mut alice, &origin, 3).await;
    assert_eq!(done["status"], "approved");

    // Inside the pattern: approved at once, with a grant, no human asked.
    let covered = ask_any(&app, &agent, &payment("100", TO)).await;
    assert_eq!(covered["status"], "approved", "{covered}");
    assert_eq!(
        covered["approvals"],
        json!({ "required": 1, "received": 1 })
    );
    let c = claims(covered["grant"]["token"].as_str().unwrap());
    let created = &standing_events(&app, "standing.created").await[0];
    let standing_id = created["data"]["standing_id"].as_str().unwrap().to_string();
    assert_eq!(c["standing_approval"], standing_id);
    assert_eq!(
        c["approvers"],
        json!([app.person_id("alice@example.com").await])
    );

    // Outside it, in any one respect: waits for a human.
    let mut other_target = payment("10", TO);
    other_target["action"]["target"] = json!("other-bank");
    let mut other_operation = payment("10", TO);
    other_operation["action"]["operation"] = json!("PUT /v2/transfers");
    let mut no_amount = payment("10", TO);
    no_amount["context"]
        .as_object_mut()
        .unwrap()
        .remove("amount");
    for (what, body) in [
        ("over the cap", payment("100.01", TO)),
        (
            "another payee",
            payment("10", "FR76 3000 6000 0112 3456 7890 189"),
        ),
        ("another target", other_target),
        ("another operation", other_operation),
        ("no amount", no_amount),
    ] {
        let r = ask_any(&app, &agent, &body).await;
        assert_eq!(r["status"], "pending", "{what}: {r}");
    }

    // Each use is counted on the chain, linked to the standing approval and the ceremony
    // that created it.
    let covered_id = covered["id"].as_str().unwrap();
    let kinds = app.audit_kinds(covered_id).await;
    assert_eq!(
        kinds,
        [
            "request.created",
            "request.approved",
            "standing.used",
            "grant.issued"
        ]
    );
    let used = standing_events(&app, "standing.used").await;
    assert_eq!(used.len(), 1);
    assert_eq!(used[0]["data"]["standing_id"], standing_id);
    assert_eq!(used[0]["data"]["uses_left"], 2);
    assert_eq!(
        used[0]["data"]["ceremony_id"],
        created["data"]["ceremony_id"]
    );
    let recorded: Vec<Value> = app
        .audit_lines(&origin)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let approval = recorded
        .iter()
        .find(|e| e["kind"] == "approval.recorded")
        .unwrap();
    assert_eq!(
        approval["data"]["ceremony_id"],
        created["data"]["ceremony_id"]
    );
    assert_eq!(approval["data"]["terms"]["standing"]["uses"], 3);

    // Two more uses, then none.
    for left in [1, 0] {
        let r = ask_any(&app, &agent, &payment("1", TO)).await;
        assert_eq!(r["status"], "approved");
        let used = standing_events(&app, "standing.used").await;
        assert_eq!(used.last().unwrap()["data"]["uses_left"], left);
    }
    let r = ask_any(&app, &agent, &payment("1", TO)).await;
    assert_eq!(r["status"], "pending", "after the last use");

    // The owner's list says so.
    let list = alice
        .server_json(&app.http, "standing_approvals", &[])
        .await;
    assert_eq!(list[0]["uses_left"], 0);
    assert_eq!(list[0]["state"], "used_up");
}

async fn a_standing_approval_ends_with_its_time(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    app.core.apply_policy(STANDING_POLICY, "cli").await.unwrap();
    let origin = app.ask_id(&agent, &payment("50.00", TO)).await;
    approve_standing(&app, &mut alice, &origin, 5).await;
    assert_eq!(
        ask_any(&app, &agent, &payment("5", TO)).await["status"],
        "approved"
    );
    app.clock.advance_ms(601_000);
    assert_eq!(
        ask_any(&app, &agent, &payment("5", TO)).await["status"],
        "pending"
    );
    let list = alice
        .server_json(&app.http, "standing_approvals", &[])
        .await;
    assert_eq!(list[0]["state"], "expired");
    assert_eq!(list[0]["uses_left"], 4);
    // A day after it ran out it leaves the list (asked of the service: the browser session
    // would have ended by then).
    let who = app.signed_in(&alice).await;
    app.clock.advance_ms(86_400_000);
    assert!(app.core.standing_approvals(&who).await.unwrap().is_empty());
}

async fn standing_terms_beyond_the_rule_are_refused(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    app.core.apply_policy(STANDING_POLICY, "cli").await.unwrap();
    let id = app.ask_id(&agent, &payment("50.00", TO)).await;
    let standing = |s: Value| json!({ "decision": "approve", "standing": s });
    let cases = [
        (
            json!({ "uses": 11, "valid_for_seconds": 600, "amount_max": "10" }),
            "standing.uses",
        ),
        (
            json!({ "uses": 1, "valid_for_seconds": 3601, "amount_max": "10" }),
            "standing.valid_for_seconds",
        ),
        (
            json!({ "uses": 1, "valid_for_seconds": 600, "amount_max": "1000.00" }),
            "standing.amount_max",
        ),
        (
            json!({ "uses": 1, "valid_for_seconds": 600 }),
            "standing.amount_max",
        ),
        (
            json!({ "uses": 1, "valid_for_seconds": 600, "amount_max": "10", "pin": ["iban"] }),
            "standing.pin[0]",
        ),
    ];
    for (s, field) in cases {
        let r = alice
            .start_decision(&app.http, &id, &standing(s.clone()))
            .await;
        let p = problem(r, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert_eq!(p["field"], field, "{s}");
    }
    // A rule that two people approve cannot allow standing approvals at all.
    let err = app
        .core
        .apply_policy(
            &STANDING_POLICY.replace("approvals = 1", "approvals = 2"),
            "cli",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("standing_max_seconds"), "{err}");
    // A policy that no longer allows them, applied between start and finish, refuses the
    // approval: nothing is approved on terms the policy no longer allows.
    let start = alice
        .start_decision(
            &app.http,
            &id,
            &standing(json!({ "uses": 2, "valid_for_seconds": 600, "amount_max": "10" })),
        )
        .await;
    let start = json_of(start, StatusCode::OK).await;
    app.core
        .apply_policy(&STANDING_POLICY.replace("3600", "300"), "cli")
        .await
        .unwrap();
    let r = alice.finish_decision(&app.http, &id, &start).await;
    problem(r, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(app.request_status(&id).await, "pending");
}

/// 32 requests inside a one-use standing approval, all at once: exactly one is approved by it;
/// the others wait for a human.
async fn the_last_use_has_one_winner(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    app.core.apply_policy(STANDING_POLICY, "cli").await.unwrap();
    let origin = app.ask_id(&agent, &payment("50.00", TO)).await;
    approve_standing(&app, &mut alice, &origin, 1).await;
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (app, agent) = (app.clone(), agent.clone());
            tokio::spawn(async move {
                ask_any(&app, &agent, &payment(&format!("{}.00", i + 1), TO)).await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap()["status"].as_str().unwrap().to_string());
    }
    let approved = statuses.iter().filter(|s| *s == "approved").count();
    let pending = statuses.iter().filter(|s| *s == "pending").count();
    assert_eq!((approved, pending), (1, 31), "{statuses:?}");
    assert_eq!(standing_events(&app, "standing.used").await.len(), 1);
}

/// A revocation racing uses: every use that committed is counted, and none commits after the
/// revocation did (on the audit chain, every `standing.used` comes before `standing.revoked`).
async fn a_revocation_is_final_under_load(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    app.core.apply_policy(STANDING_POLICY, "cli").await.unwrap();
    let origin = app.ask_id(&agent, &payment("50.00", TO)).await;
    approve_standing(&app, &mut alice, &origin, 10).await;
    let standing_id = standing_events(&app, "standing.created").await[0]["data"]["standing_id"]
        .as_str()
        .unwrap()
        .to_string();
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let (app, agent) = (app.clone(), agent.clone());
            tokio::spawn(async move { ask_any(&app, &agent, &payment("1", TO)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    alice
        .server_json(&app.http, "revoke_standing", &[("id", &standing_id)])
        .await;
    // Once the revocation has answered, nothing more is approved by it.
    let after = ask_any(&app, &agent, &payment("1", TO)).await;
    assert_eq!(after["status"], "pending");
    let mut approved = 0;
    for t in tasks {
        if t.await.unwrap()["status"] == "approved" {
            approved += 1;
        }
    }
    let mut out = Vec::new();
    app.core.export_audit(None, &mut out).await.unwrap();
    let events: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seq = |e: &Value| e["seq"].as_i64().unwrap();
    let revoked = events
        .iter()
        .find(|e| e["kind"] == "standing.revoked")
        .map(seq)
        .unwrap();
    let uses: Vec<i64> = events
        .iter()
        .filter(|e| e["kind"] == "standing.used")
        .map(seq)
        .collect();
    assert_eq!(uses.len(), approved);
    assert!(
        uses.iter().all(|s| *s < revoked),
        "a use after the revocation"
    );
    let list = alice
        .server_json(&app.http, "standing_approvals", &[])
        .await;
    assert_eq!(list[0]["state"], "revoked");
    assert_eq!(list[0]["uses_left"], 10 - approved as i64);
}

async fn owners_revoke_and_others_cannot(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    app.core.apply_policy(STANDING_POLICY, "cli").await.unwrap();
    let origin = app.ask_id(&agent, &payment("50.00", TO)).await;
    approve_standing(&app, &mut alice, &origin, 5).await;
    let id = standing_events(&app, "standing.created").await[0]["data"]["standing_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Another owner neither sees nor revokes it.
    let mut carol = app.enrol("carol@example.com", "owner", &[]).await;
    let theirs = carol
        .server_json(&app.http, "standing_approvals", &[])
        .await;
    assert_eq!(theirs, json!([]));
    let r = carol
        .server_fn(&app.http, "revoke_standing", &[("id", &id)])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        ask_any(&app, &agent, &payment("5", TO)).await["status"],
        "approved"
    );

    alice
        .server_json(&app.http, "revoke_standing", &[("id", &id)])
        .await;
    assert_eq!(
        ask_any(&app, &agent, &payment("5", TO)).await["status"],
        "pending"
    );
    let again = alice
        .server_fn(&app.http, "revoke_standing", &[("id", &id)])
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let revoked = standing_events(&app, "standing.revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["data"]["reason"], "revoked_by_person");
}

/// The kill switch, a key change and a policy that no longer allows them each end standing
/// approvals in their own transaction.
async fn suspension_key_change_and_policy_end_them(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    app.core.apply_policy(STANDING_POLICY, "cli").await.unwrap();

    // Suspension.
    let origin = app.ask_id(&agent, &payment("50.00", TO)).await;
    approve_standing(&app, &mut alice, &origin, 5).await;
    app.core.suspend_agent(&agent.id, "cli").await.unwrap();
    app.core.resume_agent(&agent.id, "cli").await.unwrap();
    assert_eq!(
        ask_any(&app, &agent, &payment("5", TO)).await["status"],
        "pending"
    );

    // A key change.
    let origin = app.ask_id(&agent, &payment("51.00", TO)).await;
    approve_standing(&app, &mut alice, &origin, 5).await;
    let rotated = app.core.rotate_api_key(&agent.id, "cli").await.unwrap();
    let agent = Agent {
        id: agent.id.clone(),
        bearer: rotated.api_key.expose().to_string(),
    };
    assert_eq!(
        ask_any(&app, &agent, &payment("5", TO)).await["status"],
        "pending"
    );

    // A policy that allows shorter standing approvals than this one.
    let origin = app.ask_id(&agent, &payment("52.00", TO)).await;
    approve_standing(&app, &mut alice, &origin, 5).await;
    assert_eq!(
        ask_any(&app, &agent, &payment("5", TO)).await["status"],
        "approved"
    );
    app.core
        .apply_policy(&STANDING_POLICY.replace("3600", "300"), "cli")
        .await
        .unwrap();
    assert_eq!(
        ask_any(&app, &agent, &payment("5", TO)).await["status"],
        "pending"
    );

    let reasons: Vec<Value> = standing_events(&app, "standing.revoked")
        .await
        .iter()
        .map(|e| e["data"]["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        [
            json!("agent_suspended"),
            json!("key_changed"),
            json!("policy_changed")
        ]
    );
}

/// A sub-agent may use its parent's standing approval only inside it; suspending the parent
/// ends it (and suspends the sub-agent).
async fn a_sub_agent_uses_its_parents_standing_approval_never_wider(backend: Backend) {
    let (app, mut alice, parent) = TestApp::with_alice(backend).await;
    app.core.apply_policy(STANDING_POLICY, "cli").await.unwrap();
    let child = app.agent("alice@example.com").await;
    let stranger = app.agent("alice@example.com").await;
    app.core
        .set_parent(&child.id, Some(&parent.id), "cli")
        .await
        .unwrap();
    let origin = app.ask_id(&parent, &payment("50.00", TO)).await;
    approve_standing(&app, &mut alice, &origin, 5).await;

    let inside = ask_any(&app, &child, &payment("20", TO)).await;
    assert_eq!(inside["status"], "approved", "{inside}");
    let c = claims(inside["grant"]["token"].as_str().unwrap());
    assert_eq!(c["sub"], child.id, "the grant is the sub-agent's own");
    assert!(c.get("standing_approval").is_some());
    for (what, body) in [
        ("over the cap", payment("100.01", TO)),
        (
            "another payee",
            payment("20", "FR76 3000 6000 0112 3456 7890 189"),
        ),
    ] {
        let r = ask_any(&app, &child, &body).await;
        assert_eq!(r["status"], "pending", "{what}: {r}");
    }
    // An agent that is not its sub-agent gets nothing from it.
    assert_eq!(
        ask_any(&app, &stranger, &payment("20", TO)).await["status"],
        "pending"
    );
    // The parent's suspension ends it, and the sub-agent is suspended with it.
    app.core.suspend_agent(&parent.id, "cli").await.unwrap();
    let r = app
        .agent_post(&child, "/api/v1/requests", &payment("20", TO))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let list = alice
        .server_json(&app.http, "standing_approvals", &[])
        .await;
    assert_eq!(list[0]["state"], "revoked");
}

on_both_backends!(
    the_rust_client_redeems_a_narrowed_grant_within_its_cap,
    a_sub_agent_uses_its_parents_standing_approval_never_wider,
    a_narrowed_approval_is_bound_carried_and_enforced,
    narrowing_never_widens,
    a_quorum_grant_takes_the_tightest_terms,
    a_standing_approval_covers_its_pattern_and_nothing_wider,
    a_standing_approval_ends_with_its_time,
    standing_terms_beyond_the_rule_are_refused,
    the_last_use_has_one_winner,
    a_revocation_is_final_under_load,
    owners_revoke_and_others_cannot,
    suspension_key_change_and_policy_end_them,
);
