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
//!
//! Each answer is a read model in the words the pages use (an inbox entry, a request's
//! details, a history entry, an agent), not a stored row: the request's JSON is read here, once.

use std::collections::HashMap;

use serde_json::Value;

use super::decisions::{candidate, Decision, DENY_REASONS};
use super::people::SignedIn;
use super::requests::stored_body;
use super::{Countersign, Error};
use crate::clock::Millis;
use crate::domain::audit::AuditEvent;
use crate::domain::display::ApprovalView;
use crate::domain::lifecycle::{AgentStatus, RequestStatus};
use crate::domain::quorum::ApproverRule;
use crate::domain::risk::{self, Risk};
use crate::store::agents::{self, AgentRow};
use crate::store::listings::{self, HistoryQuery};
use crate::store::requests::RequestRow;
use crate::store::{self, audit, requests as rows};

/// Pending requests scanned for an inbox; eligibility is decided per request in Rust (it
/// depends on the rule each request was created under), so the scan is bounded.
const INBOX_SCAN: i64 = 500;
/// Rows an inbox shows.
const INBOX_SHOWN: usize = 100;
/// Rows a history page shows.
const HISTORY_SHOWN: i64 = 100;

/// One row of an inbox: what the request asks, in the words the list shows.
#[derive(Debug, Clone)]
pub struct InboxEntry {
    /// Request id.
    pub id: String,
    /// Its agent's id.
    pub agent_id: String,
    /// Its agent's name.
    pub agent_name: String,
    /// The action's type, e.g. `payments.transfer`.
    pub action_type: String,
    /// What it acts on.
    pub target: String,
    /// The intent's goal, in the agent's words (empty when it gave none).
    pub goal: String,
    /// The environment it names, if any.
    pub environment: Option<String>,
    /// The amount with its currency (`1200 EUR`), if any.
    pub amount: Option<String>,
    /// Unix ms.
    pub created_at: Millis,
    /// Unix ms.
    pub expires_at: Millis,
    /// Approvals the policy asks for.
    pub approvals_required: i64,
    /// Approvals so far.
    pub approvals: i64,
    /// Risk highlights.
    pub risks: Vec<Risk>,
}

/// An approval already given, by whom.
#[derive(Debug, Clone)]
pub struct GivenApproval {
    /// Their display name.
    pub display_name: String,
    /// Their e-mail.
    pub email: String,
    /// Unix ms.
    pub decided_at: Millis,
}

/// Another request of the same agent, as the request page lists it.
#[derive(Debug, Clone)]
pub struct RecentRequest {
    /// Request id.
    pub id: String,
    /// The action's type.
    pub action_type: String,
    /// What it acts on.
    pub target: String,
    /// Where it stands.
    pub status: RequestStatus,
    /// Unix ms.
    pub created_at: Millis,
}

/// A request with everything its page shows.
#[derive(Debug, Clone)]
pub struct RequestDetails {
    /// What is shown and hashed.
    pub view: ApprovalView,
    /// Its hash.
    pub display_hash: String,
    /// Where it stands.
    pub status: RequestStatus,
    /// Unix ms.
    pub created_at: Millis,
    /// Unix ms.
    pub expires_at: Millis,
    /// When it left `pending` (unix ms), if it has.
    pub decided_at: Option<Millis>,
    /// Approvals so far, in order.
    pub approvals: Vec<GivenApproval>,
    /// The person who denied it, when a person did (display name and e-mail).
    pub denied_by: Option<String>,
    /// The reason code it ended with (a denial's, or policy's), if any.
    pub reason_code: Option<String>,
    /// The reason's text, if any.
    pub reason: Option<String>,
    /// Whether this person may approve or deny now, and if not, why.
    pub may_decide: Result<(), String>,
    /// Risk highlights.
    pub risks: Vec<Risk>,
    /// The agent's other recent requests.
    pub recent: Vec<RecentRequest>,
    /// Milliseconds until this person may approve (the approve delay, counted from when they
    /// first opened the page).
    pub approve_wait_ms: i64,
    /// What the approver may narrow or make standing.
    pub offer: TermsOffer,
}

/// What an approver may change about their approval of one request (see `domain::terms`).
#[derive(Debug, Clone, Default)]
pub struct TermsOffer {
    /// The request's amount (value as written, currency).
    pub amount: Option<(String, String)>,
    /// Whether approving releases a credential (no amount cap then).
    pub releases_credential: bool,
    /// The grant's lifetime.
    pub grant_ttl_seconds: i64,
    /// The longest standing approval the rule allows, if any.
    pub standing_max_seconds: Option<i64>,
    /// The most uses one may allow.
    pub standing_max_uses: i64,
    /// The names of the request's parameters.
    pub params: Vec<String>,
}

