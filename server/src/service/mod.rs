//! Use cases. Each public method here is one thing a caller can do — an agent asks, an owner
//! approves, a downstream system redeems — and each state change is one transaction that writes
//! the new state and its audit event together.
//!
//! Callers (the HTTP edges and the command line) authenticate first and pass in who is acting;
//! the services authorise: they check that this agent or this person may do this to this
//! request. They never see HTTP.

pub mod account;
pub mod agent_admin;
pub mod agents;
pub mod audit;
pub mod batches;
pub mod callbacks;
pub mod checkpoints;
pub mod credentials;
pub mod decisions;
pub mod delegation;
pub mod error;
pub mod grants;
pub mod guards;
pub mod inbox;
pub mod notify;
pub mod people;
pub mod people_admin;
pub mod policies;
pub mod requests;
pub mod standing;
pub mod sweeper;
pub mod waiters;
pub mod writer;

use std::path::Path;
use std::sync::Arc;

use rand_core::OsRng;
use webauthn_rs::{Webauthn, WebauthnBuilder};

pub use error::Error;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::jose::GrantSigningKey;
use crate::store::Db;
use crate::telemetry::Metrics;

/// Everything the use cases share: one per process.
pub struct Countersign {
    /// The database.
    pub db: Db,
    /// The configuration it was started with.
    pub config: Config,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// This process's grant-signing key.
    pub signer: GrantSigningKey,
    /// The WebAuthn relying party.
    pub webauthn: Webauthn,
    /// Agents waiting for decisions.
    pub waiters: waiters::Waiters,
    /// When each request was last polled (for `slow_down`).
    pub polls: requests::PollTracker,
    /// When each agent's activity was last written.
    pub activity: agents::ActivityTracker,
    /// API keys intake checked recently (see `agents`, "Credentials cached for intake").
    pub credential_cache: agents::CredentialCache,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// The active policy, parsed once per version.
    pub policy_cache: policies::PolicyCache,
    /// Writes new requests, several per transaction.
    pub intake: writer::IntakeWriter,
    /// The fatigue guards' settings, read at most every few seconds.
    pub guards_cache: guards::GuardsCache,
    /// Per agent, at most how many of its requests wait (so the cap is not counted each time).
    pub pending_bounds: guards::PendingBounds,
    /// Sends mail (or writes it to the log) in the background.
    pub mailer: crate::mail::Mailer,
    /// Signed checkpoints of the audit chain: their key, file and schedule.
    pub checkpoints: checkpoints::Checkpoints,
    /// The approval announcements (see [`notify`]): they are made off the agent's path, and
    /// [`Countersign::announcing`] says how many have not finished.
    pub announcer: notify::Announcer,
    /// The callback worker's wake-up and slots (see [`callbacks`]).
    pub callbacks: callbacks::Callbacks,
    /// Task-scoped credentials: the credential key, provider connections, the revocation
    /// worker's wake-up (see [`credentials`]).
    pub credentials: credentials::Credentials,
}

impl std::fmt::Debug for Countersign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Countersign")
            .field("public_url", &self.config.public_url.as_str())
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl Countersign {
    /// Opens the database (running migrations), loads or creates the grant-signing key and
    /// registers its public half, and sets up the WebAuthn relying party.
    pub async fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<Self>, Error> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::internal(format!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let db = Db::connect_with(config.database_url.expose(), config.sqlite_durability).await?;
        let signer = load_or_create_signing_key(&config.data_dir)?;
        let checkpoints = checkpoints::Checkpoints::open(&config)?;
        let credentials = credentials::Credentials::open(&config.credential_key_file)?;
        let public = serde_json::to_string(&signer.public_jwk()).map_err(Error::internal)?;
        crate::store::grants::register_signing_key(
            db.writer(),
            signer.kid(),
            &public,
            clock.now_ms(),
        )
        .await?;
        let webauthn = relying_party(&config)?;
        let waiters = waiters::Waiters::default();
        let metrics = Metrics::default();
        // Fails only on settings the SMTP client refuses; the error names the variable and
        // never repeats its value (it may hold the relay's password).
        let mailer = crate::mail::Mailer::start(&config, metrics.mail.clone())
            .map_err(|e| Error::invalid(e.variable(), e.to_string()))?;
        let announcer = notify::Announcer::start(
            db.clone(),
            mailer.clone(),
            metrics.mail.clone(),
            config.issuer(),
        );
        Ok(Arc::new(Self {
            db: db.clone(),
            config,
            clock,
            signer,
            webauthn,
            waiters,
            polls: requests::PollTracker::default(),
            activity: agents::ActivityTracker::default(),
            credential_cache: agents::CredentialCache::default(),
            metrics,
            policy_cache: policies::PolicyCache::default(),
            intake: writer::IntakeWriter::start(db),
            guards_cache: guards::GuardsCache::default(),
            pending_bounds: guards::PendingBounds::default(),
            mailer,
            checkpoints,
            announcer,
            callbacks: callbacks::Callbacks::default(),
            credentials,
        }))
    }

    /// How many approval announcements (who to mail about a new request, and queueing those
    /// mails) are still running.
    pub fn announcing(&self) -> usize {
        self.announcer.waiting()
    }

    /// The current time in unix milliseconds.
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The public URL without a trailing slash.
    pub fn issuer(&self) -> String {
        self.config.issuer()
    }
}

fn relying_party(config: &Config) -> Result<Webauthn, Error> {
    let rp_id = config
        .public_url
        .host_str()
        .ok_or_else(|| Error::internal("public URL has no host"))?;
    WebauthnBuilder::new(rp_id, &config.public_url)
        .and_then(|b| b.rp_name("Countersign").build())
        .map_err(|e| Error::internal(format!("WebAuthn relying party: {e}")))
}

/// The grant-signing key lives in the data directory, readable by this user only. It is
/// created on first start; we never log it and never store it in the database (only its public
/// half goes there, so every replica can verify every grant).
fn load_or_create_signing_key(dir: &Path) -> Result<GrantSigningKey, Error> {
    let path = dir.join("grant-signing-key");
    let (seed, created) = load_or_create_seed(&path, || {
        GrantSigningKey::generate(&mut OsRng).secret_bytes()
    })?;
    let key = GrantSigningKey::from_secret_bytes(&seed)
        .map_err(|e| Error::internal(format!("{} is not a valid key: {e}", path.display())))?;
    if created {
        tracing::info!(kid = key.kid(), "created a new grant-signing key");
    }
    Ok(key)
}

/// Reads a key's secret seed from `path`, or, when there is no such file, writes a fresh one
/// from `fresh` there (mode 0600, created exclusively and fsync'd) and says so. If another
/// process creates it first, theirs is read.
pub(crate) fn load_or_create_seed(
    path: &Path,
    fresh: impl FnOnce() -> zeroize::Zeroizing<[u8; 32]>,
) -> Result<(zeroize::Zeroizing<Vec<u8>>, bool), Error> {
    use std::io::Write;
    let read = |path: &Path| {
        std::fs::read(path)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| Error::internal(format!("cannot read {}: {e}", path.display())))
    };
    match std::fs::metadata(path) {
        Ok(_) => return Ok((read(path)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::internal(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    }
    let seed = fresh();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok((read(path)?, false)),
        Err(e) => {
            return Err(Error::internal(format!(
                "cannot create {}: {e}",
                path.display()
            )))
        }
    };
    file.write_all(&*seed)
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))?;
    Ok((zeroize::Zeroizing::new(seed.to_vec()), true))
}
