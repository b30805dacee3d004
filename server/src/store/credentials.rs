//! Credential providers and the credentials released from them (leases).
//!
//! A lease is written in the transaction that redeems its grant ([`insert_lease`]), before the
//! downstream login is committed, so no login of ours can exist that this table does not know.
//! Its revocation is an outbox like the callbacks': [`request_revoke`] (and the kill switch's
//! [`revoke_all_of_agent`]) move it to `revoking` in the transaction of whatever ended the task;
//! workers then [`claim`] it with one conditional `UPDATE` that takes a lease on the row and
//! counts the attempt, and every later write names that attempt (`attempts = $n`), so a worker
//! whose claim ran out cannot overwrite the one that took over.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Executor};

use super::{col, StoreError};
use crate::clock::Millis;

/// One configured provider, its secret sealed.
#[derive(Debug, Clone)]
pub struct ProviderRow {
    /// The name policy rules refer to.
    pub name: String,
    /// `postgres` or `http`.
    pub kind: String,
    /// The settings that are not secret (JSON).
    pub settings: String,
    /// The secret, sealed with the credential key.
    pub sealed_secret: String,
    /// The secret's fingerprint.
    pub secret_fingerprint: String,
    /// When it was added.
    pub created_at: Millis,
    /// Who added it.
    pub created_by: String,
}

const PROVIDER_COLUMNS: &str =
    "name, kind, settings, sealed_secret, secret_fingerprint, created_at, created_by";

fn provider_from_row(row: &AnyRow) -> Result<ProviderRow, StoreError> {
    Ok(ProviderRow {
        name: col(row, "name")?,
        kind: col(row, "kind")?,
        settings: col(row, "settings")?,
        sealed_secret: col(row, "sealed_secret")?,
        secret_fingerprint: col(row, "secret_fingerprint")?,
        created_at: col(row, "created_at")?,
        created_by: col(row, "created_by")?,
    })
}

/// Adds a provider. False when one of that name exists.
pub async fn insert_provider(
    conn: &mut AnyConnection,
    p: &ProviderRow,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO credential_providers (name, kind, settings, sealed_secret, \
         secret_fingerprint, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&p.name)
    .bind(&p.kind)
    .bind(&p.settings)
    .bind(&p.sealed_secret)
    .bind(&p.secret_fingerprint)
    .bind(p.created_at)
    .bind(&p.created_by)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One provider by name.
pub async fn provider<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    name: &str,
) -> Result<Option<ProviderRow>, StoreError> {
    let sql = format!("SELECT {PROVIDER_COLUMNS} FROM credential_providers WHERE name = $1");
    let row = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(name)
        .fetch_optional(ex)
        .await?;
    row.as_ref().map(provider_from_row).transpose()
}

/// Every provider, by name.
pub async fn providers<'e, E: Executor<'e, Database = Any>>(
    ex: E,
) -> Result<Vec<ProviderRow>, StoreError> {
    let sql = format!("SELECT {PROVIDER_COLUMNS} FROM credential_providers ORDER BY name");
    let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
        .fetch_all(ex)
        .await?;
    rows.iter().map(provider_from_row).collect()
}

/// Removes a provider, but only while none of its credentials is still to be revoked (their
/// revocation needs its secret). False when there is no such provider or one still is.
pub async fn delete_provider(conn: &mut AnyConnection, name: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "DELETE FROM credential_providers WHERE name = $1 AND NOT EXISTS \
         (SELECT 1 FROM credential_leases l WHERE l.provider = $1 AND l.state <> 'revoked')",
    )
    .bind(name)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How many of a provider's credentials are live or still being revoked.
pub async fn unrevoked_of_provider<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    name: &str,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM credential_leases WHERE provider = $1 AND state <> 'revoked'",
    )
    .bind(name)
    .fetch_one(ex)
    .await?;
    col(&row, "n")
}

/// A released credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// Its id (a UUID; the login's name is derived from it).
    pub id: String,
    /// The grant redeemed for it.
    pub jti: String,
    /// That grant's request.
    pub request_id: String,
    /// The agent it was released to.
    pub agent_id: String,
    /// The provider's name.
    pub provider: String,
    /// The downstream login.
    pub login: String,
    /// `active`, `revoking` or `revoked`.
    pub state: String,
    /// When it was released.
    pub issued_at: Millis,
    /// When its task's time runs out.
    pub expires_at: Millis,
    /// Why it is being (or was) revoked.
    pub revoke_reason: Option<String>,
    /// Revocation steps done.
    pub revoke_step: i64,
    /// Revocation attempts started (the claimed one included).
    pub attempts: i64,
}

const LEASE_COLUMNS: &str = "id, jti, request_id, agent_id, provider, login, state, issued_at, \
     expires_at, revoke_reason, revoke_step, attempts";

fn lease_from_row(row: &AnyRow) -> Result<LeaseRow, StoreError> {
    Ok(LeaseRow {
        id: col(row, "id")?,
        jti: col(row, "jti")?,
        request_id: col(row, "request_id")?,
        agent_id: col(row, "agent_id")?,
        provider: col(row, "provider")?,
        login: col(row, "login")?,
        state: col(row, "state")?,
        issued_at: col(row, "issued_at")?,
        expires_at: col(row, "expires_at")?,
        revoke_reason: col(row, "revoke_reason")?,
        revoke_step: col(row, "revoke_step")?,
        attempts: col(row, "attempts")?,
    })
}