/// One finished request and its evidence.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// Request id.
    pub id: String,
    /// Its agent's name.
    pub agent_name: String,
    /// The action's type.
    pub action_type: String,
    /// What it acts on.
    pub target: String,
    /// How it ended.
    pub status: RequestStatus,
    /// Unix ms.
    pub created_at: Millis,
    /// Unix ms.
    pub decided_at: Option<Millis>,
    /// Its events on the audit chain.
    pub events: Vec<AuditEvent>,
}

/// One of a person's agents, as their agents page lists it (no credential material).
#[derive(Debug, Clone)]
pub struct OwnAgent {
    /// Agent id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Active or suspended.
    pub status: AgentStatus,
    /// `api_key` or `ed25519`.
    pub key_type: String,
    /// Unix ms.
    pub created_at: Millis,
    /// Unix ms, if it has been seen.
    pub last_seen_at: Option<Millis>,
    /// Where its decisions are announced, if anywhere.
    pub callback_url: Option<String>,
    /// The agent it is registered as a sub-agent of, if any.
    pub parent_id: Option<String>,
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

/// The text at `pointer` in a request body: strings as they are, numbers and the like as JSON,
/// null and absent as `None`.
fn text_at(body: &Value, pointer: &str) -> Option<String> {
    match body.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
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
        // A row of the inbox shows the request too: its approve delay (which a batch approval
        // from here checks) starts now, unless its page or an earlier inbox showed it first.
        // Written only for requests not shown before, so a live inbox's reloads write nothing.
        let seen = store::guards::viewed_of(self.db.reader(), &ids, &who.person.id).await?;
        let unseen: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| !seen.contains(*id))
            .collect();
        if !unseen.is_empty() {
            let mut tx = self.db.begin().await?;
            store::guards::first_views(&mut tx, &unseen, &who.person.id, self.now()).await?;
            tx.commit().await.map_err(store::StoreError::from)?;
        }
        Ok(waiting
            .into_iter()
            .map(|(r, agent_name)| {
                let body = stored_body(&r);
                let amount = text_at(&body, "/context/amount/value").map(|value| {
                    match text_at(&body, "/context/amount/currency") {
                        Some(currency) => format!("{value} {currency}"),
                        None => value,
                    }
                });
                InboxEntry {
                    approvals: approvals(&r.id).len() as i64,
                    risks: risk::assess(&body, !asked.contains(&r.id)),
                    goal: text_at(&body, "/intent/goal").unwrap_or_default(),
                    environment: text_at(&body, "/context/environment"),
                    amount,
                    agent_name,
                    id: r.id,
                    agent_id: r.agent_id,
                    action_type: r.action_type,
                    target: r.target,
                    created_at: r.created_at,
                    expires_at: r.expires_at,
                    approvals_required: r.approvals_required,
                }
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
        let offer = if may_decide.is_ok() {
            let bounds = self.rule_bounds(&request).await?;
            let new = super::requests::stored_request(&request)?;
            TermsOffer {
                amount: new
                    .context
                    .amount
                    .as_ref()
                    .map(|a| (a.value_text.clone(), a.currency.clone())),
                releases_credential: bounds.releases_credential,
                grant_ttl_seconds: i64::from(bounds.grant_ttl_seconds),
                standing_max_seconds: bounds.standing.map(|l| i64::from(l.max_seconds)),
                standing_max_uses: bounds.standing.map_or(0, |l| i64::from(l.max_uses)),
                params: new
                    .action
                    .params
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default(),
            }
        } else {
            TermsOffer::default()
        };
        Ok(RequestDetails {
            offer,
            approve_wait_ms,
            display_hash: view.display_hash(),
            view,
            status: request.status,
            created_at: request.created_at,
            expires_at: request.expires_at,
            decided_at: request.decided_at,
            approvals: approvals
                .into_iter()
                .map(|a| GivenApproval {
                    display_name: a.display_name,
                    email: a.email,
                    decided_at: a.decided_at,
                })
                .collect(),
            denied_by,
            reason_code: request.reason_code,
            reason: request.reason,
            may_decide,
            risks,
            recent: recent
                .into_iter()
                .map(|r| RecentRequest {
                    id: r.id,
                    action_type: r.action_type,
                    target: r.target,
                    status: r.status,
                    created_at: r.created_at,
                })
                .collect(),
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
                id: r.id,
                action_type: r.action_type,
                target: r.target,
                status: r.status,
                created_at: r.created_at,
                decided_at: r.decided_at,
            });
        }
        Ok(out)
    }

    /// The person's own agents, newest first.
    pub async fn my_agents(&self, who: &SignedIn) -> Result<Vec<OwnAgent>, Error> {
        Ok(agents::list(self.db.reader(), Some(&who.person.id))
            .await?
            .into_iter()
            .map(|a| OwnAgent {
                id: a.id,
                name: a.name,
                status: a.status,
                key_type: a.key_type,
                created_at: a.created_at,
                last_seen_at: a.last_seen_at,
                callback_url: a.callback_url,
                parent_id: a.parent_id,
            })
            .collect())
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
