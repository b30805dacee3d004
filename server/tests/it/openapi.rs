//! The served OpenAPI document says what the server does: its create schema refuses what the
//! validator refuses and accepts the README's example, it documents every status and limit,
//! and the check that runs behind every integration test (`common::contract`) does find a
//! server that strays from it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue};
use common::contract::{request_body_validator, Call, Recorder};
use common::{Backend, TestApp};
use countersign::domain::intake::Limits;
use countersign::service::requests::MAX_WAIT_SECS;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The create body of the README's five-minute tour, as printed there.
fn readme_example() -> Value {
    let readme = include_str!("../../../README.md");
    let call = readme
        .find("-X POST http://localhost:3000/api/v1/requests")
        .expect("the README shows a create call");
    let body = &readme[call..];
    let start = body.find("-d '").expect("with a body") + "-d '".len();
    let end = body[start..].find('\'').expect("quoted") + start;
    serde_json::from_str(&body[start..end]).expect("the README's body is JSON")
}

async fn create_schema_agrees_with_the_validator(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let schema = request_body_validator(&app.openapi, "post", "/api/v1/requests");

    // The README's example: accepted by both.
    let example = readme_example();
    let errors: Vec<String> = schema
        .iter_errors(&example)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "the schema refuses the README: {errors:?}"
    );
    let r = app.agent_post(&agent, "/api/v1/requests", &example).await;
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        r.text().await.unwrap()
    );
    // `null` is the same as leaving an optional field out, for both.
    let nulls = json!({
        "action": {"type": "a", "target": "t", "operation": null, "params": null},
        "intent": null,
        "context": {"amount": null, "delegation": null, "data_sensitivity": null},
        "expires_in": null
    });
    assert!(schema.is_valid(&nulls));
    assert_eq!(
        app.agent_post(&agent, "/api/v1/requests", &nulls)
            .await
            .status(),
        StatusCode::ACCEPTED
    );

    // What the validator refuses, the schema refuses: patterns, lengths, enums, ranges,
    // unknown and missing fields.
    let with = |path: &[&str], value: Value| {
        let mut body = example.clone();
        let (last, parents) = path.split_last().unwrap();
        let mut cursor = &mut body;
        for key in parents {
            cursor = cursor
                .as_object_mut()
                .unwrap()
                .entry(key.to_string())
                .or_insert_with(|| json!({}));
        }
        cursor[*last] = value;
        body
    };
    let without = |path: &[&str]| {
        let mut body = example.clone();
        let (last, parents) = path.split_last().unwrap();
        let mut cursor = &mut body;
        for key in parents {
            cursor = &mut cursor[*key];
        }
        cursor.as_object_mut().unwrap().remove(*last);
        body
    };
    let seventeen: Vec<Value> = (0..17)
        .map(|i| json!({ "actor": format!("a{i}") }))
        .collect();
    let cases = [
        (
            with(&["action", "type"], json!("Payments.Transfer")),
            "action.type",
        ),
        (
            with(&["action", "type"], json!("t".repeat(129))),
            "action.type",
        ),
        (with(&["action", "target"], json!("")), "action.target"),
        (
            with(&["action", "target"], json!("t".repeat(257))),
            "action.target",
        ),
        (
            with(&["action", "target"], json!("bank\napi")),
            "action.target",
        ),
        (with(&["action", "surprise"], json!(1)), "action.surprise"),
        (with(&["action", "params"], json!([1])), "action.params"),
        (without(&["action", "target"]), "action.target"),
        (without(&["action"]), "action"),
        (
            with(&["intent", "goal"], json!("g".repeat(1001))),
            "intent.goal",
        ),
        (with(&["intent", "why"], json!("x")), "intent.why"),
        (
            with(&["context", "environment"], json!("Production")),
            "context.environment",
        ),
        (
            with(&["context", "data_sensitivity"], json!("secret")),
            "context.data_sensitivity",
        ),
        (
            with(&["context", "amount", "value"], json!("1e9")),
            "context.amount.value",
        ),
        (
            with(&["context", "amount", "value"], json!(5000)),
            "context.amount.value",
        ),
        (
            with(&["context", "amount", "currency"], json!("eur")),
            "context.amount.currency",
        ),
        (
            with(&["context", "task_id"], json!("t".repeat(129))),
            "context.task_id",
        ),
        (
            with(&["context", "delegation"], json!(seventeen)),
            "context.delegation",
        ),
        (
            with(&["context", "delegation"], json!([{"on_behalf_of": "x"}])),
            "context.delegation[0].actor",
        ),
        (with(&["expires_in"], json!(0)), "expires_in"),
        (
            with(&["expires_in"], json!(Limits::default().max_expires_in + 1)),
            "expires_in",
        ),
        (with(&["expires_in"], json!("300")), "expires_in"),
        (with(&["expires_in"], json!(1.5)), "expires_in"),
        (with(&["extra"], json!(true)), "extra"),
    ];
    for (body, field) in cases {
        assert!(
            !schema.is_valid(&body),
            "the schema accepts what the server refuses at {field}: {body}"
        );
        let r = app.agent_post(&agent, "/api/v1/requests", &body).await;
        let p = common::problem(r, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert_eq!(p["field"], field, "{p}");
    }
}

