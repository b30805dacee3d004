//! A person's own account: what an enrolment link is for, and their passkeys — add another,
//! rename, remove (never the last one, or they could never sign in again).
//!
//! Adding a passkey is a registration ceremony like enrolment, but bound to the signed-in
//! person *and* their session: an answer produced in another session is refused.

use serde::Serialize;
use serde_json::{json, Value};
use webauthn_rs::prelude::{CredentialID, RegisterPublicKeyCredential};

use super::people::{
    credential_id_text, load_passkeys, prefer_discoverable, validate_label, CeremonyStart,
    CeremonyState, SignedIn, CEREMONY_TTL_MS,
};
use super::{Countersign, Error};
use crate::domain::audit_kind::EventKind;
use crate::domain::lifecycle::Role;
use crate::domain::secrets;
use crate::store::ceremonies::{self, CeremonyRow};
use crate::store::users::{self, PasskeyRow};
use crate::store::{self, audit};

/// What an enrolment link is for, shown before the person registers.
#[derive(Debug, Clone, Serialize)]
pub struct EnrolmentInfo {
    /// The invited address; None for the first-admin link.
    pub email: Option<String>,
    /// What they will be.
    pub role: Role,
    /// Unix ms.
    pub expires_at: i64,
}

/// One of a person's passkeys, without its key material.
#[derive(Debug, Clone, Serialize)]
pub struct PasskeySummary {
    /// Our id.
    pub id: String,
    /// The person's name for it.
    pub name: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub last_used_at: Option<i64>,
}

impl From<&PasskeyRow> for PasskeySummary {
    fn from(p: &PasskeyRow) -> Self {
        Self {
            id: p.id.clone(),
            name: p.name.clone(),
            created_at: p.created_at,
            last_used_at: p.last_used_at,
        }
    }
}

impl Countersign {
    /// An admin invites someone (the command line uses [`Countersign::invite`] directly).
    pub async fn invite_by(
        &self,
        who: &SignedIn,
        email: &str,
        role: &str,
        groups: &[String],
    ) -> Result<super::people::Invitation, Error> {
        if !who.person.role.is_admin() {
            return Err(Error::Forbidden("only admins can invite people".into()));
        }
        self.invite(email, role, groups, &format!("user:{}", who.person.id))
            .await
    }

    /// What an unused, unexpired enrolment link is for.
    pub async fn enrolment_info(&self, token: &str) -> Result<EnrolmentInfo, Error> {
        let invite = users::peek_enrolment(self.db.reader(), &secrets::digest(token), self.now())
            .await?
            .ok_or_else(|| {
                Error::ExpiredToken(
                    "This enrolment link is invalid, already used or expired. Ask an admin for a new one."
                        .into(),
                )
            })?;
        Ok(EnrolmentInfo {
            email: (!invite.email.is_empty()).then_some(invite.email),
            role: invite.role,
            expires_at: invite.expires_at,
        })
    }

    /// The signed-in person's passkeys, oldest first.
    pub async fn my_passkeys(&self, who: &SignedIn) -> Result<Vec<PasskeySummary>, Error> {
        let rows = users::passkeys(self.db.reader(), &who.person.id).await?;
        Ok(rows.iter().map(PasskeySummary::from).collect())
    }

