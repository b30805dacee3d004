//! Hardening: what an attacker or a careless client tried, and what must hold against it.
//!
//! - The kill switch and key changes under load: once a suspension or a key change has
//!   committed, nothing created, approved or granted under the agent's old state may commit,
//!   and no grant from before may redeem. Checked while a dozen clients keep the agent's intake
//!   busy, because a guarantee that holds only when nothing else is happening does not hold.
//! - Every request the intake accepts can get its grant: large parameters travel as a digest.
//! - The passkey ceremony's edges: assertions made in another site's frame, cookie calls
//!   without origin headers, a ceremony finished at another request's address.
//! - The command line's words for an owner who has not enrolled, and a clean standard output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{problem, transfer, Agent, Backend, Person, TestApp};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::{AuthenticatorBackend, AuthenticatorBackendHashedClientData};
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};

/// Small payments pass at once (a grant per request); larger ones wait for the owner.
const POLICY: &str = r#"
[[rule]]
id = "small"
action = "payments.*"
amount_below = { value = "100.00", currency = "EUR" }
outcome = "allow"
"#;

const CLIENTS: usize = 12;

/// What the load's clients got before their credential stopped working.
#[derive(Default)]
struct Harvest {
    tokens: Vec<String>,
    answered: usize,
}

/// Twelve clients create requests for `agent` as fast as they can (three in four allowed at
/// once, one in four waiting for a human) until the server refuses the credential. Returns the
/// grants they received, once every client has stopped.
fn load(
    app: &TestApp,
    agent: &Agent,
    started: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Harvest> {
    let (http, url, bearer) = (
        app.http.clone(),
        app.url("/api/v1/requests"),
        agent.bearer.clone(),
    );
    tokio::spawn(async move {
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let (http, url, bearer, started) =
                (http.clone(), url.clone(), bearer.clone(), started.clone());
            clients.push(tokio::spawn(async move {
                let mut harvest = Harvest::default();
                for i in 0.. {
                    // Every body unique, so nothing collapses or replays.
                    let amount = if i % 4 == 3 {
                        format!("{}.{:02}", 500 + i, c)
                    } else {
                        format!("{}.{:02}", i % 90 + 1, c)
                    };
                    let r = http
                        .post(&url)
                        .bearer_auth(&bearer)
                        .json(&transfer(&amount))
                        .send()
                        .await
                        .unwrap();
                    match r.status() {
                        StatusCode::OK => {
                            let v: Value = r.json().await.unwrap();
                            harvest
                                .tokens
                                .push(v["grant"]["token"].as_str().unwrap().to_string());
                        }
                        StatusCode::ACCEPTED | StatusCode::TOO_MANY_REQUESTS => {}
                        StatusCode::UNAUTHORIZED => break,
                        other => panic!("unexpected {other}: {}", r.text().await.unwrap()),
                    }
                    harvest.answered += 1;
                    started.fetch_add(1, Ordering::SeqCst);
                }
                harvest
            }));
        }
        let mut all = Harvest::default();
        for c in clients {
            let h = c.await.unwrap();
            all.tokens.extend(h.tokens);
            all.answered += h.answered;
        }
        all
    })
}

/// Waits until the load has had `n` answers, so the change lands in the middle of it.
async fn after_answers(started: &AtomicUsize, n: usize) {
    let within = std::time::Duration::from_secs(60);
    common::eventually("the load got its answers", within, || async {
        started.load(Ordering::SeqCst) >= n
    })
    .await;
}

