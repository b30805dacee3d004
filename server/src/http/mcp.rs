//! The MCP server at `/mcp`: Countersign as tools for an agent that runs inside an MCP host
//! (Claude, Cursor, VS Code, an agent gateway), over the Streamable HTTP transport.
//!
//! Built on `rmcp`, the official Rust SDK: it speaks JSON-RPC, negotiates the protocol version
//! (2025-06-18, 2025-11-25 and 2026-07-28, and the older 2024-11-05 and 2025-03-26), keeps the
//! sessions of the versions that have them and answers malformed messages with JSON-RPC
//! errors. This module only adds the four tools, each a thin edge over the same service calls
//! as the agent API:
//!
//! - `request_approval` creates a request through the same intake (so a bad field is named
//!   exactly as `POST /api/v1/requests` names it) and then long-waits for the decision;
//! - `wait_for_approval` long-waits for one that is still pending;
//! - `cancel_approval` withdraws one; `report_outcome` closes a grant's audit trail.
//!
//! **Authentication** is the agent API's, per HTTP request: [`authenticate`] runs the same
//! bearer check (API key or signed assertion, same 401s, same failure limits) on every POST
//! and GET to `/mcp`, and the tools read the agent from that request. A session id grants
//! nothing by itself, and a suspended agent's next call is refused.
//!
//! **Sessions** (protocol versions before 2026-07-28) live in this process's memory, as rmcp
//! keeps them: behind a load balancer with several replicas, keep an MCP session on one replica
//! (by its `Mcp-Session-Id` header). Decisions still reach a waiting tool call from any replica.
//!
//! **Waiting** is bounded by [`DEFAULT_WAIT_SECS`] (50 s), under the 60 s after which MCP
//! clients give up on a call; a request still pending then is answered `pending`, with its id
//! and the approval page, and the model calls `wait_for_approval`. Where the client declared
//! URL-mode elicitation, a pending request also asks the host to open the approval page (the
//! person at the host is often the one who approves); the call does not wait for that answer.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::{ElicitationMode, RequestContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::agent_api::AgentAuth;
use super::body::MAX_BODY_BYTES;
use crate::domain::lifecycle::RequestStatus;
use crate::service::agents::AgentIdentity;
use crate::service::grants::Outcome;
use crate::service::requests::{RequestView, MAX_WAIT_SECS};
use crate::service::{Countersign, Error};

/// How long a tool call waits for a decision when the model does not say: under the 60 s
/// after which MCP clients abandon a call.
pub const DEFAULT_WAIT_SECS: u32 = 50;

