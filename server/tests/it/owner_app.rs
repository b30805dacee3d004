//! The owner app's server side: every server function authenticates and authorises itself,
//! cross-site calls are refused, pages render server-side from the stored request (with agent
//! strings inert), live inbox events, passkey management, and the display-hash binding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{transfer, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The app's server functions, with arguments that would be valid for a signed-in owner.
const SERVER_FNS: &[(&str, &[(&str, &str)])] = &[
    ("inbox", &[]),
    (
        "request_page",
        &[("id", "00000000-0000-0000-0000-000000000000")],
    ),
    ("history", &[]),
    ("my_agents", &[]),
    ("create_agent", &[("name", "sneaky")]),
    ("set_agent_active", &[("id", "x"), ("active", "false")]),
    ("passkeys", &[]),
    ("rename_passkey", &[("id", "x"), ("name", "y")]),
    ("remove_passkey", &[("id", "x")]),
    (
        "invite",
        &[
            ("email", "x@example.com"),
            ("role", "owner"),
            ("groups", ""),
        ],
    ),
];

async fn signed_out_calls_are_refused(backend: Backend) {
    let (app, _alice, _agent) = TestApp::with_alice(backend).await;
    let mut stranger = app.stranger();
    for (name, args) in SERVER_FNS {
        let r = stranger.server_fn(&app.http, name, args).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name} signed out");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!("SignInRequired"), "{name}");
    }
    // `me` answers everyone, with nobody.
    let r = stranger.server_fn(&app.http, "me", &[]).await;
    assert_eq!(common::json_of(r, StatusCode::OK).await, Value::Null);
    // Nothing was created on the way.
    assert_eq!(app.agent_count().await, 1);
}

