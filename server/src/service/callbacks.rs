//! Signed callbacks to agents (OpenID CIBA "ping" mode): registering an agent's callback URL,
//! and the worker that delivers what the outbox owes.
//!
//! ```text
//!   owner / admin            countersign                          agent's endpoint
//!   callback set URL ──────> check form, resolve, every address
//!                            global (or allowed) ── audited
//!   approve / deny / cancel / expiry:
//!                            UPDATE requests … WHERE status = 'pending'
//!                            INSERT callback_deliveries           (one transaction)
//!   worker (every replica):  UPDATE … SET attempts+1, lease        (one claim, one winner)
//!                            resolve again, check every address,
//!                            connect only to checked ones ──────> POST application/jwt
//!                                                                  {request_id, status}
//!                            2xx: delivered ─ audited <────────── 200
//!                            else: retry with backoff, then failed ─ audited
//!   agent:                   GET /api/v1/requests/{id} with its own credential ── the grant
//! ```
//!
//! What this module must never do:
//!
//! - **Delay a decision.** Deciding only writes a row; sending happens in the worker, off every
//!   caller's path, with at most [`MAX_CONCURRENT_DELIVERIES`] attempts in flight, each cut off
//!   after [`ATTEMPT_TIMEOUT`]. A dead endpoint holds one slot for a few seconds at a time, so it
//!   never holds up another agent's callbacks.
//! - **Reach what it should not (SSRF).** An owner chooses the URL, so the URL is an attacker's
//!   input. The host is resolved at registration and again at every attempt, every address it
//!   resolves to must be globally routable (or on `COUNTERSIGN_CALLBACK_ALLOW`), and the
//!   connection goes only to the addresses that were checked (the client's resolver is
//!   overridden with them), so a name that answers differently the second time (DNS
//!   rebinding) gains nothing. Redirects are not followed (a 3xx is a failed attempt) and no proxy is used.
//! - **Carry or log a secret.** The body says which request changed and to what; the grant is
//!   fetched by the agent with its own credential. Logs and the audit chain show the URL's
//!   origin only: its path or query may hold a token the agent uses to recognise us.
//!
//! Delivery is at least once: a worker that sends, then dies before recording it, leaves the
//! row to be sent again when its lease runs out. Receivers can tell a repeat by `request_id`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Notify, Semaphore};
use url::Url;

use super::people::SignedIn;
use super::{Countersign, Error};
use crate::domain::audit_kind::EventKind;
use crate::domain::callback::{self as rules, CallbackUrlError};
use crate::store::callbacks::{self as rows, DeliveryRow, Outcome};
use crate::store::{self, agents, audit};
use crate::telemetry::bump;

/// Callback attempts in flight at once, per process.
pub const MAX_CONCURRENT_DELIVERIES: usize = 16;
/// How long one attempt may take, name resolution included, before it counts as failed.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a claimed callback belongs to the worker that claimed it: well past
/// [`ATTEMPT_TIMEOUT`], so only a worker that died loses it.
pub const LEASE: Duration = Duration::from_secs(30);
/// The longest the worker sleeps without looking at the outbox: callbacks owed by decisions
/// made on other replicas or by the command line are found within this.
pub const POLL_PERIOD: Duration = Duration::from_secs(1);

/// The worker's shared state: a wake-up and the slots for attempts in flight.
#[derive(Debug)]
pub struct Callbacks {
    wake: Notify,
    slots: Arc<Semaphore>,
}

impl Default for Callbacks {
    fn default() -> Self {
        Self {
            wake: Notify::new(),
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_DELIVERIES)),
        }
    }
}

impl Callbacks {
    /// Tells this process's worker that a callback may be due now (a decision just committed,
    /// or an attempt just finished). Never blocks; a wake-up with nobody waiting is kept.
    pub fn kick(&self) {
        self.wake.notify_one();
    }
}

/// An agent's callback after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackSetting {
    /// The agent.
    pub agent_id: String,
    /// The URL as stored (normalised), or `None`.
    pub url: Option<String>,
}

