//! The MCP endpoint's edge, over raw HTTP: it authenticates exactly like the agent API (same
//! 401 problem, on every request of a session, so a suspension ends a session at once), it
//! answers broken JSON-RPC with JSON-RPC errors rather than 500s, and a tool call reaches the
//! same intake and decisions as the agent API. The tools' behaviour through a real MCP client
//! (the official Python SDK) is in `sdk/python/tests/test_mcp.py`.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::common::{Agent, Backend, TestApp};

const ACCEPT: &str = "application/json, text/event-stream";

/// One JSON-RPC message to `/mcp` as `bearer`, in `session` when given.
async fn post(app: &TestApp, bearer: Option<&str>, session: Option<&str>, body: &str) -> Response {
    let mut req = app
        .http
        .post(app.url("/mcp"))
        .header("accept", ACCEPT)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string());
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    req.send().await.unwrap()
}

/// The JSON-RPC message of an answer, sent as JSON or as an SSE stream of one message.
async fn message(r: Response) -> Value {
    let is_sse = r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream");
    let text = r.text().await.unwrap();
    if !is_sse {
        return serde_json::from_str(&text).unwrap();
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|d| !d.is_empty())
        .map(|d| serde_json::from_str(d).unwrap())
        .unwrap_or_else(|| panic!("no message in {text:?}"))
}

/// Opens a session as `agent` (initialize + initialized); returns its id.
async fn open_session(app: &TestApp, agent: &Agent) -> String {
    let hello = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "it", "version": "1" }
        }
    });
    let r = post(app, Some(&agent.bearer), None, &hello.to_string()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let init = message(r).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(init["result"]["serverInfo"]["name"], "countersign");
    let done = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let r = post(app, Some(&agent.bearer), Some(&session), &done.to_string()).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    session
}

fn call(id: u64, tool: &str, arguments: Value) -> String {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": tool, "arguments": arguments }
    })
    .to_string()
}

fn transfer(amount: &str) -> Value {
    json!({ "action": {
        "type": "payments.transfer", "target": "bank-api",
        "params": { "amount": amount, "currency": "EUR" }
    }})
}

async fn problem_of(r: Response) -> (StatusCode, String, Value) {
    let status = r.status();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    (status, challenge, r.json().await.unwrap())
}

async fn refused_like_the_agent_api(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let hello = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }).to_string();
    for bearer in [
        None,
        Some("cs_agent_nope"),
        Some(&agent.bearer[..agent.bearer.len() - 1]),
    ] {
        let (status, challenge, body) = problem_of(post(&app, bearer, None, &hello).await).await;
        let mut api = app
            .http
            .post(app.url("/api/v1/requests"))
            .json(&transfer("1.00"));
        if let Some(b) = bearer {
            api = api.bearer_auth(b);
        }
        let (api_status, api_challenge, api_body) = problem_of(api.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!((status, &challenge), (api_status, &api_challenge));
        assert_eq!(body["error"], api_body["error"], "{bearer:?}");
        assert_eq!(body["detail"], api_body["detail"], "{bearer:?}");
    }
}

async fn a_session_id_grants_nothing_and_a_suspension_ends_the_session(backend: Backend) {
    let (app, alice, agent) = TestApp::with_alice(backend).await;
    let session = open_session(&app, &agent).await;
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }).to_string();

    let r = post(&app, Some(&agent.bearer), Some(&session), &list).await;
    let tools = message(r).await;
    let mut names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "cancel_approval",
            "report_outcome",
            "request_approval",
            "wait_for_approval"
        ]
    );

    // The session's id without the agent's credential, or with another agent's, is refused.
    let r = post(&app, None, Some(&session), &list).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let mut args = transfer("4.00");
    args["wait_seconds"] = json!(0);
    let asked = post(
        &app,
        Some(&agent.bearer),
        Some(&session),
        &call(3, "request_approval", args),
    )
    .await;
    let asked = message(asked).await;
    let id = asked["result"]["structuredContent"]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(asked["result"]["structuredContent"]["status"], "pending");
    // The tool went through the same service: the agent API sees the same request.
    let same = app
        .agent_get(&agent, &format!("/api/v1/requests/{id}"))
        .await;
    assert_eq!(same.status(), StatusCode::OK);

    app.core.suspend_agent(&agent.id, &alice.id).await.unwrap();
    let r = post(
        &app,
        Some(&agent.bearer),
        Some(&session),
        &call(
            4,
            "wait_for_approval",
            json!({ "request_id": id, "wait_seconds": 0 }),
        ),
    )
    .await;
    let (status, challenge, body) = problem_of(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge, "Bearer error=\"invalid_token\"");
    assert_eq!(body["error"], "invalid_token");
}

async fn broken_json_rpc_is_answered_in_json_rpc(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let session = open_session(&app, &agent).await;

    // Not JSON at all: refused before any session state is touched, never a 500.
    let r = post(&app, Some(&agent.bearer), Some(&session), "{\"jsonrpc\": ").await;
    assert!(r.status().is_client_error(), "{}", r.status());

    // A tool that does not exist, and arguments of the wrong shape: JSON-RPC errors.
    let r = post(
        &app,
        Some(&agent.bearer),
        Some(&session),
        &call(5, "drop_everything", json!({})),
    )
    .await;
    let answer = message(r).await;
    assert_eq!(answer["id"], 5);
    assert!(answer["error"]["code"].as_i64().unwrap() < 0, "{answer}");

    // A bad value inside well-formed arguments is the intake's refusal, naming the field,
    // as a tool error the model can read.
    let bad = json!({ "action": { "type": "Pay Now!", "target": "bank-api" } });
    let r = post(
        &app,
        Some(&agent.bearer),
        Some(&session),
        &call(6, "request_approval", bad),
    )
    .await;
    let answer = message(r).await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["error"],
        "invalid_request"
    );
    assert_eq!(
        answer["result"]["structuredContent"]["field"],
        "action.type"
    );
}

/// `request_approval` is idempotent per MCP call: a client that sends the same call again (same
/// session, same JSON-RPC id: a retry after a lost answer) gets the request its first try made;
/// a new call, or the same id in another session, asks anew.
async fn a_retried_call_finds_the_request_its_first_try_made(backend: Backend) {
    let (app, _alice, agent) = TestApp::with_alice(backend).await;
    let session = open_session(&app, &agent).await;
    let mut args = transfer("8.00");
    args["wait_seconds"] = json!(0);
    let ask = |session: String, id: u64| {
        let (app, agent, args) = (&app, &agent, args.clone());
        async move {
            let r = post(
                app,
                Some(&agent.bearer),
                Some(&session),
                &call(id, "request_approval", args),
            )
            .await;
            let answer = message(r).await;
            assert_eq!(
                answer["result"]["structuredContent"]["status"], "pending",
                "{answer}"
            );
            answer["result"]["structuredContent"]["request_id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let first = ask(session.clone(), 7).await;
    assert_eq!(ask(session.clone(), 7).await, first, "a retry asks once");
    assert_ne!(ask(session.clone(), 8).await, first, "a new call asks anew");
    let other = open_session(&app, &agent).await;
    assert_ne!(
        ask(other, 7).await,
        first,
        "another session's call is its own"
    );
}

on_both_backends!(
    refused_like_the_agent_api,
    a_session_id_grants_nothing_and_a_suspension_ends_the_session,
    broken_json_rpc_is_answered_in_json_rpc,
    a_retried_call_finds_the_request_its_first_try_made,
);
