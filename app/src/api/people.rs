//! People, as admins manage them: invitations, roles and groups, deactivation.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use super::{backend, with_status};
use super::{AppError, Role};

/// A new invitation; the link is shown once to the admin (and mailed to the person).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationOut {
    /// Who.
    pub email: String,
    /// The enrolment link.
    pub link: String,
    /// Unix ms.
    pub expires_at: i64,
}

/// A person on the admins' people page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonItem {
    /// Their id.
    pub id: String,
    /// Their e-mail.
    pub email: String,
    /// Their display name.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// Their groups.
    pub groups: Vec<String>,
    /// False once deactivated.
    pub active: bool,
    /// When they enrolled (unix ms).
    pub created_at: i64,
    /// When they last signed in.
    pub last_sign_in_at: Option<i64>,
    /// Their passkeys.
    pub passkeys: Vec<PersonPasskey>,
}

/// One of a person's passkeys, as admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonPasskey {
    /// Its name.
    pub name: String,
    /// When it was registered.
    pub created_at: i64,
    /// When it last signed something.
    pub last_used_at: Option<i64>,
}

/// The people page's server functions, served by the server crate.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait PeopleBackend: Send + Sync + 'static {
    /// Invites someone (admins only).
    async fn invite(
        &self,
        req: &http::request::Parts,
        email: String,
        role: String,
        groups: String,
    ) -> Result<InvitationOut, AppError>;
    /// Everyone, with passkeys and last sign-in (admins only).
    async fn people(&self, req: &http::request::Parts) -> Result<Vec<PersonItem>, AppError>;
    /// Sets someone's role and groups (admins only).
    async fn update_person(
        &self,
        req: &http::request::Parts,
        id: String,
        role: String,
        groups: String,
    ) -> Result<PersonItem, AppError>;
    /// Deactivates or reactivates someone (admins only).
    async fn set_person_active(
        &self,
        req: &http::request::Parts,
        id: String,
        active: bool,
    ) -> Result<(), AppError>;
}

/// Invites someone (admins only). `groups` is comma-separated. Posted as a plain form (no wasm
/// yet), the link is handed to the people page the post returns to ([`sent_invitation`]).
#[server(prefix = "/api/app", endpoint = "invite")]
pub async fn invite(
    email: String,
    role: String,
    #[server(default)] groups: String,
) -> Result<InvitationOut, AppError> {
    let (b, p) = backend().await?;
    let sent = with_status(b.invite(&p, email, role, groups).await)?;
    super::hand_over(SENT_INVITATION, "/admin/people", &sent);
    Ok(sent)
}

/// The cookie that hands an invitation link from a plain form post to the people page.
#[cfg(feature = "ssr")]
const SENT_INVITATION: &str = "countersign_sent_invitation";

/// The invitation a plain form post just sent, shown once by the page it returns to (`None`
/// otherwise).
#[server(prefix = "/api/app", endpoint = "admin/sent_invitation")]
pub async fn sent_invitation() -> Result<Option<InvitationOut>, AppError> {
    Ok(super::take_handed_over(SENT_INVITATION, "/admin/people"))
}

/// Everyone (admins only).
#[server(prefix = "/api/app", endpoint = "admin/people")]
pub async fn people() -> Result<Vec<PersonItem>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.people(&p).await)
}

/// Sets someone's role and groups; `groups` is comma-separated (admins only).
#[server(prefix = "/api/app", endpoint = "admin/update_person")]
pub async fn update_person(
    id: String,
    role: String,
    groups: String,
) -> Result<PersonItem, AppError> {
    let (b, p) = backend().await?;
    with_status(b.update_person(&p, id, role, groups).await)
}

/// Deactivates (their sessions end at once) or reactivates someone (admins only).
#[server(prefix = "/api/app", endpoint = "admin/set_person_active")]
pub async fn set_person_active(id: String, active: bool) -> Result<(), AppError> {
    let (b, p) = backend().await?;
    with_status(b.set_person_active(&p, id, active).await)
}
