//! Task-scoped credentials: admins configure providers, an approved request's grant is redeemed
//! for a credential that exists for that task only, and the credential is revoked when the task
//! ends.
//!
//! ```text
//!   agent: POST /api/v1/grants/{jti}/credential
//!     provider's server:  BEGIN; CREATE ROLE cs_<lease> … VALID UNTIL <task end>   (not yet
//!                         committed: a crash from here on leaves no role)
//!     our database:       UPDATE grants … WHERE status = 'issued'                  (one winner)
//!                         INSERT credential_leases (active), audit                 (one tx)
//!     provider's server:  COMMIT
//!     agent  <─────────── connection string, once
//!   task ends: outcome reported │ grant revoked │ agent suspended or key changed │ time up
//!     our database:       UPDATE credential_leases SET state = 'revoking'          (in the
//!                         transaction of whatever ended it: final when that commits)
//!   worker (every replica, one claim per lease):
//!     provider's server:  NOLOGIN │ terminate its sessions │ DROP OWNED │ DROP ROLE
//!                         (each its own transaction, each recorded and audited; a failure is
//!                         retried from the step that failed, with backoff, never dropped)
//!   reaper (one replica at a time): any cs_ login of a provider's template role that no
//!                         active lease accounts for is taken apart
//! ```
//!
//! Why the lease is recorded before the role is committed: a role can then never exist without
//! a record of it, except for a role our record says is revoked; that case is a revocation that
//! ran before the role's commit landed (a suspension between our commit and the provider's).
//! The issuer re-reads the lease after its commit and the reaper catches what remains, so a
//! revocation is final even then.

pub mod downstream;
pub mod gateway;

use std::sync::Arc;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use serde_json::json;
use tokio::sync::{oneshot, Notify};

use super::agents::AgentIdentity;
use super::people::SignedIn;
use super::{Countersign, Error};
use crate::clock::{rfc3339, Millis};
use crate::domain::audit_kind::EventKind;
use crate::domain::credential::postgres::{self as pg, RevokeStep};
use crate::domain::credential::seal::CredentialKey;
use crate::domain::credential::{
    check_provider_name, scram, ProviderKind, ProviderSettings, DEFAULT_CREDENTIAL_TTL_SECONDS,
};
use crate::domain::lifecycle::GrantStatus;
use crate::domain::secrets::{random_hex, Secret};
use crate::store::credentials::{self as rows, LeaseRow, ProviderRow};
use crate::store::{self, audit, coordination, Backend};
use downstream::StepDone;

/// Revocations carried out at once, per process.
const CONCURRENT_REVOCATIONS: i64 = 8;

/// How long a claimed revocation belongs to the worker that claimed it.
const CLAIM: Duration = Duration::from_secs(60);

/// How often the reaper looks at every PostgreSQL provider's server.
pub const REAP_EVERY: Duration = Duration::from_secs(60);

/// An arbitrary, fixed key for the reaper's advisory lock.
const REAPER_LOCK: i64 = 0x6373_7265_6170_6572;

/// The credential service's own state: the key, the provider pools, the worker's wake-up.
pub struct Credentials {
    key: CredentialKey,
    /// Connections to PostgreSQL providers.
    pub pools: downstream::Pools,
    /// The gateway's client: no redirects followed (an upstream's redirect goes back to the
    /// agent, not onwards with the secret), no proxy.
    pub http: reqwest::Client,
    wake: Notify,
    pause: std::sync::Mutex<Option<oneshot::Sender<()>>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

impl Credentials {
    /// Loads the credential key from `path`, or creates it there (mode 0600).
    pub fn open(path: &std::path::Path) -> Result<Self, Error> {
        let (bytes, created) = super::load_or_create_seed(path, || {
            let mut fresh = zeroize::Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(&mut *fresh);
            fresh
        })?;
        let key = CredentialKey::from_bytes(&bytes)
            .ok_or_else(|| Error::internal(format!("{} is not a 32-byte key", path.display())))?;
        if created {
            tracing::info!(file = %path.display(), "created a new credential key");
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| Error::internal(format!("gateway HTTP client: {e}")))?;
        Ok(Self {
            key,
            http,
            pools: downstream::Pools::default(),
            wake: Notify::new(),
            pause: std::sync::Mutex::new(None),
        })
    }

