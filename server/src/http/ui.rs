//! The server side of the app's server functions ([`app::api::Backend`]): find who is signed in
//! from the request's session, call one service method, and turn its result into the app's
//! data types (and its error into an [`AppError`] with the right status).
//!
//! Like every other edge, this decides nothing: the services authorise each call.

use std::sync::Arc;

use app::api::{
    AgentItem, AppError, Backend, Decided, DiffLine, EnrolmentInfo, EventRow, GuardSettings,
    HistoryFilter, HistoryItem, InboxItem, InvitationOut, NewAgent, PasskeyItem, PolicyVersionItem,
    Recent, RequestView, Risk, Shown, Viewer,
};
use app::api::{
    DraftCheck, DraftPreview, DryRun, EditablePolicy, FieldNote, PersonItem, PersonPasskey,
    RuleDraft,
};
use async_trait::async_trait;
use axum::http::request::Parts;
use serde_json::Value;
use tower_sessions::Session;

use super::owner_api::signed_in;
use crate::domain::diff;
use crate::domain::guards::Guards;
use crate::domain::lifecycle::UserStatus;
use crate::domain::policy::form::RuleForm;
use crate::domain::risk;
use crate::service::inbox::{self, deny_reasons};
use crate::service::people::SignedIn;
use crate::service::people_admin::PersonRecord;
use crate::service::policies::{DryRunOn, SampleRequest};
use crate::service::{Countersign, Error};
use crate::store::requests::RequestRow;

/// The app's backend: one per process, shared by every request.
#[derive(Debug, Clone)]
pub struct UiBackend {
    core: Arc<Countersign>,
}

impl UiBackend {
    /// A backend over these services.
    pub fn new(core: Arc<Countersign>) -> Self {
        Self { core }
    }

    fn session(req: &Parts) -> Result<Session, AppError> {
        req.extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| AppError::Server("no session layer".into()))
    }

    async fn who(&self, req: &Parts) -> Result<SignedIn, AppError> {
        Ok(signed_in(&self.core, &Self::session(req)?).await?)
    }
}

/// Gives failed server function calls the status of their error. Leptos answers every failed
/// server function with 500, including arguments that did not parse; the body is the
/// [`AppError`], which knows its status (400 for bad arguments, 401, 403, …).
pub async fn server_fn_status(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let is_server_fn = req.uri().path().starts_with("/api/app/");
    let res = next.run(req).await;
    if !is_server_fn || res.status() != axum::http::StatusCode::INTERNAL_SERVER_ERROR {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    if let Ok(err) = serde_json::from_slice::<AppError>(&bytes) {
        parts.status = axum::http::StatusCode::from_u16(err.status())
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    }
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Service errors as the app shows them. Internal causes are logged here and never shown.
impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidRequest { field, detail } => AppError::Invalid {
                field: field.unwrap_or_default(),
                message: detail,
            },
            Error::InvalidToken(_) | Error::SignInRequired => AppError::SignInRequired,
            Error::Forbidden(m) | Error::AccessDenied(m) => AppError::Forbidden(m),
            Error::NotFound(m) => AppError::NotFound(m),
            Error::Conflict(m) => AppError::Conflict(m),
            Error::ExpiredToken(m) => AppError::Expired(m),
            e @ (Error::RateLimited { .. } | Error::SlowDown { .. }) => {
                AppError::RateLimited(e.to_string())
            }
            e @ Error::Internal(_) => {
                let cause = e.internal_cause().unwrap_or_default();
                tracing::error!(%cause, "server function failed");
                AppError::Server("internal error".into())
            }
            other => AppError::Server(other.to_string()),
        }
    }
}

fn risks(list: Vec<risk::Risk>) -> Vec<Risk> {
    list.into_iter()
        .map(|r| Risk {
            level: match r.level {
                risk::Level::High => "high",
                risk::Level::Notice => "notice",
            }
            .into(),
            text: r.text,
        })
        .collect()
}

