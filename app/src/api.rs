//! What the pages exchange with the server: data types, the error type, and the server
//! functions.
//!
//! The server functions are declared here, so the browser can call them, but this crate knows
//! nothing about the database: on the server each one asks the [`Backend`] that the server crate
//! put in the Leptos context. The backend authenticates the caller from the request's session
//! and authorises the call itself; these functions only carry arguments and results.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use server_fn::codec::JsonEncoding;
use server_fn::error::{FromServerFnError, ServerFnErrorErr};

use leptos::prelude::*;

/// An error a page can show. The variants map to HTTP statuses on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// Nobody is signed in (401): pages send the visitor to sign in.
    #[error("please sign in")]
    SignInRequired,
    /// Signed in, but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing there, or nothing this person may see (404).
    #[error("{0}")]
    NotFound(String),
    /// A field is wrong (400); the form shows the message next to the field.
    #[error("{message}")]
    Invalid {
        /// The field's name in the form.
        field: String,
        /// What is wrong with it, in plain words.
        message: String,
    },
    /// The thing changed meanwhile (409), e.g. decided by someone else.
    #[error("{0}")]
    Conflict(String),
    /// It ran out of time (410), e.g. the request expired.
    #[error("{0}")]
    Expired(String),
    /// Too many at once (429).
    #[error("{0}")]
    RateLimited(String),
    /// Something failed that is not the caller's fault (500), or the server could not be
    /// reached.
    #[error("{0}")]
    Server(String),
}

impl AppError {
    /// The HTTP status the server answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::SignInRequired => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Invalid { .. } => 400,
            Self::Conflict(_) => 409,
            Self::Expired(_) => 410,
            Self::RateLimited(_) => 429,
            Self::Server(_) => 500,
        }
    }

    /// The message for a form field, when this error is about that field.
    pub fn for_field(&self, name: &str) -> Option<String> {
        match self {
            Self::Invalid { field, message } if field == name => Some(message.clone()),
            _ => None,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Request(e) => Self::Server(format!(
                "Could not reach Countersign ({e}). Check your connection and try again."
            )),
            ServerFnErrorErr::Args(e) | ServerFnErrorErr::MissingArg(e) => Self::Invalid {
                field: String::new(),
                message: e,
            },
            other => Self::Server(other.to_string()),
        }
    }
}

/// The signed-in person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    /// User id.
    pub id: String,
    /// E-mail.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// `owner` or `admin`.
    pub role: String,
}

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
}

/// An approval or denial already given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    /// Who (display name and e-mail).
    pub who: String,
    /// `approved` or `denied`.
    pub decision: String,
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
    pub status: String,
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
    /// `pending`, `approved`, `denied`, `expired`, `cancelled`.
    pub status: String,
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
    /// Final status.
    pub status: String,
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

/// One of the person's agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentItem {
    /// Agent id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `active` or `suspended`.
    pub status: String,
    /// `api_key` or `public_key`.
    pub key_type: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms of its last request, if any.
    pub last_seen_at: Option<i64>,
}

/// A newly registered agent; the key is shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAgent {
    /// Agent id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The API key: shown now, never again.
    pub api_key: String,
}

/// One of the person's passkeys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyItem {
    /// Passkey id.
    pub id: String,
    /// The name its owner gave it.
    pub name: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub last_used_at: Option<i64>,
}

/// What an enrolment link is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentInfo {
    /// The invited address; `None` for the first-admin link, which asks for one.
    pub email: Option<String>,
    /// `owner` or `admin`.
    pub role: String,
    /// Unix ms.
    pub expires_at: i64,
}

/// A new invitation; the link is shown once to the admin (and mailed to the person).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationOut {
    /// Who.
    pub email: String,
    /// The enrolment link.
    pub link: String,
    /// Unix ms.
    pub expires_at: i64,
}

