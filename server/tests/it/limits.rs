//! Limits on unauthenticated traffic, per client address: sign-in and enrolment calls (each
//! writes a ceremony row through the one writer), failed agent authentications and refused
//! redemptions. Past its limit an address gets `429 rate_limited` with `Retry-After` before any
//! work is done, other addresses are unaffected, and forwarding headers count only from
//! configured proxies.
//!
//! The client addresses are real: Linux routes all of 127.0.0.0/8 to the loopback interface, so
//! a client bound to 127.0.0.2 reaches the server as a second machine would. The limits are set
//! per test to a few calls an hour, so no refill happens while a test runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::net::IpAddr;

use common::{problem, transfer, Backend, TestApp};
use futures::StreamExt;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

/// A client whose connections leave from `ip` (one of 127.0.0.0/8).
fn client_from(ip: &str) -> Client {
    Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap()
}

/// The server's address as an IP literal (its public URL says `localhost`, which may resolve
/// to ::1 first, where nothing listens).
fn direct(app: &TestApp, path: &str) -> String {
    format!("{}{path}", app.base.replace("localhost", "127.0.0.1"))
}

/// `POST /api/ui/sign-in/start` the way the browser sends it, with extra headers.
async fn sign_in_start(app: &TestApp, http: &Client, headers: &[(&str, &str)]) -> Response {
    let mut req = http
        .post(direct(app, "/api/ui/sign-in/start"))
        .header("origin", &app.base)
        .header("sec-fetch-site", "same-origin")
        .json(&json!({}));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// Checks a 429: problem+json `rate_limited` with a whole number of seconds in `Retry-After`.
async fn assert_rate_limited(r: Response) {
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "Retry-After in seconds: {:?}",
        r.headers().get("retry-after")
    );
    problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

/// How many sign-in ceremonies are stored.
async fn sign_in_ceremonies(app: &TestApp) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM ceremonies WHERE kind = 'sign_in'")
        .fetch_one(app.core.db.reader())
        .await
        .unwrap()
}

async fn a_sign_in_flood_is_refused_and_other_addresses_are_not(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_LIMIT_SIGN_IN", "5/h")]).await;
    let flooder = client_from("127.0.0.2");
    for n in 0..5 {
        let r = sign_in_start(&app, &flooder, &[]).await;
        assert_eq!(r.status(), StatusCode::OK, "call {n} is within the limit");
    }
    for _ in 0..20 {
        assert_rate_limited(sign_in_start(&app, &flooder, &[]).await).await;
    }
    // Finishing counts against the same budget (it takes the ceremony row through the writer).
    let r = flooder
        .post(direct(&app, "/api/ui/sign-in/finish"))
        .header("origin", &app.base)
        .header("sec-fetch-site", "same-origin")
        .json(&json!({ "ceremony_id": "x", "credential": {} }))
        .send()
        .await
        .unwrap();
    assert_rate_limited(r).await;
    assert_eq!(
        sign_in_ceremonies(&app).await,
        5,
        "refused calls write nothing"
    );
    // Another address, at the same moment, is unaffected.
    let neighbour = client_from("127.0.0.3");
    assert_eq!(
        sign_in_start(&app, &neighbour, &[]).await.status(),
        StatusCode::OK
    );
    assert_eq!(sign_in_ceremonies(&app).await, 6);
    assert_eq!(
        app.metric("countersign_rate_limited_total{limit=\"sign_in\"}")
            .await,
        21
    );
}

async fn an_enrolment_flood_is_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_LIMIT_ENROL", "3/h")]).await;
    let flooder = client_from("127.0.0.2");
    let enrol = |path: &'static str, body: Value| {
        flooder
            .post(direct(&app, path))
            .header("origin", &app.base)
            .header("sec-fetch-site", "same-origin")
            .json(&body)
            .send()
    };
    let start = json!({ "token": "no-such-link", "display_name": "M", "passkey_name": "k" });
    for _ in 0..2 {
        let r = enrol("/api/ui/enrol/start", start.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::GONE, "a bad link, answered");
    }
    let finish = json!({ "ceremony_id": "x", "credential": {} });
    let r = enrol("/api/ui/enrol/finish", finish.clone()).await.unwrap();
    assert_ne!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "third call answered"
    );
    assert_rate_limited(enrol("/api/ui/enrol/start", start).await.unwrap()).await;
    assert_rate_limited(enrol("/api/ui/enrol/finish", finish).await.unwrap()).await;
    // The first admin enrols from another address all the same.
    app.enrol_first_admin("alice@example.com").await;
    assert_eq!(
        app.metric("countersign_rate_limited_total{limit=\"enrol\"}")
            .await,
        2
    );
}

