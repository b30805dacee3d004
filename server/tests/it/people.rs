//! People: enrolment links work once, sign-in reveals nothing about who exists, and signing
//! out ends the session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{problem, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn enrolment_links_work_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let invite = app
        .core
        .invite(
            "carol@example.com",
            "owner",
            &["finance".to_string()],
            "test",
        )
        .await
        .unwrap();
    let link = invite.link.expose().to_string();
    let carol = app.enrol_with_link(&link, None, "Carol").await;
    let me: Value = app
        .http
        .get(app.url("/api/ui/me"))
        .header("cookie", carol.cookie.clone().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "carol@example.com");
    assert_eq!(me["groups"], json!(["finance"]));
    // The same link again: refused, nothing created.
    let token = link.rsplit('/').next().unwrap();
    let again = app
        .http
        .post(app.url("/api/ui/enrol/start"))
        .json(&json!({ "token": token, "display_name": "Mallory", "passkey_name": "x" }))
        .send()
        .await
        .unwrap();
    problem(again, StatusCode::GONE, "expired_token").await;
    // The first-admin link stops being offered once an admin exists.
    app.enrol_first_admin("admin@example.com").await;
    assert!(app.core.bootstrap_admin_link().await.unwrap().is_none());
}

async fn sign_in_reveals_nothing_and_sign_out_ends_the_session(backend: Backend) {
    let (app, mut alice, _agent) = TestApp::with_alice(backend).await;
    // Known and unknown addresses both get a challenge to answer.
    for email in ["alice@example.com", "nobody@example.com"] {
        let r = app
            .http
            .post(app.url("/api/ui/sign-in/start"))
            .json(&json!({ "email": email }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{email}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["options"]["publicKey"]["challenge"].is_string(),
            "{email}"
        );
    }
    assert_eq!(
        alice.get(&app.http, "/api/ui/me").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        alice
            .post(&app.http, "/api/ui/sign-out", &json!({}))
            .await
            .status(),
        StatusCode::OK
    );
    problem(
        alice.get(&app.http, "/api/ui/me").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}

on_both_backends!(
    enrolment_links_work_once,
    sign_in_reveals_nothing_and_sign_out_ends_the_session
);
