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
use async_trait::async_trait;
use axum::http::request::Parts;
use serde_json::Value;
use tower_sessions::Session;

use super::owner_api::signed_in;
use crate::domain::diff;
use crate::domain::guards::Guards;
use crate::domain::risk;
use crate::service::inbox::{self, deny_reasons};
use crate::service::people::SignedIn;
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
            Error::Internal(cause) => {
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
        status: r.status.clone(),
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
                role: w.person.role,
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
            status: d.request.status.clone(),
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
                status: h.request.status.clone(),
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
                status: a.status,
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
            role: info.role,
            expires_at: info.expires_at,
        })
    }

    async fn guards(&self, req: &Parts) -> Result<GuardSettings, AppError> {
        let who = self.who(req).await?;
        if who.person.role != "admin" {
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
                diff: v
                    .diff
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
                    .collect(),
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
        let groups: Vec<String> = groups
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect();
        let inv = self.core.invite_by(&who, &email, &role, &groups).await?;
        Ok(InvitationOut {
            email: inv.email,
            link: inv.link.expose().to_string(),
            expires_at: inv.expires_at,
        })
    }
}
