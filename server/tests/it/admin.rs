//! Admin-only pages and server functions: owners get 403, signed-out visitors are sent to sign
//! in, and admins can read and change the fatigue guards from the browser.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

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

mod policy {
    use super::common::{transfer, Backend, TestApp};
    use reqwest::StatusCode;
    use serde_json::Value;

    const SMALL: &str = "[[rule]]\nid = \"small-payments\"\naction = \"payments.*\"\namount_below = { value = \"100.00\", currency = \"EUR\" }\noutcome = \"allow\"\n";
    const SMALLER: &str = "[[rule]]\nid = \"small-payments\"\naction = \"payments.*\"\namount_below = { value = \"10.00\", currency = \"EUR\" }\noutcome = \"allow\"\n";

    async fn admins_see_each_version_with_its_diff_and_roll_back(backend: Backend) {
        let (app, mut alice, agent) = TestApp::with_alice(backend).await;
        app.core.apply_policy(SMALL, "cli").await.unwrap();
        let (v2, _) = app.core.apply_policy(SMALLER, "cli").await.unwrap();
        assert_eq!(v2, 2);
        let versions: Vec<Value> = serde_json::from_value(
            alice
                .server_json(&app.http, "admin/policy_history", &[])
                .await,
        )
        .unwrap();
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[0]["version"], 2);
        assert_eq!(versions[0]["active"], true);
        let diff = versions[0]["diff"].as_array().unwrap();
        let changed: Vec<(&str, &str)> = diff
            .iter()
            .filter(|l| l["op"] != "same")
            .map(|l| (l["op"].as_str().unwrap(), l["line"].as_str().unwrap()))
            .collect();
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert_eq!(changed[0].0, "removed");
        assert!(changed[0].1.contains("100.00"));
        assert_eq!(changed[1].0, "added");
        assert!(changed[1].1.contains("10.00"));
        // 50 EUR needs a human under version 2 ...
        let r = app
            .agent_post(&agent, "/api/v1/requests", &transfer("50.00"))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        // ... and is allowed again after rolling back to version 1, as version 3.
        let v3 = alice
            .server_json(&app.http, "admin/rollback_policy", &[("version", "1")])
            .await;
        assert_eq!(v3, 3);
        let r = app
            .agent_post(&agent, "/api/v1/requests", &transfer("50.00"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let v1 = &versions[1];
        assert_eq!(v1["version"], 1);
        let now_active: Vec<Value> = serde_json::from_value(
            alice
                .server_json(&app.http, "admin/policy_history", &[])
                .await,
        )
        .unwrap();
        assert_eq!(
            now_active[0]["hash"], v1["hash"],
            "version 3 is version 1 again"
        );
        let r = alice
            .server_fn(&app.http, "admin/rollback_policy", &[("version", "9")])
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        // Owners get 403; the page too.
        let mut bob = app.enrol("bob@example.com", "owner", &[]).await;
        let r = bob.server_fn(&app.http, "admin/policy_history", &[]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = bob
            .server_fn(&app.http, "admin/rollback_policy", &[("version", "2")])
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            bob.get(&app.http, "/admin/policy").await.status(),
            StatusCode::FORBIDDEN
        );
        let page = alice
            .get(&app.http, "/admin/policy")
            .await
            .text()
            .await
            .unwrap();
        assert!(page.contains("Version 3") && page.contains("Roll back to version 1"));
    }

    crate::on_both_backends!(admins_see_each_version_with_its_diff_and_roll_back);
}
