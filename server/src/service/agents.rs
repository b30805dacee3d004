//! Agents: registering them, the kill switch, and recognising them on every call.
//!
//! An agent proves who it is with either its API key (`cs_agent_<id>_<secret>`, of which we
//! store only a digest) or a short-lived JWT signed with its own Ed25519 key. A JWT is accepted
//! once: its `jti` is remembered until the JWT expires, so a captured assertion cannot be
//! replayed. A suspended agent is refused whatever it presents.
//!
//! # The kill switch holds by construction
//!
//! Suspending an agent, resuming it, rotating its API key or registering a public key advance
//! the agent's `epoch` in the statement that makes the change. An [`AgentIdentity`] carries the
//! epoch its credential was checked at, and everything written on the agent's behalf compares
//! that epoch inside its own writing transaction while holding the agent's row (PostgreSQL) or
//! the one writer (SQLite): a new request and its grant (the intake writer, see `writer`), a
//! grant minted by a decision (which takes the agent's key and epoch under the same lock), a
//! redemption (each grant stores the epoch it was issued at). So a change either commits first,
//! and those writes see the new epoch and commit nothing, or it waits for them and then cancels
//! and revokes what they wrote. Timing plays no part: a request that passed authentication a
//! moment before the kill switch and reached the writer a moment after it is refused (`401`).
//!
//! # Credentials cached for intake
//!
//! Creating a request is the call agents make most, so it does not read the agent's row each
//! time: [`Countersign::authenticate_for_intake`] keeps, per process and for
//! [`CREDENTIAL_CACHE_MS`], the identity an API key was last checked against the database with
//! (the key's stored digest, the agent's status, epoch and parent). The presented key must still
//! match the cached digest. That is safe because the cache never decides anything that commits:
//! the intake writer compares the epoch (and the parent, on which policy may depend) inside the
//! transaction that would commit the request, as above, so a suspension or key change on any
//! replica is final the moment it commits, cache or no cache. A request refused there is
//! checked again against the row as it is now ([`Countersign::recheck`]): if the agent is active
//! and its credential unchanged (say it was suspended and resumed, or given a parent), it is
//! decided again; if not, it gets `401` and the cache entry is gone. Answers intake gives without
//! writing (an idempotent replay, an identical request already waiting) are also rechecked
//! first when the identity came from the cache. Every other call reads the row.

use std::collections::HashMap;
use std::sync::Mutex;

use rand_core::OsRng;
use serde_json::json;

use super::{requests::announce, Countersign, Error};
use crate::domain::audit_kind::EventKind;
use crate::domain::jose::{self, AssertionCheck, PublicJwk};
use crate::domain::lifecycle::{AgentStatus, RequestStatus, UserStatus};
use crate::domain::secrets::{self, Secret};
use crate::store::agents::{self as rows, AgentRow};
use crate::store::requests::Change;
use crate::store::{self, audit, users};
use crate::telemetry::bump;

/// An authenticated agent.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its owner's user id.
    pub owner_id: String,
    /// RFC 7638 thumbprint of its key, for key-bound agents (`cnf.jkt` of its grants).
    pub jkt: Option<String>,
    /// The agent's epoch when this credential was checked. Whatever the call writes on the
    /// agent's behalf commits only if the agent is still at this epoch (see the module docs).
    pub epoch: i64,
    /// The agent it is registered as a sub-agent of, if any (see `delegation`); read with the
    /// credential, so an agent that is no one's sub-agent costs intake no lineage query.
    pub parent_id: Option<String>,
    /// The stored digest of the API key the credential matched (absent for key-bound agents):
    /// what [`Countersign::recheck`] compares with the row as it is now.
    pub(crate) key_digest: Option<KeyDigest>,
    /// Whether this identity came from the intake cache rather than the database just now.
    pub(crate) cached: bool,
}

/// An API key's stored digest. Not the key, but kept out of logs all the same.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KeyDigest(String);

impl std::fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyDigest(..)")
    }
}

/// How long an API key checked against the database is trusted by intake (see the module docs).
pub const CREDENTIAL_CACHE_MS: i64 = 30_000;

/// Past this many agents, the cache is emptied and refilled from the database.
const CREDENTIALS_KEPT: usize = 100_000;

/// API-key identities intake checked recently (see the module docs).
#[derive(Debug, Default)]
pub struct CredentialCache(Mutex<HashMap<String, (AgentIdentity, crate::clock::Millis)>>);

