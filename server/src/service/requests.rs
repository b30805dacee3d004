//! An agent's approval requests: asking, waiting, cancelling.
//!
//! ```text
//!   agent ── POST /requests ──► validate ─► action_hash ─► policy ─┬─ allow   ─► approved + grant
//!                                                                  ├─ require ─► pending
//!                                                                  └─ deny    ─► denied (403)
//!   (one transaction: request row, idempotency key, audit events, grant if any — committed by
//!    the intake writer, possibly together with other agents' requests; see `writer`)
//!
//!   pending ──► approved | denied | expired | cancelled      (final once left)
//! ```
//!
//! Expiry is enforced whenever a request is read, not only by the sweeper: a request past its
//! time is moved to `expired` by the read itself (a conditional write), so a stopped sweeper can
//! never leave an expired request open to approval.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

pub(crate) use super::policies::policy_input;
use super::{Countersign, Error};
use crate::clock::{rfc3339, Millis};
use crate::domain::audit_kind::EventKind;
use crate::domain::canonical::{canonical_json, sha256_prefixed};
use crate::domain::intake::{parse_new_request, Limits, NewRequest};
use crate::domain::lifecycle::RequestStatus;
use crate::domain::policy::RuleOutcome;
use crate::domain::quorum::ApproverRule;
use crate::service::agents::AgentIdentity;
use crate::service::writer::{IntakeJob, Probe, Written};
use crate::store::audit::NewEvent;
use crate::store::requests::{self as rows, Change, IdempotencyClaim, RequestRow};
use crate::store::{self, audit, Backend, WriteTx};
use crate::telemetry::bump;
use strum::VariantArray;

/// Seconds an agent should leave between polls without `wait`.
pub const POLL_INTERVAL_SECS: u32 = 5;
/// The longest long-wait we hold (below common 60 s proxy timeouts).
pub const MAX_WAIT_SECS: u32 = 55;
/// Request lifetime when the agent does not ask for one.
pub const DEFAULT_REQUEST_TTL_SECS: u32 = 600;
/// Request lifetime cap when the matching rule sets none.
pub const MAX_REQUEST_TTL_SECS: u32 = 3600;
/// Grant lifetime when the rule sets none (the contract's default).
pub const DEFAULT_GRANT_TTL_SECS: u32 = 60;

/// A request as its agent sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestView {
    /// The request id.
    pub id: String,
    /// `pending`, `approved`, `denied`, `expired` or `cancelled`.
    #[schema(schema_with = status_schema)]
    pub status: RequestStatus,
    /// `sha256:` of the canonical `{agent_id, action, intent, context}`.
    pub action_hash: String,
    /// When a pending request expires (RFC 3339).
    pub expires_at: String,
    /// Seconds until then (returned when the request is created).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// Minimum seconds between polls without `wait`.
    pub interval: u32,
    /// Where the owner approves.
    pub approval_url: String,
    /// What policy decided.
    pub policy: PolicyView,
    /// Approvals required and received so far.
    pub approvals: ApprovalCount,
    /// Present when the request was denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionView>,
    /// Present when the request was approved: the single-use grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantView>,
}

/// The states of a request, for the OpenAPI document.
fn status_schema() -> utoipa::openapi::schema::ObjectBuilder {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(RequestStatus::VARIANTS.iter().map(|s| s.as_str())))
        .description(Some("`pending` until decided; then final"))
}

/// The policy decision on a request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyView {
    /// The rule id (`default` when no rule matched).
    pub rule: String,
    /// Distinct approvals needed (0 when the rule allowed or denied outright).
    pub approvals_required: i64,
    /// One line, for the agent and the approver alike.
    pub explanation: String,
}

/// Approvals required and received.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApprovalCount {
    /// Needed.
    pub required: i64,
    /// So far.
    pub received: i64,
}

/// Why a request was denied.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionView {
    /// The human reason.
    pub reason: String,
    /// A machine-readable code (`policy` for policy denials).
    pub reason_code: String,
    /// When (RFC 3339).
    pub decided_at: String,
}

