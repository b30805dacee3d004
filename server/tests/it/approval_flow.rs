//! The core loop end to end, on SQLite and PostgreSQL: an agent asks, an owner approves with a
//! passkey, the waiting agent receives a grant, the downstream system redeems it once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{problem, transfer, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn full_loop_approve_wait_redeem_report_audit(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;

    let created = app.ask(&agent, &transfer("5000.00")).await;
    assert_eq!(created["status"], "pending");
    assert_eq!(created["policy"]["rule"], "default");
    assert_eq!(created["policy"]["approvals_required"], 1);
    assert_eq!(created["expires_in"], 300);
    assert!(created["action_hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        created["approval_url"],
        format!("{}/requests/{id}", app.base)
    );

    // The owner sees the request as stored, with the hash of what was shown.
    let view: Value = alice
        .get(&app.http, &format!("/api/ui/requests/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["view"]["action_hash"], created["action_hash"]);
    assert_eq!(
        view["view"]["request"]["intent"]["goal"],
        "Pay supplier invoice INV-1042"
    );

    let decided = alice.approve(&app.http, &id).await;
    assert_eq!(decided["status"], "approved");

    let got: Value = app
        .agent_get(&agent, &format!("/api/v1/requests/{id}?wait=5"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"], "approved");
    assert_eq!(got["approvals"], json!({ "required": 1, "received": 1 }));
    let token = got["grant"]["token"].as_str().unwrap().to_string();
    let jti = got["grant"]["jti"].as_str().unwrap().to_string();

    // The grant verifies with the published key and carries the contract's claims.
    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = serde_json::to_string(&jwks["keys"][0]).unwrap();
    let key = countersign::domain::jose::PublicJwk::parse(&jwk)
        .unwrap()
        .verifying_key()
        .unwrap();
    let (header, claims) = countersign::domain::jose::verify_compact(&token, &key).unwrap();
    assert_eq!(header.typ.as_deref(), Some("countersign-grant+jwt"));
    assert_eq!(claims["sub"], agent.id);
    assert_eq!(claims["aud"], "bank-api");
    assert_eq!(claims["action_hash"], created["action_hash"]);
    assert_eq!(claims["request_id"], id);
    assert_eq!(
        claims["authorization_details"][0]["type"],
        "payments.transfer"
    );
    assert_eq!(claims["approvers"], json!([alice.id]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        60
    );

    // A different action hash is refused without using the grant up.
    let wrong = app
        .http
        .post(app.url("/api/v1/grants/redeem"))
        .json(&json!({ "token": token, "action_hash": "sha256:00" }))
        .send()
        .await
        .unwrap();
    let body = problem(wrong, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(body["field"], "action_hash");

    let first = app.redeem(&token).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["valid"], true);
    assert_eq!(first["claims"]["jti"], jti);
    problem(
        app.redeem(&token).await,
        StatusCode::CONFLICT,
        "grant_already_redeemed",
    )
    .await;

    let report = app
        .agent_post(
            &agent,
            &format!("/api/v1/grants/{jti}/report"),
            &json!({ "outcome": "succeeded" }),
        )
        .await;
    assert_eq!(report.status(), StatusCode::OK);
    problem(
        app.agent_post(
            &agent,
            &format!("/api/v1/grants/{jti}/report"),
            &json!({ "outcome": "failed" }),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    // The evidence of this request, in order, on an intact chain.
    let kinds = app.audit_kinds(&id).await;
    assert_eq!(
        kinds,
        [
            "request.created",
            "approval.recorded",
            "request.approved",
            "grant.issued",
            "grant.redeemed",
            "grant.outcome"
        ]
    );
    match app.core.verify_audit().await.unwrap() {
        countersign::service::audit::Verification::Intact { events, .. } => assert!(events >= 6),
        broken => panic!("chain broken: {broken:?}"),
    }
}

async fn long_wait_returns_when_the_decision_commits(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("10.00")).await;

    let waiter = app.wait_in_background(&agent, &id);
    // Let the waiter get registered, then decide.
    common::eventually("the waiter registered", Duration::from_secs(10), || async {
        app.core.waiters.waiting() == 1
    })
    .await;
    alice.approve(&app.http, &id).await;
    let (r, elapsed) = waiter.await.unwrap();
    assert_eq!(r["status"], "approved");
    assert!(r["grant"]["token"].is_string());
    // The wait was 55 s; it came back with the decision, long before that.
    assert!(
        elapsed < Duration::from_secs(30),
        "long-wait held {elapsed:?}"
    );
    // The delivery was measured from the commit's wake-up, once.
    assert_eq!(app.core.metrics.decision_delivery.count(), 1);
}

async fn thirty_two_parallel_redeems_have_exactly_one_winner(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("10.00")).await;
    alice.approve(&app.http, &id).await;
    let got: Value = app
        .agent_get(&agent, &format!("/api/v1/requests/{id}"))
        .await
        .json()
        .await
        .unwrap();
    let token = got["grant"]["token"].as_str().unwrap().to_string();

    // 32 downstream systems redeem at once (the Rust client, sharing its connection pool).
    let bank = app.downstream();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (bank, token) = (bank.clone(), token.clone());
            tokio::spawn(async move { bank.redeem(&token).await })
        })
        .collect();
    let mut ok = 0;
    let mut conflict = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) if (e.status(), e.code()) == (Some(409), "grant_already_redeemed") => {
                conflict += 1
            }
            Err(other) => panic!("unexpected answer {other}"),
        }
    }
    assert_eq!((ok, conflict), (1, 31));
    let lines = app.audit_lines(&id).await;
    let redeemed = lines
        .iter()
        .filter(|l| l.contains("\"grant.redeemed\""))
        .count();
    assert_eq!(redeemed, 1);
}