fn body(r: &RequestRow) -> Value {
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

fn text(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn to_settings(g: Guards) -> GuardSettings {
    GuardSettings {
        max_pending_per_agent: g.max_pending_per_agent,
        prompts_per_approver_per_minute: g.prompts_per_approver_per_minute,
        deny_cooldown_seconds: g.deny_cooldown_seconds,
        approve_delay_ms: g.approve_delay_ms,
        collapse_identical: g.collapse_identical,
    }
}

fn recent(r: &RequestRow) -> Recent {
    Recent {
        id: r.id.clone(),
        action_type: r.action_type.clone(),
        target: r.target.clone(),
        status: r.status.to_string(),
        created_at: r.created_at,
    }
}

#[async_trait]
impl Backend for UiBackend {
    async fn me(&self, req: &Parts) -> Result<Option<Viewer>, AppError> {
        match self.who(req).await {
            Ok(w) => Ok(Some(Viewer {
                id: w.person.id,
                email: w.person.email,
                display_name: w.person.display_name,
                role: w.person.role.to_string(),
            })),
            Err(AppError::SignInRequired) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn sign_out(&self, req: &Parts) -> Result<(), AppError> {
        Self::session(req)?
            .flush()
            .await
            .map_err(|e| AppError::from(Error::internal(e)))
    }

    async fn inbox(&self, req: &Parts) -> Result<Vec<InboxItem>, AppError> {
        let who = self.who(req).await?;
        Ok(self
            .core
            .inbox(&who)
            .await?
            .into_iter()
            .map(|e| {
                let b = body(&e.request);
                InboxItem {
                    id: e.request.id.clone(),
                    agent_name: e.agent_name,
                    action_type: e.request.action_type.clone(),
                    target: e.request.target.clone(),
                    goal: text(&b, "/intent/goal").unwrap_or_default(),
                    environment: text(&b, "/context/environment"),
                    amount: text(&b, "/context/amount/value").map(|v| {
                        format!(
                            "{v} {}",
                            text(&b, "/context/amount/currency").unwrap_or_default()
                        )
                        .trim_end()
                        .to_string()
                    }),
                    created_at: e.request.created_at,
                    expires_at: e.request.expires_at,
                    approvals_required: e.request.approvals_required,
                    approvals_received: e.approvals,
                    risks: risks(e.risks),
                }
            })
            .collect())
    }

    async fn request_page(&self, req: &Parts, id: String) -> Result<RequestView, AppError> {
        let who = self.who(req).await?;
        let d = self.core.request_details(&who, &id).await?;
        let v = d.view;
        let mut decisions: Vec<Decided> = d
            .approvals
            .iter()
            .map(|a| Decided {
                who: format!("{} ({})", a.display_name, a.email),
                decision: "approved".into(),
                at: a.decided_at,
            })
            .collect();
        if let (Some(by), Some(at)) = (&d.denied_by, d.request.decided_at) {
            decisions.push(Decided {
                who: by.clone(),
                decision: "denied".into(),
                at,
            });
        }
        let denial = d
            .request
            .reason_code
            .as_ref()
            .map(|code| match &d.request.reason {
                Some(text) if !text.is_empty() => format!("{code}: {text}"),
                _ => code.clone(),
            });
        Ok(RequestView {
            shown: Shown {
                request_id: v.request_id,
                agent_id: v.agent_id,
                agent_name: v.agent_name,
                owner: v.owner,
                request: v.request,
                action_hash: v.action_hash,
                rule_id: v.rule_id,
                explanation: v.explanation,
                approvals_required: v.approvals_required,
                expires_at: v.expires_at,
            },
            display_hash: d.display_hash,
            status: d.request.status.to_string(),
            created_at: d.request.created_at,
            expires_at: d.request.expires_at,
            decisions,
            denial,
            can_decide: d.may_decide.is_ok(),
            why_not: d.may_decide.err(),
            risks: risks(d.risks),
            recent: d.recent.iter().map(recent).collect(),
            deny_reasons: deny_reasons(),
            approve_delay_ms: d.approve_wait_ms,
        })
    }

    async fn history(
        &self,
        req: &Parts,
        filter: HistoryFilter,
    ) -> Result<Vec<HistoryItem>, AppError> {
        let who = self.who(req).await?;
        let filter = inbox::HistoryFilter {
            agent_id: filter.agent,
            status: filter.status,
            within_hours: filter.within_hours,
        };
        Ok(self
            .core
            .history(&who, &filter)
            .await?
            .into_iter()
            .map(|h| HistoryItem {
                id: h.request.id.clone(),
                agent_name: h.agent_name,
                action_type: h.request.action_type.clone(),
                target: h.request.target.clone(),
                status: h.request.status.to_string(),
                created_at: h.request.created_at,
                decided_at: h.request.decided_at,
                events: h
                    .events
                    .into_iter()
                    .map(|e| EventRow {
                        seq: e.seq,
                        at: e.at,
                        kind: e.kind,
                        actor: e.actor,
                        data: e.data,
                    })
                    .collect(),
            })
            .collect())
    }

    async fn my_agents(&self, req: &Parts) -> Result<Vec<AgentItem>, AppError> {
        let who = self.who(req).await?;
        Ok(self
            .core
            .my_agents(&who)
            .await?
            .into_iter()
            .map(|a| AgentItem {
                id: a.id,
                name: a.name,
                status: a.status.to_string(),
                key_type: a.key_type,
                created_at: a.created_at,
                last_seen_at: a.last_seen_at,
            })
            .collect())
    }

    async fn create_agent(&self, req: &Parts, name: String) -> Result<NewAgent, AppError> {
        let who = self.who(req).await?;
        let actor = format!("user:{}", who.person.id);
        let created = self
            .core
            .create_agent(name.trim(), &who.person.email, None, &actor)
            .await?;
        Ok(NewAgent {
            id: created.id,
            name: created.name,
            api_key: created
                .api_key
                .map(|k| k.expose().to_string())
                .unwrap_or_default(),
        })
    }

    async fn set_agent_active(
        &self,
        req: &Parts,
        id: String,
        active: bool,
    ) -> Result<(), AppError> {
        let who = self.who(req).await?;
        Ok(self.core.set_agent_active(&who, &id, active).await?)
    }

    async fn passkeys(&self, req: &Parts) -> Result<Vec<PasskeyItem>, AppError> {
        let who = self.who(req).await?;
        Ok(self
            .core
            .my_passkeys(&who)
            .await?
            .into_iter()
            .map(|p| PasskeyItem {
                id: p.id,
                name: p.name,
                created_at: p.created_at,
                last_used_at: p.last_used_at,
            })
            .collect())
    }

    async fn rename_passkey(&self, req: &Parts, id: String, name: String) -> Result<(), AppError> {
        let who = self.who(req).await?;
        Ok(self.core.rename_passkey(&who, &id, &name).await?)
    }

    async fn remove_passkey(&self, req: &Parts, id: String) -> Result<(), AppError> {
        let who = self.who(req).await?;
        Ok(self.core.remove_passkey(&who, &id).await?)
    }

    async fn enrolment(&self, token: String) -> Result<EnrolmentInfo, AppError> {
        let info = self.core.enrolment_info(&token).await?;
        Ok(EnrolmentInfo {
            email: info.email,
            role: info.role.to_string(),
            expires_at: info.expires_at,
        })
    }

    async fn guards(&self, req: &Parts) -> Result<GuardSettings, AppError> {
        let who = self.who(req).await?;
        if !who.person.role.is_admin() {
            return Err(AppError::Forbidden("only admins can see the guards".into()));
        }
        Ok(to_settings(self.core.guards().await?))
    }

    async fn set_guards(&self, req: &Parts, g: GuardSettings) -> Result<GuardSettings, AppError> {
        let who = self.who(req).await?;
        let new = Guards {
            max_pending_per_agent: g.max_pending_per_agent,
            prompts_per_approver_per_minute: g.prompts_per_approver_per_minute,
            deny_cooldown_seconds: g.deny_cooldown_seconds,
            approve_delay_ms: g.approve_delay_ms,
            collapse_identical: g.collapse_identical,
        };
        Ok(to_settings(self.core.set_guards(&who, new).await?))
    }

    async fn policy_history(&self, req: &Parts) -> Result<Vec<PolicyVersionItem>, AppError> {
        let who = self.who(req).await?;
        Ok(self
            .core
            .policy_history(&who)
            .await?
            .into_iter()
            .map(|v| PolicyVersionItem {
                version: v.version,
                hash: v.hash,
                applied_by: v.applied_by,
                applied_at: v.applied_at,
                diff: diff_lines(v.diff),
                active: v.active,
            })
            .collect())
    }

    async fn rollback_policy(&self, req: &Parts, version: i64) -> Result<i64, AppError> {
        let who = self.who(req).await?;
        Ok(self.core.rollback_policy(&who, version).await?.0)
    }

    async fn invite(
        &self,
        req: &Parts,
        email: String,
        role: String,
        groups: String,
    ) -> Result<InvitationOut, AppError> {
        let who = self.who(req).await?;
        let groups = comma_list(&groups);
        let inv = self.core.invite_by(&who, &email, &role, &groups).await?;
        Ok(InvitationOut {
            email: inv.email,
            link: inv.link.expose().to_string(),
            expires_at: inv.expires_at,
        })
    }

    // --- people admin ---

    async fn people(&self, req: &Parts) -> Result<Vec<PersonItem>, AppError> {
        let who = self.who(req).await?;
        Ok(self
            .core
            .people(&who)
            .await?
            .into_iter()
            .map(person_item)
            .collect())
    }

    async fn update_person(
        &self,
        req: &Parts,
        id: String,
        role: String,
        groups: String,
    ) -> Result<PersonItem, AppError> {
        let who = self.who(req).await?;
        let groups = comma_list(&groups);
        self.core.update_person(&who, &id, &role, &groups).await?;
        // The list entry as it is now (passkeys, last sign-in included).
        self.core
            .people(&who)
            .await?
            .into_iter()
            .find(|p| p.person.id == id)
            .map(person_item)
            .ok_or_else(|| AppError::NotFound("no such person".into()))
    }

    async fn set_person_active(
        &self,
        req: &Parts,
        id: String,
        active: bool,
    ) -> Result<(), AppError> {
        let who = self.who(req).await?;
        self.core.set_person_active(&who, &id, active).await?;
        Ok(())
    }

    // --- policy editor ---

    async fn policy_editor(&self, req: &Parts) -> Result<EditablePolicy, AppError> {
        let who = self.who(req).await?;
        let state = self.core.policy_editor(&who).await?;
        Ok(EditablePolicy {
            version: state.version,
            rules: transcode(&state.rules)?,
            recent: state.recent,
        })
    }

    async fn preview_policy(
        &self,
        req: &Parts,
        draft: DraftCheck,
    ) -> Result<DraftPreview, AppError> {
        let who = self.who(req).await?;
        let rules: Vec<RuleForm> = transcode(&draft.rules)?;
        let on = match (draft.sample, draft.recent) {
            (Some(s), _) => Some(DryRunOn::Sample(SampleRequest {
                action_type: s.action_type,
                target: s.target,
                environment: s.environment,
                data_sensitivity: s.data_sensitivity,
                amount: s.amount,
                currency: s.currency,
            })),
            (None, Some(id)) => Some(DryRunOn::Recent(id)),
            (None, None) => None,
        };
        let preview = self.core.preview_policy(&who, &rules, on).await?;
        Ok(DraftPreview {
            problems: preview
                .problems
                .into_iter()
                .map(|p| FieldNote {
                    rule: p.rule,
                    field: p.field,
                    message: p.message,
                })
                .collect(),
            text: preview.text,
            diff: diff_lines(preview.diff),
            dry_run: preview.dry_run.map(|(request, d)| DryRun {
                request,
                approvals: d.approvals_required(),
                outcome: d.outcome.kind().into(),
                rule_id: d.rule_id,
                explanation: d.explanation,
                passed_over: d
                    .passed_over
                    .into_iter()
                    .map(|p| (p.rule_id, p.why))
                    .collect(),
            }),
        })
    }

    async fn apply_policy_draft(
        &self,
        req: &Parts,
        base_version: i64,
        rules: Vec<RuleDraft>,
    ) -> Result<i64, AppError> {
        let who = self.who(req).await?;
        let rules: Vec<RuleForm> = transcode(&rules)?;
        Ok(self
            .core
            .apply_policy_draft(&who, base_version, &rules)
            .await?)
    }

    // --- agents admin ---

    async fn admin_agents(&self, req: &Parts) -> Result<Vec<app::api::AdminAgentItem>, AppError> {
        let who = self.who(req).await?;
        Ok(self
            .core
            .all_agents(&who)
            .await?
            .into_iter()
            .map(|a| app::api::AdminAgentItem {
                id: a.id,
                name: a.name,
                owner_email: a.owner_email,
                owner_name: a.owner_name,
                status: a.status.to_string(),
                key_type: a.key_type,
                jkt: a.jwk_thumbprint,
                created_at: a.created_at,
                last_seen_at: a.last_seen_at,
                pending_requests: a.pending_requests,
            })
            .collect())
    }

    async fn admin_agent_status(
        &self,
        req: &Parts,
        id: String,
        active: bool,
    ) -> Result<app::api::AgentStatusOut, AppError> {
        let who = self.who(req).await?;
        let r = self.core.admin_set_agent_status(&who, &id, active).await?;
        Ok(app::api::AgentStatusOut {
            status: r.status,
            changed: r.changed,
            cancelled_requests: r.cancelled_requests as u64,
            revoked_grants: r.revoked_grants as u64,
        })
    }

    async fn admin_rotate_agent_key(
        &self,
        req: &Parts,
        id: String,
    ) -> Result<app::api::RotatedKeyOut, AppError> {
        let who = self.who(req).await?;
        let r = self.core.rotate_agent_key(&who, &id).await?;
        Ok(app::api::RotatedKeyOut {
            id: r.agent_id,
            api_key: r.api_key.expose().to_string(),
            revoked_grants: r.revoked_grants as u64,
        })
    }

    async fn admin_set_agent_key(
        &self,
        req: &Parts,
        id: String,
        jwk: String,
    ) -> Result<app::api::AgentKeyOut, AppError> {
        let who = self.who(req).await?;
        let r = self.core.set_agent_public_key(&who, &id, &jwk).await?;
        Ok(app::api::AgentKeyOut {
            id: r.agent_id,
            jkt: r.jkt,
            revoked_grants: r.revoked_grants as u64,
        })
    }

    // --- audit ---

    async fn audit(
        &self,
        req: &Parts,
        filter: app::api::AuditFilter,
    ) -> Result<app::api::AuditListing, AppError> {
        let who = self.who(req).await?;
        let filter = crate::service::audit::AuditFilter {
            request_id: filter.request,
            agent_id: filter.agent,
            person_id: filter.person,
            kind: filter.kind,
            from: filter.from,
            to: filter.to,
            before: filter.before,
            limit: 0,
        };
        let listing = self.core.audit_events(&who, &filter).await?;
        Ok(app::api::AuditListing {
            events: listing
                .events
                .into_iter()
                .map(|l| {
                    let (agent_id, agent_name) =
                        l.agent.map_or((None, None), |(i, n)| (Some(i), n));
                    let (person_id, person_name) =
                        l.person.map_or((None, None), |(i, n)| (Some(i), n));
                    app::api::AuditEventItem {
                        seq: l.event.seq,
                        at: l.event.at,
                        kind: l.event.kind,
                        actor: l.event.actor,
                        request_id: l.event.request_id,
                        agent_id,
                        agent_name,
                        person_id,
                        person_name,
                    }
                })
                .collect(),
            older: listing.older,
            chain: chain_status(listing.verification, listing.checkpoint),
        })
    }

    async fn audit_request(
        &self,
        req: &Parts,
        id: String,
    ) -> Result<app::api::AuditTimeline, AppError> {
        let who = self.who(req).await?;
        let t = self.core.audit_timeline(&who, &id).await?;
        Ok(app::api::AuditTimeline {
            request_id: t.request_id,
            status: t.status.map(|s| s.to_string()),
            steps: t
                .steps
                .into_iter()
                .map(|s| app::api::AuditStep {
                    seq: s.event.seq,
                    at: s.event.at,
                    kind: s.event.kind,
                    title: s.title,
                    actor: s.actor,
                    facts: s
                        .facts
                        .into_iter()
                        .map(|f| app::api::AuditFact {
                            key: f.key.into(),
                            label: f.label.into(),
                            value: f.value,
                            at: f.at,
                        })
                        .collect(),
                    hash: s.event.hash,
                    evidence: s.event.data,
                })
                .collect(),
            chain: chain_status(t.verification, t.checkpoint),
        })
    }
}

// --- audit ---

fn chain_status(
    v: crate::service::audit::Verification,
    checkpoint: Option<crate::domain::checkpoint::SignedCheckpoint>,
) -> app::api::ChainStatus {
    use crate::service::audit::Verification;
    match v {
        Verification::Intact { events, head } => app::api::ChainStatus {
            intact: true,
            events,
            head,
            broken_seq: None,
            reason: None,
            checkpoint: checkpoint.map(|c| c.to_string()),
        },
        Verification::Broken(b) => app::api::ChainStatus {
            intact: false,
            events: 0,
            head: String::new(),
            broken_seq: Some(b.seq),
            reason: Some(b.reason),
            checkpoint: None,
        },
        Verification::Contradicted(c) => app::api::ChainStatus {
            intact: false,
            events: 0,
            head: String::new(),
            broken_seq: Some(c.checkpoint.seq),
            reason: Some(c.to_string()),
            checkpoint: None,
        },
    }
}

/// A comma-separated list as typed: trimmed, blanks dropped.
fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

fn person_item(r: PersonRecord) -> PersonItem {
    PersonItem {
        active: r.person.status == UserStatus::Active,
        id: r.person.id,
        email: r.person.email,
        name: r.person.display_name,
        role: r.person.role.to_string(),
        groups: r.person.groups,
        created_at: r.created_at,
        last_sign_in_at: r.last_sign_in_at,
        passkeys: r
            .passkeys
            .into_iter()
            .map(|p| PersonPasskey {
                name: p.name,
                created_at: p.created_at,
                last_used_at: p.last_used_at,
            })
            .collect(),
    }
}

/// Converts between the app's editor rules and the domain's forms. They are the same shape on
/// purpose (the app crate cannot depend on the domain); a unit test keeps them in step.
fn transcode<A: serde::Serialize, B: serde::de::DeserializeOwned>(a: &A) -> Result<B, AppError> {
    serde_json::to_value(a)
        .and_then(serde_json::from_value)
        .map_err(|e| AppError::Server(format!("editor model out of step: {e}")))
}

fn diff_lines(lines: Vec<diff::Line>) -> Vec<DiffLine> {
    lines
        .into_iter()
        .map(|l| {
            let (op, line) = match l {
                diff::Line::Same(s) => ("same", s),
                diff::Line::Removed(s) => ("removed", s),
                diff::Line::Added(s) => ("added", s),
            };
            DiffLine {
                op: op.into(),
                line,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The app's editor rule and the domain's form must stay the same shape: `transcode` moves
    /// one into the other by field name, so a field added to one side only would be dropped.
    #[test]
    fn editor_rules_and_policy_forms_have_the_same_fields() {
        let form = RuleForm {
            id: "a".into(),
            description: "b".into(),
            action: "c".into(),
            target: "d".into(),
            environment: "e".into(),
            data_sensitivity: vec!["f".into()],
            amount_currency: "g".into(),
            amount_at_least: "h".into(),
            amount_below: "i".into(),
            outcome: "j".into(),
            approvals: "k".into(),
            approvers: "l".into(),
            all_groups: true,
            exclude_owner: true,
            request_ttl_seconds: "m".into(),
            grant_ttl_seconds: "n".into(),
            reason: "o".into(),
        };
        let draft: RuleDraft = transcode(&form).unwrap();
        assert_eq!(
            serde_json::to_value(&draft).unwrap(),
            serde_json::to_value(&form).unwrap()
        );
        let back: RuleForm = transcode(&draft).unwrap();
        assert_eq!(back, form);
    }
}