/// The `/mcp` service: rmcp's Streamable HTTP transport over [`Tools`].
pub fn service(core: Arc<Countersign>) -> StreamableHttpService<Tools, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default();
    // rmcp refuses every Host but loopback unless told otherwise (against DNS rebinding of a
    // server on a developer's machine). Here every call carries the agent's credential, which
    // a rebinding page cannot attach, so the Host is whatever the deployment is reached by.
    config.allowed_hosts = Vec::new();
    // The tools' arguments are one approval request (at most 64 KiB, like the agent API's
    // body) plus a few small fields.
    config.max_request_body_bytes = MAX_BODY_BYTES + 16 * 1024;
    StreamableHttpService::new(
        move || Ok(Tools::new(core.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// Authenticates every HTTP request to `/mcp` exactly as the agent API does (same extractor,
/// same 401 problem with `WWW-Authenticate`, same failure limit) and leaves the agent in the
/// request for the tools.
pub async fn authenticate(
    State(core): State<Arc<Countersign>>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    match AgentAuth::from_request_parts(&mut parts, &core).await {
        Ok(agent) => {
            parts.extensions.insert(agent);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(refused) => refused.into_response(),
    }
}

/// The tools, one value per MCP session (rmcp builds one for each).
#[derive(Clone)]
pub struct Tools {
    core: Arc<Countersign>,
    tool_router: ToolRouter<Self>,
}

/// `action` as the agent API takes it (documentation for the model: the value is checked by
/// the intake, which names a bad field).
#[derive(JsonSchema)]
#[allow(dead_code)]
struct ActionShape {
    /// What kind of action, e.g. `payments.transfer` or `db.drop_table` (lowercase letters,
    /// digits, `_`, `.`, `-`).
    r#type: String,
    /// What it acts on, e.g. `bank-api` or `prod-db` (the grant's audience).
    target: String,
    /// The operation on the target, e.g. `POST /v2/transfers`.
    operation: Option<String>,
    /// The exact parameters of the action; the grant is bound to them.
    params: Option<Map<String, Value>>,
}

/// `intent`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct IntentShape {
    /// What the action is for, in one sentence the approver reads first.
    goal: Option<String>,
    /// Why it is needed now, e.g. the ticket or instruction behind it.
    rationale: Option<String>,
}

/// `context`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct ContextShape {
    /// `production`, `staging`, …
    environment: Option<String>,
    /// `public`, `internal`, `confidential`, `restricted`.
    data_sensitivity: Option<String>,
    /// An amount of money the action moves: `{ "value": "5000.00", "currency": "EUR" }`.
    amount: Option<Map<String, Value>>,
    /// The task or run this action belongs to.
    task_id: Option<String>,
}

/// Arguments of `request_approval`.
#[derive(Debug, Deserialize, JsonSchema)]
struct RequestApprovalArgs {
    /// The action to approve.
    #[schemars(with = "ActionShape")]
    action: Value,
    /// Why the agent wants to do it.
    #[serde(default)]
    #[schemars(with = "Option<IntentShape>")]
    intent: Option<Value>,
    /// Where and with what it acts.
    #[serde(default)]
    #[schemars(with = "Option<ContextShape>")]
    context: Option<Value>,
    /// Seconds the request may wait for people (capped by policy; default 600).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    expires_in: Option<Value>,
    /// Seconds this call waits for the decision before answering `pending` (0 to 55,
    /// default 50).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    wait_seconds: Option<Value>,
    /// Makes a retried call return the same request instead of asking twice (1 to 255 visible
    /// ASCII characters). Without it, a retry of the same MCP call is recognised anyway.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    idempotency_key: Option<Value>,
}

/// Arguments of `wait_for_approval`.
#[derive(Debug, Deserialize, JsonSchema)]
struct WaitArgs {
    /// The id `request_approval` answered with.
    #[schemars(with = "String")]
    request_id: Value,
    /// Seconds to wait for the decision (0 to 55, default 50).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    wait_seconds: Option<Value>,
}

/// Arguments of `cancel_approval`.
#[derive(Debug, Deserialize, JsonSchema)]
struct CancelArgs {
    /// The id of the pending request to withdraw.
    #[schemars(with = "String")]
    request_id: Value,
}

/// The outcome `report_outcome` records.
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum OutcomeShape {
    Succeeded,
    Failed,
}

/// Arguments of `report_outcome`.
#[derive(Debug, Deserialize, JsonSchema)]
struct ReportArgs {
    /// The grant's id (`grant.jti` of an approved request).
    #[schemars(with = "String")]
    grant_id: Value,
    /// Whether the action was carried out.
    #[schemars(with = "OutcomeShape")]
    outcome: Value,
    /// What happened, in a sentence or two (at most 2000 characters).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    detail: Option<Value>,
}

#[tool_router]
impl Tools {
    fn new(core: Arc<Countersign>) -> Self {
        Self {
            core,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Ask a human to approve a high-impact action BEFORE you perform it \
        (moving money, changing production, deleting or exporting data, messaging customers). \
        Describe the exact action, why you want it and its context. Answers one of: \
        `approved` with a single-use grant (pass grant.token to the system that performs the \
        action, then call report_outcome); `denied` with the reason (do not perform the action; \
        change course or tell the user); `expired` (nobody approved in time; nothing was \
        granted); or `pending` with the request id and the approval page (call \
        wait_for_approval with that id; do not act before approval)."
    )]
    async fn request_approval(
        &self,
        Parameters(args): Parameters<RequestApprovalArgs>,
        Extension(parts): Extension<Parts>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let agent = agent_of(&parts)?;
        let answer = async {
            let wait = wait_of(args.wait_seconds.as_ref())?;
            let key = match &args.idempotency_key {
                Some(Value::String(k)) => Some(k.clone()),
                Some(_) => {
                    return Err(Error::invalid(
                        "idempotency_key",
                        "idempotency_key must be a string",
                    ))
                }
                None => retry_key(&parts, &context),
            };
            let mut body = Map::new();
            body.insert("action".into(), args.action);
            for (name, value) in [
                ("intent", args.intent),
                ("context", args.context),
                ("expires_in", args.expires_in),
            ] {
                if let Some(v) = value {
                    body.insert(name.into(), v);
                }
            }
            let bytes = serde_json::to_vec(&body).map_err(Error::internal)?;
            if bytes.len() > MAX_BODY_BYTES {
                return Err(Error::PayloadTooLarge {
                    limit: MAX_BODY_BYTES,
                });
            }
            let created = match self
                .core
                .create_request(&agent, &bytes, key.as_deref())
                .await
            {
                Ok(created) => created.view,
                Err(Error::DeniedByPolicy {
                    request_id,
                    rule,
                    explanation,
                }) => return Ok(denied_by_policy(&request_id, &rule, &explanation)),
                Err(e) => return Err(e),
            };
            if created.status != RequestStatus::Pending || wait == 0 {
                return Ok(answer(&created));
            }
            offer_approval_page(&context, &created);
            let now = self.core.get_request(&agent, &created.id, wait).await?;
            Ok(answer(&now))
        };
        Ok(answer.await.unwrap_or_else(refusal))
    }

    #[tool(
        description = "Keep waiting for the decision on a request that request_approval \
        answered `pending`. Answers like request_approval: `approved` with the grant, `denied` \
        with the reason, `expired`, `cancelled`, or still `pending` (call again)."
    )]
    async fn wait_for_approval(
        &self,
        Parameters(args): Parameters<WaitArgs>,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let agent = agent_of(&parts)?;
        let answer = async {
            let id = text_arg("request_id", &args.request_id)?;
            let wait = wait_of(args.wait_seconds.as_ref())?;
            let view = self.core.get_request(&agent, id, wait).await?;
            Ok(answer(&view))
        };
        Ok(answer.await.unwrap_or_else(refusal))
    }

    #[tool(
        description = "Withdraw a pending approval request you no longer need (for example \
        because the user changed their mind). Nothing is granted afterwards."
    )]
    async fn cancel_approval(
        &self,
        Parameters(args): Parameters<CancelArgs>,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let agent = agent_of(&parts)?;
        let answer = async {
            let id = text_arg("request_id", &args.request_id)?;
            let view = self.core.cancel_request(&agent, id).await?;
            Ok(answer(&view))
        };
        Ok(answer.await.unwrap_or_else(refusal))
    }

    #[tool(
        description = "After performing an approved action, report whether it succeeded or \
        failed (with a short detail). This closes the action's audit trail."
    )]
    async fn report_outcome(
        &self,
        Parameters(args): Parameters<ReportArgs>,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let agent = agent_of(&parts)?;
        let answer = async {
            let jti = text_arg("grant_id", &args.grant_id)?;
            let outcome = match args.outcome.as_str() {
                Some("succeeded") => Outcome::Succeeded,
                Some("failed") => Outcome::Failed,
                _ => {
                    return Err(Error::invalid(
                        "outcome",
                        "outcome is `succeeded` or `failed`",
                    ))
                }
            };
            let detail = match &args.detail {
                None | Some(Value::Null) => None,
                Some(Value::String(d)) => Some(d.as_str()),
                Some(_) => return Err(Error::invalid("detail", "detail must be a string")),
            };
            self.core
                .report_outcome(&agent, jti, outcome, detail)
                .await?;
            let value = json!({ "grant_id": jti, "outcome": args.outcome });
            Ok(result(
                format!(
                    "Recorded: the action under grant {jti} {}.",
                    describe(outcome)
                ),
                value,
                false,
            ))
        };
        Ok(answer.await.unwrap_or_else(refusal))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "countersign",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Countersign puts a human in the loop before high-impact actions. Call \
                 request_approval before you move money, change production systems, delete or \
                 export data, or act for someone; perform the action only with an approved \
                 grant, and report the outcome afterwards.",
            )
    }
}

