//! The people page's server functions: invitations, roles and groups, deactivation.

use app::api::{AppError, InvitationOut, PeopleBackend, PersonItem, PersonPasskey};
use async_trait::async_trait;
use axum::http::request::Parts;

use super::{role, UiBackend};
use crate::domain::lifecycle::UserStatus;
use crate::service::people_admin::PersonRecord;

#[async_trait]
impl PeopleBackend for UiBackend {
    async fn invite(
        &self,
        req: &Parts,
        email: String,
        role: String,
        groups: String,
    ) -> Result<InvitationOut, AppError> {
        let who = self.who(req).await?;
        let groups = comma_list(&groups);
        let inv = self
            .core
            .invite_by(&who, email.trim(), &role, &groups)
            .await?;
        Ok(InvitationOut {
            email: inv.email,
            link: inv.link.expose().to_string(),
            expires_at: inv.expires_at,
        })
    }

    async fn people(&self, req: &Parts) -> Result<Vec<PersonItem>, AppError> {
        let who = self.who(req).await?;
        Ok(self
            .core
            .people(&who)
            .await?
            .into_iter()
            .map(person_item)
            .collect())
    }

    async fn update_person(
        &self,
        req: &Parts,
        id: String,
        role: String,
        groups: String,
    ) -> Result<PersonItem, AppError> {
        let who = self.who(req).await?;
        let groups = comma_list(&groups);
        self.core.update_person(&who, &id, &role, &groups).await?;
        // The list entry as it is now (passkeys, last sign-in included).
        self.core
            .people(&who)
            .await?
            .into_iter()
            .find(|p| p.person.id == id)
            .map(person_item)
            .ok_or_else(|| AppError::NotFound("no such person".into()))
    }

    async fn set_person_active(
        &self,
        req: &Parts,
        id: String,
        active: bool,
    ) -> Result<(), AppError> {
        let who = self.who(req).await?;
        self.core.set_person_active(&who, &id, active).await?;
        Ok(())
    }
}

/// A comma-separated list as typed: trimmed, blanks dropped.
fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

fn person_item(r: PersonRecord) -> PersonItem {
    PersonItem {
        active: r.person.status == UserStatus::Active,
        id: r.person.id,
        email: r.person.email,
        name: r.person.display_name,
        role: role(r.person.role),
        groups: r.person.groups,
        created_at: r.created_at,
        last_sign_in_at: r.last_sign_in_at,
        passkeys: r
            .passkeys
            .into_iter()
            .map(|p| PersonPasskey {
                name: p.name,
                created_at: p.created_at,
                last_used_at: p.last_used_at,
            })
            .collect(),
    }
}
