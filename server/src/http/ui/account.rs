//! The account's server functions: who is signed in, signing out, passkeys, enrolment links.

use app::api::{AccountBackend, AppError, EnrolmentInfo, PasskeyItem, Viewer};
use async_trait::async_trait;
use axum::http::request::Parts;

use super::{role, UiBackend};
use crate::service::Error;

#[async_trait]
impl AccountBackend for UiBackend {
    async fn me(&self, req: &Parts) -> Result<Option<Viewer>, AppError> {
        match self.who(req).await {
            Ok(w) => Ok(Some(Viewer {
                id: w.person.id,
                email: w.person.email,
                display_name: w.person.display_name,
                role: role(w.person.role),
            })),
            Err(AppError::SignInRequired) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn sign_out(&self, req: &Parts) -> Result<(), AppError> {
        Self::session(req)?
            .flush()
            .await
            .map_err(|e| AppError::from(Error::internal(e)))
    }

    async fn passkeys(&self, req: &Parts) -> Result<Vec<PasskeyItem>, AppError> {
        let who = self.who(req).await?;
        Ok(self
            .core
            .my_passkeys(&who)
            .await?
            .into_iter()
            .map(|p| PasskeyItem {
                id: p.id,
                name: p.name,
                created_at: p.created_at,
                last_used_at: p.last_used_at,
            })
            .collect())
    }

    async fn rename_passkey(&self, req: &Parts, id: String, name: String) -> Result<(), AppError> {
        let who = self.who(req).await?;
        Ok(self.core.rename_passkey(&who, &id, name.trim()).await?)
    }

    async fn remove_passkey(&self, req: &Parts, id: String) -> Result<(), AppError> {
        let who = self.who(req).await?;
        Ok(self.core.remove_passkey(&who, &id).await?)
    }

    async fn enrolment(&self, token: String) -> Result<EnrolmentInfo, AppError> {
        let info = self.core.enrolment_info(&token).await?;
        Ok(EnrolmentInfo {
            email: info.email,
            role: role(info.role),
            expires_at: info.expires_at,
        })
    }
}
