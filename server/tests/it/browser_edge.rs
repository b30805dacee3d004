//! The browser edge: every answer carries the security headers, every page a Content Security
//! Policy whose per-answer nonce is the one on each of its scripts and which lets no other
//! inline script run, nothing that carries personal data or grants may be stored by a cache,
//! and Strict-Transport-Security is sent exactly when the public URL is https.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{transfer, Backend, TestApp};
use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};
use serde_json::json;

/// The pages an admin can open, each rendered on the server.
fn pages(request_id: &str) -> Vec<String> {
    [
        "/",
        "/sign-in",
        "/history",
        "/agents",
        "/account",
        "/admin/people",
        "/admin/guards",
        "/admin/policy",
        "/admin/agents",
        "/admin/audit",
        "/enrol/not-a-real-token",
        "/no/such/page",
    ]
    .iter()
    .map(|p| p.to_string())
    .chain([
        format!("/requests/{request_id}"),
        format!("/admin/audit/request/{request_id}"),
    ])
    .collect()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// The policy's directives by name, each with its sources.
fn directives(csp: &str) -> Vec<(String, Vec<String>)> {
    csp.split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            let mut words = d.split_whitespace().map(str::to_string);
            let name = words.next().unwrap().to_ascii_lowercase();
            (name, words.collect())
        })
        .collect()
}

fn directive(csp: &str, name: &str) -> Option<Vec<String>> {
    directives(csp)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, sources)| sources)
}

/// The headers every answer carries, page, API or file.
fn assert_edge_headers(what: &str, headers: &HeaderMap) {
    assert_eq!(
        header(headers, "x-content-type-options"),
        Some("nosniff"),
        "{what}: X-Content-Type-Options"
    );
    let referrer = header(headers, "referrer-policy");
    assert!(
        matches!(referrer, Some("same-origin" | "no-referrer")),
        "{what}: a Referrer-Policy that never sends this URL to another site, got {referrer:?}"
    );
    assert_eq!(
        header(headers, "cross-origin-opener-policy"),
        Some("same-origin"),
        "{what}: Cross-Origin-Opener-Policy"
    );
    assert_eq!(
        header(headers, "x-frame-options"),
        Some("DENY"),
        "{what}: X-Frame-Options"
    );
    let csp = header(headers, "content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    assert_eq!(
        directive(csp, "frame-ancestors"),
        Some(vec!["'none'".to_string()]),
        "{what}: frame-ancestors in {csp}"
    );
    assert!(
        !csp.contains("'unsafe-inline'") && !csp.contains("'unsafe-eval'"),
        "{what}: nothing unsafe in {csp}"
    );
    assert_eq!(
        header(headers, "strict-transport-security"),
        None,
        "{what}: no HSTS for an http public URL"
    );
}

/// Checks a page's headers and returns the nonce its policy names for scripts.
fn assert_page_policy(what: &str, headers: &HeaderMap) -> String {
    assert_edge_headers(what, headers);
    assert_eq!(
        header(headers, "cache-control"),
        Some("no-store"),
        "{what}: pages carry personal data"
    );
    let csp = header(headers, "content-security-policy").unwrap();
    for (name, want) in [
        ("base-uri", "'none'"),
        ("object-src", "'none'"),
        ("form-action", "'self'"),
    ] {
        assert_eq!(
            directive(csp, name),
            Some(vec![want.to_string()]),
            "{what}: {name} in {csp}"
        );
    }
    assert!(
        directive(csp, "default-src").is_some(),
        "{what}: a default-src in {csp}"
    );
    assert_eq!(
        directive(csp, "connect-src"),
        Some(vec!["'self'".to_string()]),
        "{what}: connect-src in {csp}"
    );
    let scripts = directive(csp, "script-src").unwrap_or_else(|| panic!("{what}: no script-src"));
    let nonces: Vec<&str> = scripts
        .iter()
        .filter_map(|s| s.strip_prefix("'nonce-")?.strip_suffix('\''))
        .collect();
    assert_eq!(nonces.len(), 1, "{what}: one nonce in {csp}");
    for source in &scripts {
        assert!(
            source.starts_with("'nonce-")
                || ["'self'", "'wasm-unsafe-eval'", "'strict-dynamic'"].contains(&source.as_str()),
            "{what}: script-src allows no more than our nonce, our origin and wasm: {source}"
        );
    }
    // 128 bits or more, base64: unguessable.
    assert!(nonces[0].len() >= 22, "{what}: a short nonce {}", nonces[0]);
    nonces[0].to_string()
}

/// The `nonce` attribute of every `<script>` in the page (`None` for one without).
fn script_nonces(html: &str) -> Vec<Option<String>> {
    let lower = html.to_ascii_lowercase();
    lower
        .match_indices("<script")
        .map(|(at, _)| {
            let tag = &html[at..at + lower[at..].find('>').unwrap()];
            tag.split_once(" nonce=\"").map(|(_, rest)| {
                let end = rest.find('"').unwrap();
                rest[..end].to_string()
            })
        })
        .collect()
}

/// Reads a page and checks its policy against its scripts; returns the nonce.
async fn page_nonce(what: &str, r: Response) -> String {
    let headers = r.headers().clone();
    let content_type = header(&headers, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/html"),
        "{what}: a page, got {content_type}"
    );
    let nonce = assert_page_policy(what, &headers);
    let html = r.text().await.unwrap();
    let scripts = script_nonces(&html);
    assert!(
        !scripts.is_empty(),
        "{what}: the page loads its code with a script"
    );
    for found in scripts {
        assert_eq!(
            found.as_deref(),
            Some(nonce.as_str()),
            "{what}: every script carries the answer's nonce"
        );
    }
    nonce
}