/// The guards against approval fatigue, as admins set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardSettings {
    /// Requests one agent may have waiting for people.
    pub max_pending_per_agent: u32,
    /// Mails one approver gets per minute at most.
    pub prompts_per_approver_per_minute: u32,
    /// Seconds a denied action stays refused for the agent that asked (0: off).
    pub deny_cooldown_seconds: u32,
    /// Milliseconds from opening a request's page to being able to approve (0: off).
    pub approve_delay_ms: u32,
    /// Whether identical pending requests collapse into one.
    pub collapse_identical: bool,
}

/// One line of a diff: `op` is `same`, `removed` or `added`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffLine {
    /// `same`, `removed` or `added`.
    pub op: String,
    /// The line.
    pub line: String,
}

/// One applied policy version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersionItem {
    /// 1, 2, 3…
    pub version: i64,
    /// Its hash.
    pub hash: String,
    /// Who applied it.
    pub applied_by: String,
    /// Unix ms.
    pub applied_at: i64,
    /// Its file against the version before it.
    pub diff: Vec<DiffLine>,
    /// Whether it is in force.
    pub active: bool,
}

// --- agents admin ---

/// One agent in the admins' list of every agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAgentItem {
    /// Agent id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Its owner's e-mail.
    pub owner_email: String,
    /// Its owner's display name.
    pub owner_name: String,
    /// `active` or `suspended`.
    pub status: String,
    /// `api_key` or `public_key`.
    pub key_type: String,
    /// RFC 7638 thumbprint of its public key (key-bound agents).
    pub jkt: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms of its last request, if any.
    pub last_seen_at: Option<i64>,
    /// Its requests waiting for people.
    pub pending_requests: i64,
}

/// What suspending or resuming an agent did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatusOut {
    /// Its status now: `active` or `suspended`.
    pub status: String,
    /// False when it already had that status.
    pub changed: bool,
    /// Pending requests cancelled.
    pub cancelled_requests: u64,
    /// Outstanding grants revoked.
    pub revoked_grants: u64,
}

/// An agent's new API key, shown once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotatedKeyOut {
    /// Agent id.
    pub id: String,
    /// The new key: shown now, never again. The old one no longer works.
    pub api_key: String,
    /// Unredeemed grants revoked with the change.
    pub revoked_grants: u64,
}

/// Never prints the key (it could end up in a log).
impl std::fmt::Debug for RotatedKeyOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedKeyOut")
            .field("id", &self.id)
            .field("api_key", &"<redacted>")
            .field("revoked_grants", &self.revoked_grants)
            .finish()
    }
}

/// An agent's newly registered public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentKeyOut {
    /// Agent id.
    pub id: String,
    /// RFC 7638 thumbprint of the key.
    pub jkt: String,
    /// Unredeemed grants revoked with the change.
    pub revoked_grants: u64,
}

// --- audit ---

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
    pub status: Option<String>,
    /// Intent, policy decision, approvals, grant, redemption, outcome…
    pub steps: Vec<AuditStep>,
    /// The whole chain's state.
    pub chain: ChainStatus,
}

// --- people admin ---

/// A person on the admins' people page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonItem {
    /// Their id.
    pub id: String,
    /// Their e-mail.
    pub email: String,
    /// Their display name.
    pub name: String,
    /// `owner` or `admin`.
    pub role: String,
    /// Their groups.
    pub groups: Vec<String>,
    /// False once deactivated.
    pub active: bool,
    /// When they enrolled (unix ms).
    pub created_at: i64,
    /// When they last signed in.
    pub last_sign_in_at: Option<i64>,
    /// Their passkeys.
    pub passkeys: Vec<PersonPasskey>,
}

/// One of a person's passkeys, as admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonPasskey {
    /// Its name.
    pub name: String,
    /// When it was registered.
    pub created_at: i64,
    /// When it last signed something.
    pub last_used_at: Option<i64>,
}

// --- policy editor ---

