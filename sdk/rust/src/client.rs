//! The agent's side: [`Client`] asks before acting, waits for the decision, and afterwards
//! reports what happened.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use reqwest::Method;
use serde_json::json;
use tokio::time::Instant;

use crate::credentials::{Auth, Credentials};
use crate::downstream::Downstream;
use crate::error::Error;
use crate::model::{ApprovalRequest, Grant, Outcome, RequestState, TaskCredential};
use crate::transport::{now_secs, Server, CALL_TIMEOUT};

/// The longest `wait` the server takes.
pub const MAX_WAIT: Duration = Duration::from_secs(55);
/// How much longer than its `wait` a long-poll may take before we give up on the connection.
const WAIT_MARGIN: Duration = Duration::from_secs(15);
/// The longest we sleep on one `slow_down` or `Retry-After`, whatever the server says.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long to back off when a `slow_down` or `rate_limited` answer does not say.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// Called with the request's state when it has to wait for a person.
type PendingHook = Arc<dyn Fn(&RequestState) + Send + Sync>;

/// A Countersign agent: one server, one credential.
///
/// Cheap to clone (the connection pool and the credential are shared). Every call that
/// authenticates with an Ed25519 key signs a fresh assertion.
#[derive(Clone)]
pub struct Client {
    server: Server,
    auth: Arc<Auth>,
    on_pending: Option<PendingHook>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("public_url", &self.server.public_url)
            .field("agent_id", &self.auth.agent_id())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the server at `base_url` (e.g. `https://countersign.example.com`),
    /// authenticating with `credentials`.
    ///
    /// `base_url` is also taken as the server's public URL (the `aud` of Ed25519 assertions);
    /// when the server is reached at another address, say so with
    /// [`with_public_url`](Self::with_public_url). Fails with [`Error::Config`] for a URL that
    /// is not http(s) or an API key that is not a Countersign agent key.
    pub fn new(base_url: &str, credentials: Credentials) -> Result<Self, Error> {
        Ok(Self {
            server: Server::new(base_url)?,
            auth: Arc::new(Auth::new(credentials)?),
            on_pending: None,
        })
    }

    /// The server's public URL (`COUNTERSIGN_PUBLIC_URL`), when it differs from the address
    /// the client connects to (behind a proxy, say).
    pub fn with_public_url(mut self, public_url: &str) -> Self {
        self.server.set_public_url(public_url);
        self
    }

