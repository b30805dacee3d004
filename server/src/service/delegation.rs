//! Delegation chains: registering an agent as a sub-agent of another, and what a request's
//! delegation is when policy and the audit chain look at it.
//!
//! # Registered and claimed
//!
//! A request's delegation comes from two places, and both are kept:
//!
//! - the **claimed** chain, `context.delegation`, which the agent writes itself (outermost
//!   first: who delegated to whom, each hop's `on_behalf_of`), and which is part of the
//!   `action_hash`;
//! - the **registered lineage**: the agent's ancestors as Countersign knows them from
//!   `agents.parent_id` (set by an admin for any agent, or by an owner between two agents they
//!   own, with `countersign agent set-parent` or on the agents pages), outermost first.
//!
//! The request's **delegation depth**, which policy rules test (`delegation_depth_at_least`,
//! `delegation_depth_below`), is the larger of the two lengths. An agent cannot lower it by
//! leaving its chain out: a registered grandchild is depth 2 whatever it claims. It can raise
//! it, which only ever makes policy stricter with it.
//!
//! # Refused changes
//!
//! A parent must exist (for an owner: be one of theirs), be active, not be the agent itself
//! nor one of its sub-agents (no cycles), and leave no agent with more than
//! [`MAX_LINEAGE`] ancestors. Each refusal names the field `parent`. Every change is one
//! transaction that first takes a lock all parent changes share (an advisory lock on
//! PostgreSQL; SQLite has one writer anyway), so two changes racing cannot build a cycle or a
//! chain too deep between them, and that holds the new parent's row, so a suspension of it
//! either commits first (and the change is refused: the parent is suspended) or waits until the
//! new sub-agent is in place (and suspends it too, see [`Countersign::suspend_agent`]).
//! Every change is recorded as `agent.parent_set` (with the previous parent).
//!
//! Resuming a parent does not resume its sub-agents: each was suspended for a reason its own
//! owner or an admin should look at, and is resumed on its own.

use serde_json::{json, Value};

use super::people::SignedIn;
use super::{Countersign, Error};
use crate::domain::audit_kind::EventKind;
use crate::domain::intake::NewRequest;
use crate::domain::lifecycle::AgentStatus;
use crate::store::agents::{self as rows, MAX_LINEAGE};
use crate::store::{self, audit};

/// An arbitrary, fixed key for `pg_advisory_xact_lock`: every change of an agent's parent.
const PARENT_CHANGE_LOCK: i64 = 0x636f_756e_7465_7203;

/// What setting a parent did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentSetting {
    /// The agent.
    pub agent_id: String,
    /// Its parent now (`None`: it acts directly for its owner).
    pub parent_id: Option<String>,
    /// Its parent before.
    pub previous: Option<String>,
}

/// A request's delegation as the audit chain records it with each decision: the claimed chain
/// (`context.delegation`, as sent) and the registered lineage (ancestor ids, outermost first).
/// `None` for a request that is not delegated at all, so undelegated events stay as they were.
pub fn audit_delegation(request: &NewRequest, lineage: &[String]) -> Option<Value> {
    if request.context.delegation.is_empty() && lineage.is_empty() {
        return None;
    }
    Some(json!({
        "chain": request.context.delegation,
        "lineage": lineage,
        "depth": delegation_depth(request, lineage),
    }))
}

/// [`audit_delegation`] for a stored request (its body as the agent sent it) and its agent's
/// lineage now: what decision events made after intake record.
pub fn audit_delegation_of_stored(body: &Value, lineage: &[String]) -> Option<Value> {
    let chain = body
        .pointer("/context/delegation")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if chain.is_empty() && lineage.is_empty() {
        return None;
    }
    let depth = chain.len().max(lineage.len());
    Some(json!({ "chain": chain, "lineage": lineage, "depth": depth }))
}

/// The depth policy sees: the larger of the claimed chain's length and the number of
/// registered ancestors (see the module docs for why the larger).
pub fn delegation_depth(request: &NewRequest, lineage: &[String]) -> u32 {
    let claimed = request.context.delegation.len();
    u32::try_from(claimed.max(lineage.len())).unwrap_or(u32::MAX)
}

impl Countersign {
    /// The delegation a decision event on this stored request records: its claimed chain and
    /// its agent's registered lineage as it is now (a parent changed since intake is on the
    /// chain as `agent.parent_set`).
    pub(crate) async fn stored_delegation(
        &self,
        request: &crate::store::requests::RequestRow,
    ) -> Result<Option<Value>, Error> {
        let lineage = rows::lineage(self.db.reader(), &request.agent_id).await?;
        Ok(audit_delegation_of_stored(
            &super::requests::stored_body(request),
            &lineage,
        ))
    }

    /// The registered lineage of an agent (ancestor ids, outermost first); empty without a
    /// parent, and then without a query.
    pub async fn lineage_of(
        &self,
        agent_id: &str,
        parent_id: Option<&str>,
    ) -> Result<Vec<String>, Error> {
        match parent_id {
            None => Ok(Vec::new()),
            Some(_) => Ok(rows::lineage(self.db.reader(), agent_id).await?),
        }
    }