/// One rule in the policy editor, every field as typed (empty: not set; lists
/// comma-separated). The server reads it into the policy model and names each bad field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RuleDraft {
    /// Its id.
    pub id: String,
    /// What it is for.
    pub description: String,
    /// Glob on the action type.
    pub action: String,
    /// Glob on the target.
    pub target: String,
    /// Environments, comma-separated.
    pub environment: String,
    /// Data sensitivity levels.
    pub data_sensitivity: Vec<String>,
    /// Currency of the amount band.
    pub amount_currency: String,
    /// The amount must be at least this.
    pub amount_at_least: String,
    /// The amount must be below this.
    pub amount_below: String,
    /// `allow`, `require` or `deny`.
    pub outcome: String,
    /// Distinct approvals needed.
    pub approvals: String,
    /// `owner`, `admins`, `group:<name>`, comma-separated.
    pub approvers: String,
    /// At least one approval from each source.
    pub all_groups: bool,
    /// The agent's owner's approval does not count.
    pub exclude_owner: bool,
    /// Seconds the request waits.
    pub request_ttl_seconds: String,
    /// Seconds the grant lives.
    pub grant_ttl_seconds: String,
    /// Why it is refused (deny).
    pub reason: String,
}

/// What the policy editor opens with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditablePolicy {
    /// The version in force, sent back on apply.
    pub version: i64,
    /// Its rules.
    pub rules: Vec<RuleDraft>,
    /// Recent real requests to try the draft on: (id, label).
    pub recent: Vec<(String, String)>,
}

/// A request typed into the editor to try the draft on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SampleDraft {
    /// Action type.
    pub action_type: String,
    /// Target.
    pub target: String,
    /// Environment.
    pub environment: String,
    /// Data sensitivity.
    pub data_sensitivity: String,
    /// Amount.
    pub amount: String,
    /// Currency.
    pub currency: String,
}

/// A draft to check: its rules and, optionally, a request to dry-run (a sample, or a recent
/// request's id).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DraftCheck {
    /// The rules.
    pub rules: Vec<RuleDraft>,
    /// A typed-in request.
    pub sample: Option<SampleDraft>,
    /// Or a recent request's id.
    pub recent: Option<String>,
}

/// A problem with one field of one rule (`rule`: zero-based position).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldNote {
    /// Which rule.
    pub rule: Option<usize>,
    /// Which field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// What the draft would decide for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRun {
    /// Which request.
    pub request: String,
    /// The deciding rule (`default` when none matched).
    pub rule_id: String,
    /// `allow`, `require` or `deny`.
    pub outcome: String,
    /// Approvals needed.
    pub approvals: u32,
    /// The decision's explanation.
    pub explanation: String,
    /// Rules checked first, and why each did not match: (rule id, why).
    pub passed_over: Vec<(String, String)>,
}

/// The draft checked.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DraftPreview {
    /// Problems next to their fields; empty when the draft is valid.
    pub problems: Vec<FieldNote>,
    /// The draft as a policy file.
    pub text: String,
    /// That file against the active one.
    pub diff: Vec<DiffLine>,
    /// The dry run, when asked for.
    pub dry_run: Option<DryRun>,
}

