//! People, as admins manage them: the list with passkeys and last sign-in, role and group
//! changes, and deactivation, which ends the person's sessions and live inbox at once and stops
//! their passkey from signing in or approving. There is always one active admin left.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{transfer, Backend, Person, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use webauthn_authenticator_rs::WebauthnAuthenticator;

async fn people(app: &TestApp, admin: &mut Person) -> Vec<Value> {
    serde_json::from_value(admin.server_json(&app.http, "admin/people", &[]).await).unwrap()
}

fn find<'a>(list: &'a [Value], email: &str) -> &'a Value {
    list.iter()
        .find(|p| p["email"] == email)
        .unwrap_or_else(|| panic!("{email} not listed in {list:?}"))
}

/// Starts a sign-in for `person` (forgetting their session) and answers it with their
/// passkey; None when the server offered none of their passkeys.
async fn sign_in_answer(app: &TestApp, person: &mut Person) -> Option<Value> {
    person.cookie = None;
    let email = person.email.clone();
    let start: Value = person
        .post(
            &app.http,
            "/api/ui/sign-in/start",
            &json!({ "email": email }),
        )
        .await
        .json()
        .await
        .unwrap();
    let cred = person
        .authenticator
        .do_authentication(
            person.origin.clone(),
            serde_json::from_value(start["options"].clone()).unwrap(),
        )
        .ok()?;
    Some(json!({ "ceremony_id": start["ceremony_id"], "credential": cred }))
}

async fn finish_sign_in(app: &TestApp, person: &mut Person, answer: &Value) -> reqwest::Response {
    person
        .post(&app.http, "/api/ui/sign-in/finish", answer)
        .await
}

/// Signs `person` in again with their passkey; returns the finish response.
async fn sign_in(app: &TestApp, person: &mut Person) -> reqwest::Response {
    let answer = sign_in_answer(app, person).await.expect("passkey offered");
    finish_sign_in(app, person, &answer).await
}

async fn only_admins_manage_people(backend: Backend) {
    let (app, _alice, _agent) = TestApp::with_alice(backend).await;
    let mut bob = app.enrol("bob@example.com", "owner", &[]).await;
    let bob_id = bob.id.clone();
    for (name, args) in [
        ("admin/people", vec![]),
        (
            "admin/update_person",
            vec![("id", bob_id.as_str()), ("role", "admin"), ("groups", "")],
        ),
        (
            "admin/set_person_active",
            vec![("id", bob_id.as_str()), ("active", "false")],
        ),
    ] {
        let r = bob.server_fn(&app.http, name, &args).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name} as an owner");
        let r = app.stranger().server_fn(&app.http, name, &args).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name} signed out");
    }
    let me: Value = bob.get(&app.http, "/api/ui/me").await.json().await.unwrap();
    assert_eq!(me["role"], "owner", "bob did not promote himself");
}

