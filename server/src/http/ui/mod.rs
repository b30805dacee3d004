//! The server side of the app's server functions ([`app::api::Backend`]): find who is signed in
//! from the request's session, call one service method, and turn its result into the app's
//! data types (and its error into an [`AppError`] with the right status). One file per area,
//! as in `app::api`: account, requests, agents, people, guards, policy, audit.
//!
//! Like every other edge, this decides nothing: the services authorise each call.

use std::sync::Arc;

use app::api::{self, AppError};
use axum::http::request::Parts;
use tower_sessions::Session;

use super::owner_api::signed_in;
use crate::domain::lifecycle;
use crate::service::people::SignedIn;
use crate::service::{Countersign, Error};

mod account;
mod agents;
mod audit;
mod credentials;
mod guards;
mod people;
mod policy;
mod requests;

/// The app's backend: one per process, shared by every request.
#[derive(Debug, Clone)]
pub struct UiBackend {
    core: Arc<Countersign>,
}

impl UiBackend {
    /// A backend over these services.
    pub fn new(core: Arc<Countersign>) -> Self {
        Self { core }
    }

    fn session(req: &Parts) -> Result<Session, AppError> {
        req.extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| AppError::Server("no session layer".into()))
    }

    async fn who(&self, req: &Parts) -> Result<SignedIn, AppError> {
        Ok(signed_in(&self.core, &Self::session(req)?).await?)
    }
}

/// Gives failed server function calls the status of their error. Leptos answers every failed
/// server function with 500, including arguments that did not parse; the body is the
/// [`AppError`], which knows its status (400 for bad arguments, 401, 403, …).
pub async fn server_fn_status(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let is_server_fn = req.uri().path().starts_with("/api/app/");
    let res = next.run(req).await;
    if !is_server_fn || res.status() != axum::http::StatusCode::INTERNAL_SERVER_ERROR {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    if let Ok(err) = serde_json::from_slice::<AppError>(&bytes) {
        parts.status = axum::http::StatusCode::from_u16(err.status())
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    }
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Service errors as the app shows them. Internal causes are logged here and never shown.
impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidRequest { field, detail } => AppError::Invalid {
                field: field.unwrap_or_default(),
                message: detail,
            },
            Error::InvalidToken(_) | Error::SignInRequired => AppError::SignInRequired,
            Error::Forbidden(m) | Error::AccessDenied(m) => AppError::Forbidden(m),
            Error::NotFound(m) => AppError::NotFound(m),
            Error::Conflict(m) => AppError::Conflict(m),
            Error::ExpiredToken(m) => AppError::Expired(m),
            e @ (Error::RateLimited { .. } | Error::SlowDown { .. }) => {
                AppError::RateLimited(e.to_string())
            }
            e @ Error::Internal(_) => {
                let cause = e.internal_cause().unwrap_or_default();
                tracing::error!(%cause, "server function failed");
                AppError::Server("internal error".into())
            }
            other => AppError::Server(other.to_string()),
        }
    }
}

/// The domain's words as the app's (the app crate mirrors them: it cannot depend on this one).
/// The matches are exhaustive, so a state added to the domain does not build until the app
/// names it too.
fn request_status(s: lifecycle::RequestStatus) -> api::RequestStatus {
    use lifecycle::RequestStatus as S;
    match s {
        S::Pending => api::RequestStatus::Pending,
        S::Approved => api::RequestStatus::Approved,
        S::Denied => api::RequestStatus::Denied,
        S::Expired => api::RequestStatus::Expired,
        S::Cancelled => api::RequestStatus::Cancelled,
    }
}

fn agent_status(s: lifecycle::AgentStatus) -> api::AgentStatus {
    match s {
        lifecycle::AgentStatus::Active => api::AgentStatus::Active,
        lifecycle::AgentStatus::Suspended => api::AgentStatus::Suspended,
    }
}

fn role(r: lifecycle::Role) -> api::Role {
    match r {
        lifecycle::Role::Owner => api::Role::Owner,
        lifecycle::Role::Admin => api::Role::Admin,
    }
}
