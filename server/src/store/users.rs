//! People, their groups, their passkeys, and enrolment links.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Executor};

use super::{col, json_col, list_placeholders, text_col, StoreError};
use crate::clock::Millis;
use crate::domain::lifecycle::{Role, UserStatus};

/// One person.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// A UUID; also the WebAuthn user handle.
    pub id: String,
    /// Unique, lower-cased.
    pub email: String,
    /// As they chose it at enrolment.
    pub display_name: String,
    /// What they may do.
    pub role: Role,
    /// Whether their account works.
    pub status: UserStatus,
    /// When they enrolled.
    pub created_at: Millis,
    /// When they last signed in.
    pub last_sign_in_at: Option<Millis>,
    /// Their groups, sorted.
    pub groups: Vec<String>,
}

/// One registered passkey.
#[derive(Debug, Clone)]
pub struct PasskeyRow {
    /// Our id for it.
    pub id: String,
    /// Its owner.
    pub user_id: String,
    /// The WebAuthn credential id, base64url.
    pub credential_id: String,
    /// A name the person gave it ("Phone").
    pub name: String,
    /// webauthn-rs's `Passkey`, as JSON (public key and counter; no secrets).
    pub passkey: String,
    /// When it was registered.
    pub created_at: Millis,
    /// When it last signed something.
    pub last_used_at: Option<Millis>,
}

/// A pending invitation.
#[derive(Debug, Clone)]
pub struct EnrolmentRow {
    /// SHA-256 of the link's token; the token itself is never stored.
    pub token_hash: String,
    /// Who is invited.
    pub email: String,
    /// The role they will have.
    pub role: Role,
    /// The groups they will be in.
    pub groups: Vec<String>,
    /// Who invited them (a user id, or `system` for the first admin).
    pub created_by: String,
    /// When the link was made.
    pub created_at: Millis,
    /// When the link stops working.
    pub expires_at: Millis,
}

const USER_COLUMNS: &str = "id, email, display_name, role, status, created_at, last_sign_in_at";

async fn with_groups<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    row: &AnyRow,
) -> Result<UserRow, StoreError> {
    let id: String = col(row, "id")?;
    let groups =
        sqlx::query("SELECT group_name FROM user_groups WHERE user_id = $1 ORDER BY group_name")
            .bind(&id)
            .fetch_all(ex)
            .await?
            .iter()
            .map(|r| col::<String>(r, "group_name"))
            .collect::<Result<Vec<_>, _>>()?;
    Ok(UserRow {
        id,
        email: col(row, "email")?,
        display_name: col(row, "display_name")?,
        role: text_col(row, "role")?,
        status: text_col(row, "status")?,
        created_at: col(row, "created_at")?,
        last_sign_in_at: col(row, "last_sign_in_at")?,
        groups,
    })
}

/// Inserts a person and their groups.
pub async fn insert(conn: &mut AnyConnection, u: &UserRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO users (id, email, display_name, role, status, created_at, last_sign_in_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&u.id)
    .bind(&u.email)
    .bind(&u.display_name)
    .bind(u.role.as_str())
    .bind(u.status.as_str())
    .bind(u.created_at)
    .bind(u.last_sign_in_at)
    .execute(&mut *conn)
    .await?;
    for g in &u.groups {
        sqlx::query("INSERT INTO user_groups (user_id, group_name) VALUES ($1, $2)")
            .bind(&u.id)
            .bind(g)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Looks a person up by id.
pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<UserRow>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    match sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(row) => Ok(Some(with_groups(&mut *conn, &row).await?)),
        None => Ok(None),
    }
}

/// Looks a person up by e-mail address (lower-cased by the caller).
pub async fn get_by_email(
    conn: &mut AnyConnection,
    email: &str,
) -> Result<Option<UserRow>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
    match sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(email)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(row) => Ok(Some(with_groups(&mut *conn, &row).await?)),
        None => Ok(None),
    }
}

/// How many active admins there are.
pub async fn count_active_admins<'e, E: Executor<'e, Database = Any>>(
    ex: E,
) -> Result<i64, StoreError> {
    let row =
        sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND status = 'active'")
            .fetch_one(ex)
            .await?;
    col(&row, "n")
}