impl CredentialCache {
    fn get(&self, id: &str, now: crate::clock::Millis) -> Option<AgentIdentity> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .filter(|(_, at)| now - at < CREDENTIAL_CACHE_MS)
            .map(|(identity, _)| identity.clone())
    }

    fn put(&self, identity: &AgentIdentity, now: crate::clock::Millis) {
        if identity.key_digest.is_none() {
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CREDENTIALS_KEPT && !map.contains_key(&identity.id) {
            map.clear();
        }
        let stored = AgentIdentity {
            cached: false,
            ..identity.clone()
        };
        map.insert(identity.id.clone(), (stored, now));
    }

    fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// A newly registered agent.
#[derive(Debug)]
pub struct CreatedAgent {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its owner's e-mail.
    pub owner_email: String,
    /// The API key, shown once (absent for key-bound agents).
    pub api_key: Option<Secret>,
    /// The key thumbprint (key-bound agents).
    pub jkt: Option<String>,
}

/// How precisely an agent's last activity is recorded.
pub const ACTIVITY_RESOLUTION_MS: i64 = 60_000;

/// Decides when an agent's `last_seen_at` is worth writing: at most once per
/// [`ACTIVITY_RESOLUTION_MS`] per agent and process, instead of one more write in every
/// request's transaction (the write path is what limits intake).
#[derive(Debug, Default)]
pub struct ActivityTracker {
    last: Mutex<HashMap<String, crate::clock::Millis>>,
}

impl ActivityTracker {
    /// True when this agent's activity should be written now (and notes that it was).
    pub fn due(&self, agent_id: &str, now: crate::clock::Millis) -> bool {
        let mut map = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(agent_id) {
            Some(at) if now - *at < ACTIVITY_RESOLUTION_MS => false,
            _ => {
                map.insert(agent_id.to_string(), now);
                true
            }
        }
    }
}

/// What the kill switch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuspendReport {
    /// Pending requests cancelled (the agent's and its sub-agents').
    pub cancelled_requests: usize,
    /// Outstanding grants revoked (the agent's and its sub-agents').
    pub revoked_grants: usize,
    /// False when the agent was already suspended.
    pub changed: bool,
    /// Sub-agents (at any depth) suspended with it, that were active until now.
    pub suspended_sub_agents: usize,
}

/// What the kill switch did to one agent, inside the suspension's transaction.
struct Stopped {
    cancelled: Vec<String>,
    revoked: usize,
}

fn validate_name(name: &str) -> Result<(), Error> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            "an agent name is 1 to 64 characters, without control characters",
        ));
    }
    Ok(())
}

