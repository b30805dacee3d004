//! The signed-in person's own account: who is signed in, signing out, their passkeys, and what
//! an enrolment link is for.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use super::{backend, with_status};
use super::{AppError, Role};

/// The signed-in person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    /// User id.
    pub id: String,
    /// E-mail.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// What they may do.
    pub role: Role,
}

/// One of the person's passkeys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyItem {
    /// Passkey id.
    pub id: String,
    /// The name its owner gave it.
    pub name: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub last_used_at: Option<i64>,
}

/// What an enrolment link is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentInfo {
    /// The invited address; `None` for the first-admin link, which asks for one.
    pub email: Option<String>,
    /// What they may do.
    pub role: Role,
    /// Unix ms.
    pub expires_at: i64,
}

/// The account's server functions, served by the server crate.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait AccountBackend: Send + Sync + 'static {
    /// Who is signed in, if anyone.
    async fn me(&self, req: &http::request::Parts) -> Result<Option<Viewer>, AppError>;
    /// Signs out.
    async fn sign_out(&self, req: &http::request::Parts) -> Result<(), AppError>;
    /// This person's passkeys.
    async fn passkeys(&self, req: &http::request::Parts) -> Result<Vec<PasskeyItem>, AppError>;
    /// Renames one of them.
    async fn rename_passkey(
        &self,
        req: &http::request::Parts,
        id: String,
        name: String,
    ) -> Result<(), AppError>;
    /// Removes one of them (never the last).
    async fn remove_passkey(&self, req: &http::request::Parts, id: String) -> Result<(), AppError>;
    /// What an enrolment link is for.
    async fn enrolment(&self, token: String) -> Result<EnrolmentInfo, AppError>;
}

/// Who is signed in.
#[server(prefix = "/api/app", endpoint = "me")]
pub async fn me() -> Result<Option<Viewer>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.me(&p).await)
}

/// Ends this session.
#[server(prefix = "/api/app", endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), AppError> {
    let (b, p) = backend().await?;
    with_status(b.sign_out(&p).await)
}

/// My passkeys.
#[server(prefix = "/api/app", endpoint = "passkeys")]
pub async fn passkeys() -> Result<Vec<PasskeyItem>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.passkeys(&p).await)
}

/// Renames a passkey.
#[server(prefix = "/api/app", endpoint = "rename_passkey")]
pub async fn rename_passkey(id: String, name: String) -> Result<(), AppError> {
    let (b, p) = backend().await?;
    with_status(b.rename_passkey(&p, id, name).await)
}

/// Removes a passkey.
#[server(prefix = "/api/app", endpoint = "remove_passkey")]
pub async fn remove_passkey(id: String) -> Result<(), AppError> {
    let (b, p) = backend().await?;
    with_status(b.remove_passkey(&p, id).await)
}

/// What an enrolment link is for (no sign-in needed: the link is the credential).
#[server(prefix = "/api/app", endpoint = "enrolment")]
pub async fn enrolment(token: String) -> Result<EnrolmentInfo, AppError> {
    let (b, _) = backend().await?;
    with_status(b.enrolment(token).await)
}
