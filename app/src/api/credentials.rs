//! Credential providers, as admins see and configure them: where task-scoped credentials come
//! from. Secrets go in and never come out; the page shows each one's fingerprint.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::AppError;
#[cfg(feature = "ssr")]
use super::{backend, with_status};

/// One configured provider, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEntry {
    /// The name policy rules refer to.
    pub name: String,
    /// `postgres` or `http`.
    pub kind: String,
    /// Its settings in a line, e.g. `template role orders_rw, 2 connections, 30000 ms`.
    pub summary: String,
    /// The secret's fingerprint (`hmac-sha256:…`).
    pub fingerprint: String,
    /// When it was added (unix ms).
    pub created_at: i64,
    /// Who added it.
    pub created_by: String,
}

/// The add form as typed. Fields of the other kind are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewProvider {
    /// The name policy rules will use.
    pub name: String,
    /// `postgres` or `http`.
    pub kind: String,
    /// The admin connection string (postgres) or the header's value (http).
    pub secret: String,
    /// postgres: the template role.
    pub template_role: String,
    /// postgres: sessions per login.
    pub connection_limit: String,
    /// postgres: statement timeout (ms).
    pub statement_timeout_ms: String,
    /// http: the upstream's base URL.
    pub base_url: String,
    /// http: the header that carries the secret.
    pub header: String,
    /// http: the operations covered, one per line.
    pub operations: String,
    /// http: seconds a call may take.
    pub timeout_seconds: String,
}

/// The credential providers' server functions, served by the server crate.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait CredentialsBackend: Send + Sync + 'static {
    /// Every provider (admins only).
    async fn credential_providers(
        &self,
        req: &http::request::Parts,
    ) -> Result<Vec<ProviderEntry>, AppError>;
    /// Adds one (admins only).
    async fn add_credential_provider(
        &self,
        req: &http::request::Parts,
        provider: NewProvider,
    ) -> Result<ProviderEntry, AppError>;
    /// Removes one (admins only).
    async fn remove_credential_provider(
        &self,
        req: &http::request::Parts,
        name: String,
    ) -> Result<(), AppError>;
}

/// Every provider (admins only).
#[server(prefix = "/api/app", endpoint = "admin/credential_providers")]
pub async fn credential_providers() -> Result<Vec<ProviderEntry>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.credential_providers(&p).await)
}

/// Adds a provider (admins only).
#[server(prefix = "/api/app", endpoint = "admin/add_credential_provider")]
pub async fn add_credential_provider(provider: NewProvider) -> Result<ProviderEntry, AppError> {
    let (b, p) = backend().await?;
    with_status(b.add_credential_provider(&p, provider).await)
}

/// Removes a provider (admins only).
#[server(prefix = "/api/app", endpoint = "admin/remove_credential_provider")]
pub async fn remove_credential_provider(name: String) -> Result<(), AppError> {
    let (b, p) = backend().await?;
    with_status(b.remove_credential_provider(&p, name).await)
}
