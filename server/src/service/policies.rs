//! The active policy: applying a new version, showing it, checking a request against a draft.
//!
//! The policy is parsed once per version and cached; each intake only asks the database which
//! version is newest (one indexed read), so a policy applied on one replica or from the command
//! line takes effect everywhere at the next request.

use std::sync::{Arc, Mutex};

use serde_json::json;

use super::people::SignedIn;
use super::{Countersign, Error};
use crate::domain::diff;
use crate::domain::intake::{parse_new_request, Limits};
use crate::domain::policy::{Policy, PolicyDecision, PolicyInput};
use crate::store::{self, audit, policies};

/// A parsed policy version.
#[derive(Debug)]
pub struct ActivePolicy {
    /// Its version number (0 before any was applied: the empty policy, default rule only).
    pub version: i64,
    /// `sha256:` of its normalised source.
    pub hash: String,
    /// The rules.
    pub policy: Policy,
}

/// The parsed active policy, kept between requests.
#[derive(Debug, Default)]
pub struct PolicyCache {
    current: Mutex<Option<Arc<ActivePolicy>>>,
}

impl Countersign {
    /// The policy in force now.
    pub async fn active_policy(&self) -> Result<Arc<ActivePolicy>, Error> {
        let newest: Option<(i64, String)> = sqlx::query_as(
            "SELECT version, hash FROM policy_versions ORDER BY version DESC LIMIT 1",
        )
        .fetch_optional(self.db.reader())
        .await
        .map_err(store::StoreError::from)?;
        let (version, hash) = match newest {
            Some(v) => v,
            None => {
                let empty = Policy::default();
                return Ok(Arc::new(ActivePolicy {
                    version: 0,
                    hash: empty.hash(),
                    policy: empty,
                }));
            }
        };
        {
            let cached = self
                .policy_cache
                .current
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(p) = cached
                .as_ref()
                .filter(|p| p.version == version && p.hash == hash)
            {
                return Ok(p.clone());
            }
        }
        let row = policies::active(self.db.reader())
            .await?
            .ok_or_else(|| Error::internal("policy vanished"))?;
        let policy = Policy::from_toml(&row.source).map_err(|e| {
            Error::internal(format!("stored policy v{} is invalid: {e}", row.version))
        })?;
        let active = Arc::new(ActivePolicy {
            version: row.version,
            hash: row.hash,
            policy,
        });
        *self
            .policy_cache
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(active.clone());
        Ok(active)
    }

    /// Applies a policy file: validated whole (an invalid file changes nothing), normalised,
    /// stored as a new version. Returns the version and hash; applying the active policy again
    /// is a no-op that returns the current version.
    pub async fn apply_policy(&self, source: &str, actor: &str) -> Result<(i64, String), Error> {
        let policy = Policy::from_toml(source).map_err(|e| Error::InvalidRequest {
            field: e.key.clone(),
            detail: e.to_string(),
        })?;
        let normalised = policy.to_toml();
        let hash = policy.hash();
        let now = self.now();
        let mut tx = self.db.begin().await?;
        if let Some(active) = policies::active(&mut *tx).await? {
            if active.hash == hash {
                return Ok((active.version, hash));
            }
        }
        let version = policies::append(&mut tx, &hash, &normalised, actor, now).await?;
        audit::append(
            &mut tx,
            now,
            actor,
            "policy.applied",
            None,
            &json!({ "version": version, "hash": hash, "rules": policy.rules.len() }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok((version, hash))
    }

    /// The active policy in the file format (`policy show`), byte-for-byte what `apply` stored.
    pub async fn show_policy(&self) -> Result<String, Error> {
        Ok(policies::active(self.db.reader())
            .await?
            .map(|p| p.source)
            .unwrap_or_else(|| Policy::default().to_toml()))
    }
}

/// One applied policy version, with what it changed.
#[derive(Debug, Clone)]
pub struct PolicyVersion {
    /// 1, 2, 3…
    pub version: i64,
    /// Its hash.
    pub hash: String,
    /// Who applied it (`user:<id>`, `cli`).
    pub applied_by: String,
    /// When (unix ms).
    pub applied_at: i64,
    /// Its file against the version before it (the first against the built-in default).
    pub diff: Vec<diff::Line>,
    /// Whether it is the one in force.
    pub active: bool,
}

impl Countersign {
    /// Every policy version, newest first, each with its diff (admins only).
    pub async fn policy_history(&self, who: &SignedIn) -> Result<Vec<PolicyVersion>, Error> {
        require_admin(who)?;
        let rows = policies::history(self.db.reader()).await?;
        let default = Policy::default().to_toml();
        let mut out = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let before = rows
                .get(i + 1)
                .map(|r| r.source.as_str())
                .unwrap_or(&default);
            out.push(PolicyVersion {
                version: row.version,
                hash: row.hash.clone(),
                applied_by: row.applied_by.clone(),
                applied_at: row.applied_at,
                diff: diff::lines(before, &row.source),
                active: i == 0,
            });
        }
        Ok(out)
    }

    /// Makes an earlier version the active one again, as a new version (admins only): history
    /// is never rewritten, so the rollback itself is on record.
    pub async fn rollback_policy(
        &self,
        who: &SignedIn,
        version: i64,
    ) -> Result<(i64, String), Error> {
        require_admin(who)?;
        let rows = policies::history(self.db.reader()).await?;
        let old = rows
            .iter()
            .find(|r| r.version == version)
            .ok_or_else(|| Error::NotFound(format!("no policy version {version}")))?;
        self.apply_policy(&old.source, &format!("user:{}", who.person.id))
            .await
    }
}

fn require_admin(who: &SignedIn) -> Result<(), Error> {
    if who.person.role == "admin" {
        Ok(())
    } else {
        Err(Error::Forbidden("only admins can manage the policy".into()))
    }
}

/// Evaluates a request body (the agent API's JSON) against a policy file, explaining which rule
/// matches and which were passed over (`policy check`). Pure: touches no database.
pub fn check_policy(source: &str, request_json: &[u8]) -> Result<PolicyDecision, Error> {
    let policy = Policy::from_toml(source).map_err(|e| Error::InvalidRequest {
        field: e.key.clone(),
        detail: e.to_string(),
    })?;
    let new =
        parse_new_request(request_json, &Limits::default()).map_err(|e| Error::InvalidRequest {
            field: e.field,
            detail: e.detail,
        })?;
    let input = PolicyInput {
        action_type: &new.action.r#type,
        target: &new.action.target,
        environment: new.context.environment.as_deref(),
        data_sensitivity: new.context.data_sensitivity.as_ref().map(|d| d.as_str()),
        amount: new
            .context
            .amount
            .as_ref()
            .map(|a| (&a.value, a.currency.as_str())),
    };
    Ok(policy.evaluate_explained(&input))
}
