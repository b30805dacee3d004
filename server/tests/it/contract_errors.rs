//! Every error of the agent contract, bad input of every kind, and credentials: each gets its
//! problem+json with the right status, code and field — never a 500, never a half-written row.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{problem, transfer, Backend, TestApp};
use countersign::domain::jose::GrantSigningKey;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn raw(app: &TestApp, bearer: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/requests"))
        .bearer_auth(bearer)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn request_count(app: &TestApp) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM requests")
        .fetch_one(app.core.db.reader())
        .await
        .unwrap();
    n
}

async fn bad_input_is_a_named_4xx_and_writes_nothing(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let json_ct = "application/json";
    let cases: Vec<(Vec<u8>, &str, StatusCode, Option<&str>)> = vec![
        (b"{not json".to_vec(), json_ct, StatusCode::BAD_REQUEST, None),
        (vec![0xff, 0xfe, b'{', b'}'], json_ct, StatusCode::BAD_REQUEST, None),
        (b"[]".to_vec(), json_ct, StatusCode::BAD_REQUEST, None),
        (br#"{"action":{"target":"x"}}"#.to_vec(), json_ct, StatusCode::BAD_REQUEST, Some("action.type")),
        (br#"{"action":{"type":"BAD TYPE","target":"x"}}"#.to_vec(), json_ct, StatusCode::BAD_REQUEST, Some("action.type")),
        (br#"{"action":{"type":"a","target":7}}"#.to_vec(), json_ct, StatusCode::BAD_REQUEST, Some("action.target")),
        (br#"{"action":{"type":"a","target":"x","surprise":1}}"#.to_vec(), json_ct, StatusCode::BAD_REQUEST, Some("action.surprise")),
        (br#"{"action":{"type":"a","target":"x"},"context":{"amount":{"value":"1e9","currency":"EUR"}}}"#.to_vec(), json_ct, StatusCode::BAD_REQUEST, Some("context.amount.value")),
        (br#"{"action":{"type":"a","target":"x"},"context":{"amount":{"value":"10","currency":"euro"}}}"#.to_vec(), json_ct, StatusCode::BAD_REQUEST, Some("context.amount.currency")),
        (br#"{"action":{"type":"a","target":"x","params":{"n":1e400}}}"#.to_vec(), json_ct, StatusCode::BAD_REQUEST, None),
        (br#"{"action":{"type":"a","target":"x","params":{"n":9007199254740993}}}"#.to_vec(), json_ct, StatusCode::BAD_REQUEST, Some("action.params.n")),
        (br#"{"action":{"type":"a","target":"x"},"expires_in":0}"#.to_vec(), json_ct, StatusCode::BAD_REQUEST, Some("expires_in")),
        (br#"{"action":{"type":"a","target":"x"},"expires_in":"300"}"#.to_vec(), json_ct, StatusCode::BAD_REQUEST, Some("expires_in")),
        (format!(r#"{{"action":{{"type":"a","target":"x","params":{}1{}}}}}"#, "[".repeat(5000), "]".repeat(5000)).into_bytes(), json_ct, StatusCode::BAD_REQUEST, None),
        (br#"{"action":{"type":"a","target":"x"}}"#.to_vec(), "text/plain", StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("Content-Type")),
    ];
    for (body, ct, status, field) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).to_string();
        let r = raw(&app, &agent.bearer, ct, body).await;
        assert_eq!(r.status(), status, "for {shown}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["error"], "invalid_request", "for {shown}: {p}");
        if let Some(f) = field {
            assert_eq!(p["field"], f, "for {shown}: {p}");
        }
    }
    // Oversize: 413 payload_too_large.
    let mut big = transfer("1.00");
    big["action"]["params"]["blob"] = json!("x".repeat(70 * 1024));
    let r = raw(
        &app,
        &agent.bearer,
        json_ct,
        serde_json::to_vec(&big).unwrap(),
    )
    .await;
    problem(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(request_count(&app).await, 0, "no half-written requests");
}

async fn bad_credentials_are_invalid_token(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let body = transfer("1.00");
    // No header.
    let r = app
        .http
        .post(app.url("/api/v1/requests"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let www = r
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(www, "Bearer error=\"invalid_token\"");
    problem(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // A wrong secret for a real agent id.
    let forged = format!("cs_agent_{}_{}", agent.id, "0".repeat(64));
    let r = app
        .http
        .post(app.url("/api/v1/requests"))
        .bearer_auth(forged)
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // Garbage.
    let r = app
        .http
        .post(app.url("/api/v1/requests"))
        .bearer_auth("hello")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

async fn key_bound_agents_sign_assertions_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut alice = app.enrol_first_admin("alice@example.com").await;
    let key = GrantSigningKey::generate(&mut rand_core::OsRng);
    let jwk = serde_json::to_string(&key.public_jwk()).unwrap();
    let created = app
        .core
        .create_agent("signer", "alice@example.com", Some(&jwk), "test")
        .await
        .unwrap();
    assert!(created.api_key.is_none());
    let now = app.core.clock.now_secs();
    let assertion = |jti: &str, iat: i64, exp: i64| {
        key.sign_compact("JWT", &json!({ "iss": created.id, "sub": created.id, "aud": app.base, "iat": iat, "exp": exp, "jti": jti })).unwrap()
    };
    let post = |token: String| {
        let http = app.http.clone();
        let url = app.url("/api/v1/requests");
        async move {
            http.post(url)
                .bearer_auth(token)
                .json(&transfer("1.00"))
                .send()
                .await
                .unwrap()
        }
    };
    let ok = post(assertion("j1", now, now + 30)).await;
    let id = common::created_id(ok).await;
    // Replayed jti.
    problem(
        post(assertion("j1", now, now + 30)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // Too long-lived, expired, wrong audience.
    problem(
        post(assertion("j2", now, now + 61)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    problem(
        post(assertion("j3", now - 120, now - 60)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let wrong_aud = key.sign_compact("JWT", &json!({ "iss": created.id, "sub": created.id, "aud": "https://elsewhere", "iat": now, "exp": now + 30, "jti": "j4" })).unwrap();
    problem(
        post(wrong_aud).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // Signed by another key.
    let other = GrantSigningKey::generate(&mut rand_core::OsRng);
    let forged = other.sign_compact("JWT", &json!({ "iss": created.id, "sub": created.id, "aud": app.base, "iat": now, "exp": now + 30, "jti": "j5" })).unwrap();
    problem(
        post(forged).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;

    // Its grants are bound to its key.
    alice.approve(&app.http, &id).await;
    let r = app
        .http
        .get(app.url(&format!("/api/v1/requests/{id}")))
        .bearer_auth(assertion("j6", now, now + 30))
        .send()
        .await
        .unwrap();
    let got: Value = r.json().await.unwrap();
    let token = got["grant"]["token"].as_str().unwrap();
    let (_, claims) = countersign::domain::jose::peek_unverified(token).unwrap();
    assert_eq!(claims["cnf"]["jkt"], key.public_jwk().thumbprint());
}

async fn policy_decides_allow_require_deny_at_boundaries(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    app.core
        .apply_policy(
            r#"
[[rule]]
id = "small-payments"
action = "payments.*"
amount_below = { value = "100.00", currency = "EUR" }
outcome = "allow"
grant_ttl_seconds = 30

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
    // Strictly below: allowed at once, with a grant.
    let r = app
        .agent_post(&agent, "/api/v1/requests", &transfer("99.99"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "approved");
    assert_eq!(body["policy"]["rule"], "small-payments");
    assert!(body["grant"]["token"].is_string());
    // Exactly at the threshold: not below, falls to the default rule.
    let at = app.ask(&agent, &transfer("100.00")).await;
    assert_eq!(at["policy"]["rule"], "default");
    // Another currency never matches an EUR threshold.
    let mut usd = transfer("5.00");
    usd["context"]["amount"]["currency"] = json!("USD");
    assert_eq!(app.ask(&agent, &usd).await["policy"]["rule"], "default");
    // Glob + environment: denied, with the rule and its reason.
    let drop = json!({ "action": { "type": "db.drop_table", "target": "orders-db" }, "context": { "environment": "production" } });
    let p = problem(
        app.agent_post(&agent, "/api/v1/requests", &drop).await,
        StatusCode::FORBIDDEN,
        "denied_by_policy",
    )
    .await;
    assert_eq!(p["rule"], "no-prod-drops");
    assert!(p["explanation"]
        .as_str()
        .unwrap()
        .contains("Agents never drop production tables."));
    // The same in staging is not denied.
    let staging = json!({ "action": { "type": "db.drop_table", "target": "orders-db" }, "context": { "environment": "staging" } });
    assert_eq!(app.ask(&agent, &staging).await["policy"]["rule"], "default");
}

async fn state_errors_have_their_codes(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    // slow_down: polling sooner than the interval without wait.
    let id = app.ask_id(&agent, &transfer("1.00")).await;
    assert_eq!(
        app.agent_get(&agent, &format!("/api/v1/requests/{id}"))
            .await
            .status(),
        StatusCode::OK
    );
    let p = problem(
        app.agent_get(&agent, &format!("/api/v1/requests/{id}"))
            .await,
        StatusCode::TOO_MANY_REQUESTS,
        "slow_down",
    )
    .await;
    assert_eq!(p["interval"], 5);
    // wait out of range.
    let p = problem(
        app.agent_get(&agent, &format!("/api/v1/requests/{id}?wait=56"))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_eq!(p["field"], "wait");
    problem(
        app.agent_get(&agent, "/api/v1/requests/nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // cancel, then cancel again: conflict.
    let r = app
        .agent_post(&agent, &format!("/api/v1/requests/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "cancelled");
    problem(
        app.agent_post(&agent, &format!("/api/v1/requests/{id}/cancel"), &json!({}))
            .await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    // An expired request cannot be approved: expired_token.
    let id = app.ask_id(&agent, &transfer("2.00")).await;
    let start = alice
        .start_decision(&app.http, &id, &json!({ "decision": "approve" }))
        .await;
    let start: Value = start.json().await.unwrap();
    app.clock.advance_ms(301_000);
    problem(
        alice.finish_decision(&app.http, &id, &start).await,
        StatusCode::GONE,
        "expired_token",
    )
    .await;
    problem(
        alice
            .start_decision(&app.http, &id, &json!({ "decision": "approve" }))
            .await,
        StatusCode::GONE,
        "expired_token",
    )
    .await;
    let got: Value = app.state(&agent, &id).await;
    assert_eq!(got["status"], "expired");

    // grant_expired and grant_revoked.
    let id = app.ask_id(&agent, &transfer("3.00")).await;
    alice.approve(&app.http, &id).await;
    let got: Value = app.state(&agent, &id).await;
    let token = got["grant"]["token"].as_str().unwrap().to_string();
    app.clock.advance_ms(61_000);
    problem(app.redeem(&token).await, StatusCode::GONE, "grant_expired").await;
    let id = app.ask_id(&agent, &transfer("4.00")).await;
    alice.approve(&app.http, &id).await;
    let got: Value = app.state(&agent, &id).await;
    let (token, jti) = (
        got["grant"]["token"].as_str().unwrap().to_string(),
        got["grant"]["jti"].as_str().unwrap().to_string(),
    );
    assert_eq!(
        app.agent_post(&agent, &format!("/api/v1/grants/{jti}/revoke"), &json!({}))
            .await
            .status(),
        StatusCode::OK
    );
    problem(app.redeem(&token).await, StatusCode::GONE, "grant_revoked").await;
    // A token that is not a grant.
    problem(
        app.redeem("a.b.c").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
}

async fn cross_site_and_signed_out_calls_are_refused(backend: Backend) {
    let (app, alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("1.00")).await;
    // Signed out.
    let r = app
        .http
        .post(app.url(&format!("/api/ui/requests/{id}/decision/start")))
        .json(&json!({ "decision": "approve" }))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // Signed in, but the browser says the request comes from another site.
    let r = app
        .http
        .post(app.url(&format!("/api/ui/requests/{id}/decision/start")))
        .header("cookie", alice.cookie.clone().unwrap())
        .header("sec-fetch-site", "cross-site")
        .header("origin", "https://evil.example")
        .json(&json!({ "decision": "approve" }))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    // Another owner cannot see or decide alice's agent's request.
    let mut bob = app.enrol("bob@example.com", "owner", &[]).await;
    problem(
        bob.get(&app.http, &format!("/api/ui/requests/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        bob.start_decision(&app.http, &id, &json!({ "decision": "approve" }))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

async fn suspending_an_agent_cancels_revokes_and_refuses(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let pending = app.ask_id(&agent, &transfer("1.00")).await;
    let approved = app.ask_id(&agent, &transfer("2.00")).await;
    alice.approve(&app.http, &approved).await;
    let got: Value = app.state(&agent, &approved).await;
    let token = got["grant"]["token"].as_str().unwrap().to_string();

    let report = app.core.suspend_agent(&agent.id, "test").await.unwrap();
    assert_eq!((report.cancelled_requests, report.revoked_grants), (1, 1));
    problem(
        app.agent_get(&agent, &format!("/api/v1/requests/{pending}"))
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    problem(app.redeem(&token).await, StatusCode::GONE, "grant_revoked").await;
    let row = countersign::store::requests::get(app.core.db.reader(), &pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status.as_str(), "cancelled");
}

async fn an_agent_past_its_pending_cap_is_rate_limited(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_MAX_PENDING_PER_AGENT", "3")]).await;
    app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    app.core
        .apply_policy("[[rule]]\nid = \"small\"\naction = \"payments.*\"\namount_below = { value = \"1.00\", currency = \"EUR\" }\noutcome = \"allow\"\n", "test")
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            app.ask_id(&agent, &transfer(&format!("{}.00", 10 + i)))
                .await,
        );
    }
    let r = app
        .agent_post(&agent, "/api/v1/requests", &transfer("20.00"))
        .await;
    // The oldest pending request expires in about 300 s: that is when a place frees up.
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((295..=300).contains(&retry), "Retry-After {retry}");
    problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // What needs no human is not held back.
    assert_eq!(
        app.agent_post(&agent, "/api/v1/requests", &transfer("0.50"))
            .await
            .status(),
        StatusCode::OK
    );
    // Another agent has its own allowance.
    let other = app.agent("alice@example.com").await;
    app.ask_id(&other, &transfer("20.00")).await;
    // A place frees up when one is decided (here: cancelled).
    app.agent_post(
        &agent,
        &format!("/api/v1/requests/{}/cancel", ids[0]),
        &json!({}),
    )
    .await;
    app.ask_id(&agent, &transfer("20.00")).await;
}

/// Checks a problem+json answer: status, content type, contract code and the field at fault.
async fn problem_at(
    r: reqwest::Response,
    status: StatusCode,
    code: &str,
    field: Option<&str>,
    what: &str,
) -> Value {
    let got = r.status();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{what}: status; body {text}");
    assert_eq!(
        content_type, "application/problem+json",
        "{what}: content type; body {text}"
    );
    let p: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(p["error"], code, "{what}: {p}");
    assert_eq!(p["status"], status.as_u16(), "{what}: {p}");
    assert_eq!(p["field"].as_str(), field, "{what}: {p}");
    p
}

/// Every answer under `/api/` is problem+json: a wrong method (with `Allow`), a path that is no
/// endpoint, a path parameter that is not UTF-8, whatever the router itself answers.
async fn every_api_error_is_problem_json(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let send = |method: reqwest::Method, path: &str| {
        app.http
            .request(method, app.url(path))
            .bearer_auth(&agent.bearer)
            .header("origin", &app.base)
            .header("sec-fetch-site", "same-origin")
            .header("cookie", alice.cookie.clone().unwrap())
    };
    use reqwest::Method;
    // A method the path does not take: 405 with the methods it does take.
    for (method, path, allow) in [
        (Method::GET, "/api/v1/requests", "POST"),
        (Method::DELETE, "/api/v1/requests/r1", "GET,HEAD"),
        (Method::GET, "/api/v1/requests/r1/cancel", "POST"),
        (Method::GET, "/api/v1/grants/redeem", "POST"),
        (Method::PUT, "/api/v1/grants/g1/report", "POST"),
        (Method::GET, "/api/v1/grants/g1/revoke", "POST"),
        (Method::POST, "/api/v1/openapi.json", "GET,HEAD"),
        (Method::GET, "/api/ui/sign-in/start", "POST"),
        (Method::POST, "/api/ui/me", "GET,HEAD"),
        (Method::GET, "/api/app/inbox", "POST"),
    ] {
        let what = format!("{method} {path}");
        let r = send(method, path).send().await.unwrap();
        let allowed = r
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.replace(' ', ""));
        assert_eq!(allowed.as_deref(), Some(allow), "{what}: Allow");
        problem_at(
            r,
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            None,
            &what,
        )
        .await;
    }
    // No such endpoint: 404 not_found, not the app's HTML page.
    for (method, path) in [
        (Method::GET, "/api"),
        (Method::GET, "/api/"),
        (Method::GET, "/api/nope"),
        (Method::GET, "/api/v1/nope"),
        (Method::POST, "/api/v1/requests/r1/approve"),
        (Method::GET, "/api/v2/requests"),
        (Method::POST, "/api/ui/nope"),
        (Method::GET, "/api/ui/requests/r1/nope"),
        (Method::POST, "/api/app/no_such_function"),
    ] {
        let what = format!("{method} {path}");
        problem_at(
            send(method, path).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
            &what,
        )
        .await;
    }
    // A path parameter that is not UTF-8 names its parameter.
    for (method, path, field) in [
        (Method::GET, "/api/v1/requests/%FF", "id"),
        (Method::POST, "/api/v1/requests/%C3%28/cancel", "id"),
        (Method::POST, "/api/v1/grants/%FF/revoke", "jti"),
        (Method::GET, "/api/ui/requests/%FF", "id"),
    ] {
        let what = format!("{method} {path}");
        problem_at(
            send(method, path).send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some(field),
            &what,
        )
        .await;
    }
    let r = app
        .http
        .post(app.url("/api/v1/grants/%FF/report"))
        .bearer_auth(&agent.bearer)
        .json(&json!({ "outcome": "succeeded" }))
        .send()
        .await
        .unwrap();
    problem_at(
        r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("jti"),
        "report at a non-UTF-8 jti",
    )
    .await;
    // A query parameter given twice is ambiguous.
    let r = alice
        .get(&app.http, "/api/ui/audit/export?request=a&request=b")
        .await;
    problem_at(
        r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("request"),
        "audit export with two request filters",
    )
    .await;
}

/// Bodies that are wrong in one field name that field: a missing required field, a key given
/// twice, an unknown key, a lone surrogate escape, nesting past the limit.
async fn bad_bodies_name_their_field(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let post = |path: &str, bearer: Option<&str>, body: &str| {
        let mut req = app
            .http
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send()
    };
    let redeem = "/api/v1/grants/redeem";
    let report = "/api/v1/grants/g1/report";
    let create = "/api/v1/requests";
    let bearer = Some(agent.bearer.as_str());
    // Arrays in arrays inside context.delegation: the 65th level (the body is the first) is the
    // one past the limit, at context.delegation[0]...[0] (62 indices).
    let deep = format!(
        r#"{{"action":{{"type":"a","target":"x"}},"context":{{"delegation":{}{}}}}}"#,
        "[".repeat(70),
        "]".repeat(70)
    );
    let deep_field = format!("context.delegation{}", "[0]".repeat(62));
    let cases: Vec<(&str, Option<&str>, String, &str)> = vec![
        (redeem, None, "{}".into(), "token"),
        (
            redeem,
            None,
            r#"{"action_hash":"sha256:00"}"#.into(),
            "token",
        ),
        (
            redeem,
            None,
            r#"{"token":"a.b.c","token":"d.e.f"}"#.into(),
            "token",
        ),
        (redeem, None, r#"{"token":"a.b.c","nope":1}"#.into(), "nope"),
        (redeem, None, r#"{"token":7}"#.into(), "token"),
        (report, bearer, "{}".into(), "outcome"),
        (report, bearer, r#"{"detail":"done"}"#.into(), "outcome"),
        (
            report,
            bearer,
            r#"{"outcome":"failed","outcome":"succeeded"}"#.into(),
            "outcome",
        ),
        (report, bearer, r#"{"outcome":"maybe"}"#.into(), "outcome"),
        (
            create,
            bearer,
            r#"{"action":{"type":"a","target":"x","params":{"k":"\ud800"}}}"#.into(),
            "action.params.k",
        ),
        (
            create,
            bearer,
            r#"{"action":{"type":"a","target":"x","params":{"list":["ok","\udc00x"]}}}"#.into(),
            "action.params.list[1]",
        ),
        (
            create,
            bearer,
            r#"{"action":{"type":"a","target":"x"},"intent":{"goal":"\ud800\u0041"}}"#.into(),
            "intent.goal",
        ),
        (create, bearer, deep, &deep_field),
        (
            create,
            bearer,
            r#"{"action":{"type":"a","target":"x"},"action":{"type":"b","target":"y"}}"#.into(),
            "action",
        ),
    ];
    for (path, bearer, body, field) in cases {
        let shown: String = body.chars().take(90).collect();
        let what = format!("POST {path} {shown}");
        problem_at(
            post(path, bearer, &body).await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some(field),
            &what,
        )
        .await;
    }
    // The browser endpoints read their bodies the same way.
    let r = alice
        .post(&app.http, "/api/ui/passkeys/start", &json!({}))
        .await;
    problem_at(
        r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("passkey_name"),
        "passkeys/start without a name",
    )
    .await;
    assert_eq!(request_count(&app).await, 0, "nothing was recorded");
}

on_both_backends!(
    bad_input_is_a_named_4xx_and_writes_nothing,
    bad_credentials_are_invalid_token,
    key_bound_agents_sign_assertions_once,
    policy_decides_allow_require_deny_at_boundaries,
    state_errors_have_their_codes,
    cross_site_and_signed_out_calls_are_refused,
    suspending_an_agent_cancels_revokes_and_refuses,
    an_agent_past_its_pending_cap_is_rate_limited,
    every_api_error_is_problem_json,
    bad_bodies_name_their_field,
);