/// The agent [`authenticate`] found for this HTTP request.
fn agent_of(parts: &Parts) -> Result<AgentIdentity, ErrorData> {
    parts
        .extensions
        .get::<AgentAuth>()
        .map(|AgentAuth(agent)| agent.clone())
        // Unreachable behind `authenticate`; refusing is the safe answer if it ever is not.
        .ok_or_else(|| ErrorData::invalid_request("not authenticated", None))
}

/// `wait_seconds`, checked like the agent API's `?wait=`.
fn wait_of(value: Option<&Value>) -> Result<u32, Error> {
    match value {
        None | Some(Value::Null) => Ok(DEFAULT_WAIT_SECS),
        Some(v) => v
            .as_u64()
            .filter(|w| *w <= u64::from(MAX_WAIT_SECS))
            .map(|w| w as u32)
            .ok_or_else(|| {
                Error::invalid(
                    "wait_seconds",
                    format!("wait_seconds is a whole number from 0 to {MAX_WAIT_SECS}"),
                )
            }),
    }
}

fn text_arg<'a>(field: &str, value: &'a Value) -> Result<&'a str, Error> {
    value
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::invalid(field, format!("{field} must be a non-empty string")))
}

/// An idempotency key for a call the client may retry: the same MCP session and JSON-RPC
/// request id give the same key, so a retried call finds the request its first try made.
/// Without a session (stateless protocol versions) there is nothing stable to key on.
fn retry_key(parts: &Parts, context: &RequestContext<RoleServer>) -> Option<String> {
    let session = parts.headers.get("mcp-session-id")?.to_str().ok()?;
    let digest = Sha256::digest(format!("{session}\n{:?}", context.id).as_bytes());
    Some(format!("mcp-{}", hex::encode(digest)))
}

