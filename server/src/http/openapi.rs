//! The OpenAPI 3.1 document of the agent contract, served at `GET /api/v1/openapi.json`.
//!
//! Generated from code: the operations from the handlers' `#[utoipa::path]` attributes, the
//! create body's schema from the intake validator's own constants
//! (`domain::intake::schema`), the answers from the types the handlers return. What the
//! handlers build by hand (the grant's claims, the small acknowledgements) is described here by
//! documentation-only types; the integration tests keep them honest by validating every answer
//! of the suite against the document (`server/tests/it/common`).
//!
//! The errors every agent operation shares (401, 413, 415, 429, 500) are reusable responses
//! ([`Unauthorized`] and its neighbours), so each is described once.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use super::problem::Problem;
use super::{agent_api, ops, SESSION_COOKIE};
use crate::domain::intake::NewRequest;
use crate::service::grants::Outcome;

/// The OpenAPI 3.1 description of the agent API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Countersign agent API", version = "1",
        description = "Ask a human before a high-impact action; receive a single-use grant bound to that exact action. \
Every error is `application/problem+json` (RFC 9457) with a stable `error` code and, when one field is at fault, its path in `field`. \
A method a path does not take is answered `405` with `Allow`; a path that is no endpoint `404 not_found`."),
    paths(agent_api::create_request, agent_api::get_request, agent_api::cancel_request,
          agent_api::redeem_grant, agent_api::revoke_grant, agent_api::report_outcome,
          agent_api::release_credential, super::gateway::forward,
          ops::openapi, ops::jwks, ops::audit_checkpoints),
    components(
        schemas(Problem, NewRequest),
        responses(Unauthorized, RateLimited, PayloadTooLarge, UnsupportedMediaType, InternalError),
    ),
    modifiers(&Security),
    tags((name = "requests", description = "Approval requests"),
         (name = "grants", description = "Single-use grants"),
         (name = "discovery", description = "This document and the grant verification keys"),
         (name = "audit", description = "Signed checkpoints of the audit chain's head, for monitors"))
)]
pub struct ApiDoc;

/// The two ways to call: an agent's bearer credential, or (revocation only) an owner's browser
/// session.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "agent",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An agent API key (cs_agent_<id>_<secret>) or an EdDSA-signed JWT assertion (iss = sub = agent id, aud = server URL, exp - iat <= 60 s, unique jti)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "A signed-in person's browser session (the agent's owner or an admin); \
                 state-changing calls must come from this site (Sec-Fetch-Site or Origin)",
            ))),
        );
    }
}

/// A problem+json answer with these headers.
fn problem(description: &str, headers: &[(&str, &str)]) -> RefOr<Response> {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    for (name, about) in headers {
        response = response.header(
            *name,
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(*about))
                .build(),
        );
    }
    response.build().into()
}

const RETRY_AFTER: (&str, &str) = ("Retry-After", "Seconds to wait before trying again");

/// `401 invalid_token`.
pub struct Unauthorized;

impl<'r> ToResponse<'r> for Unauthorized {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "Unauthorized",
            problem(
                "`invalid_token`: no credential, a wrong or revoked key, a suspended agent, an \
                 expired, replayed or wrongly addressed assertion",
                &[(
                    "WWW-Authenticate",
                    "Always `Bearer error=\"invalid_token\"`",
                )],
            ),
        )
    }
}

/// `429 rate_limited`.
pub struct RateLimited;

impl<'r> ToResponse<'r> for RateLimited {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "RateLimited",
            problem(
                "`rate_limited`: too many calls from this client address (redemptions, failed \
                 agent authentication), or, when creating, too many of this agent's requests \
                 already waiting for a human, or an action a person just denied asked again",
                &[RETRY_AFTER],
            ),
        )
    }
}

/// `413 payload_too_large`.
pub struct PayloadTooLarge;

impl<'r> ToResponse<'r> for PayloadTooLarge {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "PayloadTooLarge",
            problem(
                &format!(
                    "`payload_too_large`: the body is over {} bytes",
                    super::body::MAX_BODY_BYTES
                ),
                &[],
            ),
        )
    }
}

/// `415 invalid_request` for a body that is not JSON.
pub struct UnsupportedMediaType;

impl<'r> ToResponse<'r> for UnsupportedMediaType {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "UnsupportedMediaType",
            problem(
                "`invalid_request` with `field: Content-Type`: send the body as \
                 `application/json`",
                &[],
            ),
        )
    }
}

/// `500 internal_error`.
pub struct InternalError;

impl<'r> ToResponse<'r> for InternalError {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "InternalError",
            problem(
                "`internal_error`: something failed on the server's side (the cause is logged, \
                 never shown); nothing was changed",
                &[],
            ),
        )
    }
}

