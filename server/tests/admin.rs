//! Admin-only pages and server functions: owners get 403, signed-out visitors are sent to sign
//! in, and admins can read and change the fatigue guards from the browser.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::Value;

const GUARDS: &[(&str, &str)] = &[
    ("guards[max_pending_per_agent]", "3"),
    ("guards[prompts_per_approver_per_minute]", "5"),
    ("guards[deny_cooldown_seconds]", "60"),
    ("guards[approve_delay_ms]", "2000"),
    ("guards[collapse_identical]", "true"),
];

async fn owners_get_403_and_strangers_are_sent_to_sign_in(backend: Backend) {
    let (app, _alice, _agent) = TestApp::with_alice(backend).await;
    let mut bob = app.enrol("bob@example.com", "owner", &[]).await;
    for (name, args) in [
        ("admin/guards", &[][..]),
        ("admin/set_guards", GUARDS),
        (
            "invite",
            &[
                ("email", "x@example.com"),
                ("role", "admin"),
                ("groups", ""),
            ][..],
        ),
    ] {
        let r = bob.server_fn(&app.http, name, args).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name} as an owner");
        let r = app.stranger().server_fn(&app.http, name, args).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name} signed out");
    }
    for page in ["/admin/guards", "/admin/people"] {
        let r = bob.get(&app.http, page).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{page} as an owner");
        let r = app
            .http
            .get(app.url(page))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{page} signed out");
        assert_eq!(r.headers()["location"], format!("/sign-in?next={page}"));
    }
    assert_eq!(
        app.core.guards().await.unwrap().approve_delay_ms,
        0,
        "nothing changed"
    );
}

async fn admins_change_the_guards_from_the_browser(backend: Backend) {
    let (app, mut alice, _agent) = TestApp::with_alice(backend).await;
    let r = alice.server_fn(&app.http, "admin/set_guards", GUARDS).await;
    assert_eq!(r.status(), StatusCode::OK);
    let g: Value = alice.server_json(&app.http, "admin/guards", &[]).await;
    assert_eq!(g["max_pending_per_agent"], 3);
    assert_eq!(g["approve_delay_ms"], 2000);
    let mut bad = GUARDS.to_vec();
    bad[0] = ("guards[max_pending_per_agent]", "0");
    let r = alice.server_fn(&app.http, "admin/set_guards", &bad).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["Invalid"]["field"], "max_pending_per_agent");
    let r = alice.get(&app.http, "/admin/guards").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("approval fatigue"));
}

on_both_backends!(
    owners_get_403_and_strangers_are_sent_to_sign_in,
    admins_change_the_guards_from_the_browser,
);
