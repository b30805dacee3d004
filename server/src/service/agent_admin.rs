//! Admins managing every agent: the list of all agents with their owners, the kill switch for
//! anyone's agent, and replacing an agent's credential (a fresh API key, or a new public key).
//!
//! Each admin-facing method takes the signed-in person and refuses anyone who is not an admin;
//! the actor-based methods underneath are what the command line calls (as `cli`). No method here
//! ever logs, audits or returns a stored credential: a new API key is returned once, to the
//! caller, and only its digest is kept.
//!
//! # One credential at a time
//!
//! An agent has exactly one way to authenticate, named by `key_type`, and changing it retires
//! the other one in the same statement:
//!
//! - **Rotating the API key** gives the agent a new key, drops the old key's digest *and* any
//!   registered public key: the agent is back on API keys.
//! - **Registering a public key** stores it (and its thumbprint) and drops the API key's digest:
//!   the agent now signs assertions.
//!
//! Keeping both would be possible (the table has room for both), but then a key someone thought
//! they had retired could keep working unnoticed, and grants would be key-bound (`cnf.jkt`) or
//! not depending on which credential the agent happened to use. One credential means "the old one
//! stops working" holds for every change, and the list shows the truth.
//!
//! Grants the agent holds but has not yet redeemed are revoked with the change: if the change is
//! a response to a leaked key, whoever held that key could have fetched them, and a key-bound
//! grant names a key that is no longer the agent's. They live for seconds, so an honest agent
//! loses little by asking again. Pending requests that were committed before the change stay:
//! they belong to the agent, not to its credential, a person still decides each one (suspend
//! the agent to cancel them), and their grant is delivered only to a caller holding the new
//! credential. A request the old credential sent that had not yet committed when the change did
//! is refused, never written: the change advances the agent's epoch, which intake compares
//! inside its writing transaction (see `agents`, "The kill switch holds by construction").
//!
//! # Every replica, at once
//!
//! Nothing caches an agent's credential or status: [`Countersign::authenticate_agent`] reads the
//! agent's row on every call. So the old key is refused from the moment the change commits, on
//! every replica sharing the database, exactly as a suspension is.

use rand_core::OsRng;
use serde_json::json;

use super::agents::revoke_outstanding_grants;
use super::people::SignedIn;
use super::{Countersign, Error};
use crate::domain::audit_kind::EventKind;
use crate::domain::jose::PublicJwk;
use crate::domain::lifecycle::AgentStatus;
use crate::domain::secrets::{self, Secret};
use crate::store::agents::{self as rows, AgentListing, Credential};
use crate::store::{self, audit};

/// The longest JWK text we read: an Ed25519 public JWK is about 100 bytes, so anything near this
/// is not one, and we refuse it before parsing.
const MAX_JWK_BYTES: usize = 4096;

/// A new API key, shown once.
#[derive(Debug)]
pub struct RotatedKey {
    /// The agent's id.
    pub agent_id: String,
    /// The new key (`cs_agent_<id>_<secret>`); the old one no longer works.
    pub api_key: Secret,
    /// Unredeemed grants revoked with the change.
    pub revoked_grants: usize,
}

/// A newly registered public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredKey {
    /// The agent's id.
    pub agent_id: String,
    /// RFC 7638 thumbprint of the key (`cnf.jkt` of the agent's grants from now on).
    pub jkt: String,
    /// Unredeemed grants revoked with the change.
    pub revoked_grants: usize,
}

/// What suspending or resuming did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The agent's status afterwards.
    pub status: AgentStatus,
    /// False when it already had that status.
    pub changed: bool,
    /// Pending requests cancelled (suspending only).
    pub cancelled_requests: usize,
    /// Outstanding grants revoked (suspending only).
    pub revoked_grants: usize,
}

fn require_admin(who: &SignedIn, what: &str) -> Result<(), Error> {
    if who.person.role.is_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden(format!("only admins can {what}")))
    }
}

fn actor_of(who: &SignedIn) -> String {
    format!("user:{}", who.person.id)
}

impl Countersign {
    /// Every agent with its owner, status, key type and last activity, newest first (admins).
    pub async fn all_agents(&self, who: &SignedIn) -> Result<Vec<AgentListing>, Error> {
        require_admin(who, "see every agent")?;
        Ok(rows::list_with_owners(self.db.reader(), self.now()).await?)
    }

    /// Suspends (the kill switch, see [`Countersign::suspend_agent`]) or resumes any agent
    /// (admins).
    pub async fn admin_set_agent_status(
        &self,
        who: &SignedIn,
        agent_id: &str,
        active: bool,
    ) -> Result<StatusChange, Error> {
        require_admin(who, "suspend or resume other people's agents")?;
        let actor = actor_of(who);
        if active {
            let changed = self.resume_agent(agent_id, &actor).await?;
            Ok(StatusChange {
                status: AgentStatus::Active,
                changed,
                cancelled_requests: 0,
                revoked_grants: 0,
            })
        } else {
            let r = self.suspend_agent(agent_id, &actor).await?;
            Ok(StatusChange {
                status: AgentStatus::Suspended,
                changed: r.changed,
                cancelled_requests: r.cancelled_requests,
                revoked_grants: r.revoked_grants,
            })
        }
    }