/// The answer to `POST /api/v1/grants/{jti}/revoke`.
#[derive(ToSchema)]
#[schema(as = Revoked)]
#[allow(dead_code)]
pub struct RevokedDoc {
    /// The grant id.
    jti: String,
    /// Always `revoked`.
    #[schema(pattern = "^revoked$")]
    status: String,
}

/// The answer to `POST /api/v1/grants/{jti}/report`.
#[derive(ToSchema)]
#[schema(as = Reported)]
#[allow(dead_code)]
pub struct ReportedDoc {
    /// The grant id.
    jti: String,
    /// What was recorded.
    outcome: Outcome,
}

/// The answer to the first valid redemption.
#[derive(ToSchema)]
#[schema(as = Redeemed)]
#[allow(dead_code)]
pub struct RedeemedDoc {
    /// Always true.
    valid: bool,
    /// The grant's verified claims.
    claims: GrantClaims,
}

/// The claims of a grant (a compact JWS, `alg: EdDSA`, `typ: countersign-grant+jwt`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct GrantClaims {
    /// The server's public URL.
    iss: String,
    /// The agent's id.
    sub: String,
    /// `action.target`: the system that redeems it.
    aud: String,
    /// The grant id.
    jti: String,
    /// Issued at (seconds since the epoch).
    iat: i64,
    /// Expires at (seconds since the epoch); 60 s after `iat` unless policy says otherwise, at
    /// most 300 s.
    exp: i64,
    /// The hash of the approved request (`sha256:<hex>`).
    #[schema(pattern = "^sha256:[0-9a-f]{64}$")]
    action_hash: String,
    /// The request the grant answers.
    request_id: String,
    /// The approved action (RFC 9396 style), one entry.
    #[schema(min_items = 1, max_items = 1)]
    authorization_details: Vec<AuthorizationDetail>,
    /// The people whose approvals made the quorum (user ids); empty when policy allowed it.
    approvers: Vec<String>,
    /// For agents with a public key: its RFC 7638 thumbprint.
    #[schema(nullable = false)]
    cnf: Option<Confirmation>,
    /// When a standing approval approved the request (no person was asked this time): its id.
    /// `approvers` then names the person who gave it.
    #[schema(nullable = false)]
    standing_approval: Option<String>,
}

/// An amount, as in `context.amount`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct GrantAmount {
    /// A decimal string such as `"3000.00"`.
    value: String,
    /// ISO 4217 code such as `EUR`.
    currency: String,
}

/// The approved action: its `params` verbatim, or, when their canonical JSON is over 4 KiB,
/// their SHA-256 instead (so a grant always fits in 8 KiB); neither when the action had none.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum AuthorizationDetail {
    /// With the parameters themselves (or none).
    Params(DetailWithParams),
    /// With the parameters' digest.
    Digest(DetailWithDigest),
}

/// An authorization detail carrying the parameters (when the action had any).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct DetailWithParams {
    /// `action.type`.
    r#type: String,
    /// `action.operation`, when given.
    #[schema(nullable = false)]
    operation: Option<String>,
    /// `action.params`, verbatim.
    #[schema(nullable = false, value_type = Option<Object>)]
    params: Option<serde_json::Value>,
    /// The most the downstream system may act on, when the approver narrowed the approval:
    /// redemption then needs the `amount` about to be acted on, within this.
    #[schema(nullable = false)]
    amount_max: Option<GrantAmount>,
}

/// An authorization detail carrying the digest of large parameters.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct DetailWithDigest {
    /// `action.type`.
    r#type: String,
    /// `action.operation`, when given.
    #[schema(nullable = false)]
    operation: Option<String>,
    /// `sha256:<hex>` of the RFC 8785 canonical JSON of `action.params`.
    #[schema(pattern = "^sha256:[0-9a-f]{64}$")]
    params_sha256: String,
    /// As in the other form: the approver's amount cap, when they narrowed.
    #[schema(nullable = false)]
    amount_max: Option<GrantAmount>,
}

/// Proof-of-possession confirmation (RFC 7800).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Confirmation {
    /// RFC 7638 thumbprint of the agent's key.
    jkt: String,
}

/// The grant verification keys (`GET /.well-known/jwks.json`).
#[derive(ToSchema)]
#[schema(as = JwkSet)]
#[allow(dead_code)]
pub struct JwkSetDoc {
    /// Current signing key first; older keys stay until every grant they signed has expired.
    keys: Vec<JwkDoc>,
}

