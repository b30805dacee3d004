//! Standing approvals: one person's passkey ceremony approving a bounded pattern of an agent's
//! later requests (see `domain::terms` for the pattern and its bounds).
//!
//! ```text
//!  approver: approve request R with standing terms ──► one tx: R approved + grant,
//!                                                       standing row (uses N, until T),
//!                                                       standing.created (ceremony id)
//!  agent: later request inside the pattern, decided by the same rule, which still allows it
//!        ──► intake writer: take one use (conditional write) ──► approved + grant,
//!            request.approved + standing.used (standing id, ceremony id, uses left)
//!        ──► no use left (a racing request took it) ──► pending, waits for a human
//! ```
//!
//! It ends early when:
//! - its owner, its creator or an admin revokes it;
//! - the agent is suspended or its key changes (in the same transaction, see `agents`);
//! - the policy no longer allows it (in the transaction that applies the policy).
//!
//! Otherwise it ends when its time or its uses run out. Every use checks the policy in force
//! too, so one created while a policy change was being applied still covers nothing the new
//! policy does not allow.

use serde::Serialize;
use serde_json::json;

use super::people::SignedIn;
use super::{agents::AgentIdentity, Countersign, Error};
use crate::clock::{rfc3339, Millis};
use crate::domain::audit_kind::EventKind;
use crate::domain::intake::NewRequest;
use crate::domain::policy::{Policy, StandingLimits};
use crate::domain::terms::{Pattern, Standing};
use crate::store::requests::RequestRow;
use crate::store::standing::{self as rows, StandingRow};
use crate::store::{self, agents, audit, users, WriteTx};

/// A standing approval as its owner sees it.
#[derive(Debug, Clone, Serialize)]
pub struct StandingView {
    /// Its id.
    pub id: String,
    /// The agent it approves for.
    pub agent_id: String,
    /// That agent's name.
    pub agent_name: String,
    /// Who gave it (e-mail).
    pub created_by: String,
    /// What it covers, in words.
    pub covers: String,
    /// Uses it was given.
    pub uses_total: i64,
    /// Uses left.
    pub uses_left: i64,
    /// Unix ms.
    pub created_at: Millis,
    /// Unix ms.
    pub expires_at: Millis,
    /// `active`, `used_up`, `expired` or `revoked`.
    pub state: &'static str,
    /// Why it was revoked.
    pub end_reason: Option<String>,
    /// The request whose approval created it.
    pub request_id: String,
}

/// The state of a standing approval at `now`.
fn state_of(row: &StandingRow, now: Millis) -> &'static str {
    if row.status == "revoked" {
        "revoked"
    } else if row.expires_at <= now {
        "expired"
    } else if row.uses_left <= 0 {
        "used_up"
    } else {
        "active"
    }
}

fn pattern_of(row: &StandingRow) -> Result<Pattern, Error> {
    serde_json::from_str(&row.pattern).map_err(Error::internal)
}

/// Whether a stored standing approval is still within `limits` (the rule's, under the policy
/// in force): a policy that shortened or narrowed what the rule allows ends it.
fn within(row: &StandingRow, limits: StandingLimits) -> bool {
    row.expires_at - row.created_at <= i64::from(limits.max_seconds) * 1000
        && row.uses_total <= i64::from(limits.max_uses)
}

impl Countersign {
    /// Stores the standing approval given with an approval, inside the deciding transaction.
    pub(crate) async fn create_standing(
        &self,
        tx: &mut WriteTx,
        request: &RequestRow,
        standing: &Standing,
        by: &str,
        ceremony_id: &str,
        now: Millis,
    ) -> Result<String, Error> {
        let row = StandingRow {
            id: uuid::Uuid::now_v7().to_string(),
            agent_id: request.agent_id.clone(),
            created_by: by.to_string(),
            request_id: request.id.clone(),
            ceremony_id: ceremony_id.to_string(),
            rule_id: request.rule_id.clone(),
            action_type: standing.pattern.action_type.clone(),
            target: standing.pattern.target.clone(),
            pattern: serde_json::to_string(&standing.pattern).map_err(Error::internal)?,
            uses_total: i64::from(standing.uses),
            uses_left: i64::from(standing.uses),
            created_at: now,
            expires_at: now + i64::from(standing.valid_for_seconds) * 1000,
            status: "active".into(),
            ended_at: None,
            ended_by: None,
            end_reason: None,
        };
        rows::insert(tx, &row).await?;
        audit::append(
            tx,
            now,
            &format!("user:{by}"),
            EventKind::StandingCreated,
            Some(&request.id),
            &json!({
                "standing_id": row.id,
                "agent_id": row.agent_id,
                "ceremony_id": ceremony_id,
                "rule": row.rule_id,
                "pattern": standing.pattern,
                "covers": standing.pattern.describe(),
                "uses": standing.uses,
                "expires_at": rfc3339(row.expires_at),
            }),
        )
        .await?;
        Ok(row.id)
    }

