//! The requests' server functions: the inbox, a request's page, the history.

use app::api::{
    AppError, Decided, EventRow, HistoryFilter, HistoryItem, InboxItem, Recent, RequestView,
    RequestsBackend, Risk, Shown, StandingItem, TermsOffer, Verdict,
};
use async_trait::async_trait;
use axum::http::request::Parts;

use super::{request_status, UiBackend};
use crate::domain::risk;
use crate::service::inbox::{self, deny_reasons};

#[async_trait]
impl RequestsBackend for UiBackend {
    async fn inbox(&self, req: &Parts) -> Result<Vec<InboxItem>, AppError> {
        let who = self.who(req).await?;
        Ok(self
            .core
            .inbox(&who)
            .await?
            .into_iter()
            .map(|e| InboxItem {
                id: e.id,
                agent_id: e.agent_id,
                agent_name: e.agent_name,
                action_type: e.action_type,
                target: e.target,
                goal: e.goal,
                environment: e.environment,
                amount: e.amount,
                created_at: e.created_at,
                expires_at: e.expires_at,
                approvals_required: e.approvals_required,
                approvals_received: e.approvals,
                risks: risks(e.risks),
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
                decision: Verdict::Approved,
                at: a.decided_at,
            })
            .collect();
        if let (Some(by), Some(at)) = (&d.denied_by, d.decided_at) {
            decisions.push(Decided {
                who: by.clone(),
                decision: Verdict::Denied,
                at,
            });
        }
        let denial = d.reason_code.as_ref().map(|code| match &d.reason {
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
                releases: v.releases,
                lineage: v
                    .lineage
                    .into_iter()
                    .map(|a| app::api::Ancestor {
                        id: a.id,
                        name: a.name,
                    })
                    .collect(),
            },
            display_hash: d.display_hash,
            status: request_status(d.status),
            created_at: d.created_at,
            expires_at: d.expires_at,
            decisions,
            denial,
            can_decide: d.may_decide.is_ok(),
            why_not: d.may_decide.err(),
            risks: risks(d.risks),
            recent: d
                .recent
                .into_iter()
                .map(|r| Recent {
                    id: r.id,
                    action_type: r.action_type,
                    target: r.target,
                    status: request_status(r.status),
                    created_at: r.created_at,
                })
                .collect(),
            deny_reasons: deny_reasons(),
            approve_delay_ms: d.approve_wait_ms,
            offer: TermsOffer {
                can_cap_amount: d.offer.amount.is_some() && !d.offer.releases_credential,
                amount: d.offer.amount,
                grant_ttl_seconds: d.offer.grant_ttl_seconds,
                standing_max_seconds: d.offer.standing_max_seconds,
                standing_max_uses: d.offer.standing_max_uses,
                params: d.offer.params,
            },
        })
    }

    async fn standing_approvals(&self, req: &Parts) -> Result<Vec<StandingItem>, AppError> {
        let who = self.who(req).await?;
        Ok(self
            .core
            .standing_approvals(&who)
            .await?
            .into_iter()
            .map(|s| StandingItem {
                id: s.id,
                agent_name: s.agent_name,
                created_by: s.created_by,
                covers: s.covers,
                uses_total: s.uses_total,
                uses_left: s.uses_left,
                expires_at: s.expires_at,
                state: s.state.to_string(),
                request_id: s.request_id,
            })
            .collect())
    }

    async fn revoke_standing(&self, req: &Parts, id: String) -> Result<(), AppError> {
        let who = self.who(req).await?;
        Ok(self.core.revoke_standing(&who, &id).await?)
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
                id: h.id,
                agent_name: h.agent_name,
                action_type: h.action_type,
                target: h.target,
                status: request_status(h.status),
                created_at: h.created_at,
                decided_at: h.decided_at,
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