/// An Ed25519 public key (RFC 8037).
#[derive(ToSchema)]
#[schema(as = Jwk)]
#[allow(dead_code)]
pub struct JwkDoc {
    /// `OKP`.
    #[schema(pattern = "^OKP$")]
    kty: String,
    /// `Ed25519`.
    #[schema(pattern = "^Ed25519$")]
    crv: String,
    /// The public key, base64url without padding.
    x: String,
    /// The key id grants name in their header.
    kid: String,
    /// `EdDSA`.
    #[schema(nullable = false)]
    alg: Option<String>,
    /// `sig`.
    #[schema(nullable = false, rename = "use")]
    r#use: Option<String>,
}

/// `GET /api/v1/audit/checkpoints`: this replica's newest signed checkpoints of the audit
/// chain's head, and the key they are signed with (so the answer is also a JWK Set).
#[derive(ToSchema)]
#[schema(as = CheckpointFeed)]
#[allow(dead_code)]
pub struct CheckpointFeedDoc {
    /// The public URL of this server.
    issuer: String,
    /// The key this replica signs checkpoints with (never the grant key).
    keys: Vec<JwkDoc>,
    /// The newest checkpoints, oldest first.
    checkpoints: Vec<CheckpointDoc>,
}

/// One signed checkpoint: the compact JWS (`typ: countersign-checkpoint+jwt`) and, for
/// reading, what it says. Verifiers trust only `jws`, checked against a key they pinned.
#[derive(ToSchema)]
#[schema(as = Checkpoint)]
#[allow(dead_code)]
pub struct CheckpointDoc {
    /// The newest event's position when it was signed.
    seq: i64,
    /// That event's hash (`sha256:<hex>`).
    hash: String,
    /// When it was signed (unix milliseconds).
    time: i64,
    /// The public URL of the server that signed it.
    iss: String,
    /// The signing key's RFC 7638 thumbprint.
    kid: String,
    /// The compact JWS.
    jws: String,
}

/// Adds OpenAPI 3.1's top-level `webhooks` (utoipa 5 has no field for it): the signed callback
/// Countersign POSTs to an agent's registered callback URL when one of its requests leaves
/// `pending` (see `service::callbacks`).
pub fn with_webhooks(mut doc: serde_json::Value) -> serde_json::Value {
    use crate::domain::callback::{CALLBACK_CONTENT_TYPE, CALLBACK_LIFETIME_SECS, CALLBACK_TYP};
    let description = format!(
        "Sent to the agent's callback URL (registered by its owner or an admin: \
         `countersign agent callback set AGENT_ID URL`, or the agents page) when one of its \
         requests leaves `pending`: approved, denied, cancelled or expired (not for requests \
         policy decides at once: their answer is the creation call's). The body is a compact \
         JWS (`{CALLBACK_CONTENT_TYPE}`), `alg` EdDSA, `typ` `{CALLBACK_TYP}`, `kid` a key of \
         `/.well-known/jwks.json`. Verify it before reading it: the signature with that key, \
         `typ`, `aud` equal to your callback URL, `iss` equal to this server's URL, `exp` (at \
         most {CALLBACK_LIFETIME_SECS} s after `iat`) not passed, and `jti` not seen before. \
         It never carries the grant: fetch the request with the agent's own credential \
         (`GET /api/v1/requests/{{id}}`). Answer 2xx to acknowledge; anything else, no answer \
         within 5 s, or a redirect is retried with exponential backoff (about 10 attempts over \
         up to 10 minutes). Delivery is at least once: the same `request_id` may arrive twice."
    );
    let webhook = serde_json::json!({
        "post": {
            "summary": "A request was decided (signed callback, CIBA ping mode)",
            "description": description,
            "operationId": "requestDecidedCallback",
            "tags": ["requests"],
            "requestBody": {
                "required": true,
                "content": {
                    CALLBACK_CONTENT_TYPE: {
                        "schema": {
                            "type": "string",
                            "description": "Compact JWS whose payload has the claims below",
                            "contentMediaType": CALLBACK_CONTENT_TYPE,
                            "contentSchema": {
                                "type": "object",
                                "required": ["iss", "aud", "iat", "exp", "jti", "request_id", "status"],
                                "properties": {
                                    "iss": { "type": "string", "description": "This server's public URL" },
                                    "aud": { "type": "string", "description": "The callback URL, exactly as registered" },
                                    "iat": { "type": "integer" },
                                    "exp": { "type": "integer" },
                                    "jti": { "type": "string", "description": "Unique per attempt" },
                                    "request_id": { "type": "string" },
                                    "status": { "type": "string", "enum": ["approved", "denied", "cancelled", "expired"] }
                                }
                            }
                        }
                    }
                }
            },
            "responses": {
                "2XX": { "description": "Received; no more attempts" },
                "default": { "description": "Not received; tried again later" }
            }
        }
    });
    if let Some(obj) = doc.as_object_mut() {
        obj.insert(
            "webhooks".into(),
            serde_json::json!({ "requestDecided": webhook }),
        );
    }
    doc
}
