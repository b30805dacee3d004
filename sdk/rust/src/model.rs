//! What goes over the wire, as types: the request an agent sends ([`ApprovalRequest`]), the
//! state the server answers ([`RequestState`]), a grant ([`Grant`]) and its claims
//! ([`GrantClaims`]). Field names and values are the agent contract's (`agent-api.md`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::Error;
use crate::jws;

// --- what an agent sends --------------------------------------------------------------------

/// A request for approval: the body of `POST /api/v1/requests` and its `Idempotency-Key`.
///
/// `action.action_type` and `action.target` are required; everything else is optional. The
/// server validates every field and answers [`Error::InvalidRequest`] naming the one at fault
/// (`action.type`, `context.amount.value` …).
///
/// ```
/// use countersign_client::{ApprovalRequest, DataSensitivity};
/// use serde_json::json;
/// use std::time::Duration;
///
/// let request = ApprovalRequest::new("payments.transfer", "bank-api")
///     .operation("POST /v2/transfers")
///     .params(json!({ "to": "DE89 3704 0044 0532 0130 00", "amount": "5000.00" }))
///     .goal("Pay supplier invoice INV-1042")
///     .environment("production")
///     .data_sensitivity(DataSensitivity::Confidential)
///     .amount("5000.00", "EUR")
///     .expires_in(Duration::from_secs(300))
///     .idempotency_key("inv-1042-pay");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApprovalRequest {
    /// What the agent wants to do.
    pub action: Action,
    /// Why.
    #[serde(skip_serializing_if = "Intent::is_empty")]
    pub intent: Intent,
    /// The circumstances policy and the approver take into account.
    #[serde(skip_serializing_if = "Context::is_empty")]
    pub context: Context,
    /// How long the request may wait for a decision, sent in whole seconds (rounded up);
    /// capped by policy.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_seconds"
    )]
    pub expires_in: Option<Duration>,
    /// Sent as the `Idempotency-Key` header, not in the body: the same key with the same body
    /// returns the same request (a retry after a lost answer is safe); with another body it is
    /// [`Error::Conflict`].
    #[serde(skip)]
    pub idempotency_key: Option<String>,
}

fn whole_seconds<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => s.serialize_u64(d.as_secs() + u64::from(d.subsec_nanos() > 0)),
        None => s.serialize_none(),
    }
}

/// The operation the agent asks permission for.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Action {
    /// `action.type`: a dotted kind such as `payments.transfer` (`^[a-z0-9_.-]{1,128}$`).
    #[serde(rename = "type")]
    pub action_type: String,
    /// The system that will perform it, e.g. `bank-api`: the grant's audience.
    pub target: String,
    /// The concrete operation, e.g. `POST /v2/transfers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Its parameters: a JSON object, hashed and shown to the approver verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

/// Why the agent wants to act.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Intent {
    /// The goal, e.g. `Pay supplier invoice INV-1042`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    /// The reasoning behind it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
}

impl Intent {
    fn is_empty(&self) -> bool {
        self.goal.is_none() && self.rationale.is_none()
    }
}

/// The circumstances of the action.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Context {
    /// e.g. `production` (`^[a-z0-9_-]{1,32}$`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// How sensitive the data it touches is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_sensitivity: Option<DataSensitivity>,
    /// The money at stake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    /// The agent's own task or run id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Who the agent acts for, outermost first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delegation: Vec<Delegation>,
}

impl Context {
    fn is_empty(&self) -> bool {
        self.environment.is_none()
            && self.data_sensitivity.is_none()
            && self.amount.is_none()
            && self.task_id.is_none()
            && self.delegation.is_empty()
    }
}

/// `context.data_sensitivity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSensitivity {
    /// `public`
    Public,
    /// `internal`
    Internal,
    /// `confidential`
    Confidential,
    /// `restricted`
    Restricted,
}

/// An amount of money: a decimal string (never a float, so `5000.00` stays exact) and an ISO
/// 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    /// e.g. `5000.00`.
    pub value: String,
    /// e.g. `EUR`.
    pub currency: String,
}

/// One link of a delegation chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delegation {
    /// Who delegated, e.g. `planner-agent`.
    pub actor: String,
    /// For whom, e.g. `alice@example.com`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