impl Countersign {
    /// Registers an agent for an owner. With `public_jwk` the agent authenticates with signed
    /// assertions; without, it gets an API key (returned once, stored as a digest).
    pub async fn create_agent(
        &self,
        name: &str,
        owner_email: &str,
        public_jwk: Option<&str>,
        actor: &str,
    ) -> Result<CreatedAgent, Error> {
        validate_name(name)?;
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let email = owner_email.trim().to_lowercase();
        let owner = match users::get_by_email(&mut tx, &email).await? {
            Some(u) if u.status == UserStatus::Active => u,
            Some(_) => {
                return Err(Error::invalid(
                    "owner",
                    format!("{email} is deactivated; an agent's owner must be an active person"),
                ))
            }
            None if users::has_open_invitation(&mut *tx, &email, now).await? => {
                return Err(Error::invalid(
                    "owner",
                    format!(
                        "{email} has been invited but has not enrolled yet; an agent's owner \
                         must have enrolled a passkey first (their invitation link does that)"
                    ),
                ))
            }
            None => {
                return Err(Error::invalid(
                    "owner",
                    format!(
                        "no one with e-mail {email} has enrolled; invite them first \
                         (countersign user invite --email {email})"
                    ),
                ))
            }
        };
        let id = uuid::Uuid::new_v4().to_string();
        let (api_key, api_key_hash, jwk_json, jkt) = match public_jwk {
            Some(text) => {
                let jwk = PublicJwk::parse(text)
                    .map_err(|e| Error::invalid("public_key", e.to_string()))?;
                let jkt = jwk.thumbprint();
                let stored = serde_json::to_string(&jwk).map_err(Error::internal)?;
                (None, None, Some(stored), Some(jkt))
            }
            None => {
                let (key, hash) = secrets::new_api_key(&mut OsRng, &id);
                (Some(key), Some(hash), None, None)
            }
        };
        let row = AgentRow {
            id: id.clone(),
            name: name.to_string(),
            owner_id: owner.id.clone(),
            status: AgentStatus::Active,
            key_type: if jwk_json.is_some() {
                "public_key"
            } else {
                "api_key"
            }
            .into(),
            api_key_hash,
            public_jwk: jwk_json,
            jwk_thumbprint: jkt.clone(),
            created_at: now,
            last_seen_at: None,
            epoch: 0,
            callback_url: None,
            parent_id: None,
        };
        rows::insert(&mut tx, &row).await?;
        audit::append(
            &mut tx,
            now,
            actor,
            EventKind::AgentCreated,
            None,
            &json!({ "agent_id": id, "name": name, "owner_id": owner.id, "key_type": row.key_type, "jkt": jkt }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(CreatedAgent {
            id,
            name: name.to_string(),
            owner_email: owner.email,
            api_key,
            jkt,
        })
    }

    /// The kill switch: refuses the agent's credentials from now on, cancels its pending
    /// requests and revokes its outstanding grants, and does the same to every sub-agent below
    /// it (see `delegation`), all in one transaction. Each agent gets its own `agent.suspended`
    /// event; a sub-agent's names the parent whose suspension reached it. Resuming the agent
    /// later does not resume its sub-agents.
    ///
    /// Before anything else it holds the agent's row and its sub-agents' (on PostgreSQL; SQLite
    /// has one writer), then advances their epochs: intake and decisions hold the same rows
    /// while they write, so each of them either committed before this transaction (and its
    /// request or grant is cancelled or revoked here) or sees the new epoch and writes
    /// nothing. See the module docs. A sub-agent registered concurrently either committed
    /// first, and is found when the family is read again under the locks, or waited for this
    /// transaction and then finds its parent suspended and is refused (`delegation` holds the
    /// parent's row while it registers one).
    pub async fn suspend_agent(&self, id: &str, actor: &str) -> Result<SuspendReport, Error> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        if rows::get(&mut *tx, id).await?.is_none() {
            return Err(Error::NotFound(format!("no agent {id}")));
        }
        // First hold the agent and every sub-agent below it, and only then write anything.
        // The rows are taken in id order, as the intake writer takes the agents of a batch, and
        // before any audit event (whose chain head every writer takes last), so this
        // transaction and a batch of the sub-agents' requests never wait for each other
        // crosswise. The family is read again once held: a sub-agent registered meanwhile
        // committed before we held its parent, and is found; one registering now waits for its
        // parent's row and then finds it suspended.
        let mut held = std::collections::HashSet::new();
        let family = loop {
            let family = subtree(&mut tx, id).await?;
            let mut ids: Vec<&str> = std::iter::once(id)
                .chain(family.iter().map(|(child, _)| child.as_str()))
                .filter(|a| !held.contains(*a))
                .collect();
            if ids.is_empty() {
                break family;
            }
            ids.sort_unstable();
            rows::current_for_write(&mut tx, self.db.backend(), &ids, rows::Hold::Update).await?;
            held.extend(ids.into_iter().map(str::to_string));
        };
        let changed =
            rows::set_status(&mut tx, id, AgentStatus::Active, AgentStatus::Suspended).await?;
        let mut report = SuspendReport {
            changed,
            ..SuspendReport::default()
        };
        for (child, _) in &family {
            if rows::set_status(&mut tx, child, AgentStatus::Active, AgentStatus::Suspended).await?
            {
                report.suspended_sub_agents += 1;
            }
        }
        let mut cancelled = Vec::new();
        let first = stop_agent(&mut tx, self.db.backend(), id, now, actor, None).await?;
        report.revoked_grants += first.revoked;
        cancelled.extend(first.cancelled);
        for (child, parent) in &family {
            let stopped =
                stop_agent(&mut tx, self.db.backend(), child, now, actor, Some(parent)).await?;
            report.revoked_grants += stopped.revoked;
            cancelled.extend(stopped.cancelled);
        }
        report.cancelled_requests = cancelled.len();
        tx.commit().await.map_err(store::StoreError::from)?;
        for rid in &cancelled {
            self.waiters.wake(rid);
        }
        self.callbacks.kick();
        self.credentials.kick();
        Ok(report)
    }

    /// Lifts a suspension.
    pub async fn resume_agent(&self, id: &str, actor: &str) -> Result<bool, Error> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        if rows::get(&mut *tx, id).await?.is_none() {
            return Err(Error::NotFound(format!("no agent {id}")));
        }
        let changed =
            rows::set_status(&mut tx, id, AgentStatus::Suspended, AgentStatus::Active).await?;
        if changed {
            audit::append(
                &mut tx,
                now,
                actor,
                EventKind::AgentResumed,
                None,
                &json!({ "agent_id": id }),
            )
            .await?;
        }
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(changed)
    }

