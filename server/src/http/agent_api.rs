//! The agent-facing API (`/api/v1`), exactly as `agent-api.md` fixes it. Each handler parses,
//! lets the [`AgentAuth`] extractor authenticate, calls one service method and maps its error.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::{IntoParams, ToSchema};

use super::body::{parse_json, read_json_body, Path, Query};
use super::limits::{FailureGate, Failures};
use super::openapi::{
    InternalError, PayloadTooLarge, RateLimited, RedeemedDoc, ReportedDoc, RevokedDoc,
    Unauthorized, UnsupportedMediaType,
};
use super::problem::{ApiError, Problem};
use crate::domain::intake::{Amount, NewRequest};
use crate::domain::lifecycle::RequestStatus;
use crate::service::agents::AgentIdentity;
use crate::service::grants::{Outcome, Revoker};
use crate::service::requests::{RequestView, MAX_WAIT_SECS};
use crate::service::{Countersign, Error};

/// An authenticated agent: taking this as an argument is how a handler requires one.
#[derive(Debug, Clone)]
pub struct AgentAuth(pub AgentIdentity);

impl FromRequestParts<Arc<Countersign>> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        core: &Arc<Countersign>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(gated(parts, core, Checked::Always).await?))
    }
}

/// [`AgentAuth`] for creating a request: an API key may be recognised from the intake cache
/// (see `service::agents`, "Credentials cached for intake").
#[derive(Debug)]
pub struct IntakeAuth(pub AgentIdentity);

impl FromRequestParts<Arc<Countersign>> for IntakeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        core: &Arc<Countersign>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(gated(parts, core, Checked::ForIntake).await?))
    }
}

/// Whether a credential is looked up every time.
#[derive(Debug, Clone, Copy)]
enum Checked {
    Always,
    ForIntake,
}

/// Authenticates behind the per-address gate on failures.
async fn gated(
    parts: &Parts,
    core: &Countersign,
    checked: Checked,
) -> Result<AgentIdentity, ApiError> {
    // An address with too many failed authentications is refused here, before its
    // credential is even looked at (a signature check, a `jti` write); only failures are
    // counted, so an agent whose credential works is never slowed (see `limits`).
    let gate = FailureGate::enter(&parts.extensions, &parts.headers, Failures::AgentAuth)?;
    let authenticated = authenticate(parts, core, checked).await;
    if matches!(authenticated, Err(Error::InvalidToken(_))) {
        gate.failed();
    }
    Ok(authenticated?)
}

/// The agent a request's bearer credential names, if the credential holds.
async fn authenticate(
    parts: &Parts,
    core: &Countersign,
    checked: Checked,
) -> Result<AgentIdentity, Error> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Error::InvalidToken("send Authorization: Bearer <API key or signed assertion>".into())
        })?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::InvalidToken("the Authorization header must use the Bearer scheme".into())
        })?;
    // Boxed, so the database read's future does not size every handler future that holds
    // this extractor's (a long-waiting read sits in its handler for up to a minute).
    match checked {
        Checked::Always => Box::pin(core.authenticate_agent(token)).await,
        Checked::ForIntake => Box::pin(core.authenticate_for_intake(token)).await,
    }
}

fn with_location(status: StatusCode, view: RequestView) -> Response {
    let location = format!("/api/v1/requests/{}", view.id);
    let mut r = (status, Json(view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Ask before acting.
#[utoipa::path(
    post, path = "/api/v1/requests", tag = "requests",
    request_body(content = NewRequest, content_type = "application/json",
        description = "The action, its intent and context. `action.type` and `action.target` are required."),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
        description = "1 to 255 visible ASCII characters. Same key and body return the same request; same key with another body is 409")),
    responses(
        (status = 202, description = "Pending: a human must decide", body = RequestView,
            headers(("Location" = String, description = "Where to read the request"))),
        (status = 200, description = "Approved at once by policy, with the grant", body = RequestView,
            headers(("Location" = String, description = "Where to read the request"))),
        (status = 400, description = "`invalid_request`, with the offending `field` when one is at fault", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`denied_by_policy`, with `rule`, `explanation` and `request_id`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: the Idempotency-Key was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = RateLimited),
        (status = 500, response = InternalError),
    ),
    security(("agent" = []))
)]
pub async fn create_request(
    State(core): State<Arc<Countersign>>,
    IntakeAuth(agent): IntakeAuth,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_json_body(&headers, body).await?;
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(v.to_str().map_err(|_| {
            Error::invalid(
                "Idempotency-Key",
                "the Idempotency-Key header must be visible ASCII",
            )
        })?),
        None => None,
    };
    let created = core.create_request(&agent, &bytes, key).await?;
    let status = if created.view.status == RequestStatus::Pending {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok(with_location(status, created.view))
}

