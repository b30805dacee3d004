//! Signed callbacks (CIBA ping mode): a real HTTP endpoint on loopback records what Countersign
//! sends; signatures are checked against the served JWKS with ed25519-dalek directly, not with
//! the server's own verification code.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use reqwest::StatusCode as Status;
use serde_json::{json, Value};

use crate::common::{eventually, transfer, Agent, Backend, Person, TestApp};

/// How the endpoint behaves.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Answers 204.
    Ok,
    /// Answers 500 to the first `n` calls, then 204.
    FailFirst(usize),
    /// Accepts the call and never answers.
    Hang,
}

/// One call the endpoint received.
#[derive(Debug, Clone)]
struct Received {
    content_type: String,
    body: String,
}

/// A callback endpoint on loopback.
struct Endpoint {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    /// Calls that have arrived (before any answer).
    arrived: Arc<AtomicUsize>,
    /// Calls answered.
    answered: Arc<AtomicUsize>,
}

impl Endpoint {
    async fn start(behaviour: Behaviour) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let (r, a, d) = (received.clone(), arrived.clone(), answered.clone());
        let handler = move |headers: HeaderMap, body: Bytes| {
            let (r, a, d) = (r.clone(), a.clone(), d.clone());
            async move {
                let n = a.fetch_add(1, Ordering::SeqCst);
                r.lock().unwrap().push(Received {
                    content_type: headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string(),
                    body: String::from_utf8_lossy(&body).to_string(),
                });
                let status = match behaviour {
                    Behaviour::Ok => StatusCode::NO_CONTENT,
                    Behaviour::FailFirst(k) if n < k => StatusCode::INTERNAL_SERVER_ERROR,
                    Behaviour::FailFirst(_) => StatusCode::NO_CONTENT,
                    Behaviour::Hang => std::future::pending().await,
                };
                d.fetch_add(1, Ordering::SeqCst);
                status
            }
        };
        let app = axum::Router::new().route("/cb", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://127.0.0.1:{port}/cb"),
            received,
            arrived,
            answered,
        }
    }

    fn calls(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }
}

/// A server whose callbacks may reach loopback, retrying fast; alice (admin) owns one agent.
async fn app_allowing_loopback(backend: Backend) -> (TestApp, Person, Agent) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("COUNTERSIGN_CALLBACK_ALLOW", "127.0.0.1"),
            ("COUNTERSIGN_CALLBACK_RETRY_FIRST_SECONDS", "0.05"),
        ],
    )
    .await;
    let alice = app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    (app, alice, agent)
}

async fn set_callback(app: &TestApp, who: &Person, agent: &Agent, url: &str) {
    let signed_in = app.signed_in(who).await;
    app.core
        .set_agent_callback(&signed_in, &agent.id, Some(url))
        .await
        .unwrap();
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

/// Verifies a callback body against the server's published JWKS; returns header and claims.
async fn verify(app: &TestApp, token: &str) -> (Value, Value) {
    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS: {token}");
    let header: Value = serde_json::from_slice(&b64(parts[0])).unwrap();
    let claims: Value = serde_json::from_slice(&b64(parts[1])).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "countersign-callback+jwt");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("kid {} not in the JWKS {jwks}", header["kid"]));
    let x: [u8; 32] = b64(jwk["x"].as_str().unwrap()).try_into().unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
    let sig: [u8; 64] = b64(parts[2]).try_into().unwrap();
    key.verify_strict(
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &ed25519_dalek::Signature::from_bytes(&sig),
    )
    .expect("the callback's signature verifies with the published key");
    (header, claims)
}

/// Waits until the request's callback is recorded on the audit chain, with this kind.
async fn audited(app: &TestApp, id: &str, kind: &str) {
    eventually(
        &format!("{kind} on the audit chain of {id}"),
        Duration::from_secs(20),
        || async { app.audit_kinds(id).await.iter().any(|k| k == kind) },
    )
    .await;
}