/// A grant, as handed to the agent.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GrantView {
    /// The compact JWS to give to the downstream system.
    pub token: String,
    /// Its id.
    pub jti: String,
    /// When it stops being redeemable (RFC 3339).
    pub expires_at: String,
}

/// Result of creating a request.
#[derive(Debug, Clone)]
pub struct Created {
    /// The request's state.
    pub view: RequestView,
    /// True when an earlier call with the same `Idempotency-Key` created it.
    pub replayed: bool,
}

/// Remembers when each request was last polled without `wait`, to answer `slow_down`.
/// Per process: behind a load balancer an agent may occasionally poll two replicas sooner than
/// `interval`, which costs us nothing but a read.
#[derive(Debug, Default)]
pub struct PollTracker {
    last: Mutex<HashMap<String, Millis>>,
}

impl PollTracker {
    /// Records a poll; false when the previous one was less than `interval` ago.
    fn check(&self, request_id: &str, now: Millis, interval: u32) -> bool {
        let mut map = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Bounded memory: forget polls older than the interval.
            map.retain(|_, at| now - *at < i64::from(interval) * 1000);
        }
        match map.get(request_id) {
            Some(prev) if now - *prev < i64::from(interval) * 1000 => false,
            _ => {
                map.insert(request_id.to_string(), now);
                true
            }
        }
    }
}

/// How one attempt at storing a new request ended.
enum Inserted {
    /// Stored; the agent's view of it.
    Stored(Box<RequestView>),
    /// The standing approval it counted on had no use left when it was written: nothing was
    /// stored, and the request should be tried again without one.
    StandingLost,
    /// It was decided under a policy that was no longer the newest when it was written:
    /// nothing was stored, and the request should be decided again under the new one.
    PolicyChanged,
    /// The agent changed (suspended, another key or parent) after its credential was checked:
    /// nothing was stored; the credential must be checked again.
    AgentChanged,
    /// The identical request it would have collapsed into was decided before it could be
    /// answered: nothing was stored, and the request should be tried again as a new one.
    IdenticalDecided,
    /// A person's recent denial was compared with it and does not hold it back: nothing was
    /// stored, and the request should be tried again without comparing again.
    CooldownPassed,
}

/// What earlier attempts at inserting one request learned.
#[derive(Debug, Clone, Copy)]
struct Retry {
    /// Whether a standing approval may approve it (not when the last use went elsewhere).
    use_standing: bool,
    /// Whether it collapses into an identical pending request (not when that one was decided
    /// between the writer finding it and intake answering with it).
    collapse: bool,
    /// Whether the agent's recent denials were already compared with it.
    cooldown_passed: bool,
}

/// How many times one request is decided before it gives up: it is decided again when the
/// policy or the agent changed between deciding and writing (a window of milliseconds; more
/// than this is someone applying policies, or resuming the agent, in a loop).
const ATTEMPTS: usize = 8;

/// Tells other replicas (PostgreSQL) that a request changed; delivered when `tx` commits.
pub(crate) async fn announce(
    tx: &mut WriteTx,
    backend: Backend,
    request_id: &str,
) -> Result<(), Error> {
    store::coordination::notify(tx, backend, super::waiters::CHANNEL, request_id).await?;
    Ok(())
}

fn validate_idempotency_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Error::invalid(
            "Idempotency-Key",
            "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(())
}

/// A new request as it is stored: its JSON, that JSON in canonical form (the row's body), and
/// the canonical form's digest (the idempotency fingerprint).
struct Stored {
    value: Value,
    canonical: String,
    fingerprint: String,
}

