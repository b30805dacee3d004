//! The credential providers' server functions: the admin page's edge. The form's text is read
//! into the domain's settings here (numbers, one operation per line); the service checks them
//! and authorises.

use app::api::{AppError, CredentialsBackend, NewProvider, ProviderEntry};
use async_trait::async_trait;
use axum::http::request::Parts;

use super::UiBackend;
use crate::domain::credential::{HttpSettings, PostgresSettings, ProviderSettings};
use crate::domain::secrets::Secret;
use crate::service::credentials::ProviderInfo;
use crate::service::Error;

#[async_trait]
impl CredentialsBackend for UiBackend {
    async fn credential_providers(&self, req: &Parts) -> Result<Vec<ProviderEntry>, AppError> {
        let who = self.who(req).await?;
        let list = self.core.credential_providers_seen_by(&who).await?;
        Ok(list.into_iter().map(entry).collect())
    }

    async fn add_credential_provider(
        &self,
        req: &Parts,
        form: NewProvider,
    ) -> Result<ProviderEntry, AppError> {
        let who = self.who(req).await?;
        let settings = settings(&form)?;
        let added = self
            .core
            .add_credential_provider_as(&who, form.name.trim(), settings, Secret::new(form.secret))
            .await?;
        Ok(entry(added))
    }

    async fn remove_credential_provider(&self, req: &Parts, name: String) -> Result<(), AppError> {
        let who = self.who(req).await?;
        Ok(self.core.remove_credential_provider_as(&who, &name).await?)
    }
}

fn number(field: &'static str, text: &str, default: u32) -> Result<u32, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(default);
    }
    text.parse()
        .map_err(|_| Error::invalid(field, "must be a whole number"))
}

fn settings(form: &NewProvider) -> Result<ProviderSettings, Error> {
    match form.kind.as_str() {
        "postgres" => Ok(ProviderSettings::Postgres(PostgresSettings {
            template_role: form.template_role.trim().to_string(),
            connection_limit: number("connection_limit", &form.connection_limit, 2)?,
            statement_timeout_ms: number(
                "statement_timeout_ms",
                &form.statement_timeout_ms,
                30_000,
            )?,
        })),
        "http" => Ok(ProviderSettings::Http(HttpSettings {
            base_url: form.base_url.trim().to_string(),
            header: match form.header.trim() {
                "" => "Authorization".to_string(),
                h => h.to_string(),
            },
            operations: form
                .operations
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            timeout_seconds: number("timeout_seconds", &form.timeout_seconds, 10)?,
        })),
        _ => Err(Error::invalid("kind", "must be postgres or http")),
    }
}

fn entry(p: ProviderInfo) -> ProviderEntry {
    let summary = match &p.settings {
        ProviderSettings::Postgres(s) => format!(
            "template role {}, {} session(s) per login, statement timeout {} ms",
            s.template_role, s.connection_limit, s.statement_timeout_ms
        ),
        ProviderSettings::Http(s) => format!(
            "{} ({}), header {}, timeout {} s",
            s.base_url,
            s.operations.join(", "),
            s.header,
            s.timeout_seconds
        ),
    };
    ProviderEntry {
        name: p.name,
        kind: p.kind.as_str().to_string(),
        summary,
        fingerprint: p.fingerprint,
        created_at: p.created_at,
        created_by: p.created_by,
    }
}