async fn approve_calls_back_once_signed_and_the_agent_fetches_the_grant(backend: Backend) {
    let (app, mut alice, agent) = app_allowing_loopback(backend).await;
    let endpoint = Endpoint::start(Behaviour::Ok).await;
    set_callback(&app, &alice, &agent, &endpoint.url).await;
    assert!(app
        .all_audit_kinds()
        .await
        .contains(&"agent.callback_set".to_string()));

    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    alice.approve(&app.http, &id).await;
    audited(&app, &id, "callback.delivered").await;

    let calls = endpoint.calls();
    assert_eq!(calls.len(), 1, "exactly one callback: {calls:?}");
    assert_eq!(calls[0].content_type, "application/jwt");
    let (_, claims) = verify(&app, &calls[0].body).await;
    assert_eq!(claims["request_id"], id.as_str());
    assert_eq!(claims["status"], "approved");
    assert_eq!(claims["aud"], endpoint.url.as_str());
    assert_eq!(claims["iss"], app.base.as_str());
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=60).contains(&lifetime), "{claims}");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert!(claims.get("grant").is_none() && !calls[0].body.contains("grant"));

    // The callback says only "look": the agent fetches the grant with its own credential.
    let state = app.state(&agent, &id).await;
    assert_eq!(state["status"], "approved");
    assert!(state["grant"]["token"].as_str().is_some());
    let r = app.redeem(state["grant"]["token"].as_str().unwrap()).await;
    assert_eq!(r.status(), Status::OK);

    assert_eq!(
        app.metric("countersign_callback_attempts_total{result=\"delivered\"}")
            .await,
        1
    );
    assert_eq!(
        app.metric("countersign_callbacks_total{outcome=\"delivered\"}")
            .await,
        1
    );
    // Nothing more arrives later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(endpoint.count(), 1);
}

