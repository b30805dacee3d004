//! People, as admins manage them: the list (roles, groups, passkeys, last sign-in), changing a
//! person's role and groups, and deactivating or reactivating them.
//!
//! Deactivation takes effect at once everywhere: every session check reads the person's status
//! (see `http::owner_api::signed_in`), sign-in refuses deactivated people, and open live-inbox
//! streams are woken so they re-check and close. There must always be one active admin left,
//! or nobody could manage the service: the last one cannot be demoted or deactivated.

use serde::Serialize;
use serde_json::json;

use super::people::{validate_group, Person, SignedIn};
use super::policies::require_admin;
use super::{Countersign, Error};
use crate::clock::Millis;
use crate::domain::audit_kind::EventKind;
use crate::domain::lifecycle::UserStatus;
use crate::store::{self, audit, users};

/// One of a person's passkeys, as the people list shows it (never the key material).
#[derive(Debug, Clone, Serialize)]
pub struct PasskeySummary {
    /// The name they gave it.
    pub name: String,
    /// When it was registered.
    pub created_at: Millis,
    /// When it last signed something.
    pub last_used_at: Option<Millis>,
}

/// A person with what an admin needs to see about them.
#[derive(Debug, Clone, Serialize)]
pub struct PersonRecord {
    /// Who.
    pub person: Person,
    /// When they enrolled.
    pub created_at: Millis,
    /// When they last signed in.
    pub last_sign_in_at: Option<Millis>,
    /// Their passkeys, oldest first.
    pub passkeys: Vec<PasskeySummary>,
}

/// An arbitrary, fixed key for `pg_advisory_xact_lock`: changes that could remove the last
/// active admin take it, so two admins demoting each other at once cannot both succeed.
const ADMIN_CHANGE_LOCK: i64 = 0x636f_756e_7465_7202;

impl Countersign {
    /// Everyone, with their passkeys and last sign-in (admins only).
    pub async fn people(&self, who: &SignedIn) -> Result<Vec<PersonRecord>, Error> {
        require_admin(who)?;
        let mut conn = self.db.read_conn().await?;
        let rows = users::list(&mut conn).await?;
        let mut passkeys: std::collections::HashMap<String, Vec<PasskeySummary>> =
            Default::default();
        for p in users::all_passkeys(&mut *conn).await? {
            passkeys.entry(p.user_id).or_default().push(PasskeySummary {
                name: p.name,
                created_at: p.created_at,
                last_used_at: p.last_used_at,
            });
        }
        Ok(rows
            .into_iter()
            .map(|u| PersonRecord {
                passkeys: passkeys.remove(&u.id).unwrap_or_default(),
                created_at: u.created_at,
                last_sign_in_at: u.last_sign_in_at,
                person: u.into(),
            })
            .collect())
    }

    /// Sets a person's role and groups (admins only). Group changes apply to the next
    /// decision: quorum rules read groups when someone approves.
    pub async fn update_person(
        &self,
        who: &SignedIn,
        id: &str,
        role: &str,
        groups: &[String],
    ) -> Result<Person, Error> {
        require_admin(who)?;
        let role = super::people::parse_role(role)?;
        let mut groups: Vec<String> = groups.iter().map(|g| g.trim().to_string()).collect();
        for g in &groups {
            validate_group(g).map_err(|e| match e {
                Error::InvalidRequest { detail, .. } => Error::invalid("groups", detail),
                other => other,
            })?;
        }
        groups.sort();
        groups.dedup();
        let now = self.now();
        let mut tx = self.db.begin().await?;
        self.lock_admin_changes(&mut tx).await?;
        let before = users::get(&mut tx, id)
            .await?
            .ok_or_else(|| Error::NotFound("no such person".into()))?;
        if before.role.is_admin() && !role.is_admin() && before.status == UserStatus::Active {
            refuse_if_last_admin(&mut tx).await?;
        }
        users::set_role_and_groups(&mut tx, id, role, &groups).await?;
        audit::append(
            &mut tx,
            now,
            &format!("user:{}", who.person.id),
            EventKind::UserUpdated,
            None,
            &json!({
                "user_id": id,
                "role": { "from": before.role, "to": role },
                "groups": { "from": before.groups, "to": groups },
            }),
        )
        .await?;
        let after = users::get(&mut tx, id)
            .await?
            .ok_or_else(|| Error::internal("person vanished in their own update"))?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(after.into())
    }

    /// Deactivates or reactivates a person (admins only). Deactivating ends their sessions at
    /// once, stops their passkeys from signing in or approving, and closes their live inbox.
    /// Repeating the current state is a no-op, not an error.
    pub async fn set_person_active(
        &self,
        who: &SignedIn,
        id: &str,
        active: bool,
    ) -> Result<Person, Error> {
        require_admin(who)?;
        if !active && id == who.person.id {
            return Err(Error::Conflict(
                "you cannot deactivate yourself; ask another admin".into(),
            ));
        }
        let (from, to, kind) = if active {
            (
                UserStatus::Deactivated,
                UserStatus::Active,
                EventKind::UserReactivated,
            )
        } else {
            (
                UserStatus::Active,
                UserStatus::Deactivated,
                EventKind::UserDeactivated,
            )
        };
        let now = self.now();
        let mut tx = self.db.begin().await?;
        self.lock_admin_changes(&mut tx).await?;
        let before = users::get(&mut tx, id)
            .await?
            .ok_or_else(|| Error::NotFound("no such person".into()))?;
        if before.status == to {
            return Ok(before.into());
        }
        if !active && before.role.is_admin() {
            refuse_if_last_admin(&mut tx).await?;
        }
        // Conditional on the status read above: of two admins racing, one changes it.
        if !users::set_status(&mut tx, id, from, to).await? {
            return Err(Error::Conflict(
                "someone else changed this person meanwhile; reload".into(),
            ));
        }
        audit::append(
            &mut tx,
            now,
            &format!("user:{}", who.person.id),
            kind,
            None,
            &json!({ "user_id": id, "email": before.email }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        if !active {
            // Wakes every live-inbox stream on this replica; each re-checks its person and the
            // deactivated one's closes. Streams on other replicas re-check on their keep-alive.
            self.waiters.changed("");
        }
        Ok(Person {
            status: to,
            ..before.into()
        })
    }

    /// Serialises changes that could leave no active admin. SQLite has one writer already.
    async fn lock_admin_changes(&self, tx: &mut store::WriteTx) -> Result<(), Error> {
        store::coordination::lock(tx, self.db.backend(), ADMIN_CHANGE_LOCK).await?;
        Ok(())
    }
}

/// Refuses a change that would remove the only active admin (the caller has checked that the
/// person changed is an active admin).
async fn refuse_if_last_admin(tx: &mut store::WriteTx) -> Result<(), Error> {
    if users::count_active_admins(&mut **tx).await? <= 1 {
        return Err(Error::Conflict(
            "this is the last active admin; make someone else admin first".into(),
        ));
    }
    Ok(())
}