    /// Sends through this `reqwest` client instead of the default one (proxies, your own
    /// roots, timeouts). Redirects should stay off: the API never redirects.
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.server.http = http;
        self
    }

    /// Called by [`request_approval`](Self::request_approval) once, with the pending state,
    /// when a person has to decide: show them `state.approval_url`.
    pub fn on_pending(mut self, hook: impl Fn(&RequestState) + Send + Sync + 'static) -> Self {
        self.on_pending = Some(Arc::new(hook));
        self
    }

    /// The agent's id, when the credential says it (an API key does, `cs_agent_<id>_…`).
    pub fn agent_id(&self) -> Option<&str> {
        self.auth.agent_id()
    }

    /// A [`Downstream`] of the same server (verifying and redeeming grants), sharing this
    /// client's connection pool. Each call makes a new one with an empty JWKS cache: keep it.
    pub fn downstream(&self) -> Downstream {
        Downstream::from_server(self.server.clone())
    }

    /// An authenticated call to these path segments.
    fn call(&self, method: Method, segments: &[&str]) -> Result<reqwest::RequestBuilder, Error> {
        let authorization = self.auth.header(&self.server.public_url, now_secs())?;
        Ok(self
            .server
            .http
            .request(method, self.server.url(segments))
            .header(AUTHORIZATION, authorization)
            .timeout(CALL_TIMEOUT))
    }

    // --- asking -----------------------------------------------------------------------------

    /// `POST /api/v1/requests`: the request's state, `pending` or, when a policy rule allows
    /// the action outright, `approved` with its grant. A rule that forbids it is
    /// [`Error::DeniedByPolicy`].
    pub async fn create_request(&self, request: &ApprovalRequest) -> Result<RequestState, Error> {
        let mut call = self
            .call(Method::POST, &["api", "v1", "requests"])?
            .json(request);
        if let Some(key) = &request.idempotency_key {
            call = call.header("Idempotency-Key", key);
        }
        let (status, body) = self.server.send(call).await?;
        RequestState::from_body(status, &body)
    }

    /// `GET /api/v1/requests/{id}?wait=…`: the request's state, after holding the call up to
    /// `wait` (whole seconds, at most [`MAX_WAIT`]) until it is decided. The server answers
    /// the moment it is. Reading again sooner than `interval` without `wait` is
    /// [`Error::SlowDown`].
    pub async fn get_request(&self, id: &str, wait: Duration) -> Result<RequestState, Error> {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut call = self.call(Method::GET, &["api", "v1", "requests", id])?;
        if seconds > 0 {
            call = call
                .query(&[("wait", seconds)])
                .timeout(Duration::from_secs(seconds) + WAIT_MARGIN);
        }
        let (status, body) = self.server.send(call).await?;
        RequestState::from_body(status, &body)
    }

    /// Long-waits (`wait` = [`MAX_WAIT`], again and again) until the request is decided and
    /// returns its grant, or the error its end means: [`Error::Denied`],
    /// [`Error::DeniedByPolicy`], [`Error::Expired`], [`Error::Cancelled`].
    ///
    /// `slow_down` and `rate_limited` answers are waited out (their `Retry-After`); any other
    /// error ends the wait. It ends at the latest when the request expires; to give up sooner,
    /// wrap it in `tokio::time::timeout` (the request stays open).
    pub async fn wait_for_decision(&self, id: &str) -> Result<Grant, Error> {
        loop {
            let started = Instant::now();
            match self.get_request(id, MAX_WAIT).await {
                Ok(state) => {
                    let interval = state.interval;
                    if let Some(grant) = state.outcome()? {
                        return Ok(grant);
                    }
                    // Still pending. A long-poll answered long before its wait ran out (a
                    // proxy that cuts held calls, say) must not turn into a busy loop.
                    tokio::time::sleep_until(started + interval.min(MAX_BACKOFF)).await;
                }
                Err(Error::SlowDown(problem) | Error::RateLimited(problem)) => {
                    let pause = problem.retry_after().unwrap_or(DEFAULT_BACKOFF);
                    tokio::time::sleep(pause.min(MAX_BACKOFF)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks for approval and waits for the decision: [`create_request`](Self::create_request)
    /// then [`wait_for_decision`](Self::wait_for_decision).
    ///
    /// Returns the [`Grant`] (at once when policy allows the action), or
    /// [`Error::Denied`] (a person said no: their `reason_code` and `reason`),
    /// [`Error::DeniedByPolicy`], [`Error::Expired`] or [`Error::Cancelled`]. While a person
    /// must decide, the [`on_pending`](Self::on_pending) hook is called once.
    pub async fn request_approval(&self, request: &ApprovalRequest) -> Result<Grant, Error> {
        let state = self.create_request(request).await?;
        let id = state.id.clone();
        if state.status == crate::Status::Pending {
            if let Some(hook) = &self.on_pending {
                hook(&state);
            }
        }
        match state.outcome()? {
            Some(grant) => Ok(grant),
            None => self.wait_for_decision(&id).await,
        }
    }

    /// `POST /api/v1/requests/{id}/cancel`: withdraws a pending request (a decided one is
    /// [`Error::Conflict`]). Whoever is waiting on it gets [`Error::Cancelled`].
    pub async fn cancel_request(&self, id: &str) -> Result<RequestState, Error> {
        let call = self.call(Method::POST, &["api", "v1", "requests", id, "cancel"])?;
        let (status, body) = self.server.send(call).await?;
        RequestState::from_body(status, &body)
    }

    // --- after the decision -----------------------------------------------------------------

    /// `POST /api/v1/grants/{jti}/report`: what happened, closing the request's audit chain.
    /// The grant must have been redeemed; reporting twice is [`Error::Conflict`]. `detail` is
    /// at most 2000 characters.
    pub async fn report_outcome(
        &self,
        grant_id: &str,
        outcome: Outcome,
        detail: Option<&str>,
    ) -> Result<(), Error> {
        let mut body = json!({ "outcome": outcome });
        if let Some(detail) = detail {
            body["detail"] = json!(detail);
        }
        let call = self
            .call(Method::POST, &["api", "v1", "grants", grant_id, "report"])?
            .json(&body);
        self.server.send(call).await.map(drop)
    }

    /// `POST /api/v1/grants/{jti}/credential`: redeems the grant for the task-scoped
    /// credential its policy rule releases (a login on a PostgreSQL provider). Once: the grant
    /// is used up. A provider that cannot be reached is an [`Error`] whose
    /// [`code`](Error::code) is `provider_unavailable`, and uses nothing up.
    pub async fn task_credential(&self, grant_id: &str) -> Result<TaskCredential, Error> {
        let call = self.call(
            Method::POST,
            &["api", "v1", "grants", grant_id, "credential"],
        )?;
        let (status, body) = self.server.send(call).await?;
        serde_json::from_slice(&body)
            .map_err(|e| Error::bad_response(status, format!("not a credential: {e}")))
    }

    /// `POST /api/v1/grants/{jti}/revoke`: gives an unredeemed grant up.
    pub async fn revoke_grant(&self, grant_id: &str) -> Result<(), Error> {
        let call = self.call(Method::POST, &["api", "v1", "grants", grant_id, "revoke"])?;
        self.server.send(call).await.map(drop)
    }
}