/// The server side of every server function. The server crate implements it and provides it
/// (as `Arc<dyn Backend>`) in the Leptos context; each method authenticates the caller from the
/// request parts (the session cookie) and authorises the call.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Who is signed in, if anyone.
    async fn me(&self, req: &http::request::Parts) -> Result<Option<Viewer>, AppError>;
    /// Signs out.
    async fn sign_out(&self, req: &http::request::Parts) -> Result<(), AppError>;
    /// Requests waiting for this person's decision, newest first.
    async fn inbox(&self, req: &http::request::Parts) -> Result<Vec<InboxItem>, AppError>;
    /// One request's page.
    async fn request_page(
        &self,
        req: &http::request::Parts,
        id: String,
    ) -> Result<RequestView, AppError>;
    /// Finished requests this person may see.
    async fn history(
        &self,
        req: &http::request::Parts,
        filter: HistoryFilter,
    ) -> Result<Vec<HistoryItem>, AppError>;
    /// This person's agents.
    async fn my_agents(&self, req: &http::request::Parts) -> Result<Vec<AgentItem>, AppError>;
    /// Registers an agent owned by this person.
    async fn create_agent(
        &self,
        req: &http::request::Parts,
        name: String,
    ) -> Result<NewAgent, AppError>;
    /// Suspends or resumes one of this person's agents.
    async fn set_agent_active(
        &self,
        req: &http::request::Parts,
        id: String,
        active: bool,
    ) -> Result<(), AppError>;
    /// This person's passkeys.
    async fn passkeys(&self, req: &http::request::Parts) -> Result<Vec<PasskeyItem>, AppError>;
    /// Renames one of them.
    async fn rename_passkey(
        &self,
        req: &http::request::Parts,
        id: String,
        name: String,
    ) -> Result<(), AppError>;
    /// Removes one of them (never the last).
    async fn remove_passkey(&self, req: &http::request::Parts, id: String) -> Result<(), AppError>;
    /// What an enrolment link is for.
    async fn enrolment(&self, token: String) -> Result<EnrolmentInfo, AppError>;
    /// The guards in force (admins only).
    async fn guards(&self, req: &http::request::Parts) -> Result<GuardSettings, AppError>;
    /// Changes the guards (admins only).
    async fn set_guards(
        &self,
        req: &http::request::Parts,
        guards: GuardSettings,
    ) -> Result<GuardSettings, AppError>;
    /// Every policy version with its diff (admins only).
    async fn policy_history(
        &self,
        req: &http::request::Parts,
    ) -> Result<Vec<PolicyVersionItem>, AppError>;
    /// Makes an earlier version active again, as a new version (admins only).
    async fn rollback_policy(
        &self,
        req: &http::request::Parts,
        version: i64,
    ) -> Result<i64, AppError>;
    /// Invites someone (admins only).
    async fn invite(
        &self,
        req: &http::request::Parts,
        email: String,
        role: String,
        groups: String,
    ) -> Result<InvitationOut, AppError>;
    // --- agents admin ---
    /// Every agent with its owner (admins only).
    async fn admin_agents(
        &self,
        req: &http::request::Parts,
    ) -> Result<Vec<AdminAgentItem>, AppError>;
    /// Suspends or resumes any agent (admins only).
    async fn admin_agent_status(
        &self,
        req: &http::request::Parts,
        id: String,
        active: bool,
    ) -> Result<AgentStatusOut, AppError>;
    /// Gives an agent a new API key, retiring its old credential (admins only).
    async fn admin_rotate_agent_key(
        &self,
        req: &http::request::Parts,
        id: String,
    ) -> Result<RotatedKeyOut, AppError>;
    /// Registers or replaces an agent's Ed25519 public key, retiring its API key (admins only).
    async fn admin_set_agent_key(
        &self,
        req: &http::request::Parts,
        id: String,
        jwk: String,
    ) -> Result<AgentKeyOut, AppError>;
    // --- audit ---
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
    // --- people admin ---
    /// Everyone, with passkeys and last sign-in (admins only).
    async fn people(&self, req: &http::request::Parts) -> Result<Vec<PersonItem>, AppError>;
    /// Sets someone's role and groups (admins only).
    async fn update_person(
        &self,
        req: &http::request::Parts,
        id: String,
        role: String,
        groups: String,
    ) -> Result<PersonItem, AppError>;
    /// Deactivates or reactivates someone (admins only).
    async fn set_person_active(
        &self,
        req: &http::request::Parts,
        id: String,
        active: bool,
    ) -> Result<(), AppError>;
    // --- policy editor ---
    /// The active policy as editable rules (admins only).
    async fn policy_editor(&self, req: &http::request::Parts) -> Result<EditablePolicy, AppError>;
    /// Checks a draft: problems, file, diff, dry run (admins only).
    async fn preview_policy(
        &self,
        req: &http::request::Parts,
        draft: DraftCheck,
    ) -> Result<DraftPreview, AppError>;
    /// Applies a draft as a new version (admins only).
    async fn apply_policy_draft(
        &self,
        req: &http::request::Parts,
        base_version: i64,
        rules: Vec<RuleDraft>,
    ) -> Result<i64, AppError>;
}