/// `?wait=` of a read. Kept as text so a bad value is refused with our own sentence.
#[derive(Debug, Default, Deserialize)]
pub struct WaitQuery {
    #[serde(default)]
    wait: Option<String>,
}

impl IntoParams for WaitQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("wait")
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(
                "Hold the call up to this many seconds until the request is decided; \
                 answered the moment it is",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(MAX_WAIT_SECS))
                    .default(Some(0.into())),
            ))
            .build()]
    }
}

/// Read a request, optionally long-waiting for its decision.
#[utoipa::path(
    get, path = "/api/v1/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "The request id"), WaitQuery),
    responses(
        (status = 200, description = "The request's current state", body = RequestView,
            headers(("Location" = String, description = "Where to read the request"))),
        (status = 400, description = "`invalid_request`: `wait` out of range, or `id` not UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such request, or another agent's", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`slow_down` (with `interval`): polled sooner than `interval` without `wait`; or `rate_limited`: too many failed authentications from this address",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
        (status = 500, response = InternalError),
    ),
    security(("agent" = []))
)]
pub async fn get_request(
    State(core): State<Arc<Countersign>>,
    AgentAuth(agent): AgentAuth,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Response, ApiError> {
    let wait = match query.wait {
        None => 0,
        Some(w) => w.parse::<u32>().map_err(|_| {
            Error::invalid(
                "wait",
                format!("wait must be a whole number of seconds between 0 and {MAX_WAIT_SECS}"),
            )
        })?,
    };
    let view = core.get_request(&agent, &id, wait).await?;
    Ok(with_location(StatusCode::OK, view))
}

/// Withdraw a pending request.
#[utoipa::path(
    post, path = "/api/v1/requests/{id}/cancel", tag = "requests",
    params(("id" = String, Path, description = "The request id")),
    responses(
        (status = 200, description = "Cancelled", body = RequestView,
            headers(("Location" = String, description = "Where to read the request"))),
        (status = 400, description = "`invalid_request`: `id` not UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such request, or another agent's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: already decided", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = RateLimited),
        (status = 500, response = InternalError),
    ),
    security(("agent" = []))
)]
pub async fn cancel_request(
    State(core): State<Arc<Countersign>>,
    AgentAuth(agent): AgentAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = core.cancel_request(&agent, &id).await?;
    Ok(with_location(StatusCode::OK, view))
}

/// A redemption: the grant token and, optionally, the action hash the downstream system is
/// about to perform.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemBody {
    /// The compact JWS.
    pub token: String,
    /// When given, must equal the grant's `action_hash`.
    #[serde(default)]
    #[schema(pattern = "^sha256:[0-9a-f]{64}$")]
    pub action_hash: Option<String>,
    /// The amount the downstream system is about to act on. Required when the approver capped
    /// the grant's amount (`authorization_details[0].amount_max`): the grant is redeemed only
    /// for an amount within the cap, in its currency, and stays unused otherwise
    /// (`400 invalid_request`, field `amount`).
    #[serde(default)]
    pub amount: Option<RedeemAmount>,
}

/// An amount, as in `context.amount`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemAmount {
    /// A decimal string such as `"3000.00"`.
    pub value: String,
    /// ISO 4217 code such as `EUR`.
    pub currency: String,
}

/// Redeem a grant, exactly once (called by the downstream system).
#[utoipa::path(
    post, path = "/api/v1/grants/redeem", tag = "grants",
    request_body = RedeemBody,
    responses(
        (status = 200, description = "First valid redemption: the grant is used now", body = RedeemedDoc),
        (status = 400, description = "`invalid_request`: not a valid grant of this server (`field: token`), or issued for another action (`field: action_hash`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`grant_already_redeemed`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`grant_expired` or `grant_revoked`", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = RateLimited),
        (status = 500, response = InternalError),
    )
)]
pub async fn redeem_grant(
    State(core): State<Arc<Countersign>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_json_body(&headers, body).await?;
    let req: RedeemBody = parse_json(&bytes)?;
    let amount = req
        .amount
        .map(|a| Amount::parse_at(&a.value, &a.currency, "amount"))
        .transpose()
        .map_err(|e| Error::InvalidRequest {
            field: e.field,
            detail: e.detail,
        })?;
    let redeemed = core
        .redeem_grant(&req.token, req.action_hash.as_deref(), amount.as_ref())
        .await?;
    Ok(Json(redeemed).into_response())
}