/// The audit chain as exported, one JSON value per event.
async fn chain(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    app.core.export_audit(None, &mut out).await.unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Kinds of the agent's request events appended after the first event of `kind`, which must be
/// there. Only one agent exists in these tests, so every request event is this agent's.
async fn request_events_after(app: &TestApp, kind: &str) -> Vec<String> {
    let events = chain(app).await;
    let at = events
        .iter()
        .position(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event on the chain"));
    events[at + 1..]
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .filter(|k| ["request.created", "request.approved", "grant.issued"].contains(&k.as_str()))
        .collect()
}

async fn pending_of(app: &TestApp, agent: &Agent) -> Vec<String> {
    countersign::store::requests::pending_of_agent(app.core.db.reader(), &agent.id)
        .await
        .unwrap()
}

async fn issued_grants_of(app: &TestApp, agent: &Agent) -> Vec<String> {
    countersign::store::grants::issued_of_agent(app.core.db.reader(), &agent.id)
        .await
        .unwrap()
}

/// Every grant the load received is refused: revoked by the change, or never issued.
async fn none_redeems(app: &TestApp, tokens: &[String]) {
    for token in tokens {
        let r = app.redeem(token).await;
        let status = r.status();
        assert_eq!(
            status,
            StatusCode::GONE,
            "a grant from before the change redeemed or failed oddly: {}",
            r.text().await.unwrap()
        );
    }
}

/// A server with Alice and her agent whose edge does not limit refused redemptions: these tests
/// redeem every grant the load harvested, and each of those is refused on purpose.
async fn under_load(backend: Backend) -> (TestApp, common::Person, Agent) {
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_LIMIT_REDEEM_FAILURES", "off")]).await;
    let alice = app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    (app, alice, agent)
}

#[derive(Clone, Copy)]
enum Switch {
    /// `Countersign::suspend_agent`, as the admin page and the owner's agents page call it.
    Service,
    /// `countersign agent suspend ID`, another process on the same database.
    Cli,
}

async fn suspend_under_load(backend: Backend, how: Switch) {
    let (app, _alice, agent) = under_load(backend).await;
    app.core.apply_policy(POLICY, "test").await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let harvest = load(&app, &agent, started.clone());
    after_answers(&started, 60).await;

    match how {
        Switch::Service => {
            app.core.suspend_agent(&agent.id, "test").await.unwrap();
        }
        Switch::Cli => {
            let out = app.cli(&["agent", "suspend", &agent.id]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // The suspension has committed. Whatever the clients had in flight must not land now.
    let harvest = harvest.await.unwrap();
    assert!(harvest.answered >= 60 && !harvest.tokens.is_empty());

    assert_eq!(
        pending_of(&app, &agent).await,
        Vec::<String>::new(),
        "requests left pending after the kill switch"
    );
    assert_eq!(
        issued_grants_of(&app, &agent).await,
        Vec::<String>::new(),
        "grants left redeemable after the kill switch"
    );
    assert_eq!(
        request_events_after(&app, "agent.suspended").await,
        Vec::<String>::new(),
        "request events committed after the agent.suspended event"
    );
    none_redeems(&app, &harvest.tokens).await;
    // And the chain those commits made is still whole.
    assert!(matches!(
        app.core.verify_audit().await.unwrap(),
        countersign::service::audit::Verification::Intact { .. }
    ));
}

async fn suspending_under_load_stops_everything_at_once(backend: Backend) {
    suspend_under_load(backend, Switch::Service).await;
}

async fn suspending_from_the_cli_under_load_stops_everything_at_once(backend: Backend) {
    suspend_under_load(backend, Switch::Cli).await;
}

async fn rotating_the_key_under_load_retires_what_the_old_key_obtained(backend: Backend) {
    let (app, _alice, agent) = under_load(backend).await;
    app.core.apply_policy(POLICY, "test").await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let harvest = load(&app, &agent, started.clone());
    after_answers(&started, 60).await;

    let rotated = app.core.rotate_api_key(&agent.id, "test").await.unwrap();
    let harvest = harvest.await.unwrap();
    assert!(!harvest.tokens.is_empty());

    // Nothing the old key asked for commits after the change: no request, no grant.
    assert_eq!(
        request_events_after(&app, "agent.key_rotated").await,
        Vec::<String>::new(),
        "requests of the old key committed after the rotation"
    );
    assert_eq!(
        issued_grants_of(&app, &agent).await,
        Vec::<String>::new(),
        "grants obtained with the old key are still redeemable"
    );
    none_redeems(&app, &harvest.tokens).await;

    // The new key works, and its grants redeem.
    let fresh = Agent {
        id: agent.id.clone(),
        bearer: rotated.api_key.expose().to_string(),
    };
    let r = app
        .agent_post(&fresh, "/api/v1/requests", &transfer("7.77"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let r = app.redeem(v["grant"]["token"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Approvals finishing while the kill switch is pulled: each either committed before it (its
/// grant is then revoked) or finds the request cancelled; no grant outlives the suspension.
async fn approvals_racing_the_kill_switch_leave_no_grant(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let mut finishes = Vec::new();
    for i in 0..16 {
        let id = app
            .ask_id(&agent, &transfer(&format!("{}.00", 1000 + i)))
            .await;
        let start = alice
            .start_decision(&app.http, &id, &json!({ "decision": "approve" }))
            .await;
        let start: Value = start.json().await.unwrap();
        finishes.push((id, alice.answer(&start)));
    }
    let cookie = alice.cookie.clone().unwrap();
    let mut tasks = Vec::new();
    for (id, body) in finishes {
        let req = app
            .http
            .post(app.url(&format!("/api/ui/requests/{id}/decision/finish")))
            .header("cookie", &cookie)
            .header("origin", &app.base)
            .header("sec-fetch-site", "same-origin")
            .json(&body);
        tasks.push(tokio::spawn(
            async move { req.send().await.unwrap().status() },
        ));
    }
    app.core.suspend_agent(&agent.id, "test").await.unwrap();
    for t in tasks {
        let status = t.await.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "decision answered {status}"
        );
    }
    assert_eq!(issued_grants_of(&app, &agent).await, Vec::<String>::new());
    assert_eq!(pending_of(&app, &agent).await, Vec::<String>::new());
    assert_eq!(
        request_events_after(&app, "agent.suspended").await,
        Vec::<String>::new()
    );
}

/// Redemptions racing the kill switch: a redemption that answers 200 committed before the
/// suspension did (its `grant.redeemed` event comes first on the chain); every other one is
/// refused as revoked, and nothing is left redeemable.
async fn redemptions_racing_the_kill_switch_commit_before_it_or_not_at_all(backend: Backend) {
    let (app, _alice, agent) = under_load(backend).await;
    app.core.apply_policy(POLICY, "test").await.unwrap();
    let mut tokens = Vec::new();
    for i in 0..24 {
        let r = app
            .agent_post(
                &agent,
                "/api/v1/requests",
                &transfer(&format!("{}.00", i + 1)),
            )
            .await;
        let v: Value = r.json().await.unwrap();
        tokens.push(v["grant"]["token"].as_str().unwrap().to_string());
    }
    let answered = Arc::new(AtomicUsize::new(0));
    let redeemers: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let req = app
                .http
                .post(app.url("/api/v1/grants/redeem"))
                .json(&json!({ "token": token }));
            let answered = answered.clone();
            tokio::spawn(async move {
                let r = req.send().await.unwrap();
                answered.fetch_add(1, Ordering::SeqCst);
                let status = r.status();
                let v: Value = r.json().await.unwrap();
                (status, v)
            })
        })
        .collect();
    // Pulled once the first redemptions are through, while the rest are still on their way.
    after_answers(&answered, 2).await;
    app.core.suspend_agent(&agent.id, "test").await.unwrap();
    let mut redeemed = Vec::new();
    for r in redeemers {
        let (status, v) = r.await.unwrap();
        match status {
            StatusCode::OK => redeemed.push(v["claims"]["jti"].as_str().unwrap().to_string()),
            StatusCode::GONE => assert_eq!(v["error"], "grant_revoked", "{v}"),
            other => panic!("redemption answered {other}: {v}"),
        }
    }
    let events = chain(&app).await;
    let suspended = events
        .iter()
        .position(|e| e["kind"] == "agent.suspended")
        .unwrap();
    for jti in &redeemed {
        let at = events
            .iter()
            .position(|e| e["kind"] == "grant.redeemed" && e["data"]["jti"] == jti.as_str())
            .unwrap();
        assert!(at < suspended, "grant {jti} redeemed after the suspension");
    }
    assert_eq!(issued_grants_of(&app, &agent).await, Vec::<String>::new());
}

/// A request with `params` of `n` bytes in canonical form (`{"blob":"x…"}`), `amount` in EUR.
fn with_params(n: usize, amount: &str) -> Value {
    let mut body = transfer(amount);
    // `{"blob":""}` is 11 bytes; the rest is the string.
    body["action"]["params"] = serde_json::json!({ "blob": "x".repeat(n - 11) });
    body
}

/// The canonical JSON of a body's params, and its `sha256:` digest.
fn params_digest(body: &Value) -> (usize, String) {
    use countersign::domain::canonical::{canonical_json, sha256_prefixed};
    let canonical = canonical_json(&body["action"]["params"]);
    (canonical.len(), sha256_prefixed(canonical.as_bytes()))
}

/// Redeems a grant (expecting 200) and returns its `authorization_details[0]`.
async fn redeemed_detail(app: &TestApp, token: &str) -> Value {
    assert!(token.len() <= 8192, "grant of {} bytes", token.len());
    let r = app.redeem(token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["claims"]["authorization_details"][0].clone()
}

async fn grants_for_large_params_carry_their_digest(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    app.core.apply_policy(POLICY, "test").await.unwrap();

    // Up to 4 KiB of canonical params travel in the grant; one byte more travels as a digest.
    for (n, inline) in [
        (4096, true),
        (4097, false),
        (6000, false),
        (32 * 1024, false),
    ] {
        let body = with_params(n, "5.00");
        let (len, digest) = params_digest(&body);
        assert_eq!(len, n);
        let r = app.agent_post(&agent, "/api/v1/requests", &body).await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "params of {n} bytes: {v}");
        let id = v["id"].as_str().unwrap().to_string();
        let token = v["grant"]["token"].as_str().unwrap().to_string();
        // Every later read answers too, with the same grant.
        let again = app
            .agent_get(&agent, &format!("/api/v1/requests/{id}"))
            .await;
        assert_eq!(again.status(), StatusCode::OK);
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["grant"]["token"], token.as_str());

        let detail = redeemed_detail(&app, &token).await;
        if inline {
            assert_eq!(detail["params"], body["action"]["params"]);
            assert!(detail.get("params_sha256").is_none());
        } else {
            assert_eq!(detail["params_sha256"], digest.as_str(), "{n} bytes");
            assert!(detail.get("params").is_none());
        }
        assert_eq!(detail["type"], "payments.transfer");
    }

    // A human-approved request with the largest params the intake accepts gets its grant too.
    let body = with_params(32 * 1024, "5000.00");
    let (_, digest) = params_digest(&body);
    let id = app.ask_id(&agent, &body).await;
    alice.approve(&app.http, &id).await;
    let state = app.state(&agent, &id).await;
    assert_eq!(state["status"], "approved", "{state}");
    let detail = redeemed_detail(&app, state["grant"]["token"].as_str().unwrap()).await;
    assert_eq!(detail["params_sha256"], digest.as_str());
}

/// The longest fields the intake accepts, in four-byte characters, with params just under the
/// digest threshold: the grant still fits in 8 KiB, by carrying the digest.
async fn the_largest_accepted_request_still_gets_a_grant_that_fits(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    app.core
        .apply_policy(
            "[[rule]]\nid = \"all\"\noutcome = \"allow\"\ngrant_ttl_seconds = 300\n",
            "test",
        )
        .await
        .unwrap();
    let wide = "\u{1D11E}".repeat(256);
    let mut body = with_params(4096, "5.00");
    body["action"]["type"] = Value::String("a".repeat(128));
    body["action"]["target"] = Value::String(wide.clone());
    body["action"]["operation"] = Value::String(wide);
    let (_, digest) = params_digest(&body);
    let r = app.agent_post(&agent, "/api/v1/requests", &body).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    let detail = redeemed_detail(&app, v["grant"]["token"].as_str().unwrap()).await;
    assert_eq!(detail["params_sha256"], digest.as_str());
}

// --- the passkey ceremony's edges -------------------------------------------------------------

/// A person whose passkey answers with client data this test writes itself (the soft
/// authenticator signs whatever client data hash it is given, as a real one does).
struct Forger {
    person: Person,
    key: SoftPasskey,
}

impl Forger {
    /// Invites `email` as an owner and enrols a passkey for them.
    async fn enrol(app: &TestApp, email: &str) -> Self {
        let invite = app.core.invite(email, "owner", &[], "test").await.unwrap();
        let token = invite.link.expose().rsplit('/').next().unwrap().to_string();
        let mut person = app.stranger();
        let start = person
            .post(
                &app.http,
                "/api/ui/enrol/start",
                &json!({ "token": token, "display_name": email, "passkey_name": "soft" }),
            )
            .await;
        assert_eq!(start.status(), StatusCode::OK);
        let start: Value = start.json().await.unwrap();
        let options: CreationChallengeResponse =
            serde_json::from_value(start["options"].clone()).unwrap();
        let mut key = SoftPasskey::new(true);
        let credential = AuthenticatorBackend::perform_register(
            &mut key,
            person.origin.clone(),
            options.public_key,
            60_000,
        )
        .unwrap();
        let finish = person
            .post(
                &app.http,
                "/api/ui/enrol/finish",
                &json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
            )
            .await;
        assert_eq!(finish.status(), StatusCode::OK);
        let me: Value = finish.json().await.unwrap();
        person.id = me["id"].as_str().unwrap().to_string();
        person.email = email.to_string();
        Self { person, key }
    }

    /// An assertion over client data `{type, challenge, origin}` plus `extra` members.
    fn assert(&mut self, options: &Value, extra: Value) -> Value {
        let options: RequestChallengeResponse = serde_json::from_value(options.clone()).unwrap();
        let mut client = json!({
            "type": "webauthn.get",
            // webauthn-rs 0.6 keeps the challenge as bytes: in client data it is base64url.
            "challenge": URL_SAFE_NO_PAD.encode(&options.public_key.challenge),
            "origin": self.person.origin.as_str().trim_end_matches('/'),
        });
        for (k, v) in extra.as_object().unwrap() {
            client[k] = v.clone();
        }
        let client = serde_json::to_vec(&client).unwrap();
        let hash = Sha256::digest(&client).to_vec();
        let mut credential = AuthenticatorBackendHashedClientData::perform_auth(
            &mut self.key,
            hash,
            options.public_key,
            60_000,
        )
        .unwrap();
        credential.response.client_data_json = client;
        serde_json::to_value(credential).unwrap()
    }

    /// Starts a decision on `request_id` (expecting 200) and returns the start answer.
    async fn start(&mut self, app: &TestApp, request_id: &str, decision: &str) -> Value {
        let body = if decision == "approve" {
            json!({ "decision": "approve" })
        } else {
            json!({ "decision": "deny", "reason_code": "too_risky" })
        };
        let r = self
            .person
            .start_decision(&app.http, request_id, &body)
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn finish(
        &mut self,
        app: &TestApp,
        request_id: &str,
        start: &Value,
        extra: Value,
    ) -> Response {
        let credential = self.assert(&start["options"], extra);
        self.person
            .post(
                &app.http,
                &format!("/api/ui/requests/{request_id}/decision/finish"),
                &json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
            )
            .await
    }

    async fn sign_in(&mut self, app: &TestApp, extra: Value) -> Response {
        let start = self
            .person
            .post(
                &app.http,
                "/api/ui/sign-in/start",
                &json!({ "email": self.person.email }),
            )
            .await;
        assert_eq!(start.status(), StatusCode::OK);
        let start: Value = start.json().await.unwrap();
        let credential = self.assert(&start["options"], extra);
        self.person
            .post(
                &app.http,
                "/api/ui/sign-in/finish",
                &json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
            )
            .await
    }
}

/// Client data a browser signs inside a frame of another site: refused for decisions and for
/// sign-in alike (webauthn-rs checks `crossOrigin` only at registration).
async fn assertions_made_in_a_cross_origin_frame_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.enrol_first_admin("alice@example.com").await;
    let mut bob = Forger::enrol(&app, "bob@example.com").await;
    let agent = app.agent("bob@example.com").await;

    for (decision, extra) in [
        ("approve", json!({ "crossOrigin": true })),
        ("deny", json!({ "crossOrigin": true })),
        ("approve", json!({ "topOrigin": "https://evil.example" })),
        (
            "approve",
            json!({ "crossOrigin": false, "topOrigin": "https://evil.example" }),
        ),
    ] {
        let id = app.ask_id(&agent, &transfer("5000.00")).await;
        let start = bob.start(&app, &id, decision).await;
        let r = bob.finish(&app, &id, &start, extra.clone()).await;
        problem(r, StatusCode::FORBIDDEN, "access_denied").await;
        assert_eq!(
            app.request_status(&id).await,
            "pending",
            "{decision} {extra}"
        );
    }
    // What browsers send on a page of our own (Chromium says `"crossOrigin": false`) decides.
    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    let start = bob.start(&app, &id, "approve").await;
    let r = bob
        .finish(&app, &id, &start, json!({ "crossOrigin": false }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.request_status(&id).await, "approved");

    for extra in [
        json!({ "crossOrigin": true }),
        json!({ "topOrigin": "https://evil.example" }),
    ] {
        let r = bob.sign_in(&app, extra).await;
        problem(r, StatusCode::FORBIDDEN, "access_denied").await;
    }
    assert_eq!(bob.sign_in(&app, json!({})).await.status(), StatusCode::OK);
}

/// A state-changing call that carries the session cookie but neither `Origin` nor
/// `Sec-Fetch-Site` is not one a browser would send for our own page: refused, including
/// finishing an approval. Agents' bearer calls are unaffected.
async fn cookie_calls_without_origin_headers_are_refused(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    let start = alice
        .start_decision(&app.http, &id, &json!({ "decision": "approve" }))
        .await;
    let start: Value = start.json().await.unwrap();
    let answer = alice.answer(&start);
    let cookie = alice.cookie.clone().unwrap();
    let bare = |path: &str| app.http.post(app.url(path)).header("cookie", &cookie);

    let r = bare(&format!("/api/ui/requests/{id}/decision/finish"))
        .json(&answer)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(app.request_status(&id).await, "pending");

    let r = bare("/api/ui/sign-out").send().await.unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = bare("/api/app/my_agents")
        .form(&[("x", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Still signed in: the refused sign-out did nothing.
    assert_eq!(
        alice.get(&app.http, "/api/ui/me").await.status(),
        StatusCode::OK
    );

    // No cookie, no session to forge with: a non-browser client may start a sign-in.
    let r = app
        .http
        .post(app.url("/api/ui/sign-in/start"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // And an agent gives its grant up with its key alone.
    app.core
        .apply_policy("[[rule]]\nid = \"all\"\noutcome = \"allow\"\n", "test")
        .await
        .unwrap();
    let r = app
        .agent_post(&agent, "/api/v1/requests", &transfer("1.00"))
        .await;
    let v: Value = r.json().await.unwrap();
    let jti = v["grant"]["jti"].as_str().unwrap();
    let r = app
        .http
        .post(app.url(&format!("/api/v1/grants/{jti}/revoke")))
        .bearer_auth(&agent.bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// A ceremony started for one request and finished at another request's URL decides nothing.
async fn a_ceremony_finished_at_another_requests_url_is_refused(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let r2 = app.ask_id(&agent, &transfer("5000.00")).await;
    let r3 = app.ask_id(&agent, &transfer("6000.00")).await;
    let start = alice
        .start_decision(&app.http, &r3, &json!({ "decision": "approve" }))
        .await;
    assert_eq!(start.status(), StatusCode::OK);
    let start: Value = start.json().await.unwrap();
    let r = alice.finish_decision(&app.http, &r2, &start).await;
    let body = problem(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(body["field"], "ceremony_id");
    assert_eq!(app.request_status(&r2).await, "pending");
    assert_eq!(app.request_status(&r3).await, "pending");
    // At its own URL, a fresh ceremony works.
    alice.approve(&app.http, &r3).await;
    assert_eq!(app.request_status(&r3).await, "approved");
}

// --- the command line ------------------------------------------------------------------------

/// `agent create --owner` says why the owner cannot own an agent, in words that tell the
/// operator what to do; and whatever the log level, standard output carries only the answer.
async fn the_cli_names_an_owner_who_has_not_enrolled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.enrol_first_admin("alice@example.com").await;
    app.core
        .invite("bob@example.com", "owner", &[], "test")
        .await
        .unwrap();
    let out = app.cli(&[
        "agent",
        "create",
        "--name",
        "b",
        "--owner",
        "bob@example.com",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bob@example.com has been invited but has not enrolled yet"),
        "{err}"
    );
    let out = app.cli(&[
        "agent",
        "create",
        "--name",
        "c",
        "--owner",
        "carol@example.com",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no one with e-mail carol@example.com has enrolled"),
        "{err}"
    );

    // Debug logging on: stdout is still exactly the JSON answer.
    let out = app
        .cli_command()
        .env("RUST_LOG", "debug")
        .args([
            "agent",
            "create",
            "--name",
            "a",
            "--owner",
            "alice@example.com",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert!(created["api_key"]
        .as_str()
        .unwrap()
        .starts_with("cs_agent_"));
    let out = app
        .cli_command()
        .env("RUST_LOG", "debug")
        .args(["audit", "verify"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("Audit chain intact"), "{stdout}");
}

/// A PostgreSQL password in `DATABASE_URL` never shows in `Debug` of the configuration or the
/// open database (what a panic message or a careless log line would print).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_password_stays_out_of_debug_output() {
    let app = TestApp::spawn(Backend::Postgres).await;
    // Trust authentication ignores the password, so the same database opens with one.
    let url = app.core.config.database_url.expose().replacen(
        "postgres://postgres@",
        "postgres://postgres:pw-8c1f-secret@",
        1,
    );
    assert!(url.contains("pw-8c1f-secret"), "{url}");
    let db = countersign::store::Db::connect(&url).await.unwrap();
    let shown = format!("{db:?}");
    assert!(!shown.contains("pw-8c1f-secret"), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
    assert_eq!(db.url().expose(), url);
}

on_both_backends!(
    suspending_under_load_stops_everything_at_once,
    suspending_from_the_cli_under_load_stops_everything_at_once,
    rotating_the_key_under_load_retires_what_the_old_key_obtained,
    approvals_racing_the_kill_switch_leave_no_grant,
    redemptions_racing_the_kill_switch_commit_before_it_or_not_at_all,
    grants_for_large_params_carry_their_digest,
    the_largest_accepted_request_still_gets_a_grant_that_fits,
    assertions_made_in_a_cross_origin_frame_are_refused,
    cookie_calls_without_origin_headers_are_refused,
    a_ceremony_finished_at_another_requests_url_is_refused,
    the_cli_names_an_owner_who_has_not_enrolled,
);