async fn the_document_names_every_status_and_limit(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc = &app.openapi;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let op = |method: &str, path: &str| doc["paths"][path][method].clone();
    let statuses = |op: &Value| -> Vec<String> {
        op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let resolve = |response: &Value| match response["$ref"].as_str() {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap().clone(),
        None => response.clone(),
    };
    let agent_ops = [
        ("post", "/api/v1/requests"),
        ("get", "/api/v1/requests/{id}"),
        ("post", "/api/v1/requests/{id}/cancel"),
        ("post", "/api/v1/grants/{jti}/revoke"),
        ("post", "/api/v1/grants/{jti}/report"),
    ];
    for (method, path) in agent_ops.iter().chain([&("post", "/api/v1/grants/redeem")]) {
        let op = op(method, path);
        for status in ["429", "500"] {
            assert!(
                op["responses"].get(status).is_some(),
                "{method} {path} documents {status}: {:?}",
                statuses(&op)
            );
        }
        let limited = resolve(&op["responses"]["429"]);
        assert!(
            limited["headers"].get("Retry-After").is_some(),
            "{method} {path}: 429 with Retry-After"
        );
        assert!(
            limited["content"].get("application/problem+json").is_some(),
            "{method} {path}: 429 is problem+json"
        );
    }
    for (method, path) in agent_ops {
        assert!(op(method, path)["responses"].get("401").is_some(), "{path}");
        assert!(!op(method, path)["security"].as_array().unwrap().is_empty());
    }
    // Bodies: JSON only, and no more than the edge reads.
    for path in [
        "/api/v1/requests",
        "/api/v1/grants/redeem",
        "/api/v1/grants/{jti}/report",
    ] {
        let op = op("post", path);
        for status in ["400", "413", "415"] {
            assert!(op["responses"].get(status).is_some(), "{path}: {status}");
        }
        assert!(op["requestBody"]["content"]
            .get("application/json")
            .is_some());
    }
    // Limits come from the constants the server enforces.
    let wait = op("get", "/api/v1/requests/{id}")["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "wait")
        .unwrap()
        .clone();
    assert_eq!(wait["in"], "query");
    assert_eq!(wait["schema"]["maximum"], MAX_WAIT_SECS);
    assert_eq!(wait["schema"]["minimum"], 0);
    let create = &doc["components"]["schemas"]["NewRequest"];
    assert_eq!(
        create["properties"]["expires_in"]["maximum"],
        Limits::default().max_expires_in
    );
    assert_eq!(create["additionalProperties"], false);
    assert_eq!(create["required"], json!(["action"]));
    let action = &doc["components"]["schemas"]["Action"];
    assert_eq!(action["required"], json!(["type", "target"]));
    assert_eq!(
        action["properties"]["type"]["pattern"],
        "^[a-z0-9_.-]{1,128}$"
    );
    let sensitivity = &doc["components"]["schemas"]["DataSensitivity"]["enum"];
    assert_eq!(
        *sensitivity,
        json!(["public", "internal", "confidential", "restricted"])
    );
    // The grant's action travels as params or, when large, as their digest.
    let detail = &doc["components"]["schemas"]["AuthorizationDetail"]["oneOf"];
    assert_eq!(detail.as_array().unwrap().len(), 2, "{detail}");
}

/// The check behind every test finds a server that strays from its document: an undocumented
/// status, an accepted body the schema refuses, an answer of the wrong shape, a missing
/// documented header, an error that is not problem+json.
async fn the_contract_check_finds_violations(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let json_headers = |content_type: &'static str| {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static(content_type));
        h
    };
    let call = |method: &str,
                path: &str,
                request: Value,
                status: u16,
                headers: HeaderMap,
                response: Value| Call {
        method: method.into(),
        path: path.into(),
        request: Bytes::from(request.to_string()),
        status,
        headers,
        response: Some(Bytes::from(response.to_string())),
    };
    let problem = |status: u16, code: &str| json!({"type": format!("/errors/{code}"), "title": "t", "status": status, "error": code, "detail": "d"});
    let fake = Recorder::default();
    // A teapot.
    fake.push(call(
        "POST",
        "/api/v1/grants/redeem",
        json!({"token": "a.b.c"}),
        418,
        json_headers("application/problem+json"),
        problem(418, "invalid_request"),
    ));
    // Accepted a body the schema refuses (an unknown field).
    fake.push(call(
        "POST",
        "/api/v1/grants/g1/report",
        json!({"outcome": "succeeded", "mood": "good"}),
        200,
        json_headers("application/json"),
        json!({"jti": "g1", "outcome": "succeeded"}),
    ));
    // An answer of the wrong shape (a status no request has).
    let mut located = json_headers("application/json");
    located.insert("location", HeaderValue::from_static("/api/v1/requests/r1"));
    fake.push(call(
        "GET",
        "/api/v1/requests/r1",
        Value::Null,
        200,
        located,
        json!({"id": "r1", "status": "thinking"}),
    ));
    // 429 without Retry-After.
    fake.push(call(
        "POST",
        "/api/v1/requests",
        json!({"action": {"type": "a", "target": "t"}}),
        429,
        json_headers("application/problem+json"),
        problem(429, "rate_limited"),
    ));
    // An error in plain text, and an error code the contract does not have.
    fake.push(call(
        "GET",
        "/api/v1/requests/r1",
        Value::Null,
        404,
        json_headers("text/plain"),
        json!("no"),
    ));
    fake.push(call(
        "GET",
        "/api/v1/requests/r1",
        Value::Null,
        404,
        json_headers("application/problem+json"),
        problem(404, "gone_fishing"),
    ));
    let found = fake.violations(&app.openapi);
    let expect = [
        "POST /api/v1/grants/redeem -> 418: status 418 is not documented",
        "POST /api/v1/grants/g1/report -> 200: the server accepted a body the document refuses",
        "GET /api/v1/requests/r1 -> 200: the answer does not match its documented schema",
        "POST /api/v1/requests -> 429: the documented header Retry-After is missing",
        "GET /api/v1/requests/r1 -> 404: an error answered as \"text/plain\", not application/problem+json",
        "GET /api/v1/requests/r1 -> 404: the answer does not match its documented schema: at \"/error\"",
    ];
    for wanted in expect {
        assert!(
            found.iter().any(|f| f.starts_with(wanted)),
            "expected a finding starting {wanted:?}, found:\n{}",
            found.join("\n")
        );
    }
}

on_both_backends!(
    create_schema_agrees_with_the_validator,
    the_document_names_every_status_and_limit,
    the_contract_check_finds_violations,
);