impl Countersign {
    /// An agent asks for approval of an action.
    pub async fn create_request(
        &self,
        agent: &AgentIdentity,
        body: &[u8],
        idempotency_key: Option<&str>,
    ) -> Result<Created, Error> {
        let new =
            parse_new_request(body, &Limits::default()).map_err(|e| Error::InvalidRequest {
                field: e.field,
                detail: e.detail,
            })?;
        // The request as JSON, and canonical: what the row stores, what its audit event
        // records, and (hashed) the idempotency fingerprint, made once.
        let value = serde_json::to_value(&new).map_err(Error::internal)?;
        let canonical = canonical_json(&value);
        let fingerprint = sha256_prefixed(canonical.as_bytes());
        let stored = Stored {
            value,
            canonical,
            fingerprint,
        };
        let fingerprint = stored.fingerprint.as_str();
        // An identity from the intake cache is confirmed before anything is answered without
        // being written (see `agents`, "Credentials cached for intake").
        let confirmed;
        let agent = if agent.cached && idempotency_key.is_some() {
            confirmed = self.recheck(agent).await?;
            &confirmed
        } else {
            agent
        };
        if let Some(key) = idempotency_key {
            validate_idempotency_key(key)?;
            if let Some(view) = self.idempotent_replay(agent, key, fingerprint).await? {
                return Ok(Created {
                    view,
                    replayed: true,
                });
            }
        }
        match self
            .insert_request(agent, &new, idempotency_key, &stored)
            .await
        {
            Err(Error::Conflict(_)) if idempotency_key.is_some() => {
                // We lost an insert race on the idempotency key: the winner's request is the
                // answer (or a conflict, if its body differed).
                let key = idempotency_key.unwrap_or_default();
                match self.idempotent_replay(agent, key, fingerprint).await? {
                    Some(view) => Ok(Created {
                        view,
                        replayed: true,
                    }),
                    None => Err(Error::internal("idempotency key vanished after a conflict")),
                }
            }
            other => other.map(|view| Created {
                view,
                replayed: false,
            }),
        }
    }