    /// Recognises the agent behind a bearer credential.
    pub async fn authenticate_agent(&self, bearer: &str) -> Result<AgentIdentity, Error> {
        let result = self.authenticate_agent_inner(bearer).await;
        if matches!(result, Err(Error::InvalidToken(_))) {
            bump(&self.metrics.auth_failures);
        }
        result
    }

    /// [`Self::authenticate_agent`] for creating a request: an API key checked against the
    /// database within [`CREDENTIAL_CACHE_MS`] is recognised from the cache, without a read (see
    /// the module docs for why that cannot let a suspended agent or a changed key through).
    pub async fn authenticate_for_intake(&self, bearer: &str) -> Result<AgentIdentity, Error> {
        let Some((id, secret)) = secrets::parse_api_key(bearer) else {
            return self.authenticate_agent(bearer).await;
        };
        let now = self.now();
        if let Some(known) = self.credential_cache.get(id, now) {
            let matches = known
                .key_digest
                .as_ref()
                .is_some_and(|d| secrets::digests_match(&secrets::digest(secret), &d.0));
            if matches {
                return Ok(AgentIdentity {
                    cached: true,
                    ..known
                });
            }
        }
        let fresh = self.authenticate_agent(bearer).await?;
        self.credential_cache.put(&fresh, now);
        Ok(fresh)
    }

    /// The agent behind `agent` as its row stands now, if it is still active and its credential
    /// unchanged (same stored key digest, or same public key); otherwise the credential is
    /// refused. Drops what the intake cache held for it either way.
    pub(crate) async fn recheck(&self, agent: &AgentIdentity) -> Result<AgentIdentity, Error> {
        self.credential_cache.forget(&agent.id);
        let row = rows::get(self.db.reader(), &agent.id)
            .await?
            .ok_or_else(refused_credential)?;
        let same_credential = match &agent.key_digest {
            Some(d) => row.api_key_hash.as_deref() == Some(d.0.as_str()),
            None => agent.jkt.is_some() && row.jwk_thumbprint == agent.jkt,
        };
        if row.status != AgentStatus::Active || !same_credential {
            return Err(refused_credential());
        }
        let fresh = identity(row);
        self.credential_cache.put(&fresh, self.now());
        Ok(fresh)
    }

    async fn authenticate_agent_inner(&self, bearer: &str) -> Result<AgentIdentity, Error> {
        let refused = refused_credential;
        if let Some((id, secret)) = secrets::parse_api_key(bearer) {
            let agent = rows::get(self.db.reader(), id).await?.ok_or_else(refused)?;
            let stored = agent.api_key_hash.as_deref().ok_or_else(refused)?;
            if agent.status != AgentStatus::Active
                || !secrets::digests_match(&secrets::digest(secret), stored)
            {
                return Err(refused());
            }
            return Ok(identity(agent));
        }
        if bearer.matches('.').count() == 2 {
            let (_, claims) = jose::peek_unverified(bearer).map_err(|_| refused())?;
            let iss = claims
                .get("iss")
                .and_then(|v| v.as_str())
                .ok_or_else(refused)?;
            let agent = rows::get(self.db.reader(), iss)
                .await?
                .ok_or_else(refused)?;
            let jwk_text = agent.public_jwk.as_deref().ok_or_else(refused)?;
            if agent.status != AgentStatus::Active {
                return Err(refused());
            }
            let jwk = PublicJwk::parse(jwk_text).map_err(Error::internal)?;
            let issuer = self.issuer();
            let check = AssertionCheck::new(&issuer, self.clock.now_secs());
            let verified =
                jose::verify_agent_assertion(bearer, &jwk, &agent.id, &check).map_err(|e| {
                    tracing::debug!(agent = %agent.id, error = %e, "agent assertion refused");
                    refused()
                })?;
            let fresh = rows::remember_jti(
                self.db.writer(),
                &agent.id,
                &verified.jti,
                verified.exp * 1000,
            )
            .await?;
            if !fresh {
                return Err(Error::InvalidToken(
                    "this assertion was already used (replayed jti)".into(),
                ));
            }
            return Ok(identity(agent));
        }
        Err(refused())
    }
}