async fn deny_cancel_and_expiry_each_call_back(backend: Backend) {
    let (app, mut alice, agent) = app_allowing_loopback(backend).await;
    let endpoint = Endpoint::start(Behaviour::Ok).await;
    set_callback(&app, &alice, &agent, &endpoint.url).await;

    let denied = app.ask_id(&agent, &transfer("1.00")).await;
    let r = alice
        .decide(
            &app.http,
            &denied,
            &json!({ "decision": "deny", "reason_code": "too_risky" }),
        )
        .await;
    assert_eq!(r.status(), Status::OK);
    audited(&app, &denied, "callback.delivered").await;

    let cancelled = app.ask_id(&agent, &transfer("2.00")).await;
    let r = app
        .agent_post(
            &agent,
            &format!("/api/v1/requests/{cancelled}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), Status::OK);
    audited(&app, &cancelled, "callback.delivered").await;

    let mut body = transfer("3.00");
    body["expires_in"] = json!(60);
    let expired = app.ask_id(&agent, &body).await;
    app.clock.advance_ms(61_000);
    app.core.sweep().await.unwrap();
    audited(&app, &expired, "callback.delivered").await;

    let mut seen = Vec::new();
    for call in endpoint.calls() {
        let (_, claims) = verify(&app, &call.body).await;
        seen.push((
            claims["request_id"].as_str().unwrap().to_string(),
            claims["status"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(
        seen,
        [
            (denied, "denied".to_string()),
            (cancelled, "cancelled".to_string()),
            (expired, "expired".to_string()),
        ]
    );
}

async fn a_failing_endpoint_is_retried_and_the_delivery_is_audited(backend: Backend) {
    let (app, mut alice, agent) = app_allowing_loopback(backend).await;
    let endpoint = Endpoint::start(Behaviour::FailFirst(2)).await;
    set_callback(&app, &alice, &agent, &endpoint.url).await;

    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    alice.approve(&app.http, &id).await;
    audited(&app, &id, "callback.delivered").await;

    assert_eq!(endpoint.count(), 3, "two failures, then the delivery");
    let lines = app.audit_lines(&id).await;
    let delivered: Value = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["kind"] == "callback.delivered")
        .unwrap();
    assert_eq!(delivered["data"]["attempts"], 3);
    assert_eq!(delivered["data"]["status"], "approved");
    assert_eq!(
        delivered["data"]["endpoint"],
        endpoint.url.trim_end_matches("/cb")
    );
    // Each attempt was signed afresh.
    let calls = endpoint.calls();
    let mut jtis = Vec::new();
    for call in &calls {
        let (_, claims) = verify(&app, &call.body).await;
        jtis.push(claims["jti"].as_str().unwrap().to_string());
    }
    jtis.dedup();
    assert_eq!(jtis.len(), 3);
    assert_eq!(
        app.metric("countersign_callback_attempts_total{result=\"http_error\"}")
            .await,
        2
    );
    // The chain still verifies with the new events on it.
    let out = app.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn a_loopback_callback_is_refused_without_the_allow_list(backend: Backend) {
    let (app, alice, agent) = TestApp::with_alice(backend).await;
    let endpoint = Endpoint::start(Behaviour::Ok).await;
    let signed_in = app.signed_in(&alice).await;
    for url in [
        endpoint.url.clone(),
        endpoint.url.replace("http://", "https://"),
        "https://localhost/cb".to_string(),
        "https://[::ffff:127.0.0.1]/cb".to_string(),
        "https://169.254.169.254/latest/meta-data".to_string(),
    ] {
        let err = app
            .core
            .set_agent_callback(&signed_in, &agent.id, Some(&url))
            .await
            .expect_err(&url);
        assert!(
            matches!(&err, countersign::service::Error::InvalidRequest { field: Some(f), .. } if f == "url"),
            "{url}: {err:?}"
        );
    }
    // The command line refuses it too, and nothing was recorded.
    let out = app.cli(&["agent", "callback", "set", &agent.id, &endpoint.url]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("COUNTERSIGN_CALLBACK_ALLOW"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!app
        .all_audit_kinds()
        .await
        .contains(&"agent.callback_set".to_string()));
}

async fn a_dead_endpoint_delays_neither_a_decision_nor_another_agents_callback(backend: Backend) {
    let (app, mut alice, slow_agent) = app_allowing_loopback(backend).await;
    let fast_agent = app.agent("alice@example.com").await;
    let dead = Endpoint::start(Behaviour::Hang).await;
    let live = Endpoint::start(Behaviour::Ok).await;
    set_callback(&app, &alice, &slow_agent, &dead.url).await;
    set_callback(&app, &alice, &fast_agent, &live.url).await;

    let slow = app.ask_id(&slow_agent, &transfer("10.00")).await;
    let fast = app.ask_id(&fast_agent, &transfer("20.00")).await;
    alice.approve(&app.http, &slow).await;
    eventually(
        "the dead endpoint is called",
        Duration::from_secs(20),
        || async { dead.count() >= 1 },
    )
    .await;
    // While that call hangs, another decision completes and its callback arrives.
    alice.approve(&app.http, &fast).await;
    audited(&app, &fast, "callback.delivered").await;
    assert_eq!(live.count(), 1);
    assert_eq!(dead.answered.load(Ordering::SeqCst), 0);
    assert!(!app
        .audit_kinds(&slow)
        .await
        .iter()
        .any(|k| k.starts_with("callback.")));
    // And the decision on the slow agent's request stands, readable at once.
    assert_eq!(app.state(&slow_agent, &slow).await["status"], "approved");
}

async fn an_owner_cannot_set_another_owners_agent_callback(backend: Backend) {
    let (app, alice, alices_agent) = app_allowing_loopback(backend).await;
    let bob = app.enrol("bob@example.com", "owner", &[]).await;
    let bobs_agent = app.agent("bob@example.com").await;
    let endpoint = Endpoint::start(Behaviour::Ok).await;
    let bob_in = app.signed_in(&bob).await;

    for url in [Some(endpoint.url.as_str()), None] {
        let err = app
            .core
            .set_agent_callback(&bob_in, &alices_agent.id, url)
            .await
            .unwrap_err();
        assert!(
            matches!(err, countersign::service::Error::NotFound(_)),
            "{err:?}"
        );
    }
    // Bob may set his own; alice, an admin, may change anyone's, and clearing is audited.
    app.core
        .set_agent_callback(&bob_in, &bobs_agent.id, Some(&endpoint.url))
        .await
        .unwrap();
    let alice_in = app.signed_in(&alice).await;
    let cleared = app
        .core
        .set_agent_callback(&alice_in, &bobs_agent.id, None)
        .await
        .unwrap();
    assert_eq!(cleared.url, None);
    let kinds = app.all_audit_kinds().await;
    assert!(kinds.contains(&"agent.callback_set".to_string()));
    assert!(kinds.contains(&"agent.callback_cleared".to_string()));
}

async fn the_command_line_sets_and_clears_a_callback(backend: Backend) {
    let (app, mut alice, agent) = app_allowing_loopback(backend).await;
    let endpoint = Endpoint::start(Behaviour::Ok).await;
    let out = app
        .cli_command()
        .env("COUNTERSIGN_CALLBACK_ALLOW", "127.0.0.1")
        .args(["agent", "callback", "set", &agent.id, &endpoint.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = app.ask_id(&agent, &transfer("5.00")).await;
    alice.approve(&app.http, &id).await;
    audited(&app, &id, "callback.delivered").await;

    let out = app.cli(&["agent", "callback", "clear", &agent.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = app.ask_id(&agent, &transfer("6.00")).await;
    alice.approve(&app.http, &id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(endpoint.count(), 1, "no callback once cleared");
}

async fn an_endpoint_that_always_fails_is_given_up_and_audited(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("COUNTERSIGN_CALLBACK_ALLOW", "127.0.0.1"),
            // The whole schedule (ten attempts) in about five seconds.
            ("COUNTERSIGN_CALLBACK_RETRY_FIRST_SECONDS", "0.01"),
        ],
    )
    .await;
    let mut alice = app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    let endpoint = Endpoint::start(Behaviour::FailFirst(usize::MAX)).await;
    set_callback(&app, &alice, &agent, &endpoint.url).await;

    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    alice.approve(&app.http, &id).await;
    audited(&app, &id, "callback.failed").await;

    assert_eq!(endpoint.count(), 10, "ten attempts, then no more");
    let failed: Value = app
        .audit_lines(&id)
        .await
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["kind"] == "callback.failed")
        .unwrap();
    assert_eq!(failed["data"]["attempts"], 10);
    assert_eq!(failed["data"]["error"], "the endpoint answered 500");
    assert_eq!(
        app.metric("countersign_callbacks_total{outcome=\"failed\"}")
            .await,
        1
    );
    assert_eq!(
        app.metric("countersign_callback_attempts_total{result=\"http_error\"}")
            .await,
        10
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(endpoint.count(), 10);
}

async fn every_delivery_checks_the_address_again(backend: Backend) {
    // A loopback URL stored while it was allowed (or written behind the service's back) is
    // refused when the callback is due, by a server that does not allow it: nothing is sent.
    let app = TestApp::spawn(backend).await;
    let mut alice = app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    let endpoint = Endpoint::start(Behaviour::Ok).await;
    let mut conn = app.core.db.writer().acquire().await.unwrap();
    countersign::store::callbacks::set_url(&mut conn, &agent.id, Some(&endpoint.url))
        .await
        .unwrap();
    drop(conn);

    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    alice.approve(&app.http, &id).await;
    eventually(
        "the attempt is refused",
        Duration::from_secs(20),
        || async {
            app.metric("countersign_callback_attempts_total{result=\"refused\"}")
                .await
                >= 1
        },
    )
    .await;
    assert_eq!(endpoint.count(), 0);
    assert_eq!(app.state(&agent, &id).await["status"], "approved");
}

async fn the_agents_page_sets_a_callback_and_the_document_describes_it(backend: Backend) {
    let (app, mut alice, agent) = app_allowing_loopback(backend).await;
    let endpoint = Endpoint::start(Behaviour::Ok).await;
    let stored = alice
        .server_json(
            &app.http,
            "set_agent_callback",
            &[("id", agent.id.as_str()), ("url", endpoint.url.as_str())],
        )
        .await;
    assert_eq!(stored, json!(endpoint.url));
    let mine = alice.server_json(&app.http, "my_agents", &[]).await;
    assert_eq!(mine[0]["callback_url"], json!(endpoint.url));
    // Admins see it in the list of every agent.
    let all = alice.server_json(&app.http, "admin/agents", &[]).await;
    assert_eq!(all[0]["callback_url"], json!(endpoint.url));
    // Refused addresses come back as a field error the page shows.
    let r = alice
        .server_fn(
            &app.http,
            "set_agent_callback",
            &[("id", agent.id.as_str()), ("url", "https://10.0.0.1/cb")],
        )
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    // An empty URL clears it.
    let cleared = alice
        .server_json(
            &app.http,
            "set_agent_callback",
            &[("id", agent.id.as_str()), ("url", "")],
        )
        .await;
    assert_eq!(cleared, Value::Null);

    let hook = &app.openapi["webhooks"]["requestDecided"]["post"];
    assert!(
        hook["requestBody"]["content"]["application/jwt"].is_object(),
        "{hook}"
    );
    assert!(hook["description"]
        .as_str()
        .unwrap()
        .contains("countersign-callback+jwt"));
}

async fn two_replicas_never_deliver_the_same_callback_twice(backend: Backend) {
    let (app, mut alice, agent) = app_allowing_loopback(backend).await;
    let other = app
        .replica_with(&[
            ("COUNTERSIGN_CALLBACK_ALLOW", "127.0.0.1"),
            ("COUNTERSIGN_CALLBACK_RETRY_FIRST_SECONDS", "0.05"),
        ])
        .await;
    let endpoint = Endpoint::start(Behaviour::Ok).await;
    set_callback(&app, &alice, &agent, &endpoint.url).await;

    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(app.ask_id(&agent, &transfer(&format!("{i}.00"))).await);
    }
    for id in &ids {
        alice.approve(&app.http, id).await;
        // Both workers are woken: this one by the decision, the other by its one-second look.
        other.core.callbacks.kick();
    }
    for id in &ids {
        audited(&app, id, "callback.delivered").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = Vec::new();
    for call in endpoint.calls() {
        let (_, claims) = verify(&app, &call.body).await;
        seen.push(claims["request_id"].as_str().unwrap().to_string());
    }
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected, "each request called back exactly once");
}

async fn clearing_the_url_gives_up_a_callback_still_owed(backend: Backend) {
    let (app, mut alice, agent) = app_allowing_loopback(backend).await;
    let endpoint = Endpoint::start(Behaviour::FailFirst(usize::MAX)).await;
    set_callback(&app, &alice, &agent, &endpoint.url).await;
    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    alice.approve(&app.http, &id).await;
    eventually("a first attempt", Duration::from_secs(20), || async {
        endpoint.count() >= 1
    })
    .await;
    let alice_in = app.signed_in(&alice).await;
    app.core
        .set_agent_callback(&alice_in, &agent.id, None)
        .await
        .unwrap();
    audited(&app, &id, "callback.failed").await;
    let failed: Value = app
        .audit_lines(&id)
        .await
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["kind"] == "callback.failed")
        .unwrap();
    assert_eq!(
        failed["data"]["error"],
        "the agent's callback URL was cleared"
    );
    let calls = endpoint.count();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(endpoint.count(), calls, "nothing more is sent");
}

async fn a_host_name_is_resolved_checked_and_called(backend: Backend) {
    // `localhost` is allowed by name here; its addresses are resolved, checked and the call
    // goes to them (whichever of 127.0.0.1 and ::1 comes first, the other is tried too).
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_CALLBACK_ALLOW", "localhost")]).await;
    let mut alice = app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    let endpoint = Endpoint::start(Behaviour::Ok).await;
    let by_name = endpoint.url.replace("127.0.0.1", "localhost");
    set_callback(&app, &alice, &agent, &by_name).await;
    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    alice.approve(&app.http, &id).await;
    audited(&app, &id, "callback.delivered").await;
    let (_, claims) = verify(&app, &endpoint.calls()[0].body).await;
    assert_eq!(claims["aud"], by_name.as_str());
    // The name is allowed, not every loopback address: the address itself is refused.
    let signed_in = app.signed_in(&alice).await;
    assert!(app
        .core
        .set_agent_callback(&signed_in, &agent.id, Some(&endpoint.url))
        .await
        .is_err());
}

async fn the_callback_commits_or_rolls_back_with_the_decision(backend: Backend) {
    use countersign::domain::lifecycle::RequestStatus;
    use countersign::store::{callbacks, requests};
    let (app, alice, agent) = app_allowing_loopback(backend).await;
    let endpoint = Endpoint::start(Behaviour::Ok).await;
    set_callback(&app, &alice, &agent, &endpoint.url).await;
    let id = app.ask_id(&agent, &transfer("5000.00")).await;

    // The status change writes the callback in its own transaction…
    let mut tx = app.core.db.begin().await.unwrap();
    let change = requests::Change::from_pending(RequestStatus::Cancelled, app.core.now(), "agent");
    assert!(requests::change(&mut tx, &id, &change).await.unwrap());
    let owed = callbacks::get(&mut *tx, &id).await.unwrap().unwrap();
    assert_eq!(
        (owed.status.as_str(), owed.state.as_str()),
        ("cancelled", "pending")
    );
    // …so when that transaction does not commit, neither does the callback.
    drop(tx);
    assert!(callbacks::get(app.core.db.reader(), &id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(app.request_status(&id).await, "pending");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(endpoint.count(), 0);
}

async fn a_leased_callback_is_claimed_once_and_a_late_outcome_is_ignored(backend: Backend) {
    use countersign::store::callbacks::{self, Outcome};
    let (app, mut alice, agent) = app_allowing_loopback(backend).await;
    let dead = Endpoint::start(Behaviour::Hang).await;
    set_callback(&app, &alice, &agent, &dead.url).await;
    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    alice.approve(&app.http, &id).await;
    eventually("the first attempt", Duration::from_secs(20), || async {
        dead.count() >= 1
    })
    .await;

    // While the worker's lease holds, nobody else can claim the callback.
    let now = app.core.now();
    let mut tx = app.core.db.begin().await.unwrap();
    let again = callbacks::claim(&mut tx, now, now + 30_000, 10)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(again.is_empty(), "{again:?}");

    // Once it runs out (the worker hung or died), the next claim makes attempt 2…
    app.clock.advance_ms(31_000);
    eventually("a second attempt", Duration::from_secs(20), || async {
        callbacks::get(app.core.db.reader(), &id)
            .await
            .unwrap()
            .is_some_and(|d| d.attempts >= 2)
    })
    .await;
    // …and the first attempt's outcome, arriving late, is not recorded.
    let mut tx = app.core.db.begin().await.unwrap();
    let recorded = callbacks::finish(&mut tx, &id, 1, app.core.now(), Outcome::Delivered)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(!recorded);
    let row = callbacks::get(app.core.db.reader(), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, "pending");
}

on_both_backends!(
    approve_calls_back_once_signed_and_the_agent_fetches_the_grant,
    deny_cancel_and_expiry_each_call_back,
    a_failing_endpoint_is_retried_and_the_delivery_is_audited,
    a_loopback_callback_is_refused_without_the_allow_list,
    a_dead_endpoint_delays_neither_a_decision_nor_another_agents_callback,
    an_owner_cannot_set_another_owners_agent_callback,
    the_command_line_sets_and_clears_a_callback,
    an_endpoint_that_always_fails_is_given_up_and_audited,
    every_delivery_checks_the_address_again,
    the_agents_page_sets_a_callback_and_the_document_describes_it,
    two_replicas_never_deliver_the_same_callback_twice,
    clearing_the_url_gives_up_a_callback_still_owed,
    a_host_name_is_resolved_checked_and_called,
    the_callback_commits_or_rolls_back_with_the_decision,
    a_leased_callback_is_claimed_once_and_a_late_outcome_is_ignored,
);