/// What a server function needs from the request it serves: the backend, the request's parts
/// (its session cookie) and where to set the response status.
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct RequestScope {
    backend: std::sync::Arc<dyn Backend>,
    parts: http::request::Parts,
    response: Option<leptos_axum::ResponseOptions>,
}

#[cfg(feature = "ssr")]
impl RequestScope {
    /// This request's scope, from the current reactive owner's context (None outside a request,
    /// e.g. while the router lists the routes).
    fn from_context() -> Option<Self> {
        Some(Self {
            backend: use_context::<std::sync::Arc<dyn Backend>>()?,
            parts: use_context::<http::request::Parts>()?,
            response: use_context::<leptos_axum::ResponseOptions>(),
        })
    }
}

#[cfg(feature = "ssr")]
tokio::task_local! {
    /// The request a page's server call serves while the page renders on the server (see
    /// [`in_request`]).
    static REQUEST: Option<RequestScope>;
}

/// Wraps a page resource's fetcher so that, when the page renders on the server, its server
/// calls carry the request they serve with them instead of looking it up in the reactive owner
/// tree. In the browser it changes nothing.
///
/// Why: a resource's call runs in a task of its own and may outlive the render (an admin page
/// answers an owner 403 without waiting for its data, and a browser may go away mid-page). A
/// context lookup walks up the page's owners, and reactive_graph 0.2 deadlocks when the last
/// reference to one of them is dropped during that walk while the render tears them down on
/// another thread (the worker thread blocks for good). Capturing the scope here, in the
/// component's body, walks the owners while the render still holds them.
#[cfg(feature = "ssr")]
pub fn in_request<S, Fut>(
    fetch: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> impl Fn(S) -> tokio::task::futures::TaskLocalFuture<Option<RequestScope>, Fut> + Send + Sync + 'static
where
    Fut: std::future::Future,
{
    let scope = RequestScope::from_context();
    move |source| REQUEST.scope(scope.clone(), fetch(source))
}

/// In the browser a resource's fetcher calls the server over HTTP: nothing to carry.
#[cfg(not(feature = "ssr"))]
pub fn in_request<S, Fut>(
    fetch: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> impl Fn(S) -> Fut + Send + Sync + 'static {
    fetch
}

/// A page's resource: what every page builds its data with, instead of `Resource::new`
/// (clippy refuses a bare `Resource::new` in this crate; see `clippy.toml`).
///
/// It is `Resource::new(source, in_request(fetch))`: the fetcher is wrapped by [`in_request`]
/// so that, during a server render, the page's server calls carry the request they serve
/// (forgetting that once deadlocked a worker thread; `in_request` says why).
#[allow(clippy::disallowed_methods)]
pub fn page_resource<S, T, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetch: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> Resource<T>
where
    S: PartialEq + Clone + Send + Sync + 'static,
    T: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    Resource::new(source, in_request(fetch))
}

/// The request a server function serves: the one [`in_request`] carried, for a page rendering
/// on the server, or else the context leptos_axum provided for a call over HTTP (whose owner
/// lives as long as the call).
#[cfg(feature = "ssr")]
fn request_scope() -> Option<RequestScope> {
    REQUEST
        .try_with(Clone::clone)
        .ok()
        .flatten()
        .or_else(RequestScope::from_context)
}

