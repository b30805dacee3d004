//! Races with exactly one winner, ceremonies that cannot be replayed or moved to another
//! request, and an audit chain that names the row someone edited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{problem, transfer, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use webauthn_authenticator_rs::WebauthnAuthenticator;

const TERMINAL: [&str; 4] = [
    "\"request.approved\"",
    "\"request.denied\"",
    "\"request.cancelled\"",
    "\"request.expired\"",
];

async fn terminal_events(app: &TestApp, id: &str) -> usize {
    let lines = app.audit_lines(id).await;
    lines
        .iter()
        .filter(|l| TERMINAL.iter().any(|k| l.contains(k)))
        .count()
}

async fn approve_deny_cancel_race_has_one_winner(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut alice = app.enrol_first_admin("alice@example.com").await;
    let mut bob = app.enrol("bob@example.com", "admin", &[]).await;
    let agent = app.agent("alice@example.com").await;
    app.core
        .apply_policy("[[rule]]\nid = \"either\"\noutcome = \"require\"\napprovals = 1\napprovers = [\"owner\", \"admins\"]\n", "test")
        .await
        .unwrap();
    for round in 0..5 {
        let id = app.ask_id(&agent, &transfer(&format!("{round}.00"))).await;
        let a: Value = alice
            .start_decision(&app.http, &id, &json!({ "decision": "approve" }))
            .await
            .json()
            .await
            .unwrap();
        let d: Value = bob
            .start_decision(
                &app.http,
                &id,
                &json!({ "decision": "deny", "reason_code": "too_risky" }),
            )
            .await
            .json()
            .await
            .unwrap();
        let cancel_path = format!("/api/v1/requests/{id}/cancel");
        let empty = json!({});
        let (ra, rd, rc) = tokio::join!(
            alice.finish_decision(&app.http, &id, &a),
            bob.finish_decision(&app.http, &id, &d),
            app.agent_post(&agent, &cancel_path, &empty),
        );
        let statuses = [ra.status(), rd.status(), rc.status()];
        assert_eq!(
            statuses.iter().filter(|s| **s == StatusCode::OK).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses
                .iter()
                .all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT),
            "round {round}: {statuses:?}"
        );
        let row = countersign::store::requests::get(app.core.db.reader(), &id)
            .await
            .unwrap()
            .unwrap();
        assert!(["approved", "denied", "cancelled"].contains(&row.status.as_str()));
        assert_eq!(terminal_events(&app, &id).await, 1, "round {round}");
        let grants = countersign::store::grants::for_request(app.core.db.reader(), &id)
            .await
            .unwrap();
        assert_eq!(grants.is_some(), row.status.as_str() == "approved");
    }
}

async fn expiry_beats_a_late_approval(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("1.00")).await;
    let start: Value = alice
        .start_decision(&app.http, &id, &json!({ "decision": "approve" }))
        .await
        .json()
        .await
        .unwrap();
    app.clock.advance_ms(300_000);
    let core = app.core.clone();
    let (finish, swept) = tokio::join!(alice.finish_decision(&app.http, &id, &start), core.sweep());
    swept.unwrap();
    problem(finish, StatusCode::GONE, "expired_token").await;
    let row = countersign::store::requests::get(app.core.db.reader(), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status.as_str(), "expired");
    assert_eq!(terminal_events(&app, &id).await, 1);
    assert!(
        countersign::store::grants::for_request(app.core.db.reader(), &id)
            .await
            .unwrap()
            .is_none()
    );
}

