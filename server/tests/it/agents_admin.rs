//! Admins managing every agent from the browser: the list of all agents with their owners, the
//! kill switch for anyone's agent, rotating an API key and registering a public key, each of
//! which retires the old credential at once (on every replica) and lands on the audit chain
//! without the secret. Owners get 403 on every one of these, signed-out callers 401.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{problem, transfer, Agent, Backend, Person, TestApp};
use countersign::domain::jose::GrantSigningKey;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// An admin (alice, who owns one API-key agent) and an owner (bob) with an API-key agent of
/// his own.
async fn alice_and_bob(backend: Backend) -> (TestApp, Person, Agent, Person, Agent) {
    let (app, alice, alice_agent) = TestApp::with_alice(backend).await;
    let bob = app.enrol("bob@example.com", "owner", &[]).await;
    let bob_agent = app.agent("bob@example.com").await;
    (app, alice, alice_agent, bob, bob_agent)
}

async fn list(app: &TestApp, admin: &mut Person) -> Vec<Value> {
    serde_json::from_value(admin.server_json(&app.http, "admin/agents", &[]).await).unwrap()
}

fn row<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("agent {id} missing from {list:?}"))
}

/// A signed assertion for a key-bound agent, as the agent API expects it.
fn assertion(app: &TestApp, key: &GrantSigningKey, agent_id: &str, jti: &str) -> String {
    let now = app.core.clock.now_secs();
    key.sign_compact(
        "JWT",
        &json!({ "iss": agent_id, "sub": agent_id, "aud": app.base, "iat": now, "exp": now + 30, "jti": jti }),
    )
    .unwrap()
}

async fn post_with(app: &TestApp, bearer: &str) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/requests"))
        .bearer_auth(bearer)
        .json(&transfer("1.00"))
        .send()
        .await
        .unwrap()
}

async fn admins_see_every_agent_with_its_owner_key_type_and_activity(backend: Backend) {
    let (app, mut alice, alice_agent, _bob, bob_agent) = alice_and_bob(backend).await;
    let key = GrantSigningKey::generate(&mut rand_core::OsRng);
    let jwk = serde_json::to_string(&key.public_jwk()).unwrap();
    let signer = app
        .core
        .create_agent("signer", "bob@example.com", Some(&jwk), "test")
        .await
        .unwrap();
    let before = app.core.now();
    app.ask_id(&alice_agent, &transfer("5.00")).await;
    let after = app.core.now();

    let all = list(&app, &mut alice).await;
    assert_eq!(all.len(), 3, "{all:?}");
    let a = row(&all, &alice_agent.id);
    assert_eq!(a["owner_email"], "alice@example.com");
    assert_eq!(a["owner_name"], "Ada Admin");
    assert_eq!(a["status"], "active");
    assert_eq!(a["key_type"], "api_key");
    let seen = a["last_seen_at"]
        .as_i64()
        .expect("its request counts as activity");
    assert!(
        (before..=after).contains(&seen),
        "{before} <= {seen} <= {after}"
    );
    assert_eq!(a["pending_requests"], 1);
    assert!(a["jkt"].is_null());
    let b = row(&all, &bob_agent.id);
    assert_eq!(b["owner_email"], "bob@example.com");
    assert_eq!(b["key_type"], "api_key");
    assert!(b["last_seen_at"].is_null(), "never active");
    assert_eq!(b["pending_requests"], 0);
    let s = row(&all, &signer.id);
    assert_eq!(s["owner_email"], "bob@example.com");
    assert_eq!(s["key_type"], "public_key");
    assert_eq!(s["jkt"], key.public_jwk().thumbprint());
    for a in &all {
        assert!(a.get("api_key_hash").is_none() && a.get("public_jwk").is_none());
    }

    // The page renders for the admin.
    let page = alice.get(&app.http, "/admin/agents").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("All agents") && html.contains("bob@example.com"));
}

