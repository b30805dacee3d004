//! The audit pages' server functions: the searchable trail and one request's timeline.

use app::api::{AppError, AuditBackend};
use async_trait::async_trait;
use axum::http::request::Parts;

use super::{request_status, UiBackend};

#[async_trait]
impl AuditBackend for UiBackend {
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
            status: t.status.map(request_status),
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
