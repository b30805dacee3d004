//! What the pages exchange with the server: data types, the error type, and the server
//! functions, one file per area (account, requests, agents, people, guards, policy, audit,
//! credentials).
//!
//! The server functions are declared here, so the browser can call them, but this crate knows
//! nothing about the database: on the server each one asks the [`Backend`] that the server crate
//! put in the Leptos context. The backend authenticates the caller from the request's session
//! and authorises the call itself; these functions only carry arguments and results.

use serde::{Deserialize, Serialize};
use server_fn::codec::JsonEncoding;
use server_fn::error::{FromServerFnError, ServerFnErrorErr};

use leptos::prelude::*;

/// An error a page can show. The variants map to HTTP statuses on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// Nobody is signed in (401): pages send the visitor to sign in.
    #[error("please sign in")]
    SignInRequired,
    /// Signed in, but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing there, or nothing this person may see (404).
    #[error("{0}")]
    NotFound(String),
    /// A field is wrong (400); the form shows the message next to the field.
    #[error("{message}")]
    Invalid {
        /// The field's name in the form.
        field: String,
        /// What is wrong with it, in plain words.
        message: String,
    },
    /// The thing changed meanwhile (409), e.g. decided by someone else.
    #[error("{0}")]
    Conflict(String),
    /// It ran out of time (410), e.g. the request expired.
    #[error("{0}")]
    Expired(String),
    /// Too many at once (429).
    #[error("{0}")]
    RateLimited(String),
    /// Something failed that is not the caller's fault (500), or the server could not be
    /// reached.
    #[error("{0}")]
    Server(String),
}

impl AppError {
    /// The HTTP status the server answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::SignInRequired => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Invalid { .. } => 400,
            Self::Conflict(_) => 409,
            Self::Expired(_) => 410,
            Self::RateLimited(_) => 429,
            Self::Server(_) => 500,
        }
    }

    /// The message for a form field, when this error is about that field.
    pub fn for_field(&self, name: &str) -> Option<String> {
        match self {
            Self::Invalid { field, message } if field == name => Some(message.clone()),
            _ => None,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Request(e) => Self::Server(format!(
                "Could not reach Countersign ({e}). Check your connection and try again."
            )),
            ServerFnErrorErr::Args(e) | ServerFnErrorErr::MissingArg(e) => Self::Invalid {
                field: String::new(),
                message: e,
            },
            other => Self::Server(other.to_string()),
        }
    }
}

mod account;
mod agents;
mod audit;
mod credentials;
mod guards;
mod people;
mod policy;
mod requests;
mod vocab;

pub use account::*;
pub use agents::*;
pub use audit::*;
pub use credentials::*;
pub use guards::*;
pub use people::*;
pub use policy::*;
pub use requests::*;
pub use vocab::{AgentStatus, RequestStatus, Role, Verdict};

/// The server side of every server function. The server crate implements it, one area trait
/// per file ([`AccountBackend`], [`RequestsBackend`], …), and provides it (as `Arc<dyn Backend>`)
/// in the Leptos context; each method authenticates the caller from the request parts (the
/// session cookie) and authorises the call.
#[cfg(feature = "ssr")]
pub trait Backend:
    AccountBackend
    + RequestsBackend
    + AgentsBackend
    + PeopleBackend
    + GuardsBackend
    + PolicyBackend
    + AuditBackend
    + CredentialsBackend
{
}

#[cfg(feature = "ssr")]
impl<T> Backend for T where
    T: AccountBackend
        + RequestsBackend
        + AgentsBackend
        + PeopleBackend
        + GuardsBackend
        + PolicyBackend
        + AuditBackend
        + CredentialsBackend
{
}

/// What a server function needs from the request it serves: the backend, the request's parts
/// (its session cookie) and where to set the response status.
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct RequestScope {
    backend: std::sync::Arc<dyn Backend>,
    parts: http::request::Parts,
    response: Option<leptos_axum::ResponseOptions>,
}

#[cfg(feature = "ssr")]
impl RequestScope {
    /// This request's scope, from the current reactive owner's context (None outside a request,
    /// e.g. while the router lists the routes).
    fn from_context() -> Option<Self> {
        Some(Self {
            backend: use_context::<std::sync::Arc<dyn Backend>>()?,
            parts: use_context::<http::request::Parts>()?,
            response: use_context::<leptos_axum::ResponseOptions>(),
        })
    }
}

#[cfg(feature = "ssr")]
tokio::task_local! {
    /// The request a page's server call serves while the page renders on the server (see
    /// [`in_request`]).
    static REQUEST: Option<RequestScope>;
}