    /// The standing approval that covers `new` for `agent`, if one does: one of the agent's
    /// own, or one of its registered ancestors' (`lineage`; never wider: the same pattern must
    /// cover the request). It must
    /// stand under the rule that decides the request now, within that rule's limits now.
    /// Only a candidate: the use is taken when the request is written.
    pub(crate) async fn standing_cover(
        &self,
        agent: &AgentIdentity,
        new: &NewRequest,
        lineage: &[String],
        rule_id: &str,
        limits: StandingLimits,
        now: Millis,
    ) -> Result<Option<StandingRow>, Error> {
        let mut agent_ids = vec![agent.id.as_str()];
        agent_ids.extend(lineage.iter().map(String::as_str));
        let candidates = rows::candidates(
            self.db.reader(),
            &agent_ids,
            &new.action.r#type,
            &new.action.target,
            now,
        )
        .await?;
        for row in candidates {
            if row.rule_id == rule_id && within(&row, limits) && pattern_of(&row)?.covers(new) {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    /// The standing approvals a person may see: of the agents they own (admins: of every
    /// agent), live ones and those that ended in the last day, newest first.
    pub async fn standing_approvals(&self, who: &SignedIn) -> Result<Vec<StandingView>, Error> {
        let now = self.now();
        let owned = if who.person.role.is_admin() {
            None
        } else {
            Some(who.person.id.as_str())
        };
        let agents = agents::list(self.db.reader(), owned).await?;
        let ids: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();
        let filter = owned.map(|_| ids.as_slice());
        let listed = rows::listed(self.db.reader(), filter, now - 86_400_000).await?;
        let mut conn = self.db.read_conn().await?;
        let mut out = Vec::with_capacity(listed.len());
        for row in listed {
            let agent_name = agents
                .iter()
                .find(|a| a.id == row.agent_id)
                .map(|a| a.name.clone())
                .unwrap_or_default();
            let created_by = users::get(&mut conn, &row.created_by)
                .await?
                .map(|u| u.email)
                .unwrap_or_default();
            out.push(StandingView {
                covers: pattern_of(&row)?.describe(),
                state: state_of(&row, now),
                id: row.id,
                agent_id: row.agent_id,
                agent_name,
                created_by,
                uses_total: row.uses_total,
                uses_left: row.uses_left,
                created_at: row.created_at,
                expires_at: row.expires_at,
                end_reason: row.end_reason,
                request_id: row.request_id,
            });
        }
        Ok(out)
    }

    /// Revokes a standing approval: its agent's owner, the person who gave it, or an admin.
    /// Anyone else is told it does not exist. Final once it commits: no use commits after.
    pub async fn revoke_standing(&self, who: &SignedIn, id: &str) -> Result<(), Error> {
        let not_found = || Error::NotFound("no such standing approval".into());
        let row = rows::get(self.db.reader(), id)
            .await?
            .ok_or_else(not_found)?;
        let agent = agents::get(self.db.reader(), &row.agent_id)
            .await?
            .ok_or_else(not_found)?;
        let may = who.person.role.is_admin()
            || agent.owner_id == who.person.id
            || row.created_by == who.person.id;
        if !may {
            return Err(not_found());
        }
        let now = self.now();
        let actor = format!("user:{}", who.person.id);
        let mut tx = self.db.begin().await?;
        if !rows::revoke(&mut tx, id, &actor, "revoked_by_person", now).await? {
            return Err(Error::Conflict(
                "this standing approval has already been revoked".into(),
            ));
        }
        revoked_event(
            &mut tx,
            now,
            &actor,
            &row.request_id,
            id,
            "revoked_by_person",
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(())
    }
}

async fn revoked_event(
    tx: &mut WriteTx,
    now: Millis,
    actor: &str,
    origin_request_id: &str,
    id: &str,
    reason: &str,
) -> Result<(), Error> {
    audit::append(
        tx,
        now,
        actor,
        EventKind::StandingRevoked,
        Some(origin_request_id),
        &json!({ "standing_id": id, "reason": reason }),
    )
    .await?;
    Ok(())
}

/// Revokes every active standing approval of these agents, with an audit event each, inside
/// the transaction of the kill switch or the key change that ends them.
pub(crate) async fn revoke_all_of_agents(
    tx: &mut WriteTx,
    agent_ids: &[&str],
    actor: &str,
    reason: &str,
    now: Millis,
) -> Result<usize, Error> {
    let ids = rows::revoke_all_of_agents(tx, agent_ids, actor, reason, now).await?;
    for id in &ids {
        let origin = rows::get(&mut **tx, id)
            .await?
            .map(|r| r.request_id)
            .unwrap_or_default();
        revoked_event(tx, now, actor, &origin, id, reason).await?;
    }
    Ok(ids.len())
}

/// Revokes, inside the transaction that applies `policy`, every active standing approval the
/// new policy no longer allows: its rule is gone, no longer allows standing approvals (or no
/// longer for one approval), or allows shorter or fewer than it was given.
pub(crate) async fn end_disallowed(
    tx: &mut WriteTx,
    policy: &Policy,
    actor: &str,
    now: Millis,
) -> Result<usize, Error> {
    let mut ended = 0;
    for row in rows::all_active(&mut **tx).await? {
        let allowed = policy
            .rule(&row.rule_id)
            .and_then(|r| r.standing_limits())
            .is_some_and(|limits| within(&row, limits));
        if !allowed && rows::revoke(tx, &row.id, actor, "policy_changed", now).await? {
            revoked_event(tx, now, actor, &row.request_id, &row.id, "policy_changed").await?;
            ended += 1;
        }
    }
    Ok(ended)
}
