//! The Rust client (`sdk/rust`, crate `countersign-client`) against the real server: an agent
//! asks and long-waits through it, a person decides with a passkey, a downstream system
//! verifies the grant against the JWKS and redeems it once. Each way a request can end comes
//! back as its typed error, and so does each kind of refusal, with its code and field. Every
//! call the client makes is also checked against the OpenAPI document (see `common`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use common::{Backend, TestApp};
use countersign::domain::jose::{GrantSigningKey, PublicJwk, GRANT_TYP};
use countersign_client::{
    ApprovalRequest, Client, Credentials, DataSensitivity, Error, Grant, Outcome, Status,
};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The usual transfer, as the client builds it.
fn transfer(amount: &str) -> ApprovalRequest {
    ApprovalRequest::new("payments.transfer", "bank-api")
        .operation("POST /v2/transfers")
        .params(json!({ "to": "DE89 3704 0044 0532 0130 00", "amount": amount }))
        .goal("Pay supplier invoice INV-1042")
        .rationale("Invoice approved in ticket FIN-77")
        .environment("production")
        .data_sensitivity(DataSensitivity::Confidential)
        .amount(amount, "EUR")
        .expires_in(Duration::from_secs(300))
}

/// Starts `request_approval` in the background; returns the id of the request once it is
/// pending (from the client's `on_pending` hook) and the task, which ends with the decision.
async fn ask_in_background(
    client: Client,
    request: ApprovalRequest,
) -> (String, JoinHandle<Result<Grant, Error>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let client = client.on_pending(move |state| {
        assert_eq!(state.status, Status::Pending);
        if let Some(tx) = tx.lock().unwrap().take() {
            let _ = tx.send(state.id.clone());
        }
    });
    let task = tokio::spawn(async move { client.request_approval(&request).await });
    let id = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("the request went pending")
        .expect("the hook ran");
    (id, task)
}

/// The decision the background `request_approval` ended with.
async fn decision(task: JoinHandle<Result<Grant, Error>>) -> Result<Grant, Error> {
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("request_approval returned")
        .unwrap()
}

/// An approved request's grant, through the client.
async fn approved_grant(app: &TestApp, alice: &mut common::Person, client: &Client) -> Grant {
    let (id, asked) = ask_in_background(client.clone(), transfer("5000.00")).await;
    alice.approve(&app.http, &id).await;
    decision(asked).await.unwrap()
}

async fn an_approval_yields_a_grant_that_verifies_and_redeems_once(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let client = app.client(&agent);
    assert_eq!(client.agent_id(), Some(agent.id.as_str()));
    let (id, asked) = ask_in_background(client.clone(), transfer("5000.00")).await;
    alice.approve(&app.http, &id).await;
    let grant = decision(asked).await.unwrap();
    assert_eq!(grant.request_id(), id);
    assert_eq!(grant.claims.sub, agent.id);
    assert_eq!(grant.claims.aud, "bank-api");
    assert_eq!(grant.claims.iss, app.base);
    assert_eq!(grant.claims.approvers, vec![alice.id.clone()]);
    assert_eq!(
        grant.claims.authorization_details[0]
            .params
            .as_ref()
            .unwrap()["amount"],
        "5000.00"
    );
    assert!(format!("{grant:?}").contains("<redacted>"));

    // The request's state agrees (read without waiting: a decided request is never slow_down).
    let state = client.get_request(&id, Duration::ZERO).await.unwrap();
    assert_eq!(state.status, Status::Approved);
    assert_eq!(state.action_hash, grant.action_hash());
    assert_eq!(state.grant.as_ref().map(|g| &g.jti), Some(&grant.jti));

    // The bank verifies it against the JWKS, then redeems it: once.
    let bank = app.downstream();
    let claims = bank
        .verify_grant_for_action(&grant.token, "bank-api", grant.action_hash())
        .await
        .unwrap();
    assert_eq!(claims, grant.claims);
    let redeemed = bank.redeem(&grant.token).await.unwrap();
    assert_eq!(redeemed.jti, grant.jti);
    let again = bank.redeem(&grant.token).await.unwrap_err();
    assert!(matches!(again, Error::GrantAlreadyRedeemed(_)), "{again:?}");
    assert_eq!(
        (again.code(), again.status()),
        ("grant_already_redeemed", Some(409))
    );
    // Verifying does not use a grant up, and still passes: only redeeming is once.
    client
        .downstream()
        .verify_grant(&grant.token, "bank-api")
        .await
        .unwrap();

    client
        .report_outcome(&grant.jti, Outcome::Succeeded, Some("booked as TX-1"))
        .await
        .unwrap();
    let twice = client
        .report_outcome(&grant.jti, Outcome::Failed, None)
        .await
        .unwrap_err();
    assert!(matches!(twice, Error::Conflict(_)), "{twice:?}");
    let kinds = app.audit_kinds(&id).await;
    assert!(
        kinds.ends_with(&["grant.redeemed".into(), "grant.outcome".into()]),
        "{kinds:?}"
    );
}