impl ApprovalRequest {
    /// A request for this action type on this target; add the rest with the methods below.
    pub fn new(action_type: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            action: Action {
                action_type: action_type.into(),
                target: target.into(),
                ..Action::default()
            },
            ..Self::default()
        }
    }

    /// `action.operation`.
    pub fn operation(mut self, operation: impl Into<String>) -> Self {
        self.action.operation = Some(operation.into());
        self
    }

    /// `action.params` (a JSON object).
    pub fn params(mut self, params: Value) -> Self {
        self.action.params = Some(params);
        self
    }

    /// `intent.goal`.
    pub fn goal(mut self, goal: impl Into<String>) -> Self {
        self.intent.goal = Some(goal.into());
        self
    }

    /// `intent.rationale`.
    pub fn rationale(mut self, rationale: impl Into<String>) -> Self {
        self.intent.rationale = Some(rationale.into());
        self
    }

    /// `context.environment`.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.context.environment = Some(environment.into());
        self
    }

    /// `context.data_sensitivity`.
    pub fn data_sensitivity(mut self, level: DataSensitivity) -> Self {
        self.context.data_sensitivity = Some(level);
        self
    }

    /// `context.amount`: a decimal string and a currency, e.g. `("5000.00", "EUR")`.
    pub fn amount(mut self, value: impl Into<String>, currency: impl Into<String>) -> Self {
        self.context.amount = Some(Amount {
            value: value.into(),
            currency: currency.into(),
        });
        self
    }

    /// `context.task_id`.
    pub fn task_id(mut self, task_id: impl Into<String>) -> Self {
        self.context.task_id = Some(task_id.into());
        self
    }

    /// Appends a link to `context.delegation`.
    pub fn delegated_by(mut self, actor: impl Into<String>, on_behalf_of: Option<String>) -> Self {
        self.context.delegation.push(Delegation {
            actor: actor.into(),
            on_behalf_of,
        });
        self
    }

    /// `expires_in`.
    pub fn expires_in(mut self, expires_in: Duration) -> Self {
        self.expires_in = Some(expires_in);
        self
    }

    /// The `Idempotency-Key` header.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

// --- what the server answers ----------------------------------------------------------------

/// Where a request is in its life: `pending` until decided, then final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a decision.
    Pending,
    /// Approved: the state carries the grant.
    Approved,
    /// Denied, by a person or by policy: the state carries the decision.
    Denied,
    /// Nobody decided in time.
    Expired,
    /// Withdrawn before a decision.
    Cancelled,
}

/// What policy decided about a request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PolicyDecision {
    /// The rule's id (`default` when no rule matched).
    pub rule: String,
    /// Distinct approvals needed (0 when the rule allowed or denied outright).
    pub approvals_required: i64,
    /// One line, for the agent and the approver alike.
    pub explanation: String,
}

/// Approvals required and received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Approvals {
    /// Needed.
    pub required: i64,
    /// So far.
    pub received: i64,
}

/// Why a request was denied.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Decision {
    /// The person's sentence (or the rule's explanation).
    pub reason: String,
    /// A machine-readable code; `policy` for a policy denial.
    pub reason_code: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub decided_at: OffsetDateTime,
}

/// A request as the server last described it: the body of every request endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestState {
    /// The request id.
    pub id: String,
    /// Where it is.
    pub status: Status,
    /// `sha256:<hex>` of the canonical `{agent_id, action, intent, context}`: everything
    /// later binds to it.
    pub action_hash: String,
    /// When a pending request expires.
    pub expires_at: OffsetDateTime,
    /// Seconds until then (answers to creating only).
    pub expires_in: Option<u64>,
    /// The least time between reads without `wait`.
    pub interval: Duration,
    /// The page where the owner decides: show it to whoever should approve.
    pub approval_url: String,
    /// What policy decided.
    pub policy: PolicyDecision,
    /// Approvals required and received.
    pub approvals: Approvals,
    /// Present when denied.
    pub decision: Option<Decision>,
    /// Present when approved.
    pub grant: Option<Grant>,
}