#[cfg(feature = "ssr")]
async fn backend() -> Result<(std::sync::Arc<dyn Backend>, http::request::Parts), AppError> {
    let scope = request_scope().ok_or_else(|| AppError::Server("no request in context".into()))?;
    Ok((scope.backend, scope.parts))
}

/// Sets the HTTP status of a failed server function (or page render) to the error's.
#[cfg(feature = "ssr")]
pub(crate) fn with_status<T>(result: Result<T, AppError>) -> Result<T, AppError> {
    if let Err(e) = &result {
        if let Some(res) = request_scope().and_then(|s| s.response) {
            res.set_status(
                http::StatusCode::from_u16(e.status())
                    .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
            );
        }
    }
    result
}

/// Who is signed in.
#[server(prefix = "/api/app", endpoint = "me")]
pub async fn me() -> Result<Option<Viewer>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.me(&p).await)
}

/// Ends this session.
#[server(prefix = "/api/app", endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), AppError> {
    let (b, p) = backend().await?;
    with_status(b.sign_out(&p).await)
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

/// My agents.
#[server(prefix = "/api/app", endpoint = "my_agents")]
pub async fn my_agents() -> Result<Vec<AgentItem>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.my_agents(&p).await)
}

/// Registers an agent.
#[server(prefix = "/api/app", endpoint = "create_agent")]
pub async fn create_agent(name: String) -> Result<NewAgent, AppError> {
    let (b, p) = backend().await?;
    with_status(b.create_agent(&p, name).await)
}

/// Suspends (`active = false`) or resumes an agent.
#[server(prefix = "/api/app", endpoint = "set_agent_active")]
pub async fn set_agent_active(id: String, active: bool) -> Result<(), AppError> {
    let (b, p) = backend().await?;
    with_status(b.set_agent_active(&p, id, active).await)
}

/// My passkeys.
#[server(prefix = "/api/app", endpoint = "passkeys")]
pub async fn passkeys() -> Result<Vec<PasskeyItem>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.passkeys(&p).await)
}

/// Renames a passkey.
#[server(prefix = "/api/app", endpoint = "rename_passkey")]
pub async fn rename_passkey(id: String, name: String) -> Result<(), AppError> {
    let (b, p) = backend().await?;
    with_status(b.rename_passkey(&p, id, name).await)
}

/// Removes a passkey.
#[server(prefix = "/api/app", endpoint = "remove_passkey")]
pub async fn remove_passkey(id: String) -> Result<(), AppError> {
    let (b, p) = backend().await?;
    with_status(b.remove_passkey(&p, id).await)
}

/// What an enrolment link is for (no sign-in needed: the link is the credential).
#[server(prefix = "/api/app", endpoint = "enrolment")]
pub async fn enrolment(token: String) -> Result<EnrolmentInfo, AppError> {
    let (b, _) = backend().await?;
    with_status(b.enrolment(token).await)
}

/// Invites someone (admins only). `groups` is comma-separated.
#[server(prefix = "/api/app", endpoint = "invite")]
pub async fn invite(
    email: String,
    role: String,
    groups: String,
) -> Result<InvitationOut, AppError> {
    let (b, p) = backend().await?;
    with_status(b.invite(&p, email, role, groups).await)
}

/// The guards in force (admins only).
#[server(prefix = "/api/app", endpoint = "admin/guards")]
pub async fn guards() -> Result<GuardSettings, AppError> {
    let (b, p) = backend().await?;
    with_status(b.guards(&p).await)
}

/// Changes the guards (admins only).
#[server(prefix = "/api/app", endpoint = "admin/set_guards")]
pub async fn set_guards(guards: GuardSettings) -> Result<GuardSettings, AppError> {
    let (b, p) = backend().await?;
    with_status(b.set_guards(&p, guards).await)
}

/// Every policy version with its diff (admins only).
#[server(prefix = "/api/app", endpoint = "admin/policy_history")]
pub async fn policy_history() -> Result<Vec<PolicyVersionItem>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.policy_history(&p).await)
}