async fn cross_site_calls_are_refused(backend: Backend) {
    let (app, mut alice, _agent) = TestApp::with_alice(backend).await;
    for (name, args) in SERVER_FNS {
        let r = app
            .http
            .post(app.url(&format!("/api/app/{name}")))
            .header("cookie", alice.cookie.clone().unwrap())
            .header("sec-fetch-site", "cross-site")
            .header("origin", "https://evil.example")
            .form(args)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name} cross-site");
    }
    // Without Sec-Fetch-Site, a foreign Origin is refused too.
    let r = app
        .http
        .post(app.url("/api/app/create_agent"))
        .header("cookie", alice.cookie.clone().unwrap())
        .header("origin", "https://evil.example")
        .form(&[("name", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Nothing changes on GET: server functions answer only POST.
    let r = alice.get(&app.http, "/api/app/create_agent?name=x").await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(app.agent_count().await, 1);
}

async fn other_owners_see_nothing_and_owners_are_not_admins(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let mut bob = app.enrol("bob@example.com", "owner", &[]).await;
    let id = app.ask_id(&agent, &transfer("50.00")).await;

    let r = alice
        .server_fn(&app.http, "request_page", &[("id", &id)])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = bob
        .server_fn(&app.http, "request_page", &[("id", &id)])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "another owner's request");

    let inbox: Vec<Value> =
        serde_json::from_value(bob.server_json(&app.http, "inbox", &[]).await).unwrap();
    assert!(inbox.is_empty(), "bob's inbox: {inbox:?}");
    let inbox: Vec<Value> =
        serde_json::from_value(alice.server_json(&app.http, "inbox", &[]).await).unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["id"], id);

    let r = bob
        .server_fn(
            &app.http,
            "set_agent_active",
            &[("id", &agent.id), ("active", "false")],
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "suspending another's agent"
    );
    let r = app
        .agent_get(&agent, &format!("/api/v1/requests/{id}"))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "the agent still works");

    let agents: Vec<Value> =
        serde_json::from_value(bob.server_json(&app.http, "my_agents", &[]).await).unwrap();
    assert!(agents.is_empty());
    let history: Vec<Value> =
        serde_json::from_value(bob.server_json(&app.http, "history", &[]).await).unwrap();
    assert!(history.is_empty());

    let r = bob
        .server_fn(
            &app.http,
            "invite",
            &[
                ("email", "eve@example.com"),
                ("role", "admin"),
                ("groups", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "an owner inviting");
}

async fn owners_manage_their_agents(backend: Backend) {
    let (app, mut alice, _agent) = TestApp::with_alice(backend).await;
    let r = alice
        .server_fn(&app.http, "create_agent", &[("name", "")])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["Invalid"]["field"], "name");

    let created: Value = alice
        .server_json(&app.http, "create_agent", &[("name", "deploy-bot")])
        .await;
    let key = created["api_key"].as_str().unwrap();
    assert!(key.starts_with("cs_agent_"));
    let agent = common::Agent {
        id: created["id"].as_str().unwrap().into(),
        bearer: key.into(),
    };
    let id = app.ask_id(&agent, &transfer("10.00")).await;

    let list: Vec<Value> =
        serde_json::from_value(alice.server_json(&app.http, "my_agents", &[]).await).unwrap();
    let row = list.iter().find(|a| a["id"] == agent.id).unwrap();
    assert_eq!(row["name"], "deploy-bot");
    assert!(row.get("api_key").is_none(), "the key is never listed");

    let r = alice
        .server_fn(
            &app.http,
            "set_agent_active",
            &[("id", &agent.id), ("active", "false")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .agent_get(&agent, &format!("/api/v1/requests/{id}"))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a suspended agent's key stops working"
    );
    assert_eq!(app.request_status(&id).await, "cancelled");
}

async fn the_request_page_renders_on_the_server_with_agent_text_inert(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let mut body = transfer("25000.00");
    body["intent"]["goal"] = json!("<script>alert('pwned')</script> pay <b>now</b>");
    body["action"]["params"]["memo"] = json!({"nested": ["a", {"deep": "value"}]});
    let id = app.ask_id(&agent, &body).await;

    let r = alice.get(&app.http, &format!("/requests/{id}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(
        !html.contains("<script>alert"),
        "agent text must be escaped"
    );
    assert!(html.contains("&lt;script&gt;alert"), "and still shown");
    assert!(html.contains("payments.transfer") && html.contains("bank-api"));
    assert!(html.contains("Production environment"));
    assert!(html.contains("Confidential data"));
    assert!(html.contains("Large amount: 25000.00 EUR"));
    assert!(html.contains("First time this agent asks to payments.transfer"));
    assert!(html.contains("deep"), "nested parameters are rendered");
    let page: Value = alice
        .server_json(&app.http, "request_page", &[("id", &id)])
        .await;
    let hash = page["display_hash"].as_str().unwrap();
    assert!(
        html.contains(hash),
        "the page shows the hash it was rendered with"
    );
    assert_eq!(page["can_decide"], true);

    // Pages go out gzipped to browsers that accept it.
    let mut req = app
        .http
        .get(app.url(&format!("/requests/{id}")))
        .header("accept-encoding", "gzip");
    if let Some(c) = &alice.cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-encoding"], "gzip");

    // Signed out, the page sends you to sign in and back.
    let r = app
        .http
        .get(app.url(&format!("/requests/{id}")))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("/sign-in?next=/requests/{id}")
    );
}

async fn a_decision_on_a_stale_page_is_refused(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("50.00")).await;
    let r = alice
        .start_decision(
            &app.http,
            &id,
            &json!({"decision": "approve", "display_hash": "sha256:00"}),
        )
        .await;
    common::problem(r, StatusCode::CONFLICT, "conflict").await;
    let page: Value = alice
        .server_json(&app.http, "request_page", &[("id", &id)])
        .await;
    let r = alice
        .decide(
            &app.http,
            &id,
            &json!({"decision": "approve", "display_hash": page["display_hash"]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let events = app.audit_lines(&id).await.join("\n");
    assert!(
        events.contains(page["display_hash"].as_str().unwrap()),
        "{events}"
    );
}

async fn the_inbox_hears_of_new_and_decided_requests(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let r = app
        .http
        .get(app.url("/api/ui/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "events need a session"
    );

    let mut stream = alice.get(&app.http, "/api/ui/events").await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let id = app.ask_id(&agent, &transfer("50.00")).await;
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.chunk())
        .await
        .expect("an event within 10 s of a new request")
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("data: changed"), "{text}");
    assert!(!text.contains(&id), "events carry no request data");

    alice.approve(&app.http, &id).await;
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.chunk())
        .await
        .expect("an event within 10 s of a decision")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&chunk).contains("data: changed"));
    let inbox: Vec<Value> =
        serde_json::from_value(alice.server_json(&app.http, "inbox", &[]).await).unwrap();
    assert!(inbox.is_empty(), "decided requests leave the inbox");
}