async fn idempotency_key_replays_or_conflicts(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let post = |body: Value, key: &'static str| {
        let http = app.http.clone();
        let url = app.url("/api/v1/requests");
        let bearer = agent.bearer.clone();
        async move {
            http.post(url)
                .bearer_auth(bearer)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let first = post(transfer("1.00"), "k-1").await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    // Same body (even re-serialised with other key order) → same request.
    let reordered: Value =
        serde_json::from_str(&serde_json::to_string(&transfer("1.00")).unwrap()).unwrap();
    let again = post(reordered, "k-1").await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    // Other body, same key → 409.
    problem(
        post(transfer("2.00"), "k-1").await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    // Without a key, the same body is a new request.
    let fresh = app.ask(&agent, &transfer("1.00")).await;
    assert_ne!(fresh["id"], first["id"]);

    // Concurrent first uses of one key produce one request.
    let tasks: Vec<_> = (0..8)
        .map(|_| tokio::spawn(post(transfer("3.00"), "k-race")))
        .collect();
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        ids.insert(
            common::json_of(r, StatusCode::ACCEPTED).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(ids.len(), 1);
}

async fn agents_cannot_see_each_others_requests(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.enrol_first_admin("alice@example.com").await;
    let a = app.agent("alice@example.com").await;
    let b = app.agent("alice@example.com").await;
    let id = app.ask_id(&a, &transfer("1.00")).await;
    problem(
        app.agent_get(&b, &format!("/api/v1/requests/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        app.agent_post(&b, &format!("/api/v1/requests/{id}/cancel"), &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let mine = app.agent_get(&a, &format!("/api/v1/requests/{id}")).await;
    assert_eq!(mine.status(), StatusCode::OK);
}

async fn denial_reason_reaches_the_waiting_agent(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("10.00")).await;
    let r = alice
        .decide(
            &app.http,
            &id,
            &json!({ "decision": "deny", "reason_code": "wrong_details", "reason": "Wrong IBAN" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let got: Value = app.state(&agent, &id).await;
    assert_eq!(got["status"], "denied");
    assert_eq!(got["decision"]["reason_code"], "wrong_details");
    assert_eq!(got["decision"]["reason"], "Wrong IBAN");
    assert!(got.get("grant").is_none());
}

async fn owners_can_revoke_their_agents_grants(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let mut bob = app.enrol("bob@example.com", "owner", &[]).await;
    let id = app.ask_id(&agent, &transfer("10.00")).await;
    alice.approve(&app.http, &id).await;
    let grant = app.state(&agent, &id).await["grant"].clone();
    let (token, jti) = (
        grant["token"].as_str().unwrap(),
        grant["jti"].as_str().unwrap(),
    );
    let path = format!("/api/v1/grants/{jti}/revoke");

    // Another owner: the grant does not exist for them.
    problem(
        bob.post(&app.http, &path, &json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Signed out, no credential at all.
    problem(
        app.http.post(app.url(&path)).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // Cross-site, with the owner's cookie.
    let r = app
        .http
        .post(app.url(&path))
        .header("cookie", alice.cookie.clone().unwrap())
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    // The owner, from her own browser: revoked, and the grant no longer redeems.
    let r = alice.post(&app.http, &path, &json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    problem(app.redeem(token).await, StatusCode::GONE, "grant_revoked").await;
    let revoked = app
        .audit_lines(&id)
        .await
        .into_iter()
        .find(|l| l.contains("\"grant.revoked\""))
        .unwrap();
    assert!(revoked.contains(&format!("user:{}", alice.id)), "{revoked}");
}

async fn discovery_and_operations_endpoints_answer(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    app.ask_id(&agent, &transfer("1.00")).await;
    let get = |path: &'static str| {
        let http = app.http.clone();
        let url = app.url(path);
        async move { http.get(url).send().await.unwrap() }
    };
    assert_eq!(get("/healthz").await.text().await.unwrap(), "ok");
    assert_eq!(get("/readyz").await.status(), StatusCode::OK);
    let metrics = get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("countersign_requests_total{outcome=\"pending\"} 1"),
        "{metrics}"
    );
    // Per-route latency, labelled by the route's pattern (nested routes included).
    for series in [
        "countersign_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/requests\",status=\"202\"} 1",
        "countersign_http_request_duration_seconds_count{method=\"POST\",route=\"/api/ui/enrol/finish\",status=\"200\"} 1",
        "countersign_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\",status=\"200\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    let doc: Value = get("/api/v1/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/requests",
        "/api/v1/requests/{id}",
        "/api/v1/requests/{id}/cancel",
        "/api/v1/grants/redeem",
        "/api/v1/grants/{jti}/revoke",
        "/api/v1/grants/{jti}/report",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert_eq!(doc["servers"][0]["url"], app.base);
    let jwks: Value = get("/.well-known/jwks.json").await.json().await.unwrap();
    assert_eq!(jwks["keys"][0]["kid"], app.core.signer.kid());
}

async fn concurrent_intake_commits_each_request_with_its_own_evidence(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    app.core
        .apply_policy(
            "[[rule]]\nid = \"small\"\naction = \"payments.*\"\namount_below = { value = \"100.00\", currency = \"EUR\" }\noutcome = \"allow\"\n\n\
             [[rule]]\nid = \"no-drops\"\naction = \"db.drop_*\"\noutcome = \"deny\"\nreason = \"No.\"\n",
            "test",
        )
        .await
        .unwrap();
    // Many at once, so the writer commits them in shared transactions.
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let body = match i % 3 {
                0 => transfer("5.00"),
                1 => transfer(&format!("{}.00", 500 + i)),
                _ => json!({ "action": { "type": "db.drop_table", "target": format!("t{i}") } }),
            };
            let (http, url, bearer) = (
                app.http.clone(),
                app.url("/api/v1/requests"),
                agent.bearer.clone(),
            );
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(bearer)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (i % 3, r.status(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    for t in tasks {
        let (kind, status, body) = t.await.unwrap();
        let id = body
            .get("id")
            .or_else(|| body.get("request_id"))
            .and_then(Value::as_str)
            .unwrap()
            .to_string();
        let kinds = app.audit_kinds(&id).await;
        match kind {
            0 => {
                assert_eq!(status, StatusCode::OK);
                assert!(body["grant"]["token"].is_string());
                assert_eq!(
                    kinds,
                    ["request.created", "request.approved", "grant.issued"]
                );
            }
            1 => {
                assert_eq!(status, StatusCode::ACCEPTED);
                assert_eq!(kinds, ["request.created"]);
            }
            _ => {
                assert_eq!(status, StatusCode::FORBIDDEN);
                assert_eq!(kinds, ["request.created", "request.denied"]);
            }
        }
    }
    assert!(matches!(
        app.core.verify_audit().await.unwrap(),
        countersign::service::audit::Verification::Intact { .. }
    ));
}

on_both_backends!(
    full_loop_approve_wait_redeem_report_audit,
    long_wait_returns_when_the_decision_commits,
    thirty_two_parallel_redeems_have_exactly_one_winner,
    idempotency_key_replays_or_conflicts,
    agents_cannot_see_each_others_requests,
    denial_reason_reaches_the_waiting_agent,
    owners_can_revoke_their_agents_grants,
    discovery_and_operations_endpoints_answer,
    concurrent_intake_commits_each_request_with_its_own_evidence,
);
