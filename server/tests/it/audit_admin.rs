//! The audit trail in the browser (admins): searching the chain with filters that each narrow
//! it, one request's evidence as a timeline, JSON-lines exports that the CLI's verifier accepts,
//! the chain's verification on every page (and its failure after a row is edited), and 401/403
//! for everyone who is not an admin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{transfer, Backend, Person, TestApp};
use countersign::domain::audit::{AuditEvent, ChainVerifier};
use countersign::service::audit::AuditFilter;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Searches as `who` with these filter fields (`filter[kind]`, …).
async fn search(app: &TestApp, who: &mut Person, args: &[(&str, &str)]) -> Value {
    let args: Vec<(String, &str)> = args
        .iter()
        .map(|(k, v)| (format!("filter[{k}]"), *v))
        .collect();
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    who.server_json(&app.http, "admin/audit", &args).await
}

fn events(listing: &Value) -> &Vec<Value> {
    listing["events"].as_array().unwrap()
}

fn kinds(listing: &Value) -> Vec<&str> {
    events(listing)
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

/// A step's fact by key.
fn fact<'a>(step: &'a Value, key: &str) -> Option<&'a Value> {
    step["facts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == key)
}

fn fact_text<'a>(step: &'a Value, key: &str) -> &'a str {
    fact(step, key).unwrap_or_else(|| panic!("no {key} in {step}"))["value"]
        .as_str()
        .unwrap()
}

/// A GET with this person's session cookie, if any.
async fn get(app: &TestApp, who: &mut Person, path: &str) -> reqwest::Response {
    who.get(&app.http, path).await
}

/// Parses an export and checks it the way `countersign audit verify` does (for the whole
/// chain), or as a subsequence of it (for one request).
fn parse_lines(body: &str) -> Vec<AuditEvent> {
    let events: Vec<AuditEvent> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!events.is_empty());
    assert!(
        events.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq increases"
    );
    for e in &events {
        assert_eq!(
            e.hash,
            e.expected_hash(),
            "event {} hashes to itself",
            e.seq
        );
    }
    events
}