    /// Gives an agent a new API key (admins). See [`Countersign::rotate_api_key`].
    pub async fn rotate_agent_key(
        &self,
        who: &SignedIn,
        agent_id: &str,
    ) -> Result<RotatedKey, Error> {
        require_admin(who, "rotate agents' keys")?;
        self.rotate_api_key(agent_id, &actor_of(who)).await
    }

    /// Registers a public key for an agent (admins). See
    /// [`Countersign::register_public_key`].
    pub async fn set_agent_public_key(
        &self,
        who: &SignedIn,
        agent_id: &str,
        jwk: &str,
    ) -> Result<RegisteredKey, Error> {
        require_admin(who, "change agents' keys")?;
        self.register_public_key(agent_id, jwk, &actor_of(who))
            .await
    }

    /// Gives the agent a new API key on behalf of `actor`, retiring its old key or public key
    /// (see the module docs) and revoking its unredeemed grants, in one transaction. The key is
    /// returned once; only its digest is stored.
    pub async fn rotate_api_key(&self, agent_id: &str, actor: &str) -> Result<RotatedKey, Error> {
        let (api_key, digest) = secrets::new_api_key(&mut OsRng, agent_id);
        let new = Credential {
            key_type: "api_key",
            api_key_hash: Some(&digest),
            public_jwk: None,
            jwk_thumbprint: None,
        };
        let revoked_grants = self
            .replace_credential(
                agent_id,
                new,
                actor,
                EventKind::AgentKeyRotated,
                "agent_key_rotated",
            )
            .await?;
        Ok(RotatedKey {
            agent_id: agent_id.to_string(),
            api_key,
            revoked_grants,
        })
    }

    /// Registers (or replaces) the agent's Ed25519 public key on behalf of `actor`: the agent
    /// then authenticates with assertions signed by it, and its API key stops working (see the
    /// module docs). The JWK is validated as at registration ([`PublicJwk::parse`]: kty `OKP`,
    /// crv `Ed25519`, no private part); a bad one is refused naming the field `jwk`.
    pub async fn register_public_key(
        &self,
        agent_id: &str,
        jwk: &str,
        actor: &str,
    ) -> Result<RegisteredKey, Error> {
        if jwk.len() > MAX_JWK_BYTES {
            return Err(Error::invalid(
                "jwk",
                "this is too long for an Ed25519 public JWK",
            ));
        }
        let parsed = PublicJwk::parse(jwk).map_err(|e| Error::invalid("jwk", e.to_string()))?;
        let jkt = parsed.thumbprint();
        // We store the normalised JWK (only the members we understand), as registration does.
        let stored = serde_json::to_string(&parsed).map_err(Error::internal)?;
        let new = Credential {
            key_type: "public_key",
            api_key_hash: None,
            public_jwk: Some(&stored),
            jwk_thumbprint: Some(&jkt),
        };
        let revoked_grants = self
            .replace_credential(
                agent_id,
                new,
                actor,
                EventKind::AgentPublicKeySet,
                "agent_key_replaced",
            )
            .await?;
        Ok(RegisteredKey {
            agent_id: agent_id.to_string(),
            jkt,
            revoked_grants,
        })
    }

    /// Swaps the agent's credential for `new`, revokes its unredeemed grants and records `kind`
    /// on the audit chain, all in one transaction. The audit event names the key types and
    /// thumbprints (public facts), never a key or a digest of one.
    async fn replace_credential(
        &self,
        agent_id: &str,
        new: Credential<'_>,
        actor: &str,
        kind: EventKind,
        grant_reason: &str,
    ) -> Result<usize, Error> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let old = rows::get(&mut *tx, agent_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no agent {agent_id}")))?;
        // Conditional on the credential we just read: on PostgreSQL another replica may change
        // it between our read and this write (SQLite's BEGIN IMMEDIATE already serialises us).
        let swapped = rows::replace_credential(
            &mut tx,
            agent_id,
            old.api_key_hash.as_deref(),
            old.jwk_thumbprint.as_deref(),
            new,
        )
        .await?;
        if !swapped {
            return Err(Error::Conflict(
                "the agent's key was changed by someone else meanwhile; reload and try again"
                    .into(),
            ));
        }
        let revoked =
            revoke_outstanding_grants(&mut tx, agent_id, now, actor, grant_reason).await?;
        super::standing::revoke_all_of_agents(&mut tx, &[agent_id], actor, "key_changed", now)
            .await?;
        audit::append(
            &mut tx,
            now,
            actor,
            kind,
            None,
            &json!({
                "agent_id": agent_id,
                "key_type": new.key_type,
                "jkt": new.jwk_thumbprint,
                "previous_key_type": old.key_type,
                "previous_jkt": old.jwk_thumbprint,
                "revoked_grants": revoked,
            }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        self.credentials.kick();
        Ok(revoked)
    }
}