async fn assertions_cannot_be_replayed_or_moved(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    app.core
        .apply_policy("[[rule]]\nid = \"two\"\noutcome = \"require\"\napprovals = 2\napprovers = [\"owner\", \"admins\"]\n", "test")
        .await
        .unwrap();
    let first = app.ask_id(&agent, &transfer("1.00")).await;
    let second = app.ask_id(&agent, &transfer("2.00")).await;

    // Answer the first request's challenge, then present that answer as the second's.
    let s1: Value = alice
        .start_decision(&app.http, &first, &json!({ "decision": "approve" }))
        .await
        .json()
        .await
        .unwrap();
    let s2: Value = alice
        .start_decision(&app.http, &second, &json!({ "decision": "approve" }))
        .await
        .json()
        .await
        .unwrap();
    let options = serde_json::from_value(s1["options"].clone()).unwrap();
    let answer_for_first = alice
        .authenticator
        .do_authentication(alice.origin.clone(), options)
        .unwrap();
    let moved = alice
        .post(
            &app.http,
            &format!("/api/ui/requests/{second}/decision/finish"),
            &json!({ "ceremony_id": s2["ceremony_id"], "credential": answer_for_first }),
        )
        .await;
    problem(moved, StatusCode::FORBIDDEN, "access_denied").await;
    // The second ceremony was consumed by that attempt: it cannot be retried.
    problem(
        alice.finish_decision(&app.http, &second, &s2).await,
        StatusCode::GONE,
        "expired_token",
    )
    .await;

    // The legitimate answer to the first works once; replaying it is refused.
    let body = json!({ "ceremony_id": s1["ceremony_id"], "credential": answer_for_first });
    let ok = alice
        .post(
            &app.http,
            &format!("/api/ui/requests/{first}/decision/finish"),
            &body,
        )
        .await;
    assert_eq!(
        common::json_of(ok, StatusCode::OK).await["approvals"],
        json!({ "required": 2, "received": 1 })
    );
    problem(
        alice
            .post(
                &app.http,
                &format!("/api/ui/requests/{first}/decision/finish"),
                &body,
            )
            .await,
        StatusCode::GONE,
        "expired_token",
    )
    .await;
    // Approving twice does not count twice.
    problem(
        alice
            .start_decision(&app.http, &first, &json!({ "decision": "approve" }))
            .await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    // Another session of the same person cannot finish this session's ceremony.
    let s3: Value = alice
        .start_decision(&app.http, &second, &json!({ "decision": "approve" }))
        .await
        .json()
        .await
        .unwrap();
    let mine = alice.cookie.take();
    let signin: Value = alice
        .post(
            &app.http,
            "/api/ui/sign-in/start",
            &json!({ "email": "alice@example.com" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let cred = alice
        .authenticator
        .do_authentication(
            alice.origin.clone(),
            serde_json::from_value(signin["options"].clone()).unwrap(),
        )
        .unwrap();
    let r = alice
        .post(
            &app.http,
            "/api/ui/sign-in/finish",
            &json!({ "ceremony_id": signin["ceremony_id"], "credential": cred }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(alice.cookie, mine, "sign-in issues a new session id");
    problem(
        alice.finish_decision(&app.http, &second, &s3).await,
        StatusCode::FORBIDDEN,
        "access_denied",
    )
    .await;
}

async fn quorum_needs_distinct_eligible_people(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut alice = app.enrol_first_admin("alice@example.com").await;
    let mut fin = app.enrol("fin@example.com", "owner", &["finance"]).await;
    let mut other = app.enrol("other@example.com", "owner", &["sre"]).await;
    let agent = app.agent("alice@example.com").await;
    app.core
        .apply_policy(
            "[[rule]]\nid = \"large\"\naction = \"payments.*\"\namount_at_least = { value = \"10000.00\", currency = \"EUR\" }\noutcome = \"require\"\napprovals = 2\napprovers = [\"owner\", \"group:finance\"]\nall_groups = true\n",
            "test",
        )
        .await
        .unwrap();
    let id = app.ask_id(&agent, &transfer("10000.00")).await;
    // Not eligible: someone outside owner and finance.
    problem(
        other
            .start_decision(&app.http, &id, &json!({ "decision": "approve" }))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(alice.approve(&app.http, &id).await["status"], "pending");
    let done = fin.approve(&app.http, &id).await;
    assert_eq!(done["status"], "approved");
    assert_eq!(done["approvals"], json!({ "required": 2, "received": 2 }));
}

/// An approval given by someone deactivated before the quorum was met does not count, and the
/// evidence says so: the grant's `approvers` claim and the `request.approved` event name only
/// the people whose approvals made the quorum.
async fn approvals_of_deactivated_people_neither_count_nor_appear_in_the_grant(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut alice = app.enrol_first_admin("alice@example.com").await;
    let mut fin1 = app.enrol("fin1@example.com", "owner", &["finance"]).await;
    let mut fin2 = app.enrol("fin2@example.com", "owner", &["finance"]).await;
    let mut fin3 = app.enrol("fin3@example.com", "owner", &["finance"]).await;
    let agent = app.agent("alice@example.com").await;
    app.core
        .apply_policy(
            "[[rule]]\nid = \"finance\"\naction = \"payments.*\"\noutcome = \"require\"\napprovals = 2\napprovers = [\"group:finance\"]\n",
            "test",
        )
        .await
        .unwrap();
    let id = app.ask_id(&agent, &transfer("10.00")).await;
    assert_eq!(fin1.approve(&app.http, &id).await["status"], "pending");
    let r = alice
        .server_fn(
            &app.http,
            "admin/set_person_active",
            &[("id", &fin1.id), ("active", "false")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        fin2.approve(&app.http, &id).await["status"],
        "pending",
        "fin1's approval no longer counts"
    );
    assert_eq!(fin3.approve(&app.http, &id).await["status"], "approved");

    let counted = json!([fin2.id, fin3.id]);
    let approved = app
        .audit_lines(&id)
        .await
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["kind"] == "request.approved")
        .expect("a request.approved event");
    assert_eq!(approved["data"]["approvers"], counted);
    let token = app.state(&agent, &id).await["grant"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let claims: Value = {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["approvers"], counted);
}

async fn editing_an_audit_row_breaks_verify_at_that_row(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("1.00")).await;
    alice.approve(&app.http, &id).await;
    let intact = app.core.verify_audit().await.unwrap();
    let total = match intact {
        countersign::service::audit::Verification::Intact { events, .. } => events,
        broken => panic!("{broken:?}"),
    };
    for victim in [1, total / 2, total] {
        let (original,): (String,) = sqlx::query_as("SELECT data FROM audit_events WHERE seq = $1")
            .bind(victim)
            .fetch_one(app.core.db.reader())
            .await
            .unwrap();
        sqlx::query("UPDATE audit_events SET data = $1 WHERE seq = $2")
            .bind(r#"{"edited":true}"#)
            .bind(victim)
            .execute(app.core.db.writer())
            .await
            .unwrap();
        match app.core.verify_audit().await.unwrap() {
            countersign::service::audit::Verification::Broken(b) => assert_eq!(b.seq, victim),
            ok => panic!("edit of event {victim} went unnoticed: {ok:?}"),
        }
        sqlx::query("UPDATE audit_events SET data = $1 WHERE seq = $2")
            .bind(original)
            .bind(victim)
            .execute(app.core.db.writer())
            .await
            .unwrap();
    }
    // Deleting the last event is noticed too (the head no longer matches).
    sqlx::query("DELETE FROM audit_events WHERE seq = $1")
        .bind(total)
        .execute(app.core.db.writer())
        .await
        .unwrap();
    assert!(
        matches!(app.core.verify_audit().await.unwrap(), countersign::service::audit::Verification::Broken(b) if b.seq == total)
    );
}

on_both_backends!(
    approve_deny_cancel_race_has_one_winner,
    expiry_beats_a_late_approval,
    assertions_cannot_be_replayed_or_moved,
    quorum_needs_distinct_eligible_people,
    approvals_of_deactivated_people_neither_count_nor_appear_in_the_grant,
    editing_an_audit_row_breaks_verify_at_that_row,
);