    /// Renames one of the person's own passkeys.
    pub async fn rename_passkey(&self, who: &SignedIn, id: &str, name: &str) -> Result<(), Error> {
        let name = validate_label("name", name, 64)?;
        let now = self.now();
        let mut tx = self.db.begin().await?;
        if !users::rename_passkey(&mut tx, &who.person.id, id, &name).await? {
            return Err(Error::NotFound("no such passkey".into()));
        }
        audit::append(
            &mut tx,
            now,
            &format!("user:{}", who.person.id),
            EventKind::PasskeyRenamed,
            None,
            &json!({ "user_id": who.person.id, "passkey_id": id, "name": name }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(())
    }

    /// Removes one of the person's own passkeys, unless it is their last.
    pub async fn remove_passkey(&self, who: &SignedIn, id: &str) -> Result<(), Error> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        users::lock_user(&mut tx, &who.person.id).await?;
        if !users::remove_passkey_unless_last(&mut tx, &who.person.id, id).await? {
            let mine = users::passkeys(&mut *tx, &who.person.id).await?;
            return Err(if mine.iter().any(|p| p.id == id) {
                Error::Conflict("this is your only passkey; add another before removing it".into())
            } else {
                Error::NotFound("no such passkey".into())
            });
        }
        audit::append(
            &mut tx,
            now,
            &format!("user:{}", who.person.id),
            EventKind::PasskeyRemoved,
            None,
            &json!({ "user_id": who.person.id, "passkey_id": id }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(())
    }

    /// Starts registering another passkey for the signed-in person.
    pub async fn add_passkey_start(
        &self,
        who: &SignedIn,
        name: &str,
    ) -> Result<CeremonyStart, Error> {
        let name = validate_label("passkey_name", name, 64)?;
        let now = self.now();
        let user_id = uuid::Uuid::parse_str(&who.person.id).map_err(Error::internal)?;
        let existing = users::passkeys(self.db.reader(), &who.person.id).await?;
        // Excluding the person's existing credentials makes the browser refuse to register the
        // same authenticator twice.
        let exclude: Vec<CredentialID> = load_passkeys(&existing)?
            .iter()
            .map(|p| p.cred_id().clone())
            .collect();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(
                user_id,
                &who.person.email,
                &who.person.display_name,
                Some(exclude),
            )
            .map_err(|e| Error::internal(format!("start registration: {e}")))?;
        let row = CeremonyRow {
            user_id: Some(who.person.id.clone()),
            session_binding: Some(who.session_binding.clone()),
            ..CeremonyState::Register(state).into_row(
                "add_passkey",
                json!({ "name": name }).to_string(),
                now + CEREMONY_TTL_MS,
            )?
        };
        ceremonies::insert(self.db.writer(), &row).await?;
        Ok(CeremonyStart {
            ceremony_id: row.id,
            options: prefer_discoverable(serde_json::to_value(options).map_err(Error::internal)?),
        })
    }

    /// Finishes registering another passkey.
    pub async fn add_passkey_finish(
        &self,
        who: &SignedIn,
        ceremony_id: &str,
        credential: &RegisterPublicKeyCredential,
    ) -> Result<PasskeySummary, Error> {
        let now = self.now();
        let ceremony = self.take_ceremony(ceremony_id, &["add_passkey"]).await?;
        if ceremony.user_id.as_deref() != Some(who.person.id.as_str())
            || ceremony.session_binding.as_deref() != Some(who.session_binding.as_str())
        {
            return Err(Error::Forbidden(
                "this passkey prompt belongs to another session".into(),
            ));
        }
        let CeremonyState::Register(state) =
            serde_json::from_str(&ceremony.state).map_err(Error::internal)?
        else {
            return Err(Error::internal("add_passkey ceremony holds another state"));
        };
        let context: Value = serde_json::from_str(&ceremony.context).map_err(Error::internal)?;
        let name = context["name"].as_str().unwrap_or("Passkey").to_string();
        let passkey = self
            .webauthn
            .finish_passkey_registration(credential, &state)
            .map_err(|e| {
                Error::AccessDenied(format!("the passkey could not be registered: {e}"))
            })?;
        let row = PasskeyRow {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: who.person.id.clone(),
            credential_id: credential_id_text(&passkey),
            name,
            passkey: serde_json::to_string(&passkey).map_err(Error::internal)?,
            created_at: now,
            last_used_at: None,
        };
        let mut tx = self.db.begin().await?;
        if users::passkeys(&mut *tx, &who.person.id)
            .await?
            .iter()
            .any(|p| p.credential_id == row.credential_id)
        {
            return Err(Error::Conflict("this passkey is already registered".into()));
        }
        users::insert_passkey(&mut tx, &row).await?;
        audit::append(
            &mut tx,
            now,
            &format!("user:{}", who.person.id),
            EventKind::PasskeyAdded,
            None,
            &json!({ "user_id": who.person.id, "passkey_id": row.id, "credential_id": row.credential_id, "name": row.name }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(PasskeySummary::from(&row))
    }
}
