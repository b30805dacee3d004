//! What people see: their inbox, a request with everything around it, their history, their
//! agents. Every method takes the signed-in person and shows only what they may see:
//!
//! - the inbox holds pending requests this person is an eligible approver of and has not yet
//!   approved;
//! - a request page is visible to its eligible approvers, the agent's owner and admins (the
//!   same rule as [`Countersign::approval_view`]), to anyone else it does not exist;
//! - the history holds finished requests of the person's agents and those they decided
//!   (admins: all);
//! - agents are managed by their owner (and admins).

use std::collections::HashMap;

use super::decisions::{candidate, Decision, DENY_REASONS};
use super::people::SignedIn;
use super::requests::stored_body;
use super::{Countersign, Error};
use crate::domain::audit::AuditEvent;
use crate::domain::display::ApprovalView;
use crate::domain::lifecycle::RequestStatus;
use crate::domain::quorum::ApproverRule;
use crate::domain::risk::{self, Risk};
use crate::store::agents::{self, AgentRow};
use crate::store::listings::{self, ApprovalRow, HistoryQuery};
use crate::store::requests::RequestRow;
use crate::store::{audit, requests as rows};

/// Pending requests scanned for an inbox; eligibility is decided per request in Rust (it
/// depends on the rule each request was created under), so the scan is bounded.
const INBOX_SCAN: i64 = 500;
/// Rows an inbox shows.
const INBOX_SHOWN: usize = 100;
/// Rows a history page shows.
const HISTORY_SHOWN: i64 = 100;

/// One row of an inbox.
#[derive(Debug, Clone)]
pub struct InboxEntry {
    /// The request.
    pub request: RequestRow,
    /// Its agent's name.
    pub agent_name: String,
    /// Approvals so far.
    pub approvals: i64,
    /// Risk highlights.
    pub risks: Vec<Risk>,
}

/// A request with everything its page shows.
#[derive(Debug, Clone)]
pub struct RequestDetails {
    /// What is shown and hashed.
    pub view: ApprovalView,
    /// Its hash.
    pub display_hash: String,
    /// The stored request.
    pub request: RequestRow,
    /// Approvals so far.
    pub approvals: Vec<ApprovalRow>,
    /// The person who denied it, when denied (display name and e-mail).
    pub denied_by: Option<String>,
    /// Whether this person may approve or deny now, and if not, why.
    pub may_decide: Result<(), String>,
    /// Risk highlights.
    pub risks: Vec<Risk>,
    /// The agent's other recent requests.
    pub recent: Vec<RequestRow>,
    /// Milliseconds until this person may approve (the approve delay, counted from when they
    /// first opened the page).
    pub approve_wait_ms: i64,
}

/// One finished request and its evidence.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// The request.
    pub request: RequestRow,
    /// Its agent's name.
    pub agent_name: String,
    /// Its events on the audit chain.
    pub events: Vec<AuditEvent>,
}

/// History filters.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// Agent id, or empty.
    pub agent_id: String,
    /// Status, or empty.
    pub status: String,
    /// Created within this many hours (0: any time).
    pub within_hours: i64,
}

/// The reason codes a denial may carry, with their labels.
pub fn deny_reasons() -> Vec<(String, String)> {
    DENY_REASONS
        .iter()
        .map(|(c, l)| (c.to_string(), l.to_string()))
        .collect()
}

impl Countersign {
    async fn agent_named(
        &self,
        cache: &mut HashMap<String, AgentRow>,
        id: &str,
    ) -> Result<AgentRow, Error> {
        if let Some(a) = cache.get(id) {
            return Ok(a.clone());
        }
        let a = agents::get(self.db.reader(), id)
            .await?
            .ok_or_else(|| Error::internal("request without agent"))?;
        cache.insert(id.to_string(), a.clone());
        Ok(a)
    }

    async fn risks_of(&self, r: &RequestRow) -> Result<Vec<Risk>, Error> {
        let first =
            !listings::asked_before(self.db.reader(), &r.agent_id, &r.action_type, r.created_at)
                .await?;
        Ok(risk::assess(&stored_body(r), first))
    }

    /// Requests waiting for this person's decision, newest first. A fixed number of
    /// statements whatever the number of rows: the open inbox re-reads on every new request,
    /// which in a flood is exactly when it must stay cheap.
    pub async fn inbox(&self, who: &SignedIn) -> Result<Vec<InboxEntry>, Error> {
        let me = candidate(&who.person);
        let mut agents = HashMap::new();
        let mut eligible = Vec::new();
        for r in listings::pending(self.db.reader(), self.now(), INBOX_SCAN).await? {
            let agent = self.agent_named(&mut agents, &r.agent_id).await?;
            let rule: ApproverRule =
                serde_json::from_str(&r.approver_rule).map_err(Error::internal)?;
            if rule.is_eligible(&me, &agent.owner_id) {
                eligible.push((r, agent.name));
            }
        }
        let ids: Vec<&str> = eligible.iter().map(|(r, _)| r.id.as_str()).collect();
        let approvers = listings::approvers_of_each(self.db.reader(), &ids).await?;
        let approvals = |id: &str| approvers.get(id).map_or(&[][..], Vec::as_slice);
        let waiting: Vec<(RequestRow, String)> = eligible
            .into_iter()
            .filter(|(r, _)| !approvals(&r.id).contains(&who.person.id))
            .take(INBOX_SHOWN)
            .collect();
        let ids: Vec<&str> = waiting.iter().map(|(r, _)| r.id.as_str()).collect();
        let asked = listings::asked_before_each(self.db.reader(), &ids).await?;
        Ok(waiting
            .into_iter()
            .map(|(r, agent_name)| InboxEntry {
                approvals: approvals(&r.id).len() as i64,
                risks: risk::assess(&stored_body(&r), !asked.contains(&r.id)),
                agent_name,
                request: r,
            })
            .collect())
    }