/// The wire form of [`RequestState`], before the grant is decoded.
#[derive(Deserialize)]
struct StateWire {
    id: String,
    status: Status,
    action_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    #[serde(default)]
    expires_in: Option<u64>,
    interval: u64,
    approval_url: String,
    policy: PolicyDecision,
    approvals: Approvals,
    #[serde(default)]
    decision: Option<Decision>,
    #[serde(default)]
    grant: Option<GrantWire>,
}

#[derive(Deserialize)]
struct GrantWire {
    token: String,
    jti: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

impl RequestState {
    /// Reads a request state from an answer's body (`status` is the answer's HTTP status, for
    /// the error when the body is not one).
    pub(crate) fn from_body(status: u16, body: &[u8]) -> Result<Self, Error> {
        let wire: StateWire = serde_json::from_slice(body)
            .map_err(|e| Error::bad_response(status, format!("not a request state: {e}")))?;
        let grant = match wire.grant {
            None => None,
            Some(g) => Some(Grant::from_parts(g.token, g.jti, g.expires_at, status)?),
        };
        Ok(Self {
            id: wire.id,
            status: wire.status,
            action_hash: wire.action_hash,
            expires_at: wire.expires_at,
            expires_in: wire.expires_in,
            interval: Duration::from_secs(wire.interval),
            approval_url: wire.approval_url,
            policy: wire.policy,
            approvals: wire.approvals,
            decision: wire.decision,
            grant,
        })
    }

    /// The grant of an approved request, `None` while pending, or the error a request's end
    /// means: [`Error::Denied`], [`Error::DeniedByPolicy`], [`Error::Expired`],
    /// [`Error::Cancelled`].
    pub fn outcome(self) -> Result<Option<Grant>, Error> {
        match self.status {
            Status::Pending => Ok(None),
            Status::Approved => self.grant.map(Some).ok_or_else(|| {
                Error::bad_response(200, format!("request {} approved without a grant", self.id))
            }),
            Status::Denied => {
                let (reason_code, reason) = self
                    .decision
                    .map(|d| (d.reason_code, d.reason))
                    .unwrap_or_default();
                if reason_code == "policy" {
                    Err(Error::DeniedByPolicy {
                        request_id: Some(self.id),
                        rule: Some(self.policy.rule),
                        explanation: reason,
                    })
                } else {
                    Err(Error::Denied {
                        request_id: self.id,
                        reason_code,
                        reason,
                    })
                }
            }
            Status::Expired => Err(Error::Expired {
                request_id: self.id,
            }),
            Status::Cancelled => Err(Error::Cancelled {
                request_id: self.id,
            }),
        }
    }
}

/// A single-use, short-lived grant for one approved action.
///
/// `token` is the compact JWS to hand to the downstream system, which verifies it and redeems
/// it once. It is a bearer credential until redeemed: `Debug` does not print it.
#[derive(Clone, PartialEq)]
pub struct Grant {
    /// The compact JWS.
    pub token: String,
    /// The grant id (`jti`): for [`Client::report_outcome`] and [`Client::revoke_grant`].
    ///
    /// [`Client::report_outcome`]: crate::Client::report_outcome
    /// [`Client::revoke_grant`]: crate::Client::revoke_grant
    pub jti: String,
    /// When it stops being redeemable.
    pub expires_at: OffsetDateTime,
    /// The token's claims as the agent received them: decoded, *not* verified (a downstream
    /// system verifies with [`Downstream::verify_grant`]).
    ///
    /// [`Downstream::verify_grant`]: crate::Downstream::verify_grant
    pub claims: GrantClaims,
}

impl Grant {
    fn from_parts(
        token: String,
        jti: String,
        expires_at: OffsetDateTime,
        status: u16,
    ) -> Result<Self, Error> {
        let claims = jws::split(&token)
            .and_then(|compact| compact.claims())
            .map_err(|e| Error::bad_response(status, format!("the grant's token: {e}")))
            .and_then(|claims| {
                serde_json::from_value(Value::Object(claims)).map_err(|e| {
                    Error::bad_response(status, format!("the grant's claims do not parse: {e}"))
                })
            })?;
        Ok(Self {
            token,
            jti,
            expires_at,
            claims,
        })
    }

    /// The `action_hash` the grant is bound to.
    pub fn action_hash(&self) -> &str {
        &self.claims.action_hash
    }