async fn rotating_a_key_retires_the_old_one_on_every_replica(backend: Backend) {
    let (app, mut alice, _alice_agent, mut bob, bob_agent) = alice_and_bob(backend).await;
    let other = app.replica().await;
    // An approved request whose grant the agent holds but has not redeemed yet.
    let id = app.ask_id(&bob_agent, &transfer("5.00")).await;
    bob.approve(&app.http, &id).await;
    let state = app.state(&bob_agent, &id).await;
    let grant = state["grant"]["token"].as_str().unwrap().to_string();
    let on_other = other
        .agent_get(&bob_agent, &format!("/api/v1/requests/{id}?wait=1"))
        .await;
    assert_eq!(
        on_other.status(),
        StatusCode::OK,
        "the old key works everywhere"
    );

    let rotated = alice
        .server_json(
            &app.http,
            "admin/rotate_agent_key",
            &[("id", &bob_agent.id)],
        )
        .await;
    let new_key = rotated["api_key"].as_str().unwrap().to_string();
    assert!(new_key.starts_with(&format!("cs_agent_{}_", bob_agent.id)));
    assert_ne!(new_key, bob_agent.bearer);
    assert_eq!(rotated["revoked_grants"], 1);

    // The old key is refused at once, here and on the other replica.
    problem(
        post_with(&app, &bob_agent.bearer).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    problem(
        other
            .agent_get(&bob_agent, &format!("/api/v1/requests/{id}?wait=1"))
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // The new one works, and the request is still the agent's.
    let fresh = Agent {
        id: bob_agent.id.clone(),
        bearer: new_key,
    };
    assert_eq!(
        post_with(&app, &fresh.bearer).await.status(),
        StatusCode::ACCEPTED
    );
    let r = other
        .agent_get(&fresh, &format!("/api/v1/requests/{id}?wait=1"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // The grant fetched with the old key was revoked with it.
    problem(app.redeem(&grant).await, StatusCode::GONE, "grant_revoked").await;

    // Rotating an agent that does not exist.
    let r = alice
        .server_fn(
            &app.http,
            "admin/rotate_agent_key",
            &[("id", "no-such-agent")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn a_public_key_replaces_the_api_key_and_back(backend: Backend) {
    let (app, mut alice, _alice_agent, _bob, bob_agent) = alice_and_bob(backend).await;
    let key = GrantSigningKey::generate(&mut rand_core::OsRng);
    let jwk = serde_json::to_string(&key.public_jwk()).unwrap();
    let set = alice
        .server_json(
            &app.http,
            "admin/set_agent_key",
            &[("id", &bob_agent.id), ("jwk", &jwk)],
        )
        .await;
    assert_eq!(set["jkt"], key.public_jwk().thumbprint());

    // Signed assertions work; the API key no longer does.
    let r = post_with(&app, &assertion(&app, &key, &bob_agent.id, "a1")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    problem(
        post_with(&app, &bob_agent.bearer).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let all = list(&app, &mut alice).await;
    let b = row(&all, &bob_agent.id);
    assert_eq!(b["key_type"], "public_key");
    assert_eq!(b["jkt"], key.public_jwk().thumbprint());

    // A second key replaces the first.
    let second = GrantSigningKey::generate(&mut rand_core::OsRng);
    let jwk2 = serde_json::to_string(&second.public_jwk()).unwrap();
    alice
        .server_json(
            &app.http,
            "admin/set_agent_key",
            &[("id", &bob_agent.id), ("jwk", &jwk2)],
        )
        .await;
    problem(
        post_with(&app, &assertion(&app, &key, &bob_agent.id, "a2")).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let r = post_with(&app, &assertion(&app, &second, &bob_agent.id, "a3")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Rotating the API key switches it back and retires the public key.
    let rotated = alice
        .server_json(
            &app.http,
            "admin/rotate_agent_key",
            &[("id", &bob_agent.id)],
        )
        .await;
    let new_key = rotated["api_key"].as_str().unwrap();
    assert_eq!(
        post_with(&app, new_key).await.status(),
        StatusCode::ACCEPTED
    );
    problem(
        post_with(&app, &assertion(&app, &second, &bob_agent.id, "a4")).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let all = list(&app, &mut alice).await;
    let b = row(&all, &bob_agent.id);
    assert_eq!(b["key_type"], "api_key");
    assert!(b["jkt"].is_null());
}

async fn a_bad_public_key_is_a_400_naming_the_field_and_changes_nothing(backend: Backend) {
    let (app, mut alice, _alice_agent, _bob, bob_agent) = alice_and_bob(backend).await;
    let key = GrantSigningKey::generate(&mut rand_core::OsRng);
    let mut private = serde_json::to_value(key.public_jwk()).unwrap();
    private["d"] = json!("bm90LWEtcmVhbC1wcml2YXRlLWtleS1idXQtc2VjcmV0");
    let private = private.to_string();
    let long = "x".repeat(10_000);
    for (bad, says) in [
        ("not json", "JSON"),
        (r#"{"kty":"RSA","n":"abc","e":"AQAB"}"#, "OKP"),
        (r#"{"kty":"OKP","crv":"X25519","x":"abc"}"#, "Ed25519"),
        (r#"{"kty":"OKP","crv":"Ed25519","x":"tooshort"}"#, ""),
        (private.as_str(), "private key"),
        (long.as_str(), "too long"),
    ] {
        let r = alice
            .server_fn(
                &app.http,
                "admin/set_agent_key",
                &[("id", &bob_agent.id), ("jwk", bad)],
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["Invalid"]["field"], "jwk", "{body}");
        let message = body["Invalid"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{bad}: {message}");
        assert!(
            !message.contains("bm90LWEtcmVhbC1wcml2YXRlLWtleS1idXQtc2VjcmV0"),
            "the private part is never echoed"
        );
    }
    // Still on its API key.
    assert_eq!(
        post_with(&app, &bob_agent.bearer).await.status(),
        StatusCode::ACCEPTED
    );
    let all = list(&app, &mut alice).await;
    assert_eq!(row(&all, &bob_agent.id)["key_type"], "api_key");
    // An unknown agent, with a good key.
    let jwk = serde_json::to_string(&key.public_jwk()).unwrap();
    let r = alice
        .server_fn(
            &app.http,
            "admin/set_agent_key",
            &[("id", "no-such-agent"), ("jwk", &jwk)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn admins_suspend_and_resume_anyones_agent(backend: Backend) {
    let (app, mut alice, _alice_agent, _bob, bob_agent) = alice_and_bob(backend).await;
    let id = app.ask_id(&bob_agent, &transfer("5.00")).await;
    let r = alice
        .server_json(
            &app.http,
            "admin/agent_status",
            &[("id", &bob_agent.id), ("active", "false")],
        )
        .await;
    assert_eq!(r["status"], "suspended");
    assert_eq!(r["changed"], true);
    assert_eq!(r["cancelled_requests"], 1);
    assert_eq!(app.request_status(&id).await, "cancelled");
    // The documented answer for a suspended agent.
    let refused = app
        .agent_post(&bob_agent, "/api/v1/requests", &transfer("5.00"))
        .await;
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    problem(refused, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let all = list(&app, &mut alice).await;
    assert_eq!(row(&all, &bob_agent.id)["status"], "suspended");
    assert_eq!(row(&all, &bob_agent.id)["pending_requests"], 0);
    // Suspending again changes nothing.
    let again = alice
        .server_json(
            &app.http,
            "admin/agent_status",
            &[("id", &bob_agent.id), ("active", "false")],
        )
        .await;
    assert_eq!(again["changed"], false);

    let r = alice
        .server_json(
            &app.http,
            "admin/agent_status",
            &[("id", &bob_agent.id), ("active", "true")],
        )
        .await;
    assert_eq!(r["status"], "active");
    assert_eq!(r["changed"], true);
    app.ask_id(&bob_agent, &transfer("5.00")).await;
    let r = alice
        .server_fn(
            &app.http,
            "admin/agent_status",
            &[("id", "no-such-agent"), ("active", "false")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn owners_get_403_and_strangers_401(backend: Backend) {
    let (app, _alice, alice_agent, mut bob, bob_agent) = alice_and_bob(backend).await;
    let key = GrantSigningKey::generate(&mut rand_core::OsRng);
    let jwk = serde_json::to_string(&key.public_jwk()).unwrap();
    // Bob may not do these even to his own agent, nor to alice's.
    for target in [&bob_agent.id, &alice_agent.id] {
        let calls: [(&str, Vec<(&str, &str)>); 4] = [
            ("admin/agents", vec![]),
            (
                "admin/agent_status",
                vec![("id", target), ("active", "false")],
            ),
            ("admin/rotate_agent_key", vec![("id", target)]),
            ("admin/set_agent_key", vec![("id", target), ("jwk", &jwk)]),
        ];
        for (name, args) in &calls {
            let r = bob.server_fn(&app.http, name, args).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name} as an owner");
            let r = app.stranger().server_fn(&app.http, name, args).await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name} signed out");
        }
    }
    let r = bob.get(&app.http, "/admin/agents").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "the page as an owner");
    let r = app
        .http
        .get(app.url("/admin/agents"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND, "the page signed out");
    assert_eq!(r.headers()["location"], "/sign-in?next=/admin/agents");
    // Nothing changed: both keys still work.
    for agent in [&alice_agent, &bob_agent] {
        assert_eq!(
            post_with(&app, &agent.bearer).await.status(),
            StatusCode::ACCEPTED
        );
    }
}

async fn changes_are_audited_with_the_admin_as_actor_and_no_secret(backend: Backend) {
    let (app, mut alice, _alice_agent, _bob, bob_agent) = alice_and_bob(backend).await;
    let rotated = alice
        .server_json(
            &app.http,
            "admin/rotate_agent_key",
            &[("id", &bob_agent.id)],
        )
        .await;
    let new_key = rotated["api_key"].as_str().unwrap().to_string();
    let key = GrantSigningKey::generate(&mut rand_core::OsRng);
    let jwk = serde_json::to_string(&key.public_jwk()).unwrap();
    alice
        .server_json(
            &app.http,
            "admin/set_agent_key",
            &[("id", &bob_agent.id), ("jwk", &jwk)],
        )
        .await;
    for active in ["false", "true"] {
        alice
            .server_json(
                &app.http,
                "admin/agent_status",
                &[("id", &bob_agent.id), ("active", active)],
            )
            .await;
    }

    let mut out = Vec::new();
    app.core.export_audit(None, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ours: Vec<&Value> = events
        .iter()
        .filter(|e| e["data"]["agent_id"] == bob_agent.id && e["kind"] != "agent.created")
        .collect();
    let kinds: Vec<&str> = ours.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "agent.key_rotated",
            "agent.public_key_set",
            "agent.suspended",
            "agent.resumed"
        ]
    );
    for e in &ours {
        assert_eq!(e["actor"], format!("user:{}", alice.id), "{e}");
    }
    assert_eq!(ours[0]["data"]["key_type"], "api_key");
    assert_eq!(ours[0]["data"]["previous_key_type"], "api_key");
    assert_eq!(ours[1]["data"]["key_type"], "public_key");
    assert_eq!(ours[1]["data"]["jkt"], key.public_jwk().thumbprint());
    assert_eq!(ours[1]["data"]["previous_key_type"], "api_key");

    // Neither key, nor its secret part, nor the stored digest of either, is anywhere on the
    // chain.
    for k in [&bob_agent.bearer, &new_key] {
        let (_, secret) = countersign::domain::secrets::parse_api_key(k).unwrap();
        let digest = countersign::domain::secrets::digest(secret);
        for needle in [k.as_str(), secret, digest.as_str()] {
            assert!(!text.contains(needle), "a credential leaked into the audit");
        }
    }
    let verified = app.core.verify_audit().await.unwrap();
    assert!(
        matches!(
            verified,
            countersign::service::audit::Verification::Intact { .. }
        ),
        "{verified:?}"
    );
}

async fn a_key_change_based_on_a_stale_read_loses(backend: Backend) {
    let (app, _alice, _alice_agent, _bob, bob_agent) = alice_and_bob(backend).await;
    use countersign::store::agents::{self, Credential};
    let before = agents::get(app.core.db.reader(), &bob_agent.id)
        .await
        .unwrap()
        .unwrap();
    // Someone else rotates in between our read and our write ...
    let rotated = app
        .core
        .rotate_api_key(&bob_agent.id, "test")
        .await
        .unwrap();
    // ... so the write conditional on what we read changes nothing.
    let mut tx = app.core.db.begin().await.unwrap();
    let swapped = agents::replace_credential(
        &mut tx,
        &bob_agent.id,
        before.api_key_hash.as_deref(),
        before.jwk_thumbprint.as_deref(),
        Credential {
            key_type: "api_key",
            api_key_hash: Some("0000"),
            public_jwk: None,
            jwk_thumbprint: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(!swapped);
    assert_eq!(
        post_with(&app, rotated.api_key.expose()).await.status(),
        StatusCode::ACCEPTED,
        "the winner's key is the one in force"
    );
}

on_both_backends!(
    a_key_change_based_on_a_stale_read_loses,
    admins_see_every_agent_with_its_owner_key_type_and_activity,
    rotating_a_key_retires_the_old_one_on_every_replica,
    a_public_key_replaces_the_api_key_and_back,
    a_bad_public_key_is_a_400_naming_the_field_and_changes_nothing,
    admins_suspend_and_resume_anyones_agent,
    owners_get_403_and_strangers_401,
    changes_are_audited_with_the_admin_as_actor_and_no_secret,
);