async fn every_page_carries_a_policy_with_its_scripts_nonce(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("25000.00")).await;

    let mut seen = Vec::new();
    for path in pages(&id) {
        // Whatever the status (404 for no such page, 410 for a spent invitation): a page.
        let r = alice.get(&app.http, &path).await;
        seen.push(page_nonce(&path, r).await);
    }
    // Signed out too (the sign-in page, and a page that sends you there).
    let mut stranger = app.stranger();
    for path in ["/sign-in", "/"] {
        let r = stranger.get(&app.http, path).await;
        seen.push(page_nonce(&format!("{path} signed out"), r).await);
    }
    // A fresh nonce for every answer, also for the same page asked for at the same time.
    let both = futures::future::join_all((0..4).map(|_| {
        let req = app
            .http
            .get(app.url(&format!("/requests/{id}")))
            .header("cookie", alice.cookie.clone().unwrap());
        async move { page_nonce("the request page", req.send().await.unwrap()).await }
    }))
    .await;
    seen.extend(both);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "nonces repeat: {seen:?}");
}

async fn every_api_answer_carries_the_edge_headers(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;

    // The agent API: an answer that carries a grant, a request, a problem.
    app.core
        .apply_policy(
            "[[rule]]\nid = \"small\"\naction = \"payments.*\"\namount_below = { value = \"100.00\", currency = \"EUR\" }\noutcome = \"allow\"\n",
            "test",
        )
        .await
        .unwrap();
    let r = app
        .agent_post(&agent, "/api/v1/requests", &transfer("10.00"))
        .await;
    let grant_headers = r.headers().clone();
    let granted: serde_json::Value = r.json().await.unwrap();
    assert!(granted["grant"]["token"].is_string(), "{granted}");
    let mut answers: Vec<(String, HeaderMap)> = vec![("create (granted)".into(), grant_headers)];
    let id = app.ask_id(&agent, &transfer("25000.00")).await;
    let r = app
        .agent_get(&agent, &format!("/api/v1/requests/{id}"))
        .await;
    answers.push(("get request".into(), r.headers().clone()));
    let r = app
        .http
        .get(app.url("/api/v1/requests/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    answers.push(("unauthenticated".into(), r.headers().clone()));
    let r = app.redeem("not-a-token").await;
    answers.push(("redeem refused".into(), r.headers().clone()));

    // The owner endpoints and the app's server functions.
    let r = alice.get(&app.http, "/api/ui/me").await;
    assert_eq!(r.status(), StatusCode::OK);
    answers.push(("/api/ui/me".into(), r.headers().clone()));
    let r = alice
        .get(&app.http, &format!("/api/ui/requests/{id}"))
        .await;
    answers.push(("/api/ui/requests/{id}".into(), r.headers().clone()));
    let r = alice
        .post(
            &app.http,
            &format!("/api/ui/requests/{id}/decision/start"),
            &json!({ "decision": "approve" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    answers.push(("decision/start".into(), r.headers().clone()));
    let r = alice.server_fn(&app.http, "inbox", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    answers.push(("/api/app/inbox".into(), r.headers().clone()));
    let r = alice
        .server_fn(&app.http, "create_agent", &[("name", "x")])
        .await;
    answers.push((
        "/api/app/create_agent (an API key)".into(),
        r.headers().clone(),
    ));
    let r = app.stranger().server_fn(&app.http, "inbox", &[]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    answers.push(("/api/app/inbox signed out".into(), r.headers().clone()));

    for (what, headers) in &answers {
        assert_edge_headers(what, headers);
        assert_eq!(
            header(headers, "cache-control"),
            Some("no-store"),
            "{what}: may carry personal data or a grant"
        );
    }

    // Public, unchanging answers keep what their handler says about caching.
    let r = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_edge_headers("jwks", r.headers());
    assert_eq!(
        header(r.headers(), "cache-control"),
        Some("public, max-age=300")
    );
}

async fn compiled_assets_stay_cacheable(backend: Backend) {
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("pkg")).unwrap();
    std::fs::write(
        site.path().join("pkg/countersign.css"),
        "main { margin: 0 }",
    )
    .unwrap();
    let app = TestApp::spawn_with(
        backend,
        &[("LEPTOS_SITE_ROOT", site.path().to_str().unwrap())],
    )
    .await;
    let r = app
        .http
        .get(app.url("/pkg/countersign.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_edge_headers("/pkg/countersign.css", r.headers());
    assert_ne!(
        header(r.headers(), "cache-control"),
        Some("no-store"),
        "the compiled assets may be cached"
    );
}

async fn hsts_only_when_the_public_url_is_https(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[("COUNTERSIGN_PUBLIC_URL", "https://countersign.example")],
    )
    .await;
    for path in ["/healthz", "/sign-in", "/api/v1/requests/x"] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        let hsts = header(r.headers(), "strict-transport-security")
            .unwrap_or_else(|| panic!("{path}: no HSTS behind an https public URL"));
        let max_age: u64 = hsts
            .split(';')
            .find_map(|d| d.trim().strip_prefix("max-age="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(max_age >= 180 * 24 * 3600, "{path}: {hsts}");
    }
    // And never on http (every answer checked in the tests above).
    let plain = TestApp::spawn(backend).await;
    let r = plain.http.get(plain.url("/healthz")).send().await.unwrap();
    assert_eq!(header(r.headers(), "strict-transport-security"), None);
}

on_both_backends!(
    every_page_carries_a_policy_with_its_scripts_nonce,
    every_api_answer_carries_the_edge_headers,
    compiled_assets_stay_cacheable,
    hsts_only_when_the_public_url_is_https,
);