    /// The request the grant answers.
    pub fn request_id(&self) -> &str {
        &self.claims.request_id
    }
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("jti", &self.jti)
            .field("expires_at", &self.expires_at)
            .field("claims", &self.claims)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The claims of a grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantClaims {
    /// The server's public URL.
    pub iss: String,
    /// The agent's id.
    pub sub: String,
    /// `action.target`: the system that redeems it.
    pub aud: String,
    /// The grant id.
    pub jti: String,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Expires at (unix seconds).
    pub exp: i64,
    /// The approved request's `action_hash`.
    pub action_hash: String,
    /// The request the grant answers.
    pub request_id: String,
    /// The approved action, one entry (RFC 9396 style).
    #[serde(default)]
    pub authorization_details: Vec<AuthorizationDetail>,
    /// The people whose approvals made the quorum (user ids); empty when policy allowed it.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// For agents with a public key: its RFC 7638 thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// When a standing approval approved the request (no one was asked this time): its id;
    /// `approvers` then names the person who gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing_approval: Option<String>,
}

/// The approved action in a grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationDetail {
    /// `action.type`.
    #[serde(rename = "type")]
    pub action_type: String,
    /// `action.operation`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// `action.params` verbatim, when given and their canonical JSON is at most 4 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Map<String, Value>>,
    /// Instead of `params` when larger: `sha256:<hex>` of their RFC 8785 canonical JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params_sha256: Option<String>,
    /// The most the downstream system may act on, when the approver narrowed the approval:
    /// redeem it with [`Downstream::redeem_amount`](crate::Downstream::redeem_amount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_max: Option<Amount>,
}

/// Proof-of-possession confirmation (RFC 7800).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 7638 thumbprint of the agent's key.
    pub jkt: String,
}