async fn policy_allows_at_once_and_denies_with_its_rule(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    app.core
        .apply_policy(
            r#"
[[rule]]
id = "small-payments"
action = "payments.*"
amount_below = { value = "100.00", currency = "EUR" }
outcome = "allow"

[[rule]]
id = "no-prod-drops"
action = "db.drop_*"
environment = ["production"]
outcome = "deny"
reason = "Agents never drop production tables."
"#,
            "test",
        )
        .await
        .unwrap();
    let client = app.client(&agent).on_pending(|state| {
        panic!("nobody has to decide {}", state.id);
    });
    // Allowed outright: the grant comes with the answer to creating.
    let grant = client.request_approval(&transfer("99.99")).await.unwrap();
    assert!(grant.claims.approvers.is_empty());
    app.downstream().redeem(&grant.token).await.unwrap();

    let drop = ApprovalRequest::new("db.drop_table", "orders-db").environment("production");
    let e = client.request_approval(&drop).await.unwrap_err();
    match &e {
        Error::DeniedByPolicy {
            request_id,
            rule,
            explanation,
        } => {
            assert!(request_id.is_some());
            assert_eq!(rule.as_deref(), Some("no-prod-drops"));
            assert!(
                explanation.contains("Agents never drop production tables."),
                "{explanation}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.code(), "denied_by_policy");
}

async fn a_denial_comes_back_as_denied_with_the_reason(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let (id, asked) = ask_in_background(app.client(&agent), transfer("10.00")).await;
    let r = alice
        .decide(
            &app.http,
            &id,
            &json!({ "decision": "deny", "reason_code": "wrong_details", "reason": "Wrong IBAN" }),
        )
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    match decision(asked).await {
        Err(Error::Denied {
            request_id,
            reason_code,
            reason,
        }) => {
            assert_eq!(request_id, id);
            assert_eq!(reason_code, "wrong_details");
            assert_eq!(reason, "Wrong IBAN");
        }
        other => panic!("expected Denied, got {other:?}"),
    }
}

async fn expiry_and_cancellation_end_the_wait(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let client = app.client(&agent);

    // Nobody decides within the request's own expiry: the long-wait ends with it.
    let short = transfer("1.00").expires_in(Duration::from_secs(1));
    let started = std::time::Instant::now();
    match client.request_approval(&short).await {
        Err(Error::Expired { request_id }) => {
            assert_eq!(app.request_status(&request_id).await, "expired");
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // Past its time on the server's clock: the next read expires it.
    let pending = client.create_request(&transfer("2.00")).await.unwrap();
    assert_eq!(pending.status, Status::Pending);
    assert_eq!(pending.expires_in, Some(300));
    app.clock.advance_ms(301_000);
    let e = client.wait_for_decision(&pending.id).await.unwrap_err();
    assert!(
        matches!(&e, Error::Expired { request_id } if *request_id == pending.id),
        "{e:?}"
    );
    assert_eq!(e.code(), "expired_token");

    // Withdrawn while someone waits on it.
    let pending = client.create_request(&transfer("3.00")).await.unwrap();
    let waiter = {
        let (client, id) = (client.clone(), pending.id.clone());
        tokio::spawn(async move { client.wait_for_decision(&id).await })
    };
    common::eventually(
        "the client is long-waiting",
        Duration::from_secs(10),
        || async { app.core.waiters.waiting() > 0 },
    )
    .await;
    let cancelled = client.cancel_request(&pending.id).await.unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    let e = decision(waiter).await.unwrap_err();
    assert!(matches!(e, Error::Cancelled { .. }), "{e:?}");
    let again = client.cancel_request(&pending.id).await.unwrap_err();
    assert!(matches!(again, Error::Conflict(_)), "{again:?}");
    assert_eq!((again.code(), again.status()), ("conflict", Some(409)));
}

async fn ed25519_agents_sign_every_call_and_a_wrong_key_is_refused(backend: Backend) {
    let (app, mut alice, _agent) = TestApp::with_alice(backend).await;
    let (agent_id, key) = app.key_agent("alice@example.com").await;
    let client = Client::new(
        &app.base,
        Credentials::Ed25519 {
            agent_id: agent_id.clone(),
            signing_key: key.clone(),
        },
    )
    .unwrap();
    assert!(!format!("{client:?}").contains(&B64.encode(key.to_bytes())));
    // Create, then long-wait, then read again: each call its own assertion (a replayed jti
    // would be refused).
    let grant = approved_grant(&app, &mut alice, &client).await;
    for _ in 0..3 {
        let state = client
            .get_request(grant.request_id(), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(state.status, Status::Approved);
    }
    // The grant is bound to the key that asked.
    let jwk = countersign_client::public_jwk(&key).to_string();
    let thumbprint = PublicJwk::parse(&jwk).unwrap().thumbprint();
    assert_eq!(
        grant.claims.cnf.as_ref().map(|c| c.jkt.as_str()),
        Some(thumbprint.as_str())
    );
    assert_eq!(grant.claims.sub, agent_id);

    // Another key for the same agent id: 401 invalid_token, typed.
    let impostor = Client::new(
        &app.base,
        Credentials::Ed25519 {
            agent_id: agent_id.clone(),
            signing_key: ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng),
        },
    )
    .unwrap();
    let e = impostor
        .create_request(&transfer("1.00"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidToken(_)), "{e:?}");
    assert_eq!((e.code(), e.status()), ("invalid_token", Some(401)));
    // Assertions addressed to another server are refused too.
    let elsewhere = client.clone().with_public_url("https://elsewhere.example");
    let e = elsewhere
        .get_request(grant.request_id(), Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidToken(_)), "{e:?}");
    // As is a wrong API key.
    let wrong = Client::new(
        &app.base,
        Credentials::ApiKey(format!("cs_agent_{agent_id}_not-the-secret")),
    )
    .unwrap();
    let e = wrong.create_request(&transfer("1.00")).await.unwrap_err();
    assert_eq!((e.code(), e.status()), ("invalid_token", Some(401)));
}

/// The token with its payload's claims changed and the signature kept.
fn tampered(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    change(&mut claims);
    format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims.to_string()),
        parts[2]
    )
}

async fn verify_grant_refuses_tampered_misaddressed_and_other_actions(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let grant = approved_grant(&app, &mut alice, &app.client(&agent)).await;
    let bank = app.downstream();
    let refused = |result: Result<countersign_client::GrantClaims, Error>| match result {
        Err(e @ Error::InvalidGrant { .. }) => {
            assert_eq!(e.code(), "invalid_grant");
            e.field().unwrap().to_string()
        }
        other => panic!("expected InvalidGrant, got {other:?}"),
    };

    let more = tampered(&grant.token, |c| {
        c["authorization_details"][0]["params"]["amount"] = json!("50000.00");
    });
    assert_eq!(
        refused(bank.verify_grant(&more, "bank-api").await),
        "signature"
    );
    assert_eq!(
        refused(bank.verify_grant(&grant.token, "crm-api").await),
        "aud"
    );
    let other_action = format!("sha256:{}", "0".repeat(64));
    assert_eq!(
        refused(
            bank.verify_grant_for_action(&grant.token, "bank-api", &other_action)
                .await
        ),
        "action_hash"
    );
    // Signed by a key the server never published (after refetching its JWKS once).
    let forger = GrantSigningKey::generate(&mut rand_core::OsRng);
    let (_, claims) = countersign::domain::jose::peek_unverified(&grant.token).unwrap();
    let forged = forger.sign_compact(GRANT_TYP, &claims).unwrap();
    assert_eq!(refused(bank.verify_grant(&forged, "bank-api").await), "kid");
    // Something signed that is not a grant (an agent assertion's typ).
    let assertion = forger.sign_compact("JWT", &claims).unwrap();
    assert_eq!(
        refused(bank.verify_grant(&assertion, "bank-api").await),
        "typ"
    );
    assert_eq!(
        refused(bank.verify_grant("not-a-token", "bank-api").await),
        "token"
    );
    // Issued by this server, but checked as if from another one.
    let other_issuer = app
        .downstream()
        .with_public_url("https://elsewhere.example");
    assert_eq!(
        refused(other_issuer.verify_grant(&grant.token, "bank-api").await),
        "iss"
    );

    // The server refuses the same: another action's hash, a token that is not its grant.
    let e = bank
        .redeem_for_action(&grant.token, &other_action)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e:?}");
    assert_eq!(e.field(), Some("action_hash"));
    let e = bank.redeem(&forged).await.unwrap_err();
    assert_eq!(
        (e.code(), e.status(), e.field()),
        ("invalid_request", Some(400), Some("token"))
    );
    // Still unused after all that: the right hash redeems it.
    bank.redeem_for_action(&grant.token, grant.action_hash())
        .await
        .unwrap();
}

async fn server_refusals_are_typed_with_their_field(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let client = app.client(&agent);

    let e = client
        .create_request(&ApprovalRequest::new("Payments Transfer!", "bank-api"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e:?}");
    assert_eq!(
        (e.code(), e.status(), e.field()),
        ("invalid_request", Some(400), Some("action.type"))
    );
    assert!(e.to_string().contains("action.type"), "{e}");
    let e = client
        .create_request(&transfer("5,000.00"))
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("context.amount.value"), "{e}");
    let e = client
        .create_request(&ApprovalRequest::new("db.migrate", "orders-db").params(json!([1, 2])))
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("action.params"), "{e}");
    let e = client
        .get_request("no-such-request", Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    let e = client
        .get_request("x", Duration::from_secs(56))
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("wait"), "{e}");

    // Reading a pending request again too soon without waiting: slow_down, with how long.
    let pending = client.create_request(&transfer("1.00")).await.unwrap();
    let first = client.get_request(&pending.id, Duration::ZERO).await;
    let second = client.get_request(&pending.id, Duration::ZERO).await;
    let e = first.and(second).unwrap_err();
    match &e {
        Error::SlowDown(problem) => {
            assert_eq!(problem.retry_after(), Some(pending.interval));
        }
        other => panic!("expected SlowDown, got {other:?}"),
    }

    // The Idempotency-Key: the same body again is the same request; another body conflicts.
    let keyed = transfer("7.00").idempotency_key("inv-7-pay");
    let first = client.create_request(&keyed).await.unwrap();
    let again = client.create_request(&keyed).await.unwrap();
    assert_eq!(first.id, again.id);
    let other = transfer("8.00").idempotency_key("inv-7-pay");
    let e = client.create_request(&other).await.unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e:?}");
}

