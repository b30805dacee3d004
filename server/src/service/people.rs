//! People: invitations, enrolling a passkey, signing in with one.
//!
//! There are no passwords. An invitation is a one-time link (we store its digest); opening it
//! registers a passkey, which creates the person. Signing in is a WebAuthn authentication with
//! user verification. Every ceremony's state (its challenge) stays on the server, bound to its
//! purpose, expires in minutes and is consumed before the browser's answer is checked.
//!
//! ```text
//!  browser                          countersign
//!    | POST enrol/start {token}  -->  check link; start_passkey_registration
//!    |                                store ceremony {state, token digest, user id} (5 min)
//!    | <-- creation options -----
//!    | navigator.credentials.create (user verification)
//!    | POST enrol/finish {id, credential} --> take ceremony (DELETE … RETURNING)
//!    |                                finish_passkey_registration
//!    |                                one tx: use link, create person + passkey, audit
//!    | <-- signed in (new session id)
//! ```

use crate::domain::lifecycle::{Role, UserStatus};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential,
};

use super::{Countersign, Error};
use crate::domain::audit_kind::EventKind;
use crate::domain::secrets::{self, Secret};
use crate::store::ceremonies::{self, CeremonyRow};
use crate::store::users::{self, EnrolmentRow, PasskeyRow, UserRow};
use crate::store::{self, audit};

/// How long a ceremony may take, start to finish.
pub const CEREMONY_TTL_MS: i64 = 5 * 60 * 1000;
/// How long an invitation link works.
pub const INVITE_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// How long the first-admin link works.
pub const BOOTSTRAP_TTL_MS: i64 = 24 * 3600 * 1000;

/// A person, as the services pass them around.
#[derive(Debug, Clone, Serialize)]
pub struct Person {
    /// User id.
    pub id: String,
    /// E-mail.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// What they may do.
    pub role: Role,
    /// Groups.
    pub groups: Vec<String>,
    /// Whether their account works.
    pub status: UserStatus,
}

impl From<UserRow> for Person {
    fn from(u: UserRow) -> Self {
        Self {
            id: u.id,
            email: u.email,
            display_name: u.display_name,
            role: u.role,
            groups: u.groups,
            status: u.status,
        }
    }
}

/// A signed-in person acting through a browser session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// Who.
    pub person: Person,
    /// A random value stored in their session at sign-in; ceremonies are bound to it.
    pub session_binding: String,
}

/// An invitation link, shown once.
#[derive(Debug)]
pub struct Invitation {
    /// The link.
    pub link: Secret,
    /// Who it is for.
    pub email: String,
    /// When it stops working (unix ms).
    pub expires_at: i64,
}

/// The first half of a ceremony: what the browser passes to `navigator.credentials`.
#[derive(Debug, Clone, Serialize)]
pub struct CeremonyStart {
    /// Send this back with the answer.
    pub ceremony_id: String,
    /// `PublicKeyCredentialCreationOptions` or `…RequestOptions`, as JSON.
    pub options: Value,
}

/// The webauthn-rs state we keep per ceremony.
#[derive(Serialize, Deserialize)]
pub(crate) enum CeremonyState {
    Register(PasskeyRegistration),
    Passkey(PasskeyAuthentication),
    Discoverable(DiscoverableAuthentication),
}

impl CeremonyState {
    /// A ceremony row holding this state, with a fresh id and no bindings; callers add the
    /// bindings their ceremony needs.
    pub(crate) fn into_row(
        self,
        kind: &str,
        context: String,
        expires_at: i64,
    ) -> Result<CeremonyRow, Error> {
        Ok(CeremonyRow {
            id: uuid::Uuid::new_v4().to_string(),
            kind: kind.into(),
            user_id: None,
            session_binding: None,
            request_id: None,
            action_hash: None,
            state: serde_json::to_string(&self).map_err(Error::internal)?,
            context,
            expires_at,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct EnrolContext {
    token_hash: String,
    user_id: String,
    display_name: String,
    passkey_name: String,
}

pub(crate) fn validate_email(email: &str) -> Result<String, Error> {
    let e = email.trim().to_lowercase();
    let ok = e.len() <= 254
        && e.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        })
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(Error::invalid("email", "not a valid e-mail address"));
    }
    Ok(e)
}

pub(crate) fn validate_group(g: &str) -> Result<(), Error> {
    let ok = !g.is_empty()
        && g.len() <= 64
        && g.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_'))
        });
    if !ok {
        return Err(Error::invalid(
            "group",
            format!("group {g:?} must match ^[a-z0-9][a-z0-9_-]{{0,63}}$"),
        ));
    }
    Ok(())
}