/// What happened after the action, for [`Client::report_outcome`].
///
/// [`Client::report_outcome`]: crate::Client::report_outcome
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action was performed.
    Succeeded,
    /// It was attempted and failed.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_body_leaves_out_what_was_not_given() {
        let bare = ApprovalRequest::new("db.migrate", "orders-db");
        assert_eq!(
            serde_json::to_value(&bare).expect("serialises"),
            json!({ "action": { "type": "db.migrate", "target": "orders-db" } })
        );
        let full = ApprovalRequest::new("payments.transfer", "bank-api")
            .operation("POST /v2/transfers")
            .params(json!({ "amount": "5.00" }))
            .goal("Pay")
            .rationale("Due")
            .environment("production")
            .data_sensitivity(DataSensitivity::Confidential)
            .amount("5.00", "EUR")
            .task_id("run-1")
            .delegated_by("planner-agent", Some("alice@example.com".into()))
            .expires_in(Duration::from_millis(299_001))
            .idempotency_key("k1");
        assert_eq!(
            serde_json::to_value(&full).expect("serialises"),
            json!({
                "action": { "type": "payments.transfer", "target": "bank-api",
                            "operation": "POST /v2/transfers", "params": { "amount": "5.00" } },
                "intent": { "goal": "Pay", "rationale": "Due" },
                "context": { "environment": "production", "data_sensitivity": "confidential",
                             "amount": { "value": "5.00", "currency": "EUR" }, "task_id": "run-1",
                             "delegation": [ { "actor": "planner-agent", "on_behalf_of": "alice@example.com" } ] },
                "expires_in": 300
            }),
            "expires_in rounds up; the idempotency key is a header"
        );
    }

    fn state(status: &str, extra: Value) -> Vec<u8> {
        let mut body = json!({
            "id": "r1", "status": status, "action_hash": "sha256:00",
            "expires_at": "2026-12-06T20:00:00.000Z", "interval": 5,
            "approval_url": "http://localhost:3000/requests/r1",
            "policy": { "rule": "default", "approvals_required": 1, "explanation": "ask the owner" },
            "approvals": { "required": 1, "received": 0 }
        });
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        body.to_string().into_bytes()
    }

    #[test]
    fn states_end_in_their_outcome() {
        let pending = RequestState::from_body(202, &state("pending", json!({}))).expect("parses");
        assert_eq!(pending.interval, Duration::from_secs(5));
        assert!(matches!(pending.outcome(), Ok(None)));

        let denied = state(
            "denied",
            json!({ "decision": { "reason": "Wrong IBAN", "reason_code": "wrong_details",
                                  "decided_at": "2026-12-06T19:59:00Z" } }),
        );
        match RequestState::from_body(200, &denied).and_then(RequestState::outcome) {
            Err(Error::Denied {
                request_id,
                reason_code,
                reason,
            }) => assert_eq!(
                (request_id.as_str(), reason_code.as_str(), reason.as_str()),
                ("r1", "wrong_details", "Wrong IBAN")
            ),
            other => panic!("{other:?}"),
        }
        let by_policy = state(
            "denied",
            json!({ "decision": { "reason": "never", "reason_code": "policy",
                                  "decided_at": "2026-12-06T19:59:00Z" } }),
        );
        assert!(matches!(
            RequestState::from_body(200, &by_policy).and_then(RequestState::outcome),
            Err(Error::DeniedByPolicy { rule: Some(r), .. }) if r == "default"
        ));
        assert!(matches!(
            RequestState::from_body(200, &state("expired", json!({}))).and_then(RequestState::outcome),
            Err(Error::Expired { request_id }) if request_id == "r1"
        ));
        assert!(matches!(
            RequestState::from_body(200, &state("cancelled", json!({})))
                .and_then(RequestState::outcome),
            Err(Error::Cancelled { .. })
        ));
        // Approved without a grant: the server broke the contract, we do not panic.
        let e = RequestState::from_body(200, &state("approved", json!({})))
            .and_then(RequestState::outcome)
            .expect_err("no grant");
        assert_eq!(e.code(), "bad_response");
    }

    #[test]
    fn an_approved_state_decodes_its_grant_and_hides_the_token() {
        let claims = json!({ "iss": "http://localhost:3000", "sub": "a1", "aud": "bank-api", "jti": "g1",
                             "iat": 1, "exp": 61, "action_hash": "sha256:00", "request_id": "r1",
                             "authorization_details": [{ "type": "payments.transfer" }], "approvers": [] });
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let token = jws::sign(jws::GRANT_TYP, &claims, &key);
        let body = state(
            "approved",
            json!({ "grant": { "token": token, "jti": "g1", "expires_at": "2026-12-06T20:01:00.000Z" } }),
        );
        let grant = RequestState::from_body(200, &body)
            .and_then(RequestState::outcome)
            .expect("approved")
            .expect("a grant");
        assert_eq!(grant.jti, "g1");
        assert_eq!(grant.request_id(), "r1");
        assert_eq!(grant.claims.aud, "bank-api");
        let shown = format!("{grant:?}");
        assert!(
            !shown.contains(&token) && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        for body in [
            &b"not json"[..],
            b"{}",
            b"[]",
            br#"{"id":"r1","status":"weird"}"#,
        ] {
            let e = RequestState::from_body(200, body).expect_err("refused");
            assert_eq!(e.code(), "bad_response");
        }
        let bad_grant = state(
            "approved",
            json!({ "grant": { "token": "not-a-jws", "jti": "g1", "expires_at": "2026-12-06T20:01:00Z" } }),
        );
        assert_eq!(
            RequestState::from_body(200, &bad_grant)
                .expect_err("refused")
                .code(),
            "bad_response"
        );
    }
}

/// A task-scoped credential ([`Client::task_credential`]): a login on a PostgreSQL provider
/// that exists for this one approved task. Countersign removes it when the outcome is
/// reported, the grant revoked, the agent suspended, or at `expires_at`. `password` and
/// `connection_string` are secrets: `Debug` does not print them.
///
/// [`Client::task_credential`]: crate::Client::task_credential
#[derive(Clone, PartialEq, Deserialize)]
pub struct TaskCredential {
    /// The grant it was released for.
    pub jti: String,
    /// The provider (the policy rule's `credential`).
    pub provider: String,
    /// `postgres`.
    pub r#type: String,
    /// The login's name (`cs_…`).
    pub username: String,
    /// Its password.
    pub password: String,
    /// `postgres://username:password@host:port/database`.
    pub connection_string: String,
    /// When the task's time runs out.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for TaskCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskCredential")
            .field("provider", &self.provider)
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