async fn people_manage_their_passkeys_but_never_remove_the_last(backend: Backend) {
    let (app, mut alice, _agent) = TestApp::with_alice(backend).await;
    let keys: Vec<Value> =
        serde_json::from_value(alice.server_json(&app.http, "passkeys", &[]).await).unwrap();
    assert_eq!(keys.len(), 1);
    let first = keys[0]["id"].as_str().unwrap().to_string();
    let r = alice
        .server_fn(&app.http, "remove_passkey", &[("id", &first)])
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT, "the only passkey");

    // A second passkey, from another authenticator.
    let start = alice
        .post(
            &app.http,
            "/api/ui/passkeys/start",
            &json!({"passkey_name": "Phone"}),
        )
        .await;
    assert_eq!(start.status(), StatusCode::OK);
    let start: Value = start.json().await.unwrap();
    let mut phone = webauthn_authenticator_rs::softpasskey::SoftPasskey::new(true);
    let credential = webauthn_authenticator_rs::WebauthnAuthenticator::do_registration(
        &mut phone,
        alice.origin.clone(),
        serde_json::from_value(start["options"].clone()).unwrap(),
    )
    .unwrap();
    let r = alice
        .post(
            &app.http,
            "/api/ui/passkeys/finish",
            &json!({"ceremony_id": start["ceremony_id"], "credential": credential}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let keys: Vec<Value> =
        serde_json::from_value(alice.server_json(&app.http, "passkeys", &[]).await).unwrap();
    assert_eq!(keys.len(), 2);
    let second = keys.iter().find(|k| k["name"] == "Phone").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let r = alice
        .server_fn(
            &app.http,
            "rename_passkey",
            &[("id", &second), ("name", "Work phone")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = alice
        .server_fn(&app.http, "remove_passkey", &[("id", &first)])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let keys: Vec<Value> =
        serde_json::from_value(alice.server_json(&app.http, "passkeys", &[]).await).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["name"], "Work phone");

    // Another person cannot touch it.
    let mut bob = app.enrol("bob@example.com", "owner", &[]).await;
    let r = bob
        .server_fn(
            &app.http,
            "rename_passkey",
            &[("id", &second), ("name", "mine")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let kinds = app.all_audit_kinds().await;
    for k in ["passkey.added", "passkey.renamed", "passkey.removed"] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
}

async fn enrolment_links_describe_themselves_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let invite = app
        .core
        .invite("carol@example.com", "owner", &[], "test")
        .await
        .unwrap();
    let token = invite.link.expose().rsplit('/').next().unwrap().to_string();
    let mut stranger = app.stranger();
    let info: Value = stranger
        .server_json(&app.http, "enrolment", &[("token", &token)])
        .await;
    assert_eq!(info["email"], "carol@example.com");
    assert_eq!(info["role"], "owner");
    let r = stranger
        .server_fn(&app.http, "enrolment", &[("token", "nope")])
        .await;
    assert_eq!(r.status(), StatusCode::GONE);
}

/// The inbox: what waits for me (not what I approved already), how many approvals each has,
/// and which is the first of its kind for its agent, newest first.
async fn the_inbox_counts_approvals_and_flags_first_requests(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let mut carol = app.enrol("carol@example.com", "admin", &[]).await;
    app.core
        .apply_policy(
            "[[rule]]\nid = \"two\"\noutcome = \"require\"\napprovals = 2\napprovers = [\"owner\", \"admins\"]\n",
            "test",
        )
        .await
        .unwrap();
    // A second apart each (the test clock stands still otherwise).
    let first = app.ask_id(&agent, &transfer("1.00")).await;
    app.clock.advance_ms(1000);
    let second = app.ask_id(&agent, &transfer("2.00")).await;
    app.clock.advance_ms(1000);
    let mut read = transfer("3.00");
    read["action"]["type"] = json!("db.read");
    let other_kind = app.ask_id(&agent, &read).await;
    alice.approve(&app.http, &first).await;

    let inbox = |v: Value| -> Vec<(String, i64, bool)> {
        serde_json::from_value::<Vec<Value>>(v)
            .unwrap()
            .iter()
            .map(|item| {
                let first_time = item["risks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["text"].as_str().unwrap().starts_with("First time"));
                (
                    item["id"].as_str().unwrap().to_string(),
                    item["approvals_received"].as_i64().unwrap(),
                    first_time,
                )
            })
            .collect()
    };
    assert_eq!(
        inbox(carol.server_json(&app.http, "inbox", &[]).await),
        vec![
            (other_kind.clone(), 0, true),
            (second.clone(), 0, false),
            (first.clone(), 1, true),
        ],
        "carol: all three, newest first"
    );
    assert_eq!(
        inbox(alice.server_json(&app.http, "inbox", &[]).await),
        vec![(other_kind, 0, true), (second, 0, false)],
        "alice approved the first already"
    );
}

on_both_backends!(
    signed_out_calls_are_refused,
    cross_site_calls_are_refused,
    other_owners_see_nothing_and_owners_are_not_admins,
    owners_manage_their_agents,
    the_request_page_renders_on_the_server_with_agent_text_inert,
    a_decision_on_a_stale_page_is_refused,
    the_inbox_hears_of_new_and_decided_requests,
    the_inbox_counts_approvals_and_flags_first_requests,
    people_manage_their_passkeys_but_never_remove_the_last,
    enrolment_links_describe_themselves_once,
);
