//! The audit trail, as admins search it, and one request's evidence as a timeline.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg(feature = "ssr")]
use super::{backend, with_status};
use super::{AppError, RequestStatus};

/// Audit filters, as in the page's URL; empty strings mean "any". Every field may be left
/// out of a call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    /// A request id.
    pub request: String,
    /// An agent id.
    pub agent: String,
    /// A person's user id (events they caused).
    pub person: String,
    /// An event kind, e.g. `grant.issued`.
    pub kind: String,
    /// From (UTC): `2024-05-01` or `2024-05-01T13:45`.
    pub from: String,
    /// To (UTC), including the day or minute given.
    pub to: String,
    /// Only events older than this position on the chain (0: the newest).
    pub before: i64,
}

/// Whether the audit chain checks out, recomputed end to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainStatus {
    /// Every event checks out.
    pub intact: bool,
    /// Events checked (when intact).
    pub events: i64,
    /// The head hash (when intact).
    pub head: String,
    /// The first event that does not check out.
    pub broken_seq: Option<i64>,
    /// What is wrong with it.
    pub reason: Option<String>,
    /// When intact: the server's newest signed checkpoint, which the chain still extends, in
    /// words (position, hash, time, key).
    pub checkpoint: Option<String>,
}

/// One row of the audit list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEventItem {
    /// Position on the chain.
    pub seq: i64,
    /// Unix ms.
    pub at: i64,
    /// E.g. `approval.recorded`.
    pub kind: String,
    /// As recorded: `user:<id>`, `agent:<id>`, `system`…
    pub actor: String,
    /// The request it belongs to.
    pub request_id: Option<String>,
    /// The agent it concerns.
    pub agent_id: Option<String>,
    /// That agent's name, if it still exists.
    pub agent_name: Option<String>,
    /// The person who caused it.
    pub person_id: Option<String>,
    /// Their name, if they still exist.
    pub person_name: Option<String>,
}

/// One page of the audit list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditListing {
    /// Newest first.
    pub events: Vec<AuditEventItem>,
    /// The `before` of the next, older page, when there is one.
    pub older: Option<i64>,
    /// The whole chain's state.
    pub chain: ChainStatus,
}

/// A labelled value of a timeline step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFact {
    /// Stable name, e.g. `display_hash`.
    pub key: String,
    /// What a person reads.
    pub label: String,
    /// The value (times in RFC 3339).
    pub value: String,
    /// For times, unix ms.
    pub at: Option<i64>,
}

/// One step of a request's evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditStep {
    /// The event's position on the chain.
    pub seq: i64,
    /// Unix ms.
    pub at: i64,
    /// The event's kind.
    pub kind: String,
    /// E.g. "Approval".
    pub title: String,
    /// Who caused it, in words.
    pub actor: String,
    /// What a reader needs, in order.
    pub facts: Vec<AuditFact>,
    /// The event's hash.
    pub hash: String,
    /// The event's data exactly as stored.
    pub evidence: Value,
}

/// One request's evidence as a timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditTimeline {
    /// The request.
    pub request_id: String,
    /// Its status now, if known.
    pub status: Option<RequestStatus>,
    /// Intent, policy decision, approvals, grant, redemption, outcome…
    pub steps: Vec<AuditStep>,
    /// The whole chain's state.
    pub chain: ChainStatus,
}

/// The audit pages' server functions, served by the server crate.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait AuditBackend: Send + Sync + 'static {
    /// Searches the audit trail (admins only).
    async fn audit(
        &self,
        req: &http::request::Parts,
        filter: AuditFilter,
    ) -> Result<AuditListing, AppError>;
    /// One request's evidence as a timeline (admins only).
    async fn audit_request(
        &self,
        req: &http::request::Parts,
        id: String,
    ) -> Result<AuditTimeline, AppError>;
}

/// Searches the audit trail, newest first, with the chain's verification (admins only).
#[server(prefix = "/api/app", endpoint = "admin/audit")]
pub async fn audit_events(
    #[server(default)] filter: AuditFilter,
) -> Result<AuditListing, AppError> {
    let (b, p) = backend().await?;
    with_status(b.audit(&p, filter).await)
}

/// One request's evidence as a timeline, with the chain's verification (admins only).
#[server(prefix = "/api/app", endpoint = "admin/audit_request")]
pub async fn audit_request(id: String) -> Result<AuditTimeline, AppError> {
    let (b, p) = backend().await?;
    with_status(b.audit_request(&p, id).await)
}