/// Why one attempt failed. Displayed in logs and stored as the delivery's last error, so no
/// variant holds the URL.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("{0}")]
    Refused(CallbackUrlError),
    #[error("no answer within {}s", ATTEMPT_TIMEOUT.as_secs())]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("the endpoint answered {0}")]
    Status(u16),
    #[error("{0}")]
    Internal(String),
    #[error("the agent's callback URL was cleared")]
    Cleared,
}

fn url_error(e: CallbackUrlError) -> Error {
    Error::invalid("url", e.to_string())
}

impl Countersign {
    /// Sets (`Some(url)`) or clears (`None`) the callback URL of an agent the person owns;
    /// admins may change any agent's. Someone else's agent is "no such agent", as everywhere.
    pub async fn set_agent_callback(
        &self,
        who: &SignedIn,
        agent_id: &str,
        url: Option<&str>,
    ) -> Result<CallbackSetting, Error> {
        let agent = agents::get(self.db.reader(), agent_id)
            .await?
            .ok_or_else(|| Error::NotFound("no such agent".into()))?;
        if agent.owner_id != who.person.id && !who.person.role.is_admin() {
            return Err(Error::NotFound("no such agent".into()));
        }
        self.set_callback_url(agent_id, url, &format!("user:{}", who.person.id))
            .await
    }

