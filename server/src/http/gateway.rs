//! `/gw/{provider}/{path}`: the secret-injecting gateway's edge. The agent authenticates as
//! itself (`Authorization`), carries its grant in `Countersign-Grant`, and gets the upstream's
//! answer back as it came (status, `Content-Type`, body). The checks and the forwarding are in
//! [`crate::service::credentials::gateway`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::agent_api::AgentAuth;
use super::body::{read_capped_body, Path};
use super::openapi::{InternalError, RateLimited, Unauthorized};
use super::problem::{ApiError, Problem};
use crate::service::credentials::gateway::GatewayCall;
use crate::service::{Countersign, Error};

/// The header that carries the grant.
pub const GRANT_HEADER: &str = "countersign-grant";

/// Send one approved call through a gateway provider.
///
/// The call must be exactly the approved action: `METHOD /path?query` (the part after
/// `/gw/{provider}`) equal to `action.operation`, and the body the approved `action.params`
/// (compared as the SHA-256 of their canonical JSON, RFC 8785; an empty body for none). It
/// uses the grant up before it is forwarded; the upstream's answer comes back unchanged. Any
/// method; documented here as POST.
#[utoipa::path(
    post, path = "/gw/{provider}/{path}", tag = "grants",
    params(
        ("provider" = String, Path, description = "The HTTP credential provider (the policy rule's `credential`)"),
        ("path" = String, Path, description = "The upstream path, as approved in `action.operation`"),
        ("Countersign-Grant" = String, Header, description = "The grant for this call (compact JWS)"),
    ),
    request_body(content = Object, description = "The approved `action.params` (JSON), or nothing", content_type = "application/json"),
    responses(
        (status = 200, description = "The upstream's answer (any status it gave), forwarded as it came: status, `Content-Type` and body"),
        (status = 400, description = "`invalid_request`: no `Countersign-Grant`, a grant that does not verify, or a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`forbidden`: the call is not the approved one (method, path or body differ), the grant is another agent's, or the gateway does not cover the operation; nothing reached the upstream and the grant is unused", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no gateway of that name", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`grant_already_redeemed`: a replay", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`grant_expired` or `grant_revoked`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = RateLimited),
        (status = 500, response = InternalError),
        (status = 502, description = "`upstream_failed`: the upstream could not be reached or broke off (the grant is used up: the call may have reached it)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`provider_unavailable`: the gateway's secret cannot be opened here", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "`upstream_timeout`: no answer within the provider's timeout", body = Problem, content_type = "application/problem+json"),
    ),
    security(("agent" = []))
)]
pub async fn forward(
    State(core): State<Arc<Countersign>>,
    AgentAuth(agent): AgentAuth,
    Path((provider, _)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let grant = headers
        .get(GRANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .ok_or_else(|| {
            Error::invalid(
                "Countersign-Grant",
                "send the grant for this call in the Countersign-Grant header",
            )
        })?;
    // The raw path, as the agent wrote it (percent-encoding and all): that is what was approved.
    let prefix = format!("/gw/{provider}");
    let path = uri.path().strip_prefix(&prefix).unwrap_or("/");
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let body = read_capped_body(&headers, body).await?;
    let answer = core
        .forward_through_gateway(
            &agent,
            GatewayCall {
                provider: &provider,
                method: method.as_str(),
                path_and_query: &path_and_query,
                content_type: headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
                body: &body,
                grant,
            },
        )
        .await?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, answer.body).into_response();
    let h = response.headers_mut();
    if let Some(ct) = answer
        .content_type
        .and_then(|ct| HeaderValue::from_str(&ct).ok())
    {
        h.insert(header::CONTENT_TYPE, ct);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
