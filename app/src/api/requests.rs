//! Requests as people see them: the inbox, one request's page and the history.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg(feature = "ssr")]
use super::{backend, with_status};
use super::{AppError, RequestStatus, Verdict};

/// One risk the page calls out before anything else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Risk {
    /// `high` or `notice`.
    pub level: String,
    /// In plain words.
    pub text: String,
}

/// A row of the inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxItem {
    /// Request id.
    pub id: String,
    /// The agent's id (a batch holds one agent's requests of one action type).
    pub agent_id: String,
    /// The agent's name.
    pub agent_name: String,
    /// `action.type`.
    pub action_type: String,
    /// `action.target`.
    pub target: String,
    /// `intent.goal`.
    pub goal: String,
    /// `context.environment`, if given.
    pub environment: Option<String>,
    /// Amount and currency, formatted, if given.
    pub amount: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub expires_at: i64,
    /// Approvals needed.
    pub approvals_required: i64,
    /// Approvals so far.
    pub approvals_received: i64,
    /// Risk highlights.
    pub risks: Vec<Risk>,
}

/// The request exactly as the approver is shown it; its canonical form is what
/// `display_hash` hashes (the server's `ApprovalView`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shown {
    /// Request id.
    pub request_id: String,
    /// Agent id.
    pub agent_id: String,
    /// Agent name.
    pub agent_name: String,
    /// The agent's owner (e-mail).
    pub owner: String,
    /// The request as the agent sent it: `action`, `intent`, `context`.
    pub request: Value,
    /// The hash the grant binds to.
    pub action_hash: String,
    /// The policy rule that asked for approval.
    pub rule_id: String,
    /// Why, in one line.
    pub explanation: String,
    /// Approvals needed.
    pub approvals_required: i64,
    /// RFC 3339.
    pub expires_at: String,
    /// What approving releases besides the grant (a task-scoped credential), in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub releases: Option<String>,
    /// The agents the asking agent is registered under, outermost first (its parent last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<Ancestor>,
}

/// One registered ancestor of the agent that asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ancestor {
    /// Agent id.
    pub id: String,
    /// Agent name.
    pub name: String,
}

/// An approval or denial already given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    /// Who (display name and e-mail).
    pub who: String,
    /// What they decided.
    pub decision: Verdict,
    /// Unix ms.
    pub at: i64,
}

/// Another request of the same agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recent {
    /// Request id.
    pub id: String,
    /// `action.type`.
    pub action_type: String,
    /// `action.target`.
    pub target: String,
    /// Its status.
    pub status: RequestStatus,
    /// Unix ms.
    pub created_at: i64,
}

/// Everything the request page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestView {
    /// What is hashed and bound to the decision.
    pub shown: Shown,
    /// `sha256:` of the canonical `shown` (computed by the server).
    pub display_hash: String,
    /// Where it stands.
    pub status: RequestStatus,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub expires_at: i64,
    /// Decisions so far.
    pub decisions: Vec<Decided>,
    /// Why it was denied (code and text), once denied.
    pub denial: Option<String>,
    /// Whether this person may approve or deny it now.
    pub can_decide: bool,
    /// When they may not, why (e.g. "You already approved this request").
    pub why_not: Option<String>,
    /// Risk highlights.
    pub risks: Vec<Risk>,
    /// The agent's recent other requests.
    pub recent: Vec<Recent>,
    /// The reason codes a denial may carry, with labels.
    pub deny_reasons: Vec<(String, String)>,
    /// The approve button stays disabled this long after the page opens (fatigue guard).
    pub approve_delay_ms: i64,
    /// What the approver may narrow or make standing.
    pub offer: TermsOffer,
}

/// What an approver may change about their approval: only ever less than the request asks,
/// and a standing approval only when the rule allows one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermsOffer {
    /// The request's amount (value as the agent wrote it) and currency, if it names one; the
    /// approver may cap the grant below it (unless a credential is released).
    pub amount: Option<(String, String)>,
    /// Whether an amount cap is possible (an amount, and no credential released).
    pub can_cap_amount: bool,
    /// The grant's lifetime in seconds; the approver may shorten it.
    pub grant_ttl_seconds: i64,
    /// The longest standing approval the rule allows, in seconds, if it allows one.
    pub standing_max_seconds: Option<i64>,
    /// The most uses it may allow.
    pub standing_max_uses: i64,
    /// The names of `action.params`, which a standing approval may pin.
    pub params: Vec<String>,
}

