//! The policy, as admins edit it: its versions with their diffs, rollback, and the editor
//! (draft, check, dry run, apply).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::AppError;
#[cfg(feature = "ssr")]
use super::{backend, with_status};

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
    /// The request's delegation depth must be at least this (the larger of the claimed chain
    /// and the agent's registered ancestors).
    pub delegation_depth_at_least: String,
    /// The request's delegation depth must be below this.
    pub delegation_depth_below: String,
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
    /// The credential provider an approval releases from (allow, require).
    pub credential: String,
    /// Seconds that credential lives.
    pub credential_ttl_seconds: String,
    /// The longest standing approval an approver may give (require, one approval).
    pub standing_max_seconds: String,
    /// The most uses such a standing approval may allow.
    pub standing_max_uses: String,
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
    /// How many hops of delegation the sample claims (empty: none).
    pub delegation_depth: String,
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

/// The policy's server functions, served by the server crate.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait PolicyBackend: Send + Sync + 'static {
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