    async fn idempotent_replay(
        &self,
        agent: &AgentIdentity,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<RequestView>, Error> {
        let Some(seen) = rows::idempotency_get(self.db.reader(), &agent.id, key).await? else {
            return Ok(None);
        };
        if seen.body_hash != fingerprint {
            return Err(Error::Conflict(
                "this Idempotency-Key was already used with a different request body".into(),
            ));
        }
        let row = self.read_fresh(&seen.request_id).await?;
        match row {
            Some(row) => {
                let mut view = self.view(&row).await?;
                if row.status == RequestStatus::Pending {
                    view.expires_in = Some((row.expires_at - self.now()).max(0) / 1000);
                }
                if row.status == RequestStatus::Denied
                    && row.decided_by.as_deref() == Some("policy")
                {
                    return Err(Error::DeniedByPolicy {
                        request_id: row.id,
                        rule: row.rule_id,
                        explanation: row.explanation,
                    });
                }
                Ok(Some(view))
            }
            None => Err(Error::internal(
                "idempotency key points at a missing request",
            )),
        }
    }

    /// The agent's view of an identical request it already waits for, if it still waits.
    async fn still_pending(&self, id: &str, now: Millis) -> Result<Option<RequestView>, Error> {
        match self.read_fresh(id).await? {
            Some(row) if row.status == RequestStatus::Pending => {
                let mut view = self.view(&row).await?;
                view.expires_in = Some((row.expires_at - now).max(0) / 1000);
                Ok(Some(view))
            }
            _ => Ok(None),
        }
    }

    async fn insert_request(
        &self,
        agent: &AgentIdentity,
        new: &NewRequest,
        idempotency_key: Option<&str>,
        stored: &Stored,
    ) -> Result<RequestView, Error> {
        // A standing approval that covers the request approves it, unless its last use went to
        // another request meanwhile: then this one waits for a human like any other.
        let mut retry = Retry {
            use_standing: true,
            collapse: true,
            cooldown_passed: false,
        };
        let mut agent = std::borrow::Cow::Borrowed(agent);
        for _ in 0..ATTEMPTS {
            match self
                .insert_once(&agent, new, idempotency_key, stored, retry)
                .await?
            {
                Inserted::Stored(view) => return Ok(*view),
                Inserted::StandingLost if retry.use_standing => retry.use_standing = false,
                Inserted::StandingLost => {
                    return Err(Error::internal("a standing use without one"))
                }
                Inserted::IdenticalDecided => retry.collapse = false,
                Inserted::CooldownPassed => retry.cooldown_passed = true,
                // Read the new policy (which refreshes the cache intake decides with), then
                // decide again.
                Inserted::PolicyChanged => {
                    self.active_policy().await?;
                }
                // Refused unless the agent is still active with the same credential (then it
                // was resumed, or given a parent, meanwhile): decided again as it is now.
                Inserted::AgentChanged => {
                    agent = std::borrow::Cow::Owned(self.recheck(&agent).await?);
                }
            }
        }
        Err(Error::Conflict(
            "the policy or the agent kept changing while this request was decided; try again"
                .into(),
        ))
    }

    async fn insert_once(
        &self,
        agent: &AgentIdentity,
        new: &NewRequest,
        idempotency_key: Option<&str>,
        stored: &Stored,
        retry: Retry,
    ) -> Result<Inserted, Error> {
        let now = self.now();
        let action_hash = new.action_hash(&agent.id);
        let active = self.intake_policy().await?;
        // A sub-agent's registered ancestors count towards its delegation depth whatever it
        // claims (see `delegation`); an agent that is no one's sub-agent costs no query.
        let lineage = self
            .lineage_of(&agent.id, agent.parent_id.as_deref())
            .await?;
        let input = policy_input(new, &lineage);
        let decision = active.policy.evaluate(&input);
        let delegation = super::delegation::audit_delegation(new, &lineage);
        let release = match decision.outcome {
            RuleOutcome::Deny { .. } => None,
            _ => active
                .policy
                .rule(&decision.rule_id)
                .and_then(|rule| rule.release()),
        };

        let standing = match (&decision.outcome, retry.use_standing) {
            (RuleOutcome::Require { .. }, true) => {
                match active
                    .policy
                    .rule(&decision.rule_id)
                    .and_then(|r| r.standing_limits())
                {
                    Some(limits) => {
                        self.standing_cover(agent, new, &lineage, &decision.rule_id, limits, now)
                            .await?
                    }
                    None => None,
                }
            }
            _ => None,
        };

        let (status, approver_rule, ttl_cap, grant_ttl, deny_reason) = match &decision.outcome {
            RuleOutcome::Allow { grant_ttl_seconds } => (
                RequestStatus::Approved,
                ApproverRule {
                    approvals: 0,
                    approvers: vec![],
                    all_groups: false,
                    exclude_owner: false,
                },
                MAX_REQUEST_TTL_SECS,
                grant_ttl_seconds.unwrap_or(DEFAULT_GRANT_TTL_SECS),
                None,
            ),
            RuleOutcome::Require {
                approvals,
                approvers,
                all_groups,
                exclude_owner,
                request_ttl_seconds,
                grant_ttl_seconds,
            } => (
                if standing.is_some() {
                    RequestStatus::Approved
                } else {
                    RequestStatus::Pending
                },
                ApproverRule {
                    approvals: *approvals,
                    approvers: approvers.iter().map(|a| a.to_string()).collect(),
                    all_groups: *all_groups,
                    exclude_owner: *exclude_owner,
                },
                request_ttl_seconds.unwrap_or(MAX_REQUEST_TTL_SECS),
                grant_ttl_seconds.unwrap_or(DEFAULT_GRANT_TTL_SECS),
                None,
            ),
            RuleOutcome::Deny { reason } => (
                RequestStatus::Denied,
                ApproverRule {
                    approvals: 0,
                    approvers: vec![],
                    all_groups: false,
                    exclude_owner: false,
                },
                MAX_REQUEST_TTL_SECS,
                DEFAULT_GRANT_TTL_SECS,
                Some(reason.clone()),
            ),
        };
        // A request that would wait for people is checked by the fatigue guards: the pending
        // cap here (from this process's bound, mostly without a read), an identical request
        // already waiting and a person's recent denial by the writer, in its transaction.
        let mut probe = None;
        if status == RequestStatus::Pending {
            let guards = self.guards().await?;
            match self.check_pending_cap(&guards, &agent.id, now).await {
                Ok(()) => {}
                Err(at_cap @ Error::RateLimited { .. }) => {
                    // At the cap, an identical request already waiting, or a recent denial,
                    // answers first, as it would below the cap.
                    let load = self
                        .intake_load(&guards, &agent.id, &action_hash, now)
                        .await?;
                    if let Some(existing) = &load.identical_pending {
                        if agent.cached {
                            self.recheck(agent).await?;
                        }
                        if let Some(view) = self.still_pending(existing, now).await? {
                            return Ok(Inserted::Stored(Box::new(view)));
                        }
                    }
                    if load.denied_recently && !retry.cooldown_passed {
                        let action = serde_json::to_value(&new.action).map_err(Error::internal)?;
                        self.check_cooldown(&guards, &agent.id, &action, now)
                            .await?;
                    }
                    return Err(at_cap);
                }
                Err(e) => return Err(e),
            }
            probe = Some(Probe {
                collapse_identical: guards.collapse_identical && retry.collapse,
                denied_since: if retry.cooldown_passed {
                    Millis::MAX
                } else {
                    guards.denied_since(now)
                },
            })
            .filter(|p| p.collapse_identical || p.denied_since != Millis::MAX);
        }
        let ttl = new
            .expires_in
            .unwrap_or(DEFAULT_REQUEST_TTL_SECS)
            .min(ttl_cap);
        let id = uuid::Uuid::now_v7().to_string();
        let decided = status.is_final();
        let decided_by = match &standing {
            Some(s) => format!("standing:{}", s.id),
            None => "policy".to_string(),
        };
        let row = RequestRow {
            id: id.clone(),
            agent_id: agent.id.clone(),
            status,
            action_hash: action_hash.clone(),
            body: stored.canonical.clone(),
            action_type: new.action.r#type.clone(),
            target: new.action.target.clone(),
            policy_version: active.version,
            policy_hash: active.hash.clone(),
            rule_id: decision.rule_id.clone(),
            explanation: decision.explanation.clone(),
            approvals_required: i64::from(approver_rule.approvals),
            approver_rule: serde_json::to_string(&approver_rule).map_err(Error::internal)?,
            grant_ttl_seconds: i64::from(grant_ttl),
            credential: release.as_ref().map(|r| r.provider.clone()),
            credential_ttl_seconds: release.as_ref().map(|r| i64::from(r.ttl_seconds)),
            created_at: now,
            expires_at: now + i64::from(ttl) * 1000,
            decided_at: decided.then_some(now),
            decided_by: decided.then_some(decided_by),
            reason_code: deny_reason.as_ref().map(|_| "policy".to_string()),
            reason: deny_reason.clone(),
        };

        // Everything this request writes is computed here, outside the transaction; the
        // intake writer then commits it together with other requests (see `writer`).
        let agent_actor = format!("agent:{}", agent.id);
        let event = |actor: &str, kind: EventKind, data: Value| NewEvent {
            at: now,
            actor: actor.to_string(),
            kind,
            request_id: Some(id.clone()),
            data,
        };
        let mut created = json!({
            "agent_id": agent.id,
            "action_hash": action_hash,
            "request": stored.value.clone(),
            "expires_at": row.expires_at,
            "policy": {
                "version": active.version,
                "hash": active.hash,
                "rule": decision.rule_id,
                "outcome": status,
                "explanation": decision.explanation,
                "approver_rule": approver_rule,
            },
        });
        // The delegation the policy decided on, next to its decision (absent when the request
        // is not delegated, so those events read as before).
        if let Some(d) = &delegation {
            created["delegation"] = d.clone();
        }
        let mut events = vec![event(&agent_actor, EventKind::RequestCreated, created)];
        let with_delegation = |mut data: Value| {
            if let Some(d) = &delegation {
                data["delegation"] = d.clone();
            }
            data
        };
        let mut grant = None;
        if let Some(s) = &standing {
            // Approved by a person's earlier passkey ceremony, within its bounds: the chain
            // links this request to that standing approval and that ceremony.
            let link = json!({
                "by": "standing",
                "standing_id": s.id,
                "ceremony_id": s.ceremony_id,
                "created_by": s.created_by,
                "origin_request_id": s.request_id,
                "rule": decision.rule_id,
            });
            events.push(event("system", EventKind::RequestApproved, link.clone()));
            // `uses_left` is filled in by the writer, which takes the use.
            events.push(event("system", EventKind::StandingUsed, link));
            let approvers = [s.created_by.clone()];
            let terms = super::grants::GrantTerms {
                approvers: &approvers,
                narrowing: None,
                standing_id: Some(&s.id),
            };
            let built = self.build_grant(&row, agent.jkt.as_deref(), agent.epoch, &terms, now)?;
            events.push(built.event);
            grant = Some((built.row, built.token));
        } else if status == RequestStatus::Approved {
            events.push(event(
                "policy",
                EventKind::RequestApproved,
                with_delegation(json!({ "by": "policy", "rule": decision.rule_id })),
            ));
            let built = self.build_grant(
                &row,
                agent.jkt.as_deref(),
                agent.epoch,
                &Default::default(),
                now,
            )?;
            events.push(built.event);
            grant = Some((built.row, built.token));
        } else if status == RequestStatus::Denied {
            events.push(event(
                "policy",
                EventKind::RequestDenied,
                with_delegation(
                    json!({ "by": "policy", "rule": decision.rule_id, "reason": deny_reason }),
                ),
            ));
        }
        let claim = idempotency_key.map(|key| IdempotencyClaim {
            agent_id: agent.id.clone(),
            key: key.to_string(),
            body_hash: stored.fingerprint.clone(),
            request_id: id.clone(),
            at: now,
        });
        let job = IntakeJob {
            request: row.clone(),
            claim,
            events: events.into_iter().map(NewEvent::prepared).collect(),
            grant: grant.as_ref().map(|(g, _)| g.clone()),
            touch_agent_at: self.activity.due(&agent.id, now).then_some(now),
            agent_epoch: agent.epoch,
            agent_parent: agent.parent_id.clone(),
            standing_id: standing.as_ref().map(|s| s.id.clone()),
            probe,
        };
        match self.intake.write(job).await? {
            Written::Stored => {}
            Written::IdempotencyKeyTaken => {
                return Err(Error::Conflict("idempotency key race".into()))
            }
            // Suspended, its key changed, or given another parent, since its credential was
            // checked: nothing was written, and the caller looks at the agent again.
            Written::AgentChanged => return Ok(Inserted::AgentChanged),
            Written::StandingLost => return Ok(Inserted::StandingLost),
            Written::PolicyChanged => return Ok(Inserted::PolicyChanged),
            // The agent already waits for exactly this (the writer confirmed its credential
            // first): nobody is asked twice.
            Written::Identical(existing) => {
                return Ok(match self.still_pending(&existing, now).await? {
                    Some(view) => Inserted::Stored(Box::new(view)),
                    None => Inserted::IdenticalDecided,
                })
            }
            Written::DeniedRecently => {
                let action = serde_json::to_value(&new.action).map_err(Error::internal)?;
                let guards = self.guards().await?;
                self.check_cooldown(&guards, &agent.id, &action, now)
                    .await?;
                return Ok(Inserted::CooldownPassed);
            }
        }
        if status == RequestStatus::Pending {
            self.pending_bounds.added(&agent.id);
            // Committed: tell the approvers, off the agent's path (see `notify`), and refresh
            // their open inboxes.
            self.announce_pending(&row, agent).await;
            self.waiters.changed(&id);
        }

        match status {
            RequestStatus::Approved => bump(&self.metrics.requests_allowed),
            RequestStatus::Denied => bump(&self.metrics.requests_denied_by_policy),
            _ => bump(&self.metrics.requests_pending),
        }
        if status == RequestStatus::Denied {
            return Err(Error::DeniedByPolicy {
                request_id: id,
                rule: decision.rule_id,
                explanation: decision.explanation,
            });
        }
        // Just created: no approvals yet, and the grant (if policy allowed it) is in hand.
        let grant = grant.map(|(g, token)| super::grants::delivered(&g, token));
        let mut view = self.assemble_view(&row, 0, grant);
        view.expires_in = Some(i64::from(ttl));
        Ok(Inserted::Stored(Box::new(view)))
    }

    /// Reads a request, moving it to `expired` first if its time has passed.
    pub(crate) async fn read_fresh(&self, id: &str) -> Result<Option<RequestRow>, Error> {
        let Some(row) = rows::get(self.db.reader(), id).await? else {
            return Ok(None);
        };
        if row.status == RequestStatus::Pending && row.expires_at <= self.now() {
            self.expire_request(id).await?;
            return Ok(rows::get(self.db.reader(), id).await?);
        }
        Ok(Some(row))
    }

    /// Moves an overdue pending request to `expired`, with its audit event. Returns whether this
    /// call did it (someone else may have decided or expired it first).
    pub(crate) async fn expire_request(&self, id: &str) -> Result<bool, Error> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        if !rows::expire(&mut tx, id, now).await? {
            return Ok(false);
        }
        audit::append(
            &mut tx,
            now,
            "system",
            EventKind::RequestExpired,
            Some(id),
            &json!({}),
        )
        .await?;
        announce(&mut tx, self.db.backend(), id).await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        bump(&self.metrics.requests_expired);
        self.waiters.wake(id);
        self.callbacks.kick();
        Ok(true)
    }