/// A standing approval, for the list owners revoke from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandingItem {
    /// Its id.
    pub id: String,
    /// The agent's name.
    pub agent_name: String,
    /// Who gave it.
    pub created_by: String,
    /// What it covers, in words.
    pub covers: String,
    /// Uses given.
    pub uses_total: i64,
    /// Uses left.
    pub uses_left: i64,
    /// Unix ms.
    pub expires_at: i64,
    /// `active`, `used_up`, `expired` or `revoked`.
    pub state: String,
    /// The request whose approval gave it.
    pub request_id: String,
}

/// One audit event, for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    /// Position in the chain.
    pub seq: i64,
    /// Unix ms.
    pub at: i64,
    /// What happened, e.g. `request.approved`.
    pub kind: String,
    /// Who caused it.
    pub actor: String,
    /// The event's data.
    pub data: Value,
}

/// A decided (or otherwise finished) request, for the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryItem {
    /// Request id.
    pub id: String,
    /// Agent name.
    pub agent_name: String,
    /// `action.type`.
    pub action_type: String,
    /// `action.target`.
    pub target: String,
    /// How it ended.
    pub status: RequestStatus,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub decided_at: Option<i64>,
    /// Its events on the audit chain, oldest first.
    pub events: Vec<EventRow>,
}

/// History filters; empty strings mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryFilter {
    /// Agent id.
    pub agent: String,
    /// Status.
    pub status: String,
    /// Only requests created in the last this many hours (0 = any time).
    pub within_hours: i64,
}

/// The requests' server functions, served by the server crate.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait RequestsBackend: Send + Sync + 'static {
    /// Requests waiting for this person's decision, newest first.
    async fn inbox(&self, req: &http::request::Parts) -> Result<Vec<InboxItem>, AppError>;
    /// One request's page.
    async fn request_page(
        &self,
        req: &http::request::Parts,
        id: String,
    ) -> Result<RequestView, AppError>;
    /// Standing approvals of this person's agents (admins: every agent's).
    async fn standing_approvals(
        &self,
        req: &http::request::Parts,
    ) -> Result<Vec<StandingItem>, AppError>;
    /// Revokes a standing approval.
    async fn revoke_standing(&self, req: &http::request::Parts, id: String)
        -> Result<(), AppError>;
    /// Finished requests this person may see.
    async fn history(
        &self,
        req: &http::request::Parts,
        filter: HistoryFilter,
    ) -> Result<Vec<HistoryItem>, AppError>;
}

/// The inbox.
#[server(prefix = "/api/app", endpoint = "inbox")]
pub async fn inbox() -> Result<Vec<InboxItem>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.inbox(&p).await)
}

/// One request's page.
#[server(prefix = "/api/app", endpoint = "request_page")]
pub async fn request_page(id: String) -> Result<RequestView, AppError> {
    let (b, p) = backend().await?;
    with_status(b.request_page(&p, id).await)
}

/// The history.
#[server(prefix = "/api/app", endpoint = "history")]
pub async fn history(
    #[server(default)] filter: HistoryFilter,
) -> Result<Vec<HistoryItem>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.history(&p, filter).await)
}

/// Standing approvals this person may see and revoke.
#[server(prefix = "/api/app", endpoint = "standing_approvals")]
pub async fn standing_approvals() -> Result<Vec<StandingItem>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.standing_approvals(&p).await)
}

/// Revokes a standing approval at once: no later request is approved by it.
#[server(prefix = "/api/app", endpoint = "revoke_standing")]
pub async fn revoke_standing(id: String) -> Result<(), AppError> {
    let (b, p) = backend().await?;
    with_status(b.revoke_standing(&p, id).await)
}