/// Give a grant up: the agent it was issued to (bearer credential), or its owner or an admin
/// (browser session).
#[utoipa::path(
    post, path = "/api/v1/grants/{jti}/revoke", tag = "grants",
    params(("jti" = String, Path, description = "The grant id")),
    responses(
        (status = 200, description = "Revoked", body = RevokedDoc),
        (status = 400, description = "`invalid_request`: `jti` not UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_token`: a bearer credential that is not valid (with `WWW-Authenticate`), or neither a credential nor a signed-in session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: a browser call from another site", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such grant, or not yours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: no longer issued", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = RateLimited),
        (status = 500, response = InternalError),
    ),
    security(("agent" = []), ("session" = []))
)]
pub async fn revoke_grant(
    State(core): State<Arc<Countersign>>,
    Path(jti): Path<String>,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    if parts.headers.contains_key(header::AUTHORIZATION) {
        let AgentAuth(agent) = AgentAuth::from_request_parts(&mut parts, &core).await?;
        core.revoke_grant(Revoker::Agent(&agent), &jti).await?;
    } else {
        let super::owner_api::OwnerSession(who) =
            super::owner_api::OwnerSession::from_request_parts(&mut parts, &core).await?;
        core.revoke_grant(Revoker::Person(&who), &jti).await?;
    }
    Ok(Json(serde_json::json!({ "jti": jti, "status": "revoked" })).into_response())
}

/// A task-scoped credential, released once.
#[derive(Debug, serde::Serialize, ToSchema)]
#[schema(as = Credential)]
pub struct CredentialAnswer {
    /// The grant redeemed for it.
    pub jti: String,
    /// The provider it comes from (the policy rule's `credential`).
    pub provider: String,
    /// The kind of credential: `postgres` (a login role on the provider's server).
    #[schema(pattern = "^postgres$")]
    pub r#type: &'static str,
    /// `postgres://<username>:<password>@<host>:<port>/<database>`: connect with this.
    pub connection_string: String,
    /// The login's name (`cs_` and 32 hex digits).
    pub username: String,
    /// Its password. Shown here only, never again.
    pub password: String,
    /// When the task's time runs out: the login is removed then at the latest, and as soon as
    /// the outcome is reported, the grant revoked or the agent suspended.
    pub expires_at: String,
    /// Seconds until `expires_at`.
    pub expires_in: i64,
}

/// Redeem a grant for the task-scoped credential its request's policy rule releases.
#[utoipa::path(
    post, path = "/api/v1/grants/{jti}/credential", tag = "grants",
    params(("jti" = String, Path, description = "The grant id")),
    responses(
        (status = 200, description = "Released: a login that exists for this task only. The grant is used up (a later `/grants/redeem` of it answers `409 grant_already_redeemed`).", body = CredentialAnswer),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such grant, or another agent's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`grant_already_redeemed`: the grant was used (a credential is released once); `conflict`: the request's rule releases no credential, or its provider is a gateway", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`grant_expired` or `grant_revoked`", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = RateLimited),
        (status = 500, response = InternalError),
        (status = 502, description = "`upstream_failed`: the provider's server refused to create the login (e.g. its template role is missing); nothing was released", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`provider_unavailable`: the provider's server cannot be reached, or the provider is not configured here; nothing was used up, and the grant stays redeemable until it expires", body = Problem, content_type = "application/problem+json"),
    ),
    security(("agent" = []))
)]
pub async fn release_credential(
    State(core): State<Arc<Countersign>>,
    AgentAuth(agent): AgentAuth,
    Path(jti): Path<String>,
) -> Result<Response, ApiError> {
    let released = core.release_credential(&agent, &jti).await?;
    let expires_in = ((released.expires_at - core.now()) / 1000).max(0);
    let answer = CredentialAnswer {
        jti,
        provider: released.provider,
        r#type: "postgres",
        connection_string: released.connection_string.expose().to_string(),
        username: released.login,
        password: released.password.expose().to_string(),
        expires_at: crate::clock::rfc3339(released.expires_at),
        expires_in,
    };
    let mut response = Json(answer).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// What happened after the action.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    /// `succeeded` or `failed`.
    pub outcome: Outcome,
    /// Optional detail (at most 2000 characters).
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub detail: Option<String>,
}

/// Report the outcome, closing the audit chain.
#[utoipa::path(
    post, path = "/api/v1/grants/{jti}/report", tag = "grants",
    params(("jti" = String, Path, description = "The grant id")),
    request_body = ReportBody,
    responses(
        (status = 200, description = "Recorded", body = ReportedDoc),
        (status = 400, description = "`invalid_request`, with the offending `field`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such grant, or another agent's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: not redeemed, or already reported", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = RateLimited),
        (status = 500, response = InternalError),
    ),
    security(("agent" = []))
)]
pub async fn report_outcome(
    State(core): State<Arc<Countersign>>,
    AgentAuth(agent): AgentAuth,
    Path(jti): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_json_body(&headers, body).await?;
    let req: ReportBody = parse_json(&bytes)?;
    core.report_outcome(&agent, &jti, req.outcome, req.detail.as_deref())
        .await?;
    Ok(Json(serde_json::json!({ "jti": jti, "outcome": req.outcome })).into_response())
}