    /// Sets or clears an agent's callback URL as `actor` (the command line is `cli`; callers
    /// have authorised). The URL is checked as a delivery would check it, and the change is
    /// audited with the URL's origin and a hash of the whole URL, never the URL itself.
    pub async fn set_callback_url(
        &self,
        agent_id: &str,
        url: Option<&str>,
        actor: &str,
    ) -> Result<CallbackSetting, Error> {
        let checked = match url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(raw) => Some(self.vet_callback_url(raw).await?),
            None => None,
        };
        let stored = checked.as_ref().map(Url::to_string);
        let now = self.now();
        let mut tx = self.db.begin().await?;
        if !rows::set_url(&mut tx, agent_id, stored.as_deref()).await? {
            return Err(Error::NotFound(format!("no agent {agent_id}")));
        }
        let (kind, data) = match &checked {
            Some(u) => (
                EventKind::AgentCallbackSet,
                json!({
                    "agent_id": agent_id,
                    "endpoint": rules::origin(u),
                    "url_sha256": format!("sha256:{}", hex::encode(Sha256::digest(u.as_str()))),
                }),
            ),
            None => (
                EventKind::AgentCallbackCleared,
                json!({ "agent_id": agent_id }),
            ),
        };
        audit::append(&mut tx, now, actor, kind, None, &data).await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        match &checked {
            Some(u) => {
                tracing::info!(agent_id, endpoint = %rules::origin(u), actor, "callback URL set")
            }
            None => tracing::info!(agent_id, actor, "callback URL cleared"),
        }
        Ok(CallbackSetting {
            agent_id: agent_id.to_string(),
            url: stored,
        })
    }

    /// The checks a callback URL must pass at registration: its form, then every address its
    /// host resolves to.
    async fn vet_callback_url(&self, raw: &str) -> Result<Url, Error> {
        let allow = &self.config.callback_allow;
        let url = rules::check_url(raw, allow).map_err(url_error)?;
        match tokio::time::timeout(ATTEMPT_TIMEOUT, resolve_checked(&url, allow)).await {
            Ok(Ok(_)) => Ok(url),
            Ok(Err(AttemptError::Refused(e))) => Err(url_error(e)),
            Ok(Err(e)) => Err(Error::invalid("url", e.to_string())),
            Err(_) => Err(Error::invalid(
                "url",
                "the callback host could not be resolved in time",
            )),
        }
    }

    /// One pass of the worker: claims the callbacks that are due (as many as there are free
    /// slots) and starts an attempt for each. Returns how many it started.
    pub async fn deliver_due_callbacks(self: &Arc<Self>) -> Result<usize, Error> {
        let free = self.callbacks.slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let now = self.now();
        let lease_until = now + i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
        let claimed = {
            let mut tx = self.db.begin().await?;
            let claimed =
                rows::claim(&mut tx, now, lease_until, i64::try_from(free).unwrap_or(1)).await?;
            tx.commit().await.map_err(store::StoreError::from)?;
            claimed
        };
        let started = claimed.len();
        for row in claimed {
            // Only this worker takes slots, and it claimed no more than were free.
            let permit = self.callbacks.slots.clone().acquire_owned().await;
            let core = self.clone();
            tokio::spawn(async move {
                core.deliver(row).await;
                drop(permit);
                core.callbacks.kick();
            });
        }
        Ok(started)
    }

    /// Makes one attempt at a claimed callback and records how it went.
    async fn deliver(&self, row: DeliveryRow) {
        // The URL registered now, not when the request was decided: an owner who clears or
        // replaces a callback (say, because the endpoint changed hands) is obeyed at once.
        let current = match rows::url_of(self.db.reader(), &row.agent_id).await {
            Ok(url) => url.flatten(),
            Err(e) => {
                // The lease runs out and the callback is tried again.
                tracing::warn!(request_id = %row.request_id, error = %Error::from(e).for_log(), "callback: cannot read the agent's callback URL");
                return;
            }
        };
        let target = current.as_deref().unwrap_or(&row.url);
        let result = match &current {
            None => Err(AttemptError::Cleared),
            Some(url) => match tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(&row, url)).await
            {
                Ok(r) => r,
                Err(_) => Err(AttemptError::Timeout),
            },
        };
        let now = self.now();
        let endpoint = Url::parse(target)
            .map(|u| rules::origin(&u))
            .unwrap_or_else(|_| "<invalid>".into());
        let m = &self.metrics.callbacks;
        let attempt = row.attempts;
        match &result {
            Ok(()) => bump(&m.attempt_delivered),
            Err(AttemptError::Refused(_)) => bump(&m.attempt_refused),
            Err(AttemptError::Timeout) => bump(&m.attempt_timeout),
            Err(AttemptError::Connect(_) | AttemptError::Internal(_)) => {
                bump(&m.attempt_connect_error)
            }
            Err(AttemptError::Status(_)) => bump(&m.attempt_http_error),
            // No attempt was made.
            Err(AttemptError::Cleared) => {}
        }
        let error = result.as_ref().err().map(ToString::to_string);
        let cleared = matches!(result, Err(AttemptError::Cleared));
        let outcome = match error.as_deref() {
            None => Outcome::Delivered,
            Some(e) if cleared => Outcome::Failed(e),
            Some(e) => {
                let done = u32::try_from(attempt).unwrap_or(u32::MAX);
                match self
                    .config
                    .callback_retry
                    .next_attempt(done, row.created_at, now)
                {
                    Some(at) => Outcome::RetryAt(at, e),
                    None => Outcome::Failed(e),
                }
            }
        };
        match self.record(&row, &endpoint, now, outcome).await {
            Ok(false) => {
                tracing::warn!(request_id = %row.request_id, attempt, "callback attempt finished after its lease ran out; another worker owns it now");
            }
            Ok(true) => match outcome {
                Outcome::Delivered => {
                    bump(&m.delivered);
                    let took = u64::try_from(now - row.created_at).unwrap_or(0);
                    m.latency.record(Duration::from_millis(took));
                    tracing::info!(request_id = %row.request_id, agent_id = %row.agent_id, %endpoint, attempt, "callback delivered");
                }
                Outcome::RetryAt(at, error) => {
                    tracing::warn!(request_id = %row.request_id, agent_id = %row.agent_id, %endpoint, attempt, error, retry_in_ms = at - now, "callback not delivered yet; will retry");
                }
                Outcome::Failed(error) => {
                    bump(&m.failed);
                    tracing::warn!(request_id = %row.request_id, agent_id = %row.agent_id, %endpoint, attempt, error, "callback not delivered; giving up");
                }
            },
            Err(e) => {
                // The lease runs out and the callback is tried again: at least once.
                tracing::warn!(request_id = %row.request_id, attempt, error = %e.for_log(), "callback attempt could not be recorded");
            }
        }
    }

    /// Writes an attempt's outcome; a final one goes on the audit chain in the same
    /// transaction.
    async fn record(
        &self,
        row: &DeliveryRow,
        endpoint: &str,
        now: i64,
        outcome: Outcome<'_>,
    ) -> Result<bool, Error> {
        let mut tx = self.db.begin().await?;
        if !rows::finish(&mut tx, &row.request_id, row.attempts, now, outcome).await? {
            return Ok(false);
        }
        let event = match outcome {
            Outcome::Delivered => Some((EventKind::CallbackDelivered, None)),
            Outcome::Failed(e) => Some((EventKind::CallbackFailed, Some(e))),
            Outcome::RetryAt(..) => None,
        };
        if let Some((kind, error)) = event {
            let mut data = json!({
                "agent_id": row.agent_id,
                "endpoint": endpoint,
                "status": row.status,
                "attempts": row.attempts,
            });
            if let Some(e) = error {
                data["error"] = json!(e);
            }
            audit::append(&mut tx, now, "system", kind, Some(&row.request_id), &data).await?;
        }
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(true)
    }

    /// One attempt: check the URL and every address again, sign, POST to the checked address.
    async fn attempt(&self, row: &DeliveryRow, target: &str) -> Result<(), AttemptError> {
        let allow = &self.config.callback_allow;
        let url = rules::check_url(target, allow).map_err(AttemptError::Refused)?;
        let addresses = resolve_checked(&url, allow).await?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| AttemptError::Internal("no port".into()))?;
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!(
                "Countersign/",
                env!("CARGO_PKG_VERSION"),
                " callback"
            ));
        if let Some(url::Host::Domain(name)) = url.host() {
            // Connect only to the addresses we checked, not to whatever the name says next time.
            let checked: Vec<SocketAddr> = addresses
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect();
            client = client.resolve_to_addrs(name, &checked);
        }
        let client = client
            .build()
            .map_err(|e| AttemptError::Internal(e.without_url().to_string()))?;
        let claims = rules::claims(
            &self.issuer(),
            target,
            &row.request_id,
            &row.status,
            &uuid::Uuid::new_v4().to_string(),
            self.clock.now_secs(),
        );
        let token = self
            .signer
            .sign_compact(rules::CALLBACK_TYP, &claims)
            .map_err(|e| AttemptError::Internal(e.to_string()))?;
        let answer = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, rules::CALLBACK_CONTENT_TYPE)
            .body(token)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    AttemptError::Timeout
                } else {
                    AttemptError::Connect(e.without_url().to_string())
                }
            })?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(AttemptError::Status(status.as_u16()))
        }
    }
}