/// Makes an earlier version active again; returns the new version's number (admins only).
#[server(prefix = "/api/app", endpoint = "admin/rollback_policy")]
pub async fn rollback_policy(version: i64) -> Result<i64, AppError> {
    let (b, p) = backend().await?;
    with_status(b.rollback_policy(&p, version).await)
}

// --- agents admin ---

/// Every agent with its owner, status, key type and last activity (admins only).
#[server(prefix = "/api/app", endpoint = "admin/agents")]
pub async fn admin_agents() -> Result<Vec<AdminAgentItem>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.admin_agents(&p).await)
}

/// Suspends (`active = false`) or resumes any agent (admins only).
#[server(prefix = "/api/app", endpoint = "admin/agent_status")]
pub async fn admin_agent_status(id: String, active: bool) -> Result<AgentStatusOut, AppError> {
    let (b, p) = backend().await?;
    with_status(b.admin_agent_status(&p, id, active).await)
}

/// Gives an agent a new API key, shown once; the old credential stops working (admins only).
#[server(prefix = "/api/app", endpoint = "admin/rotate_agent_key")]
pub async fn admin_rotate_agent_key(id: String) -> Result<RotatedKeyOut, AppError> {
    let (b, p) = backend().await?;
    with_status(b.admin_rotate_agent_key(&p, id).await)
}

/// Registers or replaces an agent's Ed25519 public key (a JWK); its API key stops working
/// (admins only).
#[server(prefix = "/api/app", endpoint = "admin/set_agent_key")]
pub async fn admin_set_agent_key(id: String, jwk: String) -> Result<AgentKeyOut, AppError> {
    let (b, p) = backend().await?;
    with_status(b.admin_set_agent_key(&p, id, jwk).await)
}

// --- audit ---

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

// --- people admin ---

/// Everyone (admins only).
#[server(prefix = "/api/app", endpoint = "admin/people")]
pub async fn people() -> Result<Vec<PersonItem>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.people(&p).await)
}

/// Sets someone's role and groups; `groups` is comma-separated (admins only).
#[server(prefix = "/api/app", endpoint = "admin/update_person")]
pub async fn update_person(
    id: String,
    role: String,
    groups: String,
) -> Result<PersonItem, AppError> {
    let (b, p) = backend().await?;
    with_status(b.update_person(&p, id, role, groups).await)
}

/// Deactivates (their sessions end at once) or reactivates someone (admins only).
#[server(prefix = "/api/app", endpoint = "admin/set_person_active")]
pub async fn set_person_active(id: String, active: bool) -> Result<(), AppError> {
    let (b, p) = backend().await?;
    with_status(b.set_person_active(&p, id, active).await)
}

// --- policy editor ---

/// The active policy as editable rules (admins only).
#[server(prefix = "/api/app", endpoint = "admin/policy_editor")]
pub async fn policy_editor() -> Result<EditablePolicy, AppError> {
    let (b, p) = backend().await?;
    with_status(b.policy_editor(&p).await)
}

/// Checks a draft without applying it (admins only). JSON in: the draft is nested.
#[server(prefix = "/api/app", endpoint = "admin/preview_policy", input = server_fn::codec::Json)]
pub async fn preview_policy(draft: DraftCheck) -> Result<DraftPreview, AppError> {
    let (b, p) = backend().await?;
    with_status(b.preview_policy(&p, draft).await)
}

/// Applies a draft as a new version; 409 when another version was applied since
/// `base_version` (admins only).
#[server(prefix = "/api/app", endpoint = "admin/apply_policy_draft", input = server_fn::codec::Json)]
pub async fn apply_policy_draft(base_version: i64, rules: Vec<RuleDraft>) -> Result<i64, AppError> {
    let (b, p) = backend().await?;
    with_status(b.apply_policy_draft(&p, base_version, rules).await)
}