/// Asks the host to open the approval page, where the client declared URL elicitation. Not
/// awaited: the tool call answers on the decision, whatever the person does with the prompt.
fn offer_approval_page(context: &RequestContext<RoleServer>, view: &RequestView) {
    if !context
        .peer
        .supported_elicitation_modes()
        .contains(&ElicitationMode::Url)
    {
        return;
    }
    let Ok(url) = url::Url::parse(&view.approval_url) else {
        return;
    };
    let peer = context.peer.clone();
    let id = view.id.clone();
    tokio::spawn(async move {
        let message = "An action needs your approval in Countersign. Open the page to review it \
                       and approve or deny with your passkey.";
        if let Err(e) = peer.elicit_url(message, url, id).await {
            tracing::debug!(error = %e, "the host did not open the approval page");
        }
    });
}

/// A tool result: a sentence for the model first, then the same as structured content.
fn result(text: String, value: Value, is_error: bool) -> CallToolResult {
    let mut r = if is_error {
        CallToolResult::structured_error(value)
    } else {
        CallToolResult::structured(value)
    };
    r.content.insert(0, ContentBlock::text(text));
    r
}

/// A request's state, worded so that a model knows what to do next.
fn answer(view: &RequestView) -> CallToolResult {
    let id = &view.id;
    let mut value = json!({
        "status": view.status,
        "request_id": id,
        "action_hash": view.action_hash,
    });
    let text = match view.status {
        RequestStatus::Pending => {
            value["approval_url"] = json!(view.approval_url);
            value["expires_at"] = json!(view.expires_at);
            value["approvals"] = json!(view.approvals);
            format!(
                "PENDING: a person must approve this first ({} of {} approvals so far). Do not \
                 perform the action yet. The approver can open {}. Call wait_for_approval with \
                 request_id \"{id}\" to keep waiting (the request expires at {}).",
                view.approvals.received,
                view.approvals.required,
                view.approval_url,
                view.expires_at
            )
        }
        RequestStatus::Approved => match &view.grant {
            Some(grant) => {
                value["grant"] = json!(grant);
                format!(
                    "APPROVED. Perform exactly the approved action now, passing the single-use \
                     grant token to the system that performs it (it expires at {}). Afterwards \
                     call report_outcome with grant_id \"{}\".",
                    grant.expires_at, grant.jti
                )
            }
            None => "APPROVED, but the grant was already handed out or has expired; ask again \
                     if the action is still needed."
                .into(),
        },
        RequestStatus::Denied => {
            let (code, reason) = view.decision.as_ref().map_or(("denied", ""), |d| {
                (d.reason_code.as_str(), d.reason.as_str())
            });
            value["reason_code"] = json!(code);
            value["reason"] = json!(reason);
            denial_text(code, reason)
        }
        RequestStatus::Expired => "EXPIRED: nobody approved this in time, so nothing was \
             granted. Do not perform the action. Ask again only if it is still needed."
            .into(),
        RequestStatus::Cancelled => "CANCELLED: the request was withdrawn; nothing was granted. \
             Do not perform the action."
            .into(),
    };
    result(text, value, false)
}

fn denied_by_policy(request_id: &str, rule: &str, explanation: &str) -> CallToolResult {
    let value = json!({
        "status": "denied",
        "request_id": request_id,
        "reason_code": "denied_by_policy",
        "rule": rule,
        "reason": explanation,
    });
    result(denial_text("denied_by_policy", explanation), value, false)
}

fn denial_text(code: &str, reason: &str) -> String {
    let reason = if reason.is_empty() {
        String::new()
    } else {
        format!(" Reason: {reason}")
    };
    format!(
        "DENIED ({code}).{reason} Do not perform this action, and do not ask again for the same \
         thing unchanged: change course to address the reason, or tell the user it was denied."
    )
}

/// A call that could not be carried out, as a tool error the model can read: the agent API's
/// error code, the field at fault and the sentence. Internal causes stay in the log.
fn refusal(e: Error) -> CallToolResult {
    let code = e.code();
    let (field, detail) = match &e {
        Error::InvalidRequest { field, detail } => (field.clone(), detail.clone()),
        Error::Internal(_) => {
            tracing::error!(cause = %e.for_log(), "an MCP tool call failed");
            (None, "internal error".into())
        }
        other => (None, other.to_string()),
    };
    let text = match &field {
        Some(f) => format!("Refused ({code}), field `{f}`: {detail}"),
        None => format!("Refused ({code}): {detail}"),
    };
    result(
        text,
        json!({ "error": code, "field": field, "detail": detail }),
        true,
    )
}

fn describe(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
    }
}