    /// Sets (`Some`) or clears (`None`) the parent of an agent, as a signed-in person: admins
    /// for any agent, owners only between two agents they own (someone else's agent is "no such
    /// agent", and someone else's parent is refused like one that does not exist).
    pub async fn set_agent_parent(
        &self,
        who: &SignedIn,
        agent_id: &str,
        parent_id: Option<&str>,
    ) -> Result<ParentSetting, Error> {
        let admin = who.person.role.is_admin();
        let agent = rows::get(self.db.reader(), agent_id)
            .await?
            .ok_or_else(|| Error::NotFound("no such agent".into()))?;
        if !admin && agent.owner_id != who.person.id {
            return Err(Error::NotFound("no such agent".into()));
        }
        let parent_id = parent_id.map(str::trim).filter(|p| !p.is_empty());
        if let (Some(p), false) = (parent_id, admin) {
            let mine = rows::get(self.db.reader(), p)
                .await?
                .is_some_and(|a| a.owner_id == who.person.id);
            if !mine {
                return Err(no_parent(p, true));
            }
        }
        self.set_parent(agent_id, parent_id, &format!("user:{}", who.person.id))
            .await
    }

    /// Sets or clears an agent's parent as `actor` (the command line is `cli`; callers have
    /// authorised). See the module docs for what is refused and why this cannot race.
    pub async fn set_parent(
        &self,
        agent_id: &str,
        parent_id: Option<&str>,
        actor: &str,
    ) -> Result<ParentSetting, Error> {
        let parent_id = parent_id.map(str::trim).filter(|p| !p.is_empty());
        if parent_id.is_some_and(|p| p.chars().count() > 64) {
            return Err(Error::invalid(
                "parent",
                "an agent id is at most 64 characters",
            ));
        }
        let now = self.now();
        let mut tx = self.db.begin().await?;
        store::coordination::lock(&mut tx, self.db.backend(), PARENT_CHANGE_LOCK).await?;
        let agent = rows::get(&mut *tx, agent_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no agent {agent_id}")))?;
        if let Some(p) = parent_id {
            if p == agent_id {
                return Err(Error::invalid(
                    "parent",
                    "an agent cannot be its own parent",
                ));
            }
            match rows::status_held(&mut tx, self.db.backend(), p).await? {
                None => return Err(no_parent(p, false)),
                Some(AgentStatus::Suspended) => {
                    return Err(Error::invalid(
                        "parent",
                        format!("agent {p} is suspended; resume it before giving it sub-agents"),
                    ))
                }
                Some(AgentStatus::Active) => {}
            }
            let above = rows::lineage(&mut *tx, p).await?;
            if above.iter().any(|a| a == agent_id) {
                return Err(Error::invalid(
                    "parent",
                    format!(
                        "agent {p} is a sub-agent of {agent_id} (directly or further down); \
                         making it {agent_id}'s parent would make a cycle"
                    ),
                ));
            }
            // The agent's new depth is its parent's plus one, and everything below it moves
            // down with it.
            let below = rows::subtree_height(&mut tx, agent_id).await?;
            let deepest = above.len() + 1 + below;
            if deepest > MAX_LINEAGE {
                return Err(Error::invalid(
                    "parent",
                    format!(
                        "this would put an agent {deepest} levels below its outermost ancestor; \
                         at most {MAX_LINEAGE} are allowed"
                    ),
                ));
            }
        }
        if agent.parent_id.as_deref() != parent_id {
            rows::set_parent(&mut tx, agent_id, parent_id).await?;
            audit::append(
                &mut tx,
                now,
                actor,
                EventKind::AgentParentSet,
                None,
                &json!({
                    "agent_id": agent_id,
                    "parent_id": parent_id,
                    "previous_parent_id": agent.parent_id,
                }),
            )
            .await?;
        }
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(ParentSetting {
            agent_id: agent_id.to_string(),
            parent_id: parent_id.map(str::to_string),
            previous: agent.parent_id,
        })
    }
}

fn no_parent(id: &str, owner: bool) -> Error {
    let whose = if owner { "of yours " } else { "" };
    Error::invalid("parent", format!("no agent {whose}has the id {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::intake::{parse_new_request, Limits};

    fn request(links: usize) -> NewRequest {
        let chain: Vec<Value> = (0..links)
            .map(|i| json!({ "actor": format!("a{i}"), "on_behalf_of": "alice@example.com" }))
            .collect();
        let mut body = json!({ "action": { "type": "x.y", "target": "t" } });
        if links > 0 {
            body["context"] = json!({ "delegation": chain });
        }
        parse_new_request(body.to_string().as_bytes(), &Limits::default()).unwrap()
    }

    #[test]
    fn depth_is_the_larger_of_claimed_and_registered() {
        let ids = |n: usize| (0..n).map(|i| format!("p{i}")).collect::<Vec<_>>();
        assert_eq!(delegation_depth(&request(0), &[]), 0);
        assert_eq!(delegation_depth(&request(2), &[]), 2);
        // Under-reporting does not lower it: a registered grandchild is depth 2.
        assert_eq!(delegation_depth(&request(0), &ids(2)), 2);
        assert_eq!(delegation_depth(&request(1), &ids(2)), 2);
        assert_eq!(delegation_depth(&request(3), &ids(1)), 3);
    }

    #[test]
    fn stored_and_fresh_requests_record_the_same_delegation() {
        let lineage = vec!["root".to_string(), "parent".to_string()];
        let new = request(1);
        let body = serde_json::to_value(&new).unwrap();
        assert_eq!(
            audit_delegation_of_stored(&body, &lineage),
            audit_delegation(&new, &lineage)
        );
        assert_eq!(audit_delegation_of_stored(&json!({}), &[]), None);
    }

    #[test]
    fn audit_delegation_is_absent_for_direct_requests() {
        assert_eq!(audit_delegation(&request(0), &[]), None);
        let d = audit_delegation(&request(1), &["root".to_string()]).unwrap();
        assert_eq!(d["chain"][0]["actor"], "a0");
        assert_eq!(d["chain"][0]["on_behalf_of"], "alice@example.com");
        assert_eq!(d["lineage"], json!(["root"]));
        assert_eq!(d["depth"], 1);
    }
}