/// Cancels one agent's pending requests and revokes its outstanding grants and released
/// credentials, with their audit events and the agent's `agent.suspended` event, inside the
/// suspension's transaction (the caller has already moved the agent to `suspended`, advancing
/// its epoch). `because_of` is the parent whose suspension reached this agent.
/// Every agent below `id` as `(agent, its parent)`, level by level (parents before their
/// sub-agents). Bounded by the depth cap; a cycle (which `delegation` never lets in) ends it all
/// the same.
async fn subtree(tx: &mut store::WriteTx, id: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    let mut level = vec![id.to_string()];
    let mut seen = std::collections::HashSet::from([id.to_string()]);
    for _ in 0..=rows::MAX_LINEAGE {
        let mut next = Vec::new();
        for (child, parent) in rows::children_of(tx, &level).await? {
            if seen.insert(child.clone()) {
                next.push(child.clone());
                out.push((child, parent));
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    Ok(out)
}

async fn stop_agent(
    tx: &mut store::WriteTx,
    backend: store::Backend,
    id: &str,
    now: crate::clock::Millis,
    actor: &str,
    because_of: Option<&str>,
) -> Result<Stopped, Error> {
    let change = Change {
        reason_code: Some("agent_suspended"),
        reason: Some(match because_of {
            None => "The agent was suspended.",
            Some(_) => "The agent's parent agent was suspended.",
        }),
        ..Change::from_pending(RequestStatus::Cancelled, now, "system")
    };
    let cancelled = store::requests::cancel_all_of_agent(&mut *tx, id, &change).await?;
    let events: Vec<audit::NewEvent> = cancelled
        .iter()
        .map(|rid| audit::NewEvent {
            at: now,
            actor: actor.to_string(),
            kind: EventKind::RequestCancelled,
            request_id: Some(rid.clone()),
            data: json!({ "by": actor, "reason": "agent_suspended" }),
        })
        .collect();
    audit::append_many(&mut *tx, &events).await?;
    for rid in &cancelled {
        announce(&mut *tx, backend, rid).await?;
    }
    let revoked = revoke_outstanding_grants(&mut *tx, id, now, actor, "agent_suspended").await?;
    super::standing::revoke_all_of_agents(tx, &[id], actor, "agent_suspended", now).await?;
    let mut data = json!({
        "agent_id": id,
        "cancelled_requests": cancelled.len(),
        "revoked_grants": revoked,
    });
    if let Some(parent) = because_of {
        data["cause"] = json!({ "parent_suspended": parent });
    }
    audit::append(&mut *tx, now, actor, EventKind::AgentSuspended, None, &data).await?;
    Ok(Stopped { cancelled, revoked })
}

/// The one answer to every credential failure: telling a caller *why* (unknown agent, wrong
/// secret, suspended, a key that changed while its request was on its way) would help an
/// attacker more than a legitimate agent.
pub(crate) fn refused_credential() -> Error {
    Error::InvalidToken("the credential is invalid, expired or revoked".into())
}

/// Revokes every grant of the agent that was issued and not yet redeemed, each with its
/// `grant.revoked` audit event giving `reason`, and starts the revocation of every credential
/// released to it (the caller wakes the worker after committing); returns how many grants. Runs inside the caller's
/// transaction, so the revocations land together with the change that caused them.
pub(crate) async fn revoke_outstanding_grants(
    conn: &mut sqlx::AnyConnection,
    agent_id: &str,
    now: crate::clock::Millis,
    actor: &str,
    reason: &str,
) -> Result<usize, Error> {
    let revoked = store::grants::revoke_all_of_agent(&mut *conn, agent_id, now).await?;
    // The credentials after the grants: on PostgreSQL the grants statement waits for a
    // redemption holding one of them (a credential being released) to commit, and this later
    // statement then sees the lease that redemption recorded. In the other order, a lease
    // committed between the two would stay active.
    let leases = store::credentials::revoke_all_of_agent(&mut *conn, agent_id, reason, now).await?;
    let grant_events = revoked.iter().map(|(jti, request_id)| audit::NewEvent {
        at: now,
        actor: actor.to_string(),
        kind: EventKind::GrantRevoked,
        request_id: Some(request_id.clone()),
        data: json!({ "jti": jti, "reason": reason }),
    });
    let lease_events = leases
        .iter()
        .map(|l| crate::service::credentials::revoking_event(l, reason, actor, now));
    let events: Vec<audit::NewEvent> = grant_events.chain(lease_events).collect();
    audit::append_many(conn, &events).await?;
    Ok(revoked.len())
}

fn identity(agent: AgentRow) -> AgentIdentity {
    AgentIdentity {
        id: agent.id,
        name: agent.name,
        owner_id: agent.owner_id,
        jkt: agent.jwk_thumbprint,
        epoch: agent.epoch,
        parent_id: agent.parent_id,
        key_digest: agent.api_key_hash.map(KeyDigest),
        cached: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_is_written_at_most_once_a_minute_per_agent() {
        let t = ActivityTracker::default();
        assert!(t.due("a", 0));
        assert!(!t.due("a", ACTIVITY_RESOLUTION_MS - 1));
        assert!(t.due("b", 1));
        assert!(t.due("a", ACTIVITY_RESOLUTION_MS));
    }
}