/// Resolves the URL's host (an address literal resolves to itself) and checks every address;
/// returns them, the only ones to connect to.
async fn resolve_checked(url: &Url, allow: &rules::AllowList) -> Result<Vec<IpAddr>, AttemptError> {
    let host = url
        .host()
        .ok_or(AttemptError::Refused(CallbackUrlError::NoAddress))?;
    let addresses: Vec<IpAddr> = match &host {
        url::Host::Ipv4(ip) => vec![IpAddr::V4(*ip)],
        url::Host::Ipv6(ip) => vec![IpAddr::V6(*ip)],
        url::Host::Domain(name) => {
            let port = url.port_or_known_default().unwrap_or(443);
            tokio::net::lookup_host((*name, port))
                .await
                .map_err(|_| AttemptError::Refused(CallbackUrlError::NoAddress))?
                .map(|a| a.ip())
                .collect()
        }
    };
    rules::check_addresses(&host, &addresses, allow).map_err(AttemptError::Refused)
}

/// The delivery worker: one per process, until the process ends. Every replica runs one; the
/// claims make sure each attempt is made by one of them. It reads when the next callback falls
/// due and claims (a write) only then, so an idle outbox costs one read a second.
pub async fn run(core: Arc<Countersign>) {
    loop {
        let now = core.now();
        let due = match rows::next_due(core.db.reader()).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %Error::from(e).for_log(), "callback worker: reading the outbox failed");
                None
            }
        };
        let free = core.callbacks.slots.available_permits();
        if due.is_some_and(|d| d <= now) && free > 0 {
            match core.deliver_due_callbacks().await {
                // More may be due: look again at once.
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e.for_log(), "callback worker: claiming failed");
                }
            }
        }
        let wait = match due {
            Some(d) if d > now => {
                Duration::from_millis(u64::try_from(d - now).unwrap_or(0)).min(POLL_PERIOD)
            }
            _ => POLL_PERIOD,
        };
        // A new decision or a finished attempt kicks us sooner.
        let _ = tokio::time::timeout(wait, core.callbacks.wake.notified()).await;
    }
}