    /// One request's page, for someone who may see it.
    pub async fn request_details(
        &self,
        who: &SignedIn,
        request_id: &str,
    ) -> Result<RequestDetails, Error> {
        let view = self.approval_view(who, request_id).await?;
        let request = rows::get(self.db.reader(), request_id)
            .await?
            .ok_or_else(|| Error::NotFound("no such request".into()))?;
        let approvals = listings::approvals(self.db.reader(), request_id).await?;
        let may_decide = match self.may_decide(who, request_id, &Decision::Approve).await {
            Ok(()) => Ok(()),
            Err(Error::Internal(e)) => return Err(Error::Internal(e)),
            Err(e) => Err(e.to_string()),
        };
        let denied_by = match (request.status, &request.decided_by) {
            (RequestStatus::Denied, Some(by)) if by != "policy" => self
                .person(by)
                .await?
                .map(|p| format!("{} ({})", p.display_name, p.email)),
            _ => None,
        };
        let risks = self.risks_of(&request).await?;
        let recent =
            listings::recent_of_agent(self.db.reader(), &request.agent_id, request_id, 5).await?;
        // Showing the page to someone who may decide starts their approve delay.
        let approve_wait_ms = if may_decide.is_ok() {
            self.note_view(who, request_id).await?
        } else {
            0
        };
        Ok(RequestDetails {
            approve_wait_ms,
            display_hash: view.display_hash(),
            view,
            request,
            approvals,
            denied_by,
            may_decide,
            risks,
            recent,
        })
    }

    /// Finished requests this person may see, newest first, each with its audit events.
    pub async fn history(
        &self,
        who: &SignedIn,
        filter: &HistoryFilter,
    ) -> Result<Vec<HistoryEntry>, Error> {
        let status = match filter.status.as_str() {
            "" => None,
            text => Some(
                text.parse::<RequestStatus>()
                    .ok()
                    .filter(|s| s.is_final())
                    .ok_or_else(|| {
                        Error::invalid(
                            "status",
                            "status is one of approved, denied, expired, cancelled",
                        )
                    })?,
            ),
        };
        if filter.within_hours < 0 {
            return Err(Error::invalid("within_hours", "within_hours is 0 or more"));
        }
        let since = if filter.within_hours == 0 {
            0
        } else {
            self.now() - filter.within_hours.saturating_mul(3_600_000)
        };
        let query = HistoryQuery {
            agent_id: filter.agent_id.clone(),
            status,
            since,
            visible_to: (!who.person.role.is_admin()).then(|| who.person.id.clone()),
            limit: HISTORY_SHOWN,
        };
        let finished = listings::finished(self.db.reader(), &query).await?;
        let ids: Vec<&str> = finished.iter().map(|r| r.id.as_str()).collect();
        let mut events = audit::for_each_request(self.db.reader(), &ids).await?;
        let mut agents = HashMap::new();
        let mut out = Vec::with_capacity(finished.len());
        for r in finished {
            let agent = self.agent_named(&mut agents, &r.agent_id).await?;
            out.push(HistoryEntry {
                agent_name: agent.name,
                events: events.remove(&r.id).unwrap_or_default(),
                request: r,
            });
        }
        Ok(out)
    }

    /// The person's own agents, newest first.
    pub async fn my_agents(&self, who: &SignedIn) -> Result<Vec<AgentRow>, Error> {
        Ok(agents::list(self.db.reader(), Some(&who.person.id)).await?)
    }

    /// Suspends or resumes an agent the person owns (admins: any agent).
    pub async fn set_agent_active(
        &self,
        who: &SignedIn,
        agent_id: &str,
        active: bool,
    ) -> Result<(), Error> {
        let agent = agents::get(self.db.reader(), agent_id)
            .await?
            .ok_or_else(|| Error::NotFound("no such agent".into()))?;
        if agent.owner_id != who.person.id && !who.person.role.is_admin() {
            return Err(Error::NotFound("no such agent".into()));
        }
        let actor = format!("user:{}", who.person.id);
        if active {
            self.resume_agent(agent_id, &actor).await?;
        } else {
            self.suspend_agent(agent_id, &actor).await?;
        }
        Ok(())
    }
}