async fn admins_search_the_trail_and_each_filter_narrows(backend: Backend) {
    let (app, mut alice, alices_agent) = TestApp::with_alice(backend).await;
    let bob = app.enrol("bob@example.com", "owner", &[]).await;
    let bobs_agent = app.agent("bob@example.com").await;
    let r3 = app.ask_id(&bobs_agent, &transfer("30.00")).await;
    // Two minutes later (well before anything expires, so the sweeper adds nothing), Alice's
    // agent asks twice and she approves the first.
    app.clock.advance_ms(120_000);
    let later = app.core.now() - 1_000;
    let r1 = app.ask_id(&alices_agent, &transfer("10.00")).await;
    alice.approve(&app.http, &r1).await;
    let r2 = app.ask_id(&alices_agent, &transfer("20.00")).await;

    let all = search(&app, &mut alice, &[]).await;
    let total = events(&all).len();
    assert_eq!(all["chain"]["intact"], true, "{}", all["chain"]);
    assert_eq!(all["chain"]["events"], total as i64);
    assert!(all["chain"]["head"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(
        events(&all)
            .windows(2)
            .all(|w| w[0]["seq"].as_i64() > w[1]["seq"].as_i64()),
        "newest first"
    );
    assert_eq!(all["older"], Value::Null, "everything fits one page");
    // Names are resolved for people and agents.
    let approval = events(&all)
        .iter()
        .find(|e| e["kind"] == "approval.recorded")
        .unwrap();
    assert_eq!(approval["person_id"], alice.id.as_str());
    assert_eq!(approval["person_name"], "Ada Admin");
    assert_eq!(approval["agent_id"], alices_agent.id.as_str());
    assert_eq!(approval["agent_name"], "test-agent");

    // Each filter narrows the list to what it names.
    let by_request = search(&app, &mut alice, &[("request", &r1)]).await;
    assert!(events(&by_request).len() < total);
    assert!(events(&by_request)
        .iter()
        .all(|e| e["request_id"] == r1.as_str()));
    assert_eq!(
        kinds(&by_request),
        [
            "grant.issued",
            "request.approved",
            "approval.recorded",
            "request.created"
        ]
    );

    let by_agent = search(&app, &mut alice, &[("agent", &bobs_agent.id)]).await;
    assert!(events(&by_agent).len() < total);
    assert!(events(&by_agent)
        .iter()
        .all(|e| e["agent_id"] == bobs_agent.id.as_str()));
    assert_eq!(kinds(&by_agent), ["request.created", "agent.created"]);
    assert_eq!(events(&by_agent)[0]["request_id"], r3.as_str());

    let alice_id = alice.id.clone();
    let by_person = search(&app, &mut alice, &[("person", &alice_id)]).await;
    assert!(events(&by_person).len() < total);
    assert!(!events(&by_person).is_empty());
    assert!(events(&by_person)
        .iter()
        .all(|e| e["actor"] == format!("user:{}", alice.id)));
    assert!(kinds(&by_person).contains(&"approval.recorded"));
    let nobody = search(&app, &mut alice, &[("person", &bob.id)]).await;
    assert!(
        !kinds(&nobody).contains(&"approval.recorded"),
        "Bob approved nothing"
    );

    let by_kind = search(&app, &mut alice, &[("kind", "request.created")]).await;
    assert_eq!(kinds(&by_kind), ["request.created"; 3]);

    let from = countersign::clock::rfc3339(later);
    let since = search(&app, &mut alice, &[("from", &from)]).await;
    assert_eq!(events(&since).len(), 5, "{since}");
    assert!(events(&since)
        .iter()
        .all(|e| e["request_id"] == r1.as_str() || e["request_id"] == r2.as_str()));
    let until = search(&app, &mut alice, &[("to", &from)]).await;
    assert_eq!(events(&until).len(), total - 5, "everything before it");
    assert!(kinds(&until).contains(&"agent.created"));
    let day = &from[..10];
    let today = search(&app, &mut alice, &[("from", day), ("to", day)]).await;
    assert!(
        !events(&today).is_empty(),
        "a whole day includes its events"
    );

    // Combined filters narrow together.
    let both = search(
        &app,
        &mut alice,
        &[("agent", &alices_agent.id), ("kind", "request.created")],
    )
    .await;
    assert_eq!(events(&both).len(), 2);

    // Paging: `before` is a cursor on seq; `older` appears when a page is full.
    let newest = events(&all)[0]["seq"].as_i64().unwrap();
    let before = search(&app, &mut alice, &[("before", &newest.to_string())]).await;
    assert_eq!(events(&before).len(), total - 1);
    let who = app.signed_in(&alice).await;
    let page = app
        .core
        .audit_events(
            &who,
            &AuditFilter {
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.events.len(), 2);
    let older = page.older.expect("an older page");
    assert_eq!(older, page.events[1].event.seq);
    let next = app
        .core
        .audit_events(
            &who,
            &AuditFilter {
                limit: 2,
                before: older,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(next.events.iter().all(|e| e.event.seq < older));

    // Bad input is a 400 naming the field, never a 500.
    for (field, value, named) in [
        ("to", "yesterday", "to"),
        ("from", "2024-13-40", "from"),
        ("before", "-3", "before"),
    ] {
        let r = alice
            .server_fn(
                &app.http,
                "admin/audit",
                &[(format!("filter[{field}]").as_str(), value)],
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{field}={value}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["Invalid"]["field"], named, "{body}");
    }
    let r = alice
        .server_fn(
            &app.http,
            "admin/audit",
            &[("filter[from]", "2024-05-02"), ("filter[to]", "2024-05-01")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // The page renders the list, the verification and the filters from the URL.
    let page = get(
        &app,
        &mut alice,
        &format!("/admin/audit?kind=request.created&agent={}", bobs_agent.id),
    )
    .await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Chain verified"), "{html}");
    assert!(html.contains(&format!("/admin/audit/request/{r3}")));
    assert!(!html.contains(&format!("/admin/audit/request/{r1}")));
    assert!(html.contains("Export JSON lines"));
}

async fn the_timeline_tells_an_approved_and_redeemed_request_in_order(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("5000.00")).await;
    let shown: Value = alice
        .get(&app.http, &format!("/api/ui/requests/{id}"))
        .await
        .json()
        .await
        .unwrap();
    alice.approve(&app.http, &id).await;
    let got = app.state(&agent, &id).await;
    let token = got["grant"]["token"].as_str().unwrap();
    let jti = got["grant"]["jti"].as_str().unwrap();
    assert_eq!(app.redeem(token).await.status(), StatusCode::OK);
    let r = app
        .agent_post(
            &agent,
            &format!("/api/v1/grants/{jti}/report"),
            &json!({ "outcome": "succeeded", "detail": "paid" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let t = alice
        .server_json(&app.http, "admin/audit_request", &[("id", &id)])
        .await;
    assert_eq!(t["request_id"], id.as_str());
    assert_eq!(t["status"], "approved");
    assert_eq!(t["chain"]["intact"], true);
    let steps = t["steps"].as_array().unwrap();
    let titles: Vec<&str> = steps.iter().map(|s| s["title"].as_str().unwrap()).collect();
    assert_eq!(
        titles,
        [
            "Intent",
            "Policy decision",
            "Approval",
            "Approved",
            "Grant issued",
            "Grant redeemed",
            "Outcome reported"
        ]
    );
    assert!(
        steps
            .windows(2)
            .all(|w| w[0]["seq"].as_i64() <= w[1]["seq"].as_i64()),
        "in chain order"
    );
    let (intent, policy, approval, grant, redeemed, outcome) = (
        &steps[0], &steps[1], &steps[2], &steps[4], &steps[5], &steps[6],
    );
    assert_eq!(fact_text(intent, "goal"), "Pay supplier invoice INV-1042");
    assert_eq!(fact_text(intent, "amount"), "5000.00 EUR");
    assert_eq!(
        fact_text(intent, "action_hash"),
        shown["view"]["action_hash"]
    );
    assert_eq!(fact_text(policy, "rule"), "default");
    assert!(!fact_text(policy, "explanation").is_empty());

    // The approval names the person, the passkey used (by name and credential id) and the
    // hash of what they were shown.
    let passkeys = countersign::store::users::passkeys(app.core.db.reader(), &alice.id)
        .await
        .unwrap();
    assert_eq!(
        fact_text(approval, "approver"),
        "Ada Admin <alice@example.com>"
    );
    assert!(fact_text(approval, "passkey").starts_with("SoftPasskey ("));
    assert_eq!(
        fact_text(approval, "credential_id"),
        passkeys[0].credential_id
    );
    assert_eq!(fact_text(approval, "display_hash"), shown["display_hash"]);
    assert_eq!(fact_text(approval, "user_verified"), "true");
    assert_eq!(approval["evidence"]["display_hash"], shown["display_hash"]);

    assert_eq!(fact_text(grant, "jti"), jti);
    let expires = fact(grant, "expires_at").unwrap();
    assert!(expires["at"].as_i64().unwrap() > app.core.now());
    assert_eq!(fact_text(redeemed, "jti"), jti);
    assert_eq!(fact_text(outcome, "outcome"), "succeeded");
    assert_eq!(fact_text(outcome, "detail"), "paid");

    // The page shows the same, with links to export it.
    let page = get(&app, &mut alice, &format!("/admin/audit/request/{id}")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Evidence for request"));
    assert!(html.contains(&passkeys[0].credential_id));
    assert!(html.contains(shown["display_hash"].as_str().unwrap()));
    assert!(html.contains(&format!("/api/ui/audit/export?request={id}")));

    // An unknown request is a 404, an empty id a 400.
    let r = alice
        .server_fn(&app.http, "admin/audit_request", &[("id", "nope")])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = alice
        .server_fn(&app.http, "admin/audit_request", &[("id", " ")])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn exports_are_json_lines_whole_and_per_request(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("10.00")).await;
    alice.approve(&app.http, &id).await;
    let other = app.ask_id(&agent, &transfer("20.00")).await;

    let r = get(&app, &mut alice, "/api/ui/audit/export").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"countersign-audit.jsonl\""
    );
    let whole = r.text().await.unwrap();
    let mut cli = Vec::new();
    app.core.export_audit(None, &mut cli).await.unwrap();
    assert_eq!(whole.as_bytes(), cli, "the same lines as `audit export`");
    // The whole export verifies as a chain from the genesis hash, up to the recorded head.
    let events = parse_lines(&whole);
    let mut verifier = ChainVerifier::new();
    for e in &events {
        verifier.check(e).unwrap();
    }
    let (_, head) = countersign::store::audit::head(app.core.db.reader())
        .await
        .unwrap();
    assert_eq!(verifier.head(), head);

    let r = get(
        &app,
        &mut alice,
        &format!("/api/ui/audit/export?request={id}"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    assert_eq!(
        r.headers()["content-disposition"],
        format!("attachment; filename=\"countersign-audit-{id}.jsonl\"").as_str()
    );
    let one = r.text().await.unwrap();
    let events = parse_lines(&one);
    assert!(events.iter().all(|e| e.request_id.as_deref() == Some(&id)));
    assert_eq!(one.lines().collect::<Vec<_>>(), app.audit_lines(&id).await);
    assert_eq!(events.len(), 4, "created, approval, approved, grant");
    assert!(!one.contains(&other));

    let r = get(&app, &mut alice, "/api/ui/audit/export?request=nope").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn owners_get_403_and_strangers_401(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("10.00")).await;
    alice.approve(&app.http, &id).await;
    let mut bob = app.enrol("bob@example.com", "owner", &[]).await;
    let mut stranger = app.stranger();
    for (name, args) in [
        ("admin/audit", vec![]),
        ("admin/audit", vec![("filter[kind]", "request.created")]),
        ("admin/audit_request", vec![("id", id.as_str())]),
    ] {
        let r = bob.server_fn(&app.http, name, &args).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name} as an owner");
        let r = stranger.server_fn(&app.http, name, &args).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name} signed out");
    }
    for path in [
        "/api/ui/audit/export".to_string(),
        format!("/api/ui/audit/export?request={id}"),
    ] {
        let r = get(&app, &mut bob, &path).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} as an owner");
        assert!(!r.text().await.unwrap().contains(&id));
        let r = get(&app, &mut stranger, &path).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path} signed out");
    }
    for page in [
        "/admin/audit".to_string(),
        format!("/admin/audit/request/{id}"),
    ] {
        let r = get(&app, &mut bob, &page).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{page} as an owner");
        let r = app
            .http
            .get(app.url(&page))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{page} signed out");
        assert!(r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/sign-in?next=/admin/audit"));
    }
    // The admin nav offers the audit to admins only.
    let home = get(&app, &mut alice, "/").await.text().await.unwrap();
    assert!(home.contains("href=\"/admin/audit\""));
}

async fn an_edited_row_shows_as_a_failed_verification(backend: Backend) {
    let (app, mut alice, agent) = TestApp::with_alice(backend).await;
    let id = app.ask_id(&agent, &transfer("10.00")).await;
    alice.approve(&app.http, &id).await;
    let before = alice
        .server_json(&app.http, "admin/audit_request", &[("id", &id)])
        .await;
    assert_eq!(before["chain"]["intact"], true);
    // Someone with database access rewrites the approval's evidence.
    let victim = before["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "approval.recorded")
        .unwrap()["seq"]
        .as_i64()
        .unwrap();
    sqlx::query("UPDATE audit_events SET data = $1 WHERE seq = $2")
        .bind(r#"{"user_id":"someone-else"}"#)
        .bind(victim)
        .execute(app.core.db.writer())
        .await
        .unwrap();

    let listing = search(&app, &mut alice, &[]).await;
    assert_eq!(listing["chain"]["intact"], false);
    assert_eq!(listing["chain"]["broken_seq"], victim);
    assert!(listing["chain"]["reason"]
        .as_str()
        .unwrap()
        .contains("does not match"));
    let t = alice
        .server_json(&app.http, "admin/audit_request", &[("id", &id)])
        .await;
    assert_eq!(t["chain"]["intact"], false);
    assert_eq!(t["chain"]["broken_seq"], victim);

    let html = get(&app, &mut alice, "/admin/audit")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("Chain verification FAILED at event #{victim}")));
    assert!(!html.contains("Chain verified"));
    let html = get(&app, &mut alice, &format!("/admin/audit/request/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("FAILED at event #{victim}")));
    assert!(html.contains("not verified"));
}

on_both_backends!(
    admins_search_the_trail_and_each_filter_narrows,
    the_timeline_tells_an_approved_and_redeemed_request_in_order,
    exports_are_json_lines_whole_and_per_request,
    owners_get_403_and_strangers_401,
    an_edited_row_shows_as_a_failed_verification,
);