async fn admins_see_everyone_and_change_roles_and_groups(backend: Backend) {
    let (app, mut alice, _agent) = TestApp::with_alice(backend).await;
    let mut bob = app.enrol("bob@example.com", "owner", &["sre"]).await;
    let list = people(&app, &mut alice).await;
    let b = find(&list, "bob@example.com");
    assert_eq!(b["role"], "owner");
    assert_eq!(b["groups"], json!(["sre"]));
    assert_eq!(b["active"], true);
    assert_eq!(b["passkeys"].as_array().unwrap().len(), 1);
    assert!(
        b["passkeys"][0]["name"].is_string() && b["passkeys"][0]["created_at"].is_i64(),
        "{b}"
    );
    assert!(b["passkeys"][0].get("passkey").is_none(), "no key material");
    // Enrolling signs in; signing in again later moves the time on.
    let enrolled = b["last_sign_in_at"].as_i64().expect("enrolling signs in");
    app.clock.advance_ms(60_000);
    assert_eq!(sign_in(&app, &mut bob).await.status(), StatusCode::OK);
    let list = people(&app, &mut alice).await;
    let later = find(&list, "bob@example.com")["last_sign_in_at"]
        .as_i64()
        .unwrap();
    assert!(later >= enrolled + 60_000, "{enrolled} then {later}");

    // Promote bob and move him to finance.
    let updated = alice
        .server_json(
            &app.http,
            "admin/update_person",
            &[
                ("id", &bob.id),
                ("role", "admin"),
                ("groups", "finance, finance , sre"),
            ],
        )
        .await;
    assert_eq!(updated["role"], "admin");
    assert_eq!(updated["groups"], json!(["finance", "sre"]));
    let r = bob.server_fn(&app.http, "admin/guards", &[]).await;
    assert_eq!(r.status(), StatusCode::OK, "bob is an admin now");
    assert!(app.all_audit_kinds().await.contains(&"user.updated".into()));

    // Bad input names the field and changes nothing.
    for (args, field) in [
        (
            [("id", bob.id.as_str()), ("role", "root"), ("groups", "")],
            "role",
        ),
        (
            [
                ("id", bob.id.as_str()),
                ("role", "owner"),
                ("groups", "Finance!"),
            ],
            "groups",
        ),
    ] {
        let r = alice
            .server_fn(&app.http, "admin/update_person", &args)
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{args:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["Invalid"]["field"], field);
    }
    let r = alice
        .server_fn(
            &app.http,
            "admin/update_person",
            &[("id", "nobody"), ("role", "owner"), ("groups", "")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let list = people(&app, &mut alice).await;
    assert_eq!(find(&list, "bob@example.com")["role"], "admin");
}

async fn deactivation_ends_sessions_streams_and_approvals_at_once(backend: Backend) {
    let (app, mut alice, _agent) = TestApp::with_alice(backend).await;
    let mut bob = app.enrol("bob@example.com", "owner", &[]).await;
    let bobs_agent = app.agent("bob@example.com").await;
    let id = app.ask_id(&bobs_agent, &transfer("50.00")).await;
    // Bob has the request open, a decision under way, and his live inbox streaming.
    let started: Value = bob
        .start_decision(&app.http, &id, &json!({ "decision": "approve" }))
        .await
        .json()
        .await
        .unwrap();
    let mut stream = bob.get(&app.http, "/api/ui/events").await;
    assert_eq!(stream.status(), StatusCode::OK);
    // And, in another browser, a sign-in answered but not yet finished.
    let session = bob.cookie.clone();
    let answer = sign_in_answer(&app, &mut bob).await.unwrap();
    let elsewhere = bob.cookie.take();
    bob.cookie = session;

    let r = alice
        .server_fn(
            &app.http,
            "admin/set_person_active",
            &[("id", &bob.id), ("active", "false")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // The stream closes (it may first say "changed"), without waiting for a reconnect.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            assert!(String::from_utf8_lossy(&chunk).contains("changed"));
        }
    })
    .await;
    assert!(closed.is_ok(), "the live inbox closes within 10 s");
    assert_eq!(
        bob.server_fn(&app.http, "inbox", &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        bob.finish_decision(&app.http, &id, &started).await.status(),
        StatusCode::UNAUTHORIZED,
        "the approval under way cannot finish"
    );
    assert_eq!(app.request_status(&id).await, "pending");
    bob.cookie = elsewhere;
    assert_eq!(
        finish_sign_in(&app, &mut bob, &answer).await.status(),
        StatusCode::FORBIDDEN,
        "the passkey no longer signs in"
    );
    assert!(
        sign_in_answer(&app, &mut bob).await.is_none(),
        "nor is it offered for his address"
    );
    let list = people(&app, &mut alice).await;
    assert_eq!(find(&list, "bob@example.com")["active"], false);
    assert!(app
        .all_audit_kinds()
        .await
        .contains(&"user.deactivated".into()));

    // Deactivating again is a no-op; reactivating lets bob sign in again.
    for active in ["false", "true"] {
        let r = alice
            .server_fn(
                &app.http,
                "admin/set_person_active",
                &[("id", &bob.id), ("active", active)],
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(sign_in(&app, &mut bob).await.status(), StatusCode::OK);
    assert_eq!(
        bob.server_fn(&app.http, "inbox", &[]).await.status(),
        StatusCode::OK
    );
}

async fn there_is_always_an_active_admin(backend: Backend) {
    let (app, mut alice, _agent) = TestApp::with_alice(backend).await;
    let alice_id = alice.id.clone();
    let r = alice
        .server_fn(
            &app.http,
            "admin/set_person_active",
            &[("id", &alice_id), ("active", "false")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT, "not yourself");
    let r = alice
        .server_fn(
            &app.http,
            "admin/update_person",
            &[("id", &alice_id), ("role", "owner"), ("groups", "")],
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CONFLICT,
        "the last admin stays admin"
    );

    // With a second admin, either may step down, but not both.
    let mut carol = app.enrol("carol@example.com", "admin", &[]).await;
    let carol_id = carol.id.clone();
    let a = [("id", alice_id.as_str()), ("role", "owner"), ("groups", "")];
    let c = [("id", carol_id.as_str()), ("role", "owner"), ("groups", "")];
    let (ra, rc) = tokio::join!(
        alice.server_fn(&app.http, "admin/update_person", &c),
        carol.server_fn(&app.http, "admin/update_person", &a),
    );
    let statuses = [ra.status(), rc.status()];
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "of two admins demoting each other, one wins: {statuses:?}"
    );
    // The loser is refused as the last admin (409), or as no longer an admin (403) when the
    // winner committed before its session was read.
    assert!(
        statuses.contains(&StatusCode::CONFLICT) || statuses.contains(&StatusCode::FORBIDDEN),
        "{statuses:?}"
    );
    let list = people(
        &app,
        if ra.status() == StatusCode::OK {
            &mut alice
        } else {
            &mut carol
        },
    )
    .await;
    let admins = list.iter().filter(|p| p["role"] == "admin").count();
    assert_eq!(admins, 1);
}

on_both_backends!(
    only_admins_manage_people,
    admins_see_everyone_and_change_roles_and_groups,
    deactivation_ends_sessions_streams_and_approvals_at_once,
    there_is_always_an_active_admin,
);