async fn failed_agent_authentication_is_limited_per_address(backend: Backend) {
    let app =
        TestApp::spawn_with(backend, &[("COUNTERSIGN_LIMIT_AGENT_AUTH_FAILURES", "3/h")]).await;
    app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    let guesser = client_from("127.0.0.2");
    let wrong = format!("cs_agent_{}_{}", agent.id, "0".repeat(64));
    let guess = |bearer: String| {
        guesser
            .post(direct(&app, "/api/v1/requests"))
            .bearer_auth(bearer)
            .json(&transfer("1.00"))
            .send()
    };
    for _ in 0..3 {
        problem(
            guess(wrong.clone()).await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }
    for _ in 0..10 {
        assert_rate_limited(guess(wrong.clone()).await.unwrap()).await;
    }
    // Refused before any work: the credential was not even checked.
    assert_eq!(app.metric("countersign_agent_auth_failures_total").await, 3);
    // The address is over its limit, so even a valid key from it waits.
    assert_rate_limited(guess(agent.bearer.clone()).await.unwrap()).await;
    // A valid agent elsewhere keeps creating requests, more of them than the failure limit:
    // successes are not counted.
    for n in 0..5 {
        app.ask(&agent, &transfer(&format!("{n}.00"))).await;
    }
    // A missing or malformed credential is a failure too.
    let other = client_from("127.0.0.3");
    for _ in 0..3 {
        let r = other
            .get(direct(&app, "/api/v1/requests/x"))
            .send()
            .await
            .unwrap();
        problem(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    let r = other
        .get(direct(&app, "/api/v1/requests/x"))
        .bearer_auth(&agent.bearer)
        .send()
        .await
        .unwrap();
    assert_rate_limited(r).await;
    assert_eq!(
        app.metric("countersign_rate_limited_total{limit=\"agent_auth\"}")
            .await,
        12
    );
}

async fn refused_redemptions_are_limited_and_valid_ones_are_not(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_LIMIT_REDEEM_FAILURES", "3/h")]).await;
    app.enrol_first_admin("alice@example.com").await;
    app.core
        .apply_policy("[[rule]]\nid = \"all\"\noutcome = \"allow\"\n", "test")
        .await
        .unwrap();
    let agent = app.agent("alice@example.com").await;
    let mut tokens = Vec::new();
    for n in 0..6 {
        let r = app
            .agent_post(&agent, "/api/v1/requests", &transfer(&format!("{n}.00")))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "allowed at once");
        let v: Value = r.json().await.unwrap();
        tokens.push(v["grant"]["token"].as_str().unwrap().to_string());
    }
    let redeem = |http: &Client, token: &str| {
        http.post(direct(&app, "/api/v1/grants/redeem"))
            .json(&json!({ "token": token }))
            .send()
    };
    // A busy gateway redeeming valid grants is never slowed: successes are not counted.
    let gateway = client_from("127.0.0.3");
    for token in &tokens[..5] {
        let r = redeem(&gateway, token).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    // Someone replaying and guessing is.
    let replayer = client_from("127.0.0.2");
    let refused_before = app
        .metric("countersign_grant_redemptions_total{result=\"refused\"}")
        .await;
    for bad in [tokens[0].as_str(), "a.b.c", tokens[1].as_str()] {
        let r = redeem(&replayer, bad).await.unwrap();
        assert!(r.status().is_client_error() && r.status() != 429, "{bad}");
    }
    for _ in 0..5 {
        assert_rate_limited(redeem(&replayer, &tokens[0]).await.unwrap()).await;
    }
    assert_eq!(
        app.metric("countersign_grant_redemptions_total{result=\"refused\"}")
            .await,
        refused_before + 3,
        "refused before any work"
    );
    // The gateway still redeems.
    assert_eq!(
        redeem(&gateway, &tokens[5]).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        app.metric("countersign_rate_limited_total{limit=\"redeem\"}")
            .await,
        5
    );
}

async fn forwarding_headers_count_only_from_trusted_proxies(backend: Backend) {
    // Untrusted: the header is the caller's own claim, and changing it buys nothing.
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_LIMIT_SIGN_IN", "2/h")]).await;
    let http = client_from("127.0.0.2");
    for n in 0..2 {
        let xff = format!("198.51.100.{n}");
        let r = sign_in_start(&app, &http, &[("x-forwarded-for", &xff)]).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    for n in 2..6 {
        let xff = format!("198.51.100.{n}");
        let fwd = format!("for=198.51.100.{n}");
        let r = sign_in_start(
            &app,
            &http,
            &[("x-forwarded-for", &xff), ("forwarded", &fwd)],
        )
        .await;
        assert_rate_limited(r).await;
    }
    drop(app);

    // Trusted: 127.0.0.2 is our proxy; the limit applies per client it names.
    let app = TestApp::spawn_with(
        backend,
        &[
            ("COUNTERSIGN_LIMIT_SIGN_IN", "2/h"),
            ("COUNTERSIGN_TRUSTED_PROXIES", "127.0.0.2/32, 10.0.0.0/8"),
        ],
    )
    .await;
    let proxy = client_from("127.0.0.2");
    let (at, proxy) = (&app, &proxy);
    let from = |xff: &'static str| async move {
        sign_in_start(at, proxy, &[("x-forwarded-for", xff)]).await
    };
    for _ in 0..2 {
        assert_eq!(from("198.51.100.1").await.status(), StatusCode::OK);
    }
    assert_rate_limited(from("198.51.100.1").await).await;
    // Another client behind the same proxy has its own budget.
    assert_eq!(from("198.51.100.2").await.status(), StatusCode::OK);
    // The right-most address the trusted hops did not add is the client: whatever the client
    // wrote to the left of it changes nothing, and trusted hops to its right are skipped.
    assert_rate_limited(from("203.0.113.9, 198.51.100.1").await).await;
    assert_rate_limited(from("198.51.100.1, 10.1.2.3").await).await;
    assert_eq!(
        from("198.51.100.1, 198.51.100.2").await.status(),
        StatusCode::OK
    );
    assert_rate_limited(from("198.51.100.2").await).await;
    // The proxy itself, with no header, is one client of its own.
    assert_eq!(sign_in_start(at, proxy, &[]).await.status(), StatusCode::OK);
    // A caller that is not a trusted proxy is counted by its own address, header or not.
    let direct_caller = client_from("127.0.0.3");
    for n in 0..2 {
        let xff = format!("198.51.100.{}", 50 + n);
        let r = sign_in_start(&app, &direct_caller, &[("x-forwarded-for", &xff)]).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = sign_in_start(
        &app,
        &direct_caller,
        &[("x-forwarded-for", "198.51.100.60")],
    )
    .await;
    assert_rate_limited(r).await;
}

async fn the_forwarded_header_is_read_when_configured(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("COUNTERSIGN_LIMIT_SIGN_IN", "1/h"),
            ("COUNTERSIGN_TRUSTED_PROXIES", "127.0.0.2"),
            ("COUNTERSIGN_FORWARDED_HEADER", "forwarded"),
        ],
    )
    .await;
    let proxy = client_from("127.0.0.2");
    let (at, proxy) = (&app, &proxy);
    let via =
        |h: &'static str, v: &'static str| async move { sign_in_start(at, proxy, &[(h, v)]).await };
    assert_eq!(
        via("forwarded", "for=\"[2001:db8::1]:4711\";proto=https")
            .await
            .status(),
        StatusCode::OK
    );
    // The same /64, another host: one IPv6 client can have a whole /64.
    assert_rate_limited(via("forwarded", "for=\"[2001:db8::2]\"").await).await;
    assert_eq!(
        via("forwarded", "for=192.0.2.1, for=198.51.100.7")
            .await
            .status(),
        StatusCode::OK
    );
    assert_rate_limited(via("forwarded", "for=198.51.100.7").await).await;
    // X-Forwarded-For is now the caller's claim: ignored, so the proxy's own budget is used.
    assert_eq!(
        via("x-forwarded-for", "198.51.100.8").await.status(),
        StatusCode::OK
    );
    assert_rate_limited(via("x-forwarded-for", "198.51.100.9").await).await;
}

async fn an_anonymous_flood_does_not_starve_request_intake(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("COUNTERSIGN_LIMIT_SIGN_IN", "20/h")]).await;
    app.enrol_first_admin("alice@example.com").await;
    let agent = app.agent("alice@example.com").await;
    let flooder = client_from("127.0.0.2");
    let flood = futures::stream::iter(0..400)
        .map(|_| sign_in_start(&app, &flooder, &[]))
        .buffer_unordered(32)
        .map(|r| r.status())
        .collect::<Vec<_>>();
    let intake = futures::stream::iter(0..30)
        .map(|n| {
            let (app, agent) = (&app, &agent);
            async move {
                app.agent_post(agent, "/api/v1/requests", &transfer(&format!("{n}.00")))
                    .await
            }
        })
        .buffer_unordered(8)
        .map(|r| r.status())
        .collect::<Vec<_>>();
    let (flood, intake) = tokio::join!(flood, intake);
    assert!(
        intake.iter().all(|s| *s == StatusCode::ACCEPTED),
        "every request was taken: {intake:?}"
    );
    let ok = flood.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = flood
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((ok, limited), (20, 380), "{flood:?}");
    assert_eq!(sign_in_ceremonies(&app).await, 20);
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE agent_id = $1")
        .bind(&agent.id)
        .fetch_one(app.core.db.reader())
        .await
        .unwrap();
    assert_eq!(stored, 30);
}

on_both_backends!(
    a_sign_in_flood_is_refused_and_other_addresses_are_not,
    an_enrolment_flood_is_refused,
    failed_agent_authentication_is_limited_per_address,
    refused_redemptions_are_limited_and_valid_ones_are_not,
    forwarding_headers_count_only_from_trusted_proxies,
    the_forwarded_header_is_read_when_configured,
    an_anonymous_flood_does_not_starve_request_intake,
);