pub(crate) fn validate_label(field: &str, value: &str, max: usize) -> Result<String, Error> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("{field} must be 1 to {max} characters, without control characters"),
        ));
    }
    Ok(v.to_string())
}

/// Asks the authenticator for a discoverable credential where it can make one, so the person
/// can later sign in from the browser's passkey picker without typing anything. "preferred",
/// not "required": a security key without resident-key storage still works (with its e-mail).
/// webauthn-rs's passkey defaults say "discouraged", and we must not weaken anything else it
/// sets (user verification stays required), so only this one field is changed.
pub(crate) fn prefer_discoverable(mut options: Value) -> Value {
    if let Some(sel) = options
        .pointer_mut("/publicKey/authenticatorSelection")
        .and_then(Value::as_object_mut)
    {
        sel.insert("residentKey".into(), Value::from("preferred"));
    }
    options
}

pub(crate) fn credential_id_text(p: &Passkey) -> String {
    URL_SAFE_NO_PAD.encode(p.cred_id().as_slice())
}

impl Countersign {
    /// Creates an invitation link.
    pub async fn invite(
        &self,
        email: &str,
        role: &str,
        groups: &[String],
        actor: &str,
    ) -> Result<Invitation, Error> {
        let email = validate_email(email)?;
        let role = parse_role(role)?;
        for g in groups {
            validate_group(g)?;
        }
        let now = self.now();
        let mut tx = self.db.begin().await?;
        if users::get_by_email(&mut tx, &email).await?.is_some() {
            return Err(Error::Conflict(format!("{email} is already enrolled")));
        }
        let (token, token_hash) = secrets::new_token(&mut OsRng);
        let mut groups = groups.to_vec();
        groups.sort();
        groups.dedup();
        users::insert_enrolment(
            &mut tx,
            &EnrolmentRow {
                token_hash,
                email: email.clone(),
                role,
                groups: groups.clone(),
                created_by: actor.into(),
                created_at: now,
                expires_at: now + INVITE_TTL_MS,
            },
        )
        .await?;
        audit::append(
            &mut tx,
            now,
            actor,
            EventKind::UserInvited,
            None,
            &json!({ "email": email, "role": role, "groups": groups }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        let invitation = Invitation {
            link: Secret::new(format!("{}/enrol/{}", self.issuer(), token.expose())),
            email,
            expires_at: now + INVITE_TTL_MS,
        };
        // Queued, not sent: the mail never delays or fails the invitation (see `notify`).
        self.mail_invitation(&invitation, role, &groups);
        Ok(invitation)
    }

    /// When no active admin exists, creates a fresh one-time link to enrol the first one (older
    /// unused first-admin links stop working). None when an admin exists.
    pub async fn bootstrap_admin_link(&self) -> Result<Option<Secret>, Error> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        if users::count_active_admins(&mut *tx).await? > 0 {
            return Ok(None);
        }
        users::retire_bootstrap_enrolments(&mut tx, now).await?;
        let (token, token_hash) = secrets::new_token(&mut OsRng);
        users::insert_enrolment(
            &mut tx,
            &EnrolmentRow {
                token_hash,
                email: String::new(),
                role: Role::Admin,
                groups: vec![],
                created_by: "system".into(),
                created_at: now,
                expires_at: now + BOOTSTRAP_TTL_MS,
            },
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(Some(Secret::new(format!(
            "{}/enrol/{}",
            self.issuer(),
            token.expose()
        ))))
    }

    /// Starts registering a passkey from an invitation. The first-admin link carries no e-mail
    /// address, so the person supplies it here.
    pub async fn enrol_start(
        &self,
        token: &str,
        email: Option<&str>,
        display_name: &str,
        passkey_name: &str,
    ) -> Result<CeremonyStart, Error> {
        let display_name = validate_label("display_name", display_name, 100)?;
        let passkey_name = validate_label("passkey_name", passkey_name, 64)?;
        let now = self.now();
        let token_hash = secrets::digest(token);
        let invite = users::peek_enrolment(self.db.reader(), &token_hash, now)
            .await?
            .ok_or_else(|| {
                Error::ExpiredToken("this enrolment link is invalid, used or expired".into())
            })?;
        let email = if invite.email.is_empty() {
            validate_email(
                email.ok_or_else(|| Error::invalid("email", "an e-mail address is required"))?,
            )?
        } else {
            invite.email.clone()
        };
        let user_id = uuid::Uuid::new_v4();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(user_id, &email, &display_name, None)
            .map_err(|e| Error::internal(format!("start registration: {e}")))?;
        let context = json!({
            "enrol": EnrolContext { token_hash, user_id: user_id.to_string(), display_name, passkey_name },
            "email": email,
        });
        let row = CeremonyRow {
            user_id: Some(user_id.to_string()),
            ..CeremonyState::Register(state).into_row(
                "register",
                context.to_string(),
                now + CEREMONY_TTL_MS,
            )?
        };
        ceremonies::insert(self.db.writer(), &row).await?;
        Ok(CeremonyStart {
            ceremony_id: row.id,
            options: prefer_discoverable(serde_json::to_value(options).map_err(Error::internal)?),
        })
    }

    /// Finishes enrolment: the passkey is verified, the invitation used up, the person created.
    pub async fn enrol_finish(
        &self,
        ceremony_id: &str,
        credential: &RegisterPublicKeyCredential,
    ) -> Result<Person, Error> {
        let now = self.now();
        let ceremony = self.take_ceremony(ceremony_id, &["register"]).await?;
        let CeremonyState::Register(state) =
            serde_json::from_str(&ceremony.state).map_err(Error::internal)?
        else {
            return Err(Error::internal("register ceremony holds another state"));
        };
        let context: Value = serde_json::from_str(&ceremony.context).map_err(Error::internal)?;
        let enrol: EnrolContext =
            serde_json::from_value(context["enrol"].clone()).map_err(Error::internal)?;
        let email = context["email"].as_str().unwrap_or_default().to_string();
        let passkey = self
            .webauthn
            .finish_passkey_registration(credential, &state)
            .map_err(|e| {
                Error::AccessDenied(format!("the passkey could not be registered: {e}"))
            })?;

        let mut tx = self.db.begin().await?;
        let invite = users::take_enrolment(&mut tx, &enrol.token_hash, now)
            .await?
            .ok_or_else(|| {
                Error::ExpiredToken("this enrolment link is invalid, used or expired".into())
            })?;
        if users::get_by_email(&mut tx, &email).await?.is_some() {
            return Err(Error::Conflict(format!("{email} is already enrolled")));
        }
        let user = UserRow {
            id: enrol.user_id.clone(),
            email: email.clone(),
            display_name: enrol.display_name.clone(),
            role: invite.role,
            status: UserStatus::Active,
            created_at: now,
            last_sign_in_at: Some(now),
            groups: invite.groups.clone(),
        };
        users::insert(&mut tx, &user).await?;
        let credential_id = credential_id_text(&passkey);
        users::insert_passkey(
            &mut tx,
            &PasskeyRow {
                id: uuid::Uuid::new_v4().to_string(),
                user_id: user.id.clone(),
                credential_id: credential_id.clone(),
                name: enrol.passkey_name.clone(),
                passkey: serde_json::to_string(&passkey).map_err(Error::internal)?,
                created_at: now,
                last_used_at: None,
            },
        )
        .await?;
        audit::append(
            &mut tx,
            now,
            &format!("user:{}", user.id),
            EventKind::UserEnrolled,
            None,
            &json!({ "user_id": user.id, "email": email, "role": user.role, "groups": user.groups, "credential_id": credential_id, "invited_by": invite.created_by }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(user.into())
    }

    /// Starts a sign-in. With an e-mail address the browser is offered that person's passkeys;
    /// without, any discoverable passkey for this site (the browser's passkey picker). An unknown
    /// address gets the same kind of answer as a known one, so the page reveals nothing.
    pub async fn sign_in_start(&self, email: Option<&str>) -> Result<CeremonyStart, Error> {
        let now = self.now();
        // Offer the person's passkeys when the address is theirs; otherwise (no address, an
        // unknown one, or one without passkeys) any discoverable passkey for this site.
        let mut user_id = None;
        let mut passkeys = Vec::new();
        if let Some(email) = email {
            let email = validate_email(email)?;
            let mut conn = self.db.read_conn().await?;
            if let Some(u) = users::get_by_email(&mut conn, &email)
                .await?
                .filter(|u| u.status == UserStatus::Active)
            {
                passkeys = load_passkeys(&users::passkeys(&mut *conn, &u.id).await?)?;
                user_id = Some(u.id);
            }
        }
        let fail =
            |e: webauthn_rs::prelude::WebauthnError| Error::internal(format!("start sign-in: {e}"));
        let (options, state) = if passkeys.is_empty() {
            user_id = None;
            let (o, s) = self
                .webauthn
                .start_discoverable_authentication()
                .map_err(fail)?;
            (
                serde_json::to_value(o).map_err(Error::internal)?,
                CeremonyState::Discoverable(s),
            )
        } else {
            let (o, s) = self
                .webauthn
                .start_passkey_authentication(&passkeys)
                .map_err(fail)?;
            (
                serde_json::to_value(o).map_err(Error::internal)?,
                CeremonyState::Passkey(s),
            )
        };
        let row = CeremonyRow {
            user_id,
            ..state.into_row("sign_in", "{}".into(), now + CEREMONY_TTL_MS)?
        };
        ceremonies::insert(self.db.writer(), &row).await?;
        Ok(CeremonyStart {
            ceremony_id: row.id,
            options,
        })
    }

    /// Finishes a sign-in and returns who signed in.
    pub async fn sign_in_finish(
        &self,
        ceremony_id: &str,
        credential: &PublicKeyCredential,
    ) -> Result<Person, Error> {
        let refused = |why: String| Error::AccessDenied(format!("sign-in refused: {why}"));
        let ceremony = self.take_ceremony(ceremony_id, &["sign_in"]).await?;
        crate::domain::client_data::refuse_cross_origin(
            credential.response.client_data_json.as_ref(),
        )
        .map_err(|e| refused(e.to_string()))?;
        let state: CeremonyState =
            serde_json::from_str(&ceremony.state).map_err(Error::internal)?;
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let (user, stored) = match state {
            CeremonyState::Passkey(state) => {
                let user_id = ceremony
                    .user_id
                    .clone()
                    .ok_or_else(|| Error::internal("sign-in ceremony without user"))?;
                let user = users::get(&mut tx, &user_id)
                    .await?
                    .ok_or_else(|| refused("unknown person".into()))?;
                let rows = users::passkeys(&mut *tx, &user.id).await?;
                let result = self
                    .webauthn
                    .finish_passkey_authentication(credential, &state)
                    .map_err(|e| refused(e.to_string()))?;
                (user, used_passkey(&rows, &result)?)
            }
            CeremonyState::Discoverable(state) => {
                let (uuid, cred_id) = self
                    .webauthn
                    .identify_discoverable_authentication(credential)
                    .map_err(|e| refused(e.to_string()))?;
                let user = users::get(&mut tx, &uuid.to_string())
                    .await?
                    .ok_or_else(|| refused("unknown passkey".into()))?;
                let rows = users::passkeys(&mut *tx, &user.id).await?;
                let passkey = load_passkeys(&rows)?
                    .into_iter()
                    .find(|p| p.cred_id().as_slice() == cred_id)
                    .ok_or_else(|| refused("unknown passkey".into()))?;
                let result = self
                    .webauthn
                    .finish_discoverable_authentication_v2(credential, state, &passkey)
                    .map_err(|e| refused(e.to_string()))?;
                (user, used_passkey(&rows, &result)?)
            }
            CeremonyState::Register(_) => {
                return Err(Error::internal("sign-in ceremony holds a registration"))
            }
        };
        if user.status != UserStatus::Active {
            return Err(refused("this account is deactivated".into()));
        }
        if let Some(UsedPasskey {
            credential_id,
            updated: Some(json),
            ..
        }) = stored
        {
            users::update_passkey(&mut tx, &credential_id, &json, now).await?;
        }
        users::touch_sign_in(&mut tx, &user.id, now).await?;
        audit::append(
            &mut tx,
            now,
            &format!("user:{}", user.id),
            EventKind::UserSignedIn,
            None,
            &json!({ "user_id": user.id }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(user.into())
    }

    /// Takes a ceremony out of the database (so it can never be answered twice) and checks it
    /// has not expired.
    pub(crate) async fn take_ceremony(
        &self,
        id: &str,
        kinds: &[&str],
    ) -> Result<CeremonyRow, Error> {
        let mut tx = self.db.begin().await?;
        let c = ceremonies::take(&mut tx, id, kinds).await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        let c = c.ok_or_else(|| {
            Error::ExpiredToken(
                "this passkey prompt was already used or has expired; start again".into(),
            )
        })?;
        if c.expires_at <= self.now() {
            return Err(Error::ExpiredToken(
                "this passkey prompt has expired; start again".into(),
            ));
        }
        Ok(c)
    }

    /// A person by id.
    pub async fn person(&self, user_id: &str) -> Result<Option<Person>, Error> {
        let mut conn = self.db.read_conn().await?;
        Ok(users::get(&mut conn, user_id).await?.map(Person::from))
    }
}

/// Parses stored passkeys.
pub(crate) fn load_passkeys(rows: &[PasskeyRow]) -> Result<Vec<Passkey>, Error> {
    rows.iter()
        .map(|r| serde_json::from_str(&r.passkey).map_err(Error::internal))
        .collect()
}

/// The stored passkey that produced an authentication.
pub(crate) struct UsedPasskey {
    /// Our id for it.
    pub id: String,
    /// Its WebAuthn credential id (base64url).
    pub credential_id: String,
    /// Its JSON with the signature counter advanced, when that changed.
    pub updated: Option<String>,
}

/// Finds which of a person's passkeys signed `result` and applies the new counter to it.
/// None when the credential is not one of theirs.
pub(crate) fn used_passkey(
    rows: &[PasskeyRow],
    result: &webauthn_rs::prelude::AuthenticationResult,
) -> Result<Option<UsedPasskey>, Error> {
    for row in rows {
        let mut pk: Passkey = serde_json::from_str(&row.passkey).map_err(Error::internal)?;
        if pk.cred_id() == result.cred_id() {
            let updated = match pk.update_credential(result) {
                Some(true) => Some(serde_json::to_string(&pk).map_err(Error::internal)?),
                _ => None,
            };
            return Ok(Some(UsedPasskey {
                id: row.id.clone(),
                credential_id: row.credential_id.clone(),
                updated,
            }));
        }
    }
    Ok(None)
}

/// A role named by a caller (the invite form, the CLI, the people page): `owner` or `admin`.
pub(crate) fn parse_role(role: &str) -> Result<Role, Error> {
    role.parse()
        .map_err(|_| Error::invalid("role", "role must be owner or admin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            validate_email(" Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        assert!(validate_email("nope").is_err());
        assert!(validate_email("a@b").is_err());
        assert!(validate_email("a b@c.d").is_err());
    }

    #[test]
    fn group_names_are_slugs() {
        assert!(validate_group("finance").is_ok());
        assert!(validate_group("sre-oncall_2").is_ok());
        assert!(validate_group("Finance").is_err());
        assert!(validate_group("-x").is_err());
        assert!(validate_group("").is_err());
    }
}