    /// Wakes the revocation worker.
    pub fn kick(&self) {
        self.wake.notify_one();
    }

    /// Fault injection for tests, like the injected clock: the next issue stops for good after
    /// its login was created on the provider's server and before anything is recorded, and
    /// `reached` is told. A test then drops the call, as a crash would.
    pub fn pause_next_issue_after_create(&self, reached: oneshot::Sender<()>) {
        *self.pause.lock().unwrap_or_else(|p| p.into_inner()) = Some(reached);
    }

    async fn maybe_pause(&self) {
        let reached = self.pause.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(reached) = reached {
            let _ = reached.send(());
            std::future::pending::<()>().await;
        }
    }
}

/// A provider as admins see it: everything but the secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderInfo {
    /// The name policy rules refer to.
    pub name: String,
    /// `postgres` or `http`.
    pub kind: ProviderKind,
    /// Its settings.
    pub settings: ProviderSettings,
    /// The secret's fingerprint.
    pub fingerprint: String,
    /// When it was added (unix ms).
    pub created_at: Millis,
    /// Who added it.
    pub created_by: String,
}

fn info(row: &ProviderRow) -> Result<ProviderInfo, Error> {
    let settings: ProviderSettings =
        serde_json::from_str(&row.settings).map_err(Error::internal)?;
    Ok(ProviderInfo {
        name: row.name.clone(),
        kind: settings.kind(),
        settings,
        fingerprint: row.secret_fingerprint.clone(),
        created_at: row.created_at,
        created_by: row.created_by.clone(),
    })
}

/// A credential released for a task: shown to its agent once, never stored.
#[derive(Debug)]
pub struct ReleasedCredential {
    /// The provider it comes from.
    pub provider: String,
    /// The login's name.
    pub login: String,
    /// Its password.
    pub password: Secret,
    /// A connection string with both.
    pub connection_string: Secret,
    /// When the task's time runs out and the login is taken apart.
    pub expires_at: Millis,
}

/// Time before the `n`th retry of a failed revocation: 1 s doubling, at most a minute.
fn backoff(attempts: i64) -> Millis {
    let exp = u32::try_from(attempts.clamp(1, 7) - 1).unwrap_or(0);
    (1000_i64 << exp).min(60_000)
}

fn require_admin(who: &SignedIn) -> Result<(), Error> {
    if who.person.role.is_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "only admins can see or change credential providers".into(),
        ))
    }
}

impl Countersign {
    /// Every provider, for a signed-in admin.
    pub async fn credential_providers_seen_by(
        &self,
        who: &SignedIn,
    ) -> Result<Vec<ProviderInfo>, Error> {
        require_admin(who)?;
        self.credential_providers().await
    }

    /// Adds a provider, for a signed-in admin (see [`Self::add_credential_provider`]).
    pub async fn add_credential_provider_as(
        &self,
        who: &SignedIn,
        name: &str,
        settings: ProviderSettings,
        secret: Secret,
    ) -> Result<ProviderInfo, Error> {
        require_admin(who)?;
        self.add_credential_provider(name, settings, secret, &format!("user:{}", who.person.id))
            .await
    }

    /// Removes a provider, for a signed-in admin (see [`Self::remove_credential_provider`]).
    pub async fn remove_credential_provider_as(
        &self,
        who: &SignedIn,
        name: &str,
    ) -> Result<(), Error> {
        require_admin(who)?;
        self.remove_credential_provider(name, &format!("user:{}", who.person.id))
            .await
    }