/// Records a successful sign-in.
pub async fn touch_sign_in(
    conn: &mut AnyConnection,
    id: &str,
    at: Millis,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET last_sign_in_at = $2 WHERE id = $1")
        .bind(id)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

const PASSKEY_COLUMNS: &str = "id, user_id, credential_id, name, passkey, created_at, last_used_at";

fn passkey_from_row(row: &AnyRow) -> Result<PasskeyRow, StoreError> {
    Ok(PasskeyRow {
        id: col(row, "id")?,
        user_id: col(row, "user_id")?,
        credential_id: col(row, "credential_id")?,
        name: col(row, "name")?,
        passkey: col(row, "passkey")?,
        created_at: col(row, "created_at")?,
        last_used_at: col(row, "last_used_at")?,
    })
}

/// Stores a newly registered passkey.
pub async fn insert_passkey(conn: &mut AnyConnection, p: &PasskeyRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO passkeys (id, user_id, credential_id, name, passkey, created_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&p.id)
    .bind(&p.user_id)
    .bind(&p.credential_id)
    .bind(&p.name)
    .bind(&p.passkey)
    .bind(p.created_at)
    .bind(p.last_used_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A person's passkeys, oldest first.
pub async fn passkeys<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    user_id: &str,
) -> Result<Vec<PasskeyRow>, StoreError> {
    let sql =
        format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at");
    let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(user_id)
        .fetch_all(ex)
        .await?;
    rows.iter().map(passkey_from_row).collect()
}

/// Renames one of a person's passkeys; false when it is not theirs.
pub async fn rename_passkey(
    conn: &mut AnyConnection,
    user_id: &str,
    id: &str,
    name: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE passkeys SET name = $3 WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes one of a person's passkeys unless it is their last: one conditional statement, so
/// two removals racing on a two-passkey account cannot both succeed on SQLite (one writer).
/// On PostgreSQL the caller first locks the person's row (see [`lock_user`]).
pub async fn remove_passkey_unless_last(
    conn: &mut AnyConnection,
    user_id: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "DELETE FROM passkeys WHERE id = $1 AND user_id = $2 \
         AND (SELECT COUNT(*) FROM passkeys WHERE user_id = $2) > 1",
    )
    .bind(id)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Serialises changes to one person's passkeys: a no-op update that takes the row lock on
/// PostgreSQL (SQLite already has a single writer).
pub async fn lock_user(conn: &mut AnyConnection, user_id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE users SET id = id WHERE id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Saves a passkey's updated state (its signature counter) after it signed something.
pub async fn update_passkey(
    conn: &mut AnyConnection,
    credential_id: &str,
    passkey_json: &str,
    at: Millis,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE passkeys SET passkey = $2, last_used_at = $3 WHERE credential_id = $1")
        .bind(credential_id)
        .bind(passkey_json)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores an invitation.
pub async fn insert_enrolment(
    conn: &mut AnyConnection,
    e: &EnrolmentRow,
) -> Result<(), StoreError> {
    let groups = serde_json::to_string(&e.groups).map_err(StoreError::corrupt)?;
    sqlx::query(
        "INSERT INTO enrolments (token_hash, email, role, groups, created_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&e.token_hash)
    .bind(&e.email)
    .bind(e.role.as_str())
    .bind(groups)
    .bind(&e.created_by)
    .bind(e.created_at)
    .bind(e.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

fn enrolment_from_row(row: &AnyRow) -> Result<EnrolmentRow, StoreError> {
    Ok(EnrolmentRow {
        token_hash: col(row, "token_hash")?,
        email: col(row, "email")?,
        role: text_col(row, "role")?,
        groups: json_col(row, "groups")?,
        created_by: col(row, "created_by")?,
        created_at: col(row, "created_at")?,
        expires_at: col(row, "expires_at")?,
    })
}

/// An unused, unexpired invitation, without using it up.
pub async fn peek_enrolment<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    token_hash: &str,
    now: Millis,
) -> Result<Option<EnrolmentRow>, StoreError> {
    let row = sqlx::query(
        "SELECT token_hash, email, role, groups, created_by, created_at, expires_at FROM enrolments \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(ex)
    .await?;
    row.as_ref().map(enrolment_from_row).transpose()
}

/// Whether someone was invited with this e-mail and has not enrolled yet (an unused, unexpired
/// enrolment link).
pub async fn has_open_invitation<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    email: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "SELECT 1 AS open FROM enrolments WHERE email = $1 AND used_at IS NULL AND expires_at > $2 LIMIT 1",
    )
    .bind(email)
    .bind(now)
    .fetch_optional(ex)
    .await?;
    Ok(row.is_some())
}

/// Uses an invitation up: one conditional write, so a link enrols exactly one passkey holder
/// even when two browsers finish at once.
pub async fn take_enrolment(
    conn: &mut AnyConnection,
    token_hash: &str,
    now: Millis,
) -> Result<Option<EnrolmentRow>, StoreError> {
    let row = sqlx::query(
        "UPDATE enrolments SET used_at = $2 \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
         RETURNING token_hash, email, role, groups, created_by, created_at, expires_at",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(enrolment_from_row).transpose()
}

/// Ends every unused first-admin link, so only the newest printed one works.
pub async fn retire_bootstrap_enrolments(
    conn: &mut AnyConnection,
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE enrolments SET expires_at = $1 WHERE created_by = 'system' AND used_at IS NULL AND expires_at > $1")
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ids of the active people in a group.
pub async fn group_members<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    group: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT u.id FROM users u JOIN user_groups g ON g.user_id = u.id \
         WHERE g.group_name = $1 AND u.status = 'active'",
    )
    .bind(group)
    .fetch_all(ex)
    .await?;
    rows.iter().map(|r| col::<String>(r, "id")).collect()
}

/// The active people any of these approver sources could name: the agent's owner (by id), the
/// admins, the members of these groups. Who among them is eligible is the quorum rule's call
/// (`ApproverRule::is_eligible`), not this query's: it only keeps the candidates few.
pub async fn approver_candidates(
    conn: &mut AnyConnection,
    owner_id: Option<&str>,
    admins: bool,
    groups: &[String],
) -> Result<Vec<UserRow>, StoreError> {
    // Two statements whatever the number of people: the candidates, then their groups, found
    // by the same condition (so no list of ids is sent back).
    let mut condition = "status = 'active' AND (id = $1 OR ($2 = 1 AND role = 'admin')".to_string();
    if !groups.is_empty() {
        condition.push_str(&format!(
            " OR id IN (SELECT user_id FROM user_groups WHERE group_name IN ({}))",
            list_placeholders(3, groups.len())
        ));
    }
    condition.push(')');
    let people_sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {condition} ORDER BY email");
    let groups_sql = format!(
        "SELECT user_id, group_name FROM user_groups \
         WHERE user_id IN (SELECT id FROM users WHERE {condition}) ORDER BY group_name"
    );
    let owner = owner_id.unwrap_or_default().to_string();
    let mut people = sqlx::query(AssertSqlSafe(people_sql.as_str()))
        .bind(owner.clone())
        .bind(i64::from(admins));
    let mut their_groups = sqlx::query(AssertSqlSafe(groups_sql.as_str()))
        .bind(owner)
        .bind(i64::from(admins));
    for g in groups {
        people = people.bind(g.clone());
        their_groups = their_groups.bind(g.clone());
    }
    let people = people.fetch_all(&mut *conn).await?;
    let their_groups = their_groups.fetch_all(&mut *conn).await?;
    with_their_groups(&people, &their_groups)
}

/// People from `users` rows, each with their groups from `(user_id, group_name)` rows.
fn with_their_groups(people: &[AnyRow], groups: &[AnyRow]) -> Result<Vec<UserRow>, StoreError> {
    let mut by_person: std::collections::HashMap<String, Vec<String>> = Default::default();
    for r in groups {
        by_person
            .entry(col(r, "user_id")?)
            .or_default()
            .push(col(r, "group_name")?);
    }
    people
        .iter()
        .map(|row| {
            let id: String = col(row, "id")?;
            Ok(UserRow {
                groups: by_person.remove(&id).unwrap_or_default(),
                id,
                email: col(row, "email")?,
                display_name: col(row, "display_name")?,
                role: text_col(row, "role")?,
                status: text_col(row, "status")?,
                created_at: col(row, "created_at")?,
                last_sign_in_at: col(row, "last_sign_in_at")?,
            })
        })
        .collect()
}

// --- people admin ---

/// Everyone, ordered by e-mail, with their groups: two queries whatever the number of people.
pub async fn list(conn: &mut AnyConnection) -> Result<Vec<UserRow>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY email");
    let people = sqlx::query(AssertSqlSafe(sql.as_str()))
        .fetch_all(&mut *conn)
        .await?;
    let groups = sqlx::query("SELECT user_id, group_name FROM user_groups ORDER BY group_name")
        .fetch_all(&mut *conn)
        .await?;
    with_their_groups(&people, &groups)
}

/// Every registered passkey of everyone, oldest first (for the people list).
pub async fn all_passkeys<'e, E: Executor<'e, Database = Any>>(
    ex: E,
) -> Result<Vec<PasskeyRow>, StoreError> {
    let sql = format!("SELECT {PASSKEY_COLUMNS} FROM passkeys ORDER BY created_at, id");
    sqlx::query(AssertSqlSafe(sql.as_str()))
        .fetch_all(ex)
        .await?
        .iter()
        .map(passkey_from_row)
        .collect()
}

/// Sets a person's role and replaces their groups. False when there is no such person.
pub async fn set_role_and_groups(
    conn: &mut AnyConnection,
    id: &str,
    role: Role,
    groups: &[String],
) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
        .bind(id)
        .bind(role.as_str())
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM user_groups WHERE user_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for g in groups {
        sqlx::query("INSERT INTO user_groups (user_id, group_name) VALUES ($1, $2)")
            .bind(id)
            .bind(g)
            .execute(&mut *conn)
            .await?;
    }
    Ok(true)
}

/// Moves a person from status `from` to `to`; false when they were not in `from` (someone else
/// changed it first, or there is no such person).
pub async fn set_status(
    conn: &mut AnyConnection,
    id: &str,
    from: UserStatus,
    to: UserStatus,
) -> Result<bool, StoreError> {
    from.to(to)?;
    let done = sqlx::query("UPDATE users SET status = $3 WHERE id = $1 AND status = $2")
        .bind(id)
        .bind(from.as_str())
        .bind(to.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