/// Wraps a page resource's fetcher so that, when the page renders on the server, its server
/// calls carry the request they serve with them instead of looking it up in the reactive owner
/// tree. In the browser it changes nothing.
///
/// Why: a resource's call runs in a task of its own and may outlive the render (an admin page
/// answers an owner 403 without waiting for its data, and a browser may go away mid-page). A
/// context lookup walks up the page's owners, and reactive_graph 0.2 deadlocks when the last
/// reference to one of them is dropped during that walk while the render tears them down on
/// another thread (the worker thread blocks for good). Capturing the scope here, in the
/// component's body, walks the owners while the render still holds them.
#[cfg(feature = "ssr")]
pub fn in_request<S, Fut>(
    fetch: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> impl Fn(S) -> tokio::task::futures::TaskLocalFuture<Option<RequestScope>, Fut> + Send + Sync + 'static
where
    Fut: std::future::Future,
{
    let scope = RequestScope::from_context();
    move |source| REQUEST.scope(scope.clone(), fetch(source))
}

/// In the browser a resource's fetcher calls the server over HTTP: nothing to carry.
#[cfg(not(feature = "ssr"))]
pub fn in_request<S, Fut>(
    fetch: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> impl Fn(S) -> Fut + Send + Sync + 'static {
    fetch
}

/// A page's resource: what every page builds its data with, instead of `Resource::new`
/// (clippy refuses a bare `Resource::new` in this crate; see `clippy.toml`).
///
/// It is `Resource::new(source, in_request(fetch))`: the fetcher is wrapped by [`in_request`]
/// so that, during a server render, the page's server calls carry the request they serve
/// (forgetting that once deadlocked a worker thread; `in_request` says why).
#[allow(clippy::disallowed_methods)]
pub fn page_resource<S, T, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetch: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> Resource<T>
where
    S: PartialEq + Clone + Send + Sync + 'static,
    T: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    Resource::new(source, in_request(fetch))
}

/// The request a server function serves: the one [`in_request`] carried, for a page rendering
/// on the server, or else the context leptos_axum provided for a call over HTTP (whose owner
/// lives as long as the call).
#[cfg(feature = "ssr")]
fn request_scope() -> Option<RequestScope> {
    REQUEST
        .try_with(Clone::clone)
        .ok()
        .flatten()
        .or_else(RequestScope::from_context)
}

#[cfg(feature = "ssr")]
async fn backend() -> Result<(std::sync::Arc<dyn Backend>, http::request::Parts), AppError> {
    let scope = request_scope().ok_or_else(|| AppError::Server("no request in context".into()))?;
    Ok((scope.backend, scope.parts))
}

/// Sets the HTTP status of a failed server function (or page render) to the error's. Not for
/// a plain form post (a page whose wasm has not loaded yet): Leptos answers that with a
/// redirect back to the form's page, the error in its URL for the page to show, and a 4xx
/// would replace the redirect.
#[cfg(feature = "ssr")]
pub(crate) fn with_status<T>(result: Result<T, AppError>) -> Result<T, AppError> {
    if let Err(e) = &result {
        if request_scope().is_some_and(|s| is_plain_form_post(&s.parts)) {
            return result;
        }
        if let Some(res) = request_scope().and_then(|s| s.response) {
            res.set_status(
                http::StatusCode::from_u16(e.status())
                    .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
            );
        }
    }
    result
}

/// Whether this call is an HTML form posted by the browser itself (the page's wasm has not
/// loaded yet) rather than a call from the app: the test Leptos uses to answer it with a
/// redirect back to the page.
#[cfg(feature = "ssr")]
fn is_plain_form_post(parts: &http::request::Parts) -> bool {
    parts
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// A one-time result (a new agent's key, an invitation link) handed from a plain form post to
/// the page it redirects to.
///
/// With the wasm loaded, the form's action holds the result and nothing is handed over. Before
/// it loads, the browser posts the form and Leptos redirects back to the page, so the result
/// rides along in a cookie: HttpOnly, SameSite=Strict, Secure, only for that page's path, for
/// a minute, and cleared by the render that shows it ([`take_handed_over`]). It is kept
/// nowhere on the server, so no replica has to find it and no session row holds a secret.
#[cfg(feature = "ssr")]
pub(crate) fn hand_over<T: Serialize>(name: &str, page: &str, value: &T) {
    use base64::Engine as _;
    let Some(scope) = request_scope() else { return };
    let (true, Some(response)) = (is_plain_form_post(&scope.parts), scope.response) else {
        return;
    };
    let Ok(json) = serde_json::to_vec(value) else {
        return;
    };
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let cookie =
        format!("{name}={encoded}; Path={page}; Max-Age=60; HttpOnly; Secure; SameSite=Strict");
    if let Ok(v) = http::HeaderValue::from_str(&cookie) {
        response.append_header(http::header::SET_COOKIE, v);
    }
}

/// Takes what [`hand_over`] left for this page, if anything, and clears it.
#[cfg(feature = "ssr")]
pub(crate) fn take_handed_over<T: serde::de::DeserializeOwned>(
    name: &str,
    page: &str,
) -> Option<T> {
    use base64::Engine as _;
    let scope = request_scope()?;
    let encoded = scope
        .parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))?
        .to_string();
    if let Some(response) = scope.response {
        let clear = format!("{name}=; Path={page}; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
        if let Ok(v) = http::HeaderValue::from_str(&clear) {
            response.append_header(http::header::SET_COOKIE, v);
        }
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()?;
    serde_json::from_slice(&json).ok()
}