    /// An agent reads its request, optionally holding the call up to `wait` seconds until the
    /// request is decided.
    pub async fn get_request(
        &self,
        agent: &AgentIdentity,
        id: &str,
        wait: u32,
    ) -> Result<RequestView, Error> {
        if wait > MAX_WAIT_SECS {
            return Err(Error::invalid(
                "wait",
                format!("wait must be between 0 and {MAX_WAIT_SECS} seconds"),
            ));
        }
        let not_found = || Error::NotFound("no such request".into());
        if wait == 0 {
            let row = Box::pin(self.read_fresh(id))
                .await?
                .filter(|r| r.agent_id == agent.id)
                .ok_or_else(not_found)?;
            if row.status == RequestStatus::Pending
                && !self.polls.check(id, self.now(), POLL_INTERVAL_SECS)
            {
                return Err(Error::SlowDown {
                    interval: POLL_INTERVAL_SECS,
                });
            }
            return Box::pin(self.view(&row)).await;
        }

        let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(wait));
        // Register before reading: a decision committed after our read still finds us. The
        // reads are boxed: a future is as large as its largest state, and thousands of agents
        // may sit in the small one below (waiting) while the database reads are rarely live.
        let registration = self.waiters.register(id);
        loop {
            let notified = registration.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let row = Box::pin(self.read_fresh(id))
                .await?
                .filter(|r| r.agent_id == agent.id)
                .ok_or_else(not_found)?;
            if row.status.is_final() {
                let view = Box::pin(self.view(&row)).await;
                if let Some(woken) = registration.woken_at() {
                    self.metrics.decision_delivery.record(woken.elapsed());
                }
                return view;
            }
            // Wake up at the wait's end or the request's expiry, whichever comes first. Only the
            // expiry is kept across the wait, not the row: thousands of agents may be waiting.
            let expires_at = row.expires_at;
            drop(row);
            let until_expiry =
                Duration::from_millis(u64::try_from(expires_at - self.now()).unwrap_or(0));
            let wake_at =
                deadline.min(tokio::time::Instant::now() + until_expiry + Duration::from_millis(5));
            if tokio::time::timeout_at(wake_at, notified).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                let row = Box::pin(self.read_fresh(id)).await?.ok_or_else(not_found)?;
                return Box::pin(self.view(&row)).await;
            }
        }
    }

    /// An agent withdraws its pending request.
    pub async fn cancel_request(
        &self,
        agent: &AgentIdentity,
        id: &str,
    ) -> Result<RequestView, Error> {
        let row = self
            .read_fresh(id)
            .await?
            .filter(|r| r.agent_id == agent.id)
            .ok_or_else(|| Error::NotFound("no such request".into()))?;
        if row.status.is_final() {
            return Err(Error::Conflict(format!(
                "the request is already {}",
                row.status
            )));
        }
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let change = Change::from_pending(RequestStatus::Cancelled, now, "agent");
        if !rows::change(&mut tx, id, &change).await? {
            drop(tx);
            let status = self
                .read_fresh(id)
                .await?
                .map_or("gone", |r| r.status.as_str());
            return Err(Error::Conflict(format!("the request is already {status}")));
        }
        audit::append(
            &mut tx,
            now,
            &format!("agent:{}", agent.id),
            EventKind::RequestCancelled,
            Some(id),
            &json!({ "by": "agent" }),
        )
        .await?;
        announce(&mut tx, self.db.backend(), id).await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        bump(&self.metrics.requests_cancelled);
        self.waiters.wake(id);
        self.callbacks.kick();
        let row = rows::get(self.db.reader(), id)
            .await?
            .ok_or_else(|| Error::internal("cancelled request vanished"))?;
        self.view(&row).await
    }

    /// Builds the agent's view of a request.
    pub(crate) async fn view(&self, row: &RequestRow) -> Result<RequestView, Error> {
        let received = if row.approvals_required > 0 {
            rows::approvers(self.db.reader(), &row.id).await?.len() as i64
        } else {
            0
        };
        let grant = if row.status == RequestStatus::Approved {
            self.grant_for_request(&row.id).await?
        } else {
            None
        };
        Ok(self.assemble_view(row, received, grant))
    }

    /// The view from what the caller already holds (no reads).
    fn assemble_view(
        &self,
        row: &RequestRow,
        received: i64,
        grant: Option<GrantView>,
    ) -> RequestView {
        // A standing approval is one person's approval, given ahead of time: count it so.
        let received = if row
            .decided_by
            .as_deref()
            .is_some_and(|by| by.starts_with("standing:"))
        {
            received.max(1)
        } else {
            received
        };
        let decision = (row.status == RequestStatus::Denied).then(|| DecisionView {
            reason: row.reason.clone().unwrap_or_default(),
            reason_code: row.reason_code.clone().unwrap_or_default(),
            decided_at: rfc3339(row.decided_at.unwrap_or(row.created_at)),
        });
        RequestView {
            id: row.id.clone(),
            status: row.status,
            action_hash: row.action_hash.clone(),
            expires_at: rfc3339(row.expires_at),
            expires_in: None,
            interval: POLL_INTERVAL_SECS,
            approval_url: format!("{}/requests/{}", self.issuer(), row.id),
            policy: PolicyView {
                rule: row.rule_id.clone(),
                approvals_required: row.approvals_required,
                explanation: row.explanation.clone(),
            },
            approvals: ApprovalCount {
                required: row.approvals_required,
                received,
            },
            decision,
            grant,
        }
    }
}

/// The stored request body, parsed back as the request it is (for the policy and terms).
pub(crate) fn stored_request(row: &RequestRow) -> Result<NewRequest, Error> {
    serde_json::from_str(&row.body).map_err(Error::internal)
}

/// The stored request body, parsed back (for views and evidence).
pub(crate) fn stored_body(row: &RequestRow) -> Value {
    serde_json::from_str(&row.body).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_faster_than_the_interval_is_refused() {
        let p = PollTracker::default();
        assert!(p.check("r", 0, 5));
        assert!(!p.check("r", 4_999, 5));
        assert!(p.check("r", 5_000, 5));
        assert!(p.check("other", 5_001, 5));
    }

    #[test]
    fn idempotency_keys_must_be_visible_ascii() {
        assert!(validate_idempotency_key("abc-123").is_ok());
        assert!(validate_idempotency_key("").is_err());
        assert!(validate_idempotency_key("has space").is_err());
        assert!(validate_idempotency_key(&"x".repeat(256)).is_err());
    }
}