on_both_backends!(
    an_approval_yields_a_grant_that_verifies_and_redeems_once,
    policy_allows_at_once_and_denies_with_its_rule,
    a_denial_comes_back_as_denied_with_the_reason,
    expiry_and_cancellation_end_the_wait,
    ed25519_agents_sign_every_call_and_a_wrong_key_is_refused,
    verify_grant_refuses_tampered_misaddressed_and_other_actions,
    server_refusals_are_typed_with_their_field,
);

/// A grant signed by a replica that started after the downstream fetched the JWKS names a key
/// the cache does not hold: the downstream fetches the JWKS again and verifies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_kid_refetches_the_jwks() {
    let (a, mut alice, agent) = TestApp::with_alice(Backend::Postgres).await;
    let bank = a.downstream();
    let first = approved_grant(&a, &mut alice, &a.client(&agent)).await;
    bank.verify_grant(&first.token, "bank-api").await.unwrap();

    let b = a.replica().await;
    let on_b = Client::new(&b.base, Credentials::ApiKey(agent.bearer.clone()))
        .unwrap()
        .with_public_url(&a.base);
    let second = approved_grant(&a, &mut alice, &on_b).await;
    let (header, _) = countersign::domain::jose::peek_unverified(&second.token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(b.core.signer.kid()));
    let claims = bank.verify_grant(&second.token, "bank-api").await.unwrap();
    assert_eq!(claims.jti, second.jti);
}