/// Records a released credential, `active`.
pub async fn insert_lease(conn: &mut AnyConnection, l: &LeaseRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO credential_leases (id, jti, request_id, agent_id, provider, login, state, \
         issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8)",
    )
    .bind(&l.id)
    .bind(&l.jti)
    .bind(&l.request_id)
    .bind(&l.agent_id)
    .bind(&l.provider)
    .bind(&l.login)
    .bind(l.issued_at)
    .bind(l.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// One lease by id.
pub async fn lease<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    id: &str,
) -> Result<Option<LeaseRow>, StoreError> {
    lease_where(ex, "id", id).await
}

/// The lease released for a grant, if any.
pub async fn lease_of_grant<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    jti: &str,
) -> Result<Option<LeaseRow>, StoreError> {
    lease_where(ex, "jti", jti).await
}

/// The lease of a downstream login, if any.
pub async fn lease_of_login<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    login: &str,
) -> Result<Option<LeaseRow>, StoreError> {
    lease_where(ex, "login", login).await
}

/// The lease whose unique `column` (one of the three above, never caller input) is `value`.
async fn lease_where<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    column: &'static str,
    value: &str,
) -> Result<Option<LeaseRow>, StoreError> {
    let sql = format!("SELECT {LEASE_COLUMNS} FROM credential_leases WHERE {column} = $1");
    let row = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(value)
        .fetch_optional(ex)
        .await?;
    row.as_ref().map(lease_from_row).transpose()
}

/// Moves an active lease to `revoking`, due at once, with the reason. Returns it when this
/// call did it (it was active); `None` when it was not.
pub async fn request_revoke(
    conn: &mut AnyConnection,
    id: &str,
    reason: &str,
    now: Millis,
) -> Result<Option<LeaseRow>, StoreError> {
    let sql = format!(
        "UPDATE credential_leases SET state = 'revoking', revoke_reason = $2, \
         revoke_requested_at = $3, next_attempt_at = $3 \
         WHERE id = $1 AND state = 'active' RETURNING {LEASE_COLUMNS}"
    );
    let row = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(id)
        .bind(reason)
        .bind(now)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(lease_from_row).transpose()
}

/// Moves every active lease of an agent to `revoking` in one statement (the kill switch and
/// key changes), returning them.
pub async fn revoke_all_of_agent(
    conn: &mut AnyConnection,
    agent_id: &str,
    reason: &str,
    now: Millis,
) -> Result<Vec<LeaseRow>, StoreError> {
    let sql = format!(
        "UPDATE credential_leases SET state = 'revoking', revoke_reason = $2, \
         revoke_requested_at = $3, next_attempt_at = $3 \
         WHERE agent_id = $1 AND state = 'active' RETURNING {LEASE_COLUMNS}"
    );
    let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(agent_id)
        .bind(reason)
        .bind(now)
        .fetch_all(conn)
        .await?;
    let mut out: Vec<LeaseRow> = rows.iter().map(lease_from_row).collect::<Result<_, _>>()?;
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Ids of active leases whose task's time has run out.
pub async fn overdue<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    now: Millis,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM credential_leases WHERE state = 'active' AND expires_at <= $1 \
         ORDER BY expires_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(ex)
    .await?;
    rows.iter().map(|r| col::<String>(r, "id")).collect()
}

/// Claims up to `limit` revocations that are due and not claimed by a live worker.
pub async fn claim(
    conn: &mut AnyConnection,
    now: Millis,
    lease_until: Millis,
    limit: i64,
) -> Result<Vec<LeaseRow>, StoreError> {
    let sql = format!(
        "UPDATE credential_leases SET attempts = attempts + 1, lease_until = $2 \
         WHERE id IN (SELECT id FROM credential_leases \
             WHERE state = 'revoking' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until <= $1) \
             ORDER BY next_attempt_at LIMIT $3) \
         AND state = 'revoking' AND next_attempt_at <= $1 \
         AND (lease_until IS NULL OR lease_until <= $1) \
         RETURNING {LEASE_COLUMNS}"
    );
    let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    let mut out: Vec<LeaseRow> = rows.iter().map(lease_from_row).collect::<Result<_, _>>()?;
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// When the next revocation falls due (or a claim runs out), if any is still owed.
pub async fn next_due<'e, E: Executor<'e, Database = Any>>(
    ex: E,
) -> Result<Option<Millis>, StoreError> {
    let row = sqlx::query(
        "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > next_attempt_at \
         THEN lease_until ELSE next_attempt_at END) AS due \
         FROM credential_leases WHERE state = 'revoking'",
    )
    .fetch_one(ex)
    .await?;
    col(&row, "due")
}

/// Records that attempt `attempt` finished step number `steps` (1-based). False when the
/// attempt is no longer the current one.
pub async fn step_done(
    conn: &mut AnyConnection,
    id: &str,
    attempt: i64,
    steps: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE credential_leases SET revoke_step = $3 \
         WHERE id = $1 AND attempts = $2 AND state = 'revoking'",
    )
    .bind(id)
    .bind(attempt)
    .bind(steps)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the revocation of attempt `attempt` finished. False when the attempt is no longer
/// the current one.
pub async fn finish(
    conn: &mut AnyConnection,
    id: &str,
    attempt: i64,
    now: Millis,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE credential_leases SET state = 'revoked', revoked_at = $3, lease_until = NULL, \
         last_error = NULL WHERE id = $1 AND attempts = $2 AND state = 'revoking'",
    )
    .bind(id)
    .bind(attempt)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Lets attempt `attempt` go after a failure: the revocation is tried again at `at`.
pub async fn retry_at(
    conn: &mut AnyConnection,
    id: &str,
    attempt: i64,
    at: Millis,
    error: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE credential_leases SET next_attempt_at = $3, lease_until = NULL, last_error = $4 \
         WHERE id = $1 AND attempts = $2 AND state = 'revoking'",
    )
    .bind(id)
    .bind(attempt)
    .bind(at)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