    /// Adds a credential provider; the secret is sealed before it is stored and only its
    /// fingerprint goes on the audit chain.
    pub async fn add_credential_provider(
        &self,
        name: &str,
        settings: ProviderSettings,
        secret: Secret,
        actor: &str,
    ) -> Result<ProviderInfo, Error> {
        check_provider_name(name).map_err(|e| Error::invalid(e.field, e.reason))?;
        settings
            .check()
            .map_err(|e| Error::invalid(e.field, e.reason))?;
        match &settings {
            ProviderSettings::Postgres(_) => {
                let probe = Secret::new(String::new());
                pg::connection_string(&secret, "probe", &probe)
                    .map_err(|reason| Error::invalid("secret", reason))?;
            }
            ProviderSettings::Http(_) => {
                let value = secret.expose();
                if value.is_empty()
                    || value.len() > 8192
                    || value.bytes().any(|b| b.is_ascii_control())
                {
                    return Err(Error::invalid(
                        "secret",
                        "must be a header value: 1 to 8192 bytes, no control characters",
                    ));
                }
            }
        }
        let now = self.now();
        let row = ProviderRow {
            name: name.to_string(),
            kind: settings.kind().as_str().to_string(),
            settings: serde_json::to_string(&settings).map_err(Error::internal)?,
            sealed_secret: self.credentials.key.seal(&mut OsRng, name, &secret),
            secret_fingerprint: self.credentials.key.fingerprint(&secret),
            created_at: now,
            created_by: actor.to_string(),
        };
        let mut tx = self.db.begin().await?;
        if !rows::insert_provider(&mut tx, &row).await? {
            return Err(Error::Conflict(format!(
                "a credential provider named {name} exists; remove it first to replace it"
            )));
        }
        audit::append(
            &mut tx,
            now,
            actor,
            EventKind::CredentialProviderAdded,
            None,
            &json!({ "name": name, "kind": row.kind, "settings": settings,
                     "secret_fingerprint": row.secret_fingerprint }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        tracing::info!(provider = name, kind = %row.kind, fingerprint = %row.secret_fingerprint, actor, "credential provider added");
        info(&row)
    }

    /// Every provider, without secrets.
    pub async fn credential_providers(&self) -> Result<Vec<ProviderInfo>, Error> {
        rows::providers(self.db.reader())
            .await?
            .iter()
            .map(info)
            .collect()
    }

    /// Removes a provider, unless the active policy names it (say which rule) or a credential
    /// of it is still to be revoked.
    pub async fn remove_credential_provider(&self, name: &str, actor: &str) -> Result<(), Error> {
        let active = self.active_policy().await?;
        if let Some((_, rule)) = active
            .policy
            .credential_providers()
            .into_iter()
            .find(|(p, _)| *p == name)
        {
            return Err(Error::Conflict(format!(
                "the active policy's rule {rule:?} releases credentials from {name}; change the policy first"
            )));
        }
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let Some(row) = rows::provider(&mut *tx, name).await? else {
            return Err(Error::NotFound(format!(
                "no credential provider named {name}"
            )));
        };
        if !rows::delete_provider(&mut tx, name).await? {
            let n = rows::unrevoked_of_provider(&mut *tx, name).await?;
            return Err(Error::Conflict(format!(
                "{n} credential(s) of {name} are still live or being revoked; try again once they are revoked"
            )));
        }
        audit::append(
            &mut tx,
            now,
            actor,
            EventKind::CredentialProviderRemoved,
            None,
            &json!({ "name": name, "kind": row.kind, "secret_fingerprint": row.secret_fingerprint }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        self.credentials.pools.forget(name);
        Ok(())
    }

    /// A provider and its opened secret, for use now. A provider that is gone, or whose secret
    /// does not open with this process's key, is `provider_unavailable`.
    pub(crate) async fn provider_for_use(
        &self,
        name: &str,
    ) -> Result<(ProviderInfo, Secret), Error> {
        let row = rows::provider(self.db.reader(), name)
            .await?
            .ok_or_else(|| {
                Error::ProviderUnavailable(format!(
                    "no credential provider named {name} is configured"
                ))
            })?;
        let secret = self
            .credentials
            .key
            .open(&row.name, &row.sealed_secret)
            .map_err(|e| Error::ProviderUnavailable(format!("credential provider {name}: {e}")))?;
        Ok((info(&row)?, secret))
    }

    /// The agent redeems its grant for the credential its request's rule releases: a login on
    /// a PostgreSQL provider, for this task only. Only the grant's own agent, once. When the
    /// provider cannot be reached nothing is used up: the grant stays redeemable until it
    /// expires.
    pub async fn release_credential(
        &self,
        agent: &AgentIdentity,
        jti: &str,
    ) -> Result<ReleasedCredential, Error> {
        let grant = store::grants::get(self.db.reader(), jti)
            .await?
            .filter(|g| g.agent_id == agent.id)
            .ok_or_else(|| Error::NotFound("no such grant".into()))?;
        let now = self.now();
        match grant.status {
            GrantStatus::Redeemed => return Err(Error::GrantAlreadyRedeemed),
            GrantStatus::Revoked => return Err(Error::GrantRevoked),
            GrantStatus::Expired => return Err(Error::GrantExpired),
            GrantStatus::Issued if grant.expires_at <= now => return Err(Error::GrantExpired),
            GrantStatus::Issued => {}
        }
        let request = store::requests::get(self.db.reader(), &grant.request_id)
            .await?
            .ok_or_else(|| Error::internal("a grant without its request"))?;
        let Some(provider_name) = request.credential.clone() else {
            return Err(Error::Conflict(
                "this grant releases no credential: the rule that decided its request names no provider".into(),
            ));
        };
        let ttl = request
            .credential_ttl_seconds
            .unwrap_or(i64::from(DEFAULT_CREDENTIAL_TTL_SECONDS));
        let (provider, admin_dsn) = self.provider_for_use(&provider_name).await?;
        let ProviderSettings::Postgres(settings) = &provider.settings else {
            return Err(Error::Conflict(format!(
                "{provider_name} is an HTTP provider: send the approved call through /gw/{provider_name}/… with this grant"
            )));
        };

        let lease_id = uuid::Uuid::new_v4();
        let login = pg::login_name(&lease_id);
        let password = Secret::new(random_hex(&mut OsRng, 32));
        let connection_string = pg::connection_string(&admin_dsn, &login, &password)
            .map_err(Error::ProviderUnavailable)?;
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let verifier = scram::verifier(password.expose(), &salt, scram::ITERATIONS);
        let expires_at = now + ttl * 1000;
        let statements = pg::create_login(&login, &verifier, &rfc3339(expires_at), settings);

        let pool = self
            .credentials
            .pools
            .get(&provider.name, &provider.fingerprint, &admin_dsn)?;
        let mut downstream = downstream::begin(&pool, &provider_name).await?;
        downstream::execute_all(&mut downstream, &provider_name, &statements).await?;
        self.credentials.maybe_pause().await;

        let actor = format!("agent:{}", agent.id);
        let mut tx = self.db.begin().await?;
        if !store::grants::redeem(&mut tx, jti, now).await? {
            drop(tx);
            // Dropping `downstream` rolls the role back.
            return Err(self.why_not_redeemed(jti, now).await?);
        }
        let lease = LeaseRow {
            id: lease_id.to_string(),
            jti: jti.to_string(),
            request_id: request.id.clone(),
            agent_id: agent.id.clone(),
            provider: provider_name.clone(),
            login: login.clone(),
            state: "active".into(),
            issued_at: now,
            expires_at,
            revoke_reason: None,
            revoke_step: 0,
            attempts: 0,
        };
        rows::insert_lease(&mut tx, &lease).await?;
        audit::append_many(
            &mut tx,
            &[
                audit::NewEvent {
                    at: now,
                    actor: actor.clone(),
                    kind: EventKind::GrantRedeemed,
                    request_id: Some(request.id.clone()),
                    data: json!({ "jti": jti, "for": "credential" }),
                },
                audit::NewEvent {
                    at: now,
                    actor: "system".into(),
                    kind: EventKind::CredentialIssued,
                    request_id: Some(request.id.clone()),
                    data: json!({
                        "jti": jti, "lease": lease.id, "provider": provider_name,
                        "kind": "postgres", "secret_fingerprint": provider.fingerprint,
                        "login": login, "member_of": settings.template_role,
                        "connection_limit": settings.connection_limit,
                        "statement_timeout_ms": settings.statement_timeout_ms,
                        "expires_at": rfc3339(expires_at),
                    }),
                },
            ],
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        crate::telemetry::bump(&self.metrics.grants_redeemed);

        if let Err(e) = downstream.commit().await {
            // Whether the role exists is unknown: revoke the lease, which removes it if so.
            self.revoke_lease(&lease.id, "issue_failed", "system")
                .await?;
            return Err(Error::UpstreamFailed(format!(
                "credential provider {provider_name} did not confirm the login: {}",
                downstream::describe(&e)
            )));
        }
        // A revocation that committed between our commit and the provider's may have found no
        // role to remove; it is run again now that the role exists.
        let state = rows::lease(self.db.reader(), &lease.id)
            .await?
            .map(|l| l.state)
            .unwrap_or_default();
        if state != "active" {
            self.reopen_revocation(&lease.id).await?;
            return Err(Error::GrantRevoked);
        }
        tracing::info!(lease = %lease.id, provider = %provider_name, %login, agent = %agent.id, "credential released");
        Ok(ReleasedCredential {
            provider: provider_name,
            login,
            password,
            connection_string,
            expires_at,
        })
    }

    /// Starts the revocation of a lease (outside any other change), with its audit event.
    async fn revoke_lease(&self, id: &str, reason: &str, actor: &str) -> Result<bool, Error> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let done = request_revoke(&mut tx, id, reason, actor, now).await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        self.credentials.kick();
        Ok(done)
    }

    /// A lease whose revocation may have run before its role was committed: taken apart once
    /// more, from the first step. Counting a new attempt makes a worker still busy with the old
    /// one record nothing more (its writes name the old attempt).
    async fn reopen_revocation(&self, id: &str) -> Result<(), Error> {
        sqlx::query(
            "UPDATE credential_leases SET state = 'revoking', revoke_step = 0, \
             attempts = attempts + 1, next_attempt_at = $2, lease_until = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(self.now())
        .execute(self.db.writer())
        .await
        .map_err(store::StoreError::from)?;
        self.credentials.kick();
        Ok(())
    }

    /// Moves every active lease whose time ran out to `revoking` (the sweeper calls this).
    pub(crate) async fn expire_credentials(&self, now: Millis) -> Result<usize, Error> {
        let mut n = 0;
        for id in rows::overdue(self.db.reader(), now, 500).await? {
            let mut tx = self.db.begin().await?;
            if request_revoke(&mut tx, &id, "expired", "system", now).await? {
                n += 1;
            }
            tx.commit().await.map_err(store::StoreError::from)?;
        }
        if n > 0 {
            self.credentials.kick();
        }
        Ok(n)
    }

    /// One pass of the revocation worker: claims what is due and carries each out. Returns how
    /// many it claimed.
    pub async fn revoke_due_credentials(self: &Arc<Self>) -> Result<usize, Error> {
        let now = self.now();
        let until = now + i64::try_from(CLAIM.as_millis()).unwrap_or(60_000);
        let claimed = {
            let mut tx = self.db.begin().await?;
            let claimed = rows::claim(&mut tx, now, until, CONCURRENT_REVOCATIONS).await?;
            tx.commit().await.map_err(store::StoreError::from)?;
            claimed
        };
        let n = claimed.len();
        let tasks: Vec<_> = claimed
            .into_iter()
            .map(|lease| {
                let core = self.clone();
                tokio::spawn(async move { core.carry_out_revocation(lease).await })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        Ok(n)
    }

    /// Takes a claimed lease's login apart, step by step from where an earlier attempt
    /// stopped; a failure is recorded and retried later.
    async fn carry_out_revocation(&self, lease: LeaseRow) {
        if let Err(e) = self.revocation_steps(&lease).await {
            let error = e.for_log();
            tracing::warn!(lease = %lease.id, provider = %lease.provider, attempt = lease.attempts, %error, "credential revocation failed; it will be retried");
            let at = self.now() + backoff(lease.attempts);
            let mut conn = match self.db.writer().acquire().await {
                Ok(c) => c,
                Err(_) => return,
            };
            if let Err(e) = rows::retry_at(&mut conn, &lease.id, lease.attempts, at, &error).await {
                tracing::warn!(lease = %lease.id, error = %Error::from(e).for_log(), "cannot record a failed revocation; its claim runs out and it is tried again");
            }
        }
    }

    async fn revocation_steps(&self, lease: &LeaseRow) -> Result<(), Error> {
        let (provider, admin_dsn) = self.provider_for_use(&lease.provider).await?;
        let pool = self
            .credentials
            .pools
            .get(&provider.name, &provider.fingerprint, &admin_dsn)?;
        let first = usize::try_from(lease.revoke_step).unwrap_or(0);
        for (i, step) in RevokeStep::ALL.iter().enumerate().skip(first) {
            let done = downstream::run_step(&pool, *step, &lease.login)
                .await
                .map_err(|e| Error::UpstreamFailed(format!("{}: {e}", step.as_str())))?;
            let now = self.now();
            let mut tx = self.db.begin().await?;
            let steps = i64::try_from(i + 1).unwrap_or(4);
            if !rows::step_done(&mut tx, &lease.id, lease.attempts, steps).await? {
                // Another worker owns this revocation now.
                return Ok(());
            }
            let mut data =
                json!({ "lease": lease.id, "login": lease.login, "step": step.as_str() });
            match done {
                StepDone::NoRole => data["role_absent"] = json!(true),
                StepDone::Ran(n) if *step == RevokeStep::TerminateSessions => {
                    data["sessions"] = json!(n)
                }
                StepDone::Ran(_) => {}
            }
            audit::append(
                &mut tx,
                now,
                "system",
                EventKind::CredentialRevokeStep,
                Some(&lease.request_id),
                &data,
            )
            .await?;
            tx.commit().await.map_err(store::StoreError::from)?;
        }
        let now = self.now();
        let mut tx = self.db.begin().await?;
        if rows::finish(&mut tx, &lease.id, lease.attempts, now).await? {
            audit::append(
                &mut tx,
                now,
                "system",
                EventKind::CredentialRevoked,
                Some(&lease.request_id),
                &json!({ "lease": lease.id, "login": lease.login, "provider": lease.provider,
                         "reason": lease.revoke_reason }),
            )
            .await?;
        }
        tx.commit().await.map_err(store::StoreError::from)?;
        tracing::info!(lease = %lease.id, login = %lease.login, reason = ?lease.revoke_reason, "credential revoked");
        Ok(())
    }

    /// The reaper: on every PostgreSQL provider's server, takes apart each login of ours that
    /// no active lease accounts for (a lease that was revoked, or none at all). One replica at
    /// a time. Returns how many it removed.
    pub async fn reap_credentials(&self) -> Result<usize, Error> {
        if self.db.backend() == Backend::Postgres {
            let mut tx = self.db.begin().await?;
            if !coordination::try_lock(&mut tx, Backend::Postgres, REAPER_LOCK).await? {
                return Ok(0);
            }
            let reaped = self.reap_once().await;
            tx.commit().await.map_err(store::StoreError::from)?;
            return reaped;
        }
        self.reap_once().await
    }

    async fn reap_once(&self) -> Result<usize, Error> {
        let mut reaped = 0;
        for provider in self.credential_providers().await? {
            let ProviderSettings::Postgres(settings) = &provider.settings else {
                continue;
            };
            // One provider that cannot be used here (its secret does not open with this key)
            // does not keep the others from being reaped.
            let pool = match self
                .provider_for_use(&provider.name)
                .await
                .and_then(|(_, dsn)| {
                    self.credentials
                        .pools
                        .get(&provider.name, &provider.fingerprint, &dsn)
                }) {
                Ok(pool) => pool,
                Err(e) => {
                    tracing::warn!(provider = %provider.name, error = %e.for_log(), "reaper: provider unusable here");
                    continue;
                }
            };
            let logins = match downstream::our_logins(&pool, &settings.template_role).await {
                Ok(l) => l,
                Err(error) => {
                    tracing::warn!(provider = %provider.name, %error, "reaper: cannot list the provider's logins");
                    continue;
                }
            };
            for (login, _valid_until) in logins {
                let lease = rows::lease_of_login(self.db.reader(), &login).await?;
                if lease.as_ref().is_some_and(|l| l.state != "revoked") {
                    continue;
                }
                let mut failed = None;
                for step in RevokeStep::ALL {
                    if let Err(e) = downstream::run_step(&pool, step, &login).await {
                        failed = Some(e);
                        break;
                    }
                }
                if let Some(error) = failed {
                    tracing::warn!(provider = %provider.name, %login, %error, "reaper: cannot remove a login; next pass tries again");
                    continue;
                }
                let mut tx = self.db.begin().await?;
                audit::append(
                    &mut tx,
                    self.now(),
                    "system",
                    EventKind::CredentialReaped,
                    lease.as_ref().map(|l| l.request_id.as_str()),
                    &json!({ "provider": provider.name, "login": login,
                             "lease": lease.as_ref().map(|l| l.id.clone()) }),
                )
                .await?;
                tx.commit().await.map_err(store::StoreError::from)?;
                reaped += 1;
                tracing::info!(provider = %provider.name, %login, "reaper removed a login no live credential accounts for");
            }
        }
        Ok(reaped)
    }
}

/// Starts the revocation of an active lease inside the caller's transaction, with its
/// `credential.revoking` event. True when this call did it.
pub(crate) async fn request_revoke(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    reason: &str,
    actor: &str,
    now: Millis,
) -> Result<bool, Error> {
    let Some(lease) = rows::request_revoke(&mut *conn, id, reason, now).await? else {
        return Ok(false);
    };
    audit::append_many(conn, &[revoking_event(&lease, reason, actor, now)]).await?;
    Ok(true)
}

/// The `credential.revoking` event of a lease whose revocation starts for `reason`.
pub(crate) fn revoking_event(
    lease: &LeaseRow,
    reason: &str,
    actor: &str,
    now: Millis,
) -> audit::NewEvent {
    audit::NewEvent {
        at: now,
        actor: actor.to_string(),
        kind: EventKind::CredentialRevoking,
        request_id: Some(lease.request_id.clone()),
        data: json!({ "lease": lease.id, "login": lease.login, "provider": lease.provider,
                      "reason": reason }),
    }
}

/// Runs the revocation worker until the process ends: woken when a revocation is started here,
/// and at the next due time (or every few seconds, for revocations started on other replicas).
pub async fn run(core: Arc<Countersign>) {
    loop {
        match core.revoke_due_credentials().await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.for_log(), "credential revocation pass failed"),
        }
        let wait = match rows::next_due(core.db.reader()).await {
            Ok(Some(due)) => Duration::from_millis(
                u64::try_from((due - core.now()).clamp(0, 2_000)).unwrap_or(2_000),
            ),
            _ => Duration::from_secs(2),
        };
        tokio::select! {
            _ = core.credentials.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Runs the reaper at start and then every [`REAP_EVERY`].
pub async fn run_reaper(core: Arc<Countersign>) {
    let mut tick = tokio::time::interval(REAP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = core.reap_credentials().await {
            tracing::warn!(error = %e.for_log(), "credential reaper pass failed");
        }
    }
}
