//! Storage for the fatigue guards: settings, prompts sent, first page views, and the two
//! lookups intake makes (an identical pending request; recent denials).

use std::collections::HashMap;

use sqlx::{Any, AnyConnection, Executor};

use super::{col, StoreError};
use crate::clock::Millis;

/// Every stored setting.
pub async fn settings<'e, E: Executor<'e, Database = Any>>(
    ex: E,
) -> Result<HashMap<String, String>, StoreError> {
    let rows = sqlx::query("SELECT key, value FROM settings")
        .fetch_all(ex)
        .await?;
    rows.iter()
        .map(|r| Ok((col(r, "key")?, col(r, "value")?)))
        .collect()
}

/// Sets one setting.
pub async fn put_setting(
    conn: &mut AnyConnection,
    key: &str,
    value: &str,
    by: &str,
    at: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO settings (key, value, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (key) DO UPDATE SET value = $2, updated_by = $3, updated_at = $4",
    )
    .bind(key)
    .bind(value)
    .bind(by)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The agent's pending, unexpired request with this `action_hash`, if any (oldest first).
pub async fn pending_same<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_id: &str,
    action_hash: &str,
    now: Millis,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query(
        "SELECT id FROM requests WHERE agent_id = $1 AND action_hash = $2 AND status = 'pending' \
         AND expires_at > $3 ORDER BY created_at LIMIT 1",
    )
    .bind(agent_id)
    .bind(action_hash)
    .bind(now)
    .fetch_optional(ex)
    .await?;
    row.as_ref().map(|r| col(r, "id")).transpose()
}

/// Bodies and times of the agent's requests that a person denied since `since`.
pub async fn denied_by_people_since<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_id: &str,
    since: Millis,
) -> Result<Vec<(String, Millis)>, StoreError> {
    let rows = sqlx::query(
        "SELECT body, decided_at FROM requests WHERE agent_id = $1 AND status = 'denied' \
         AND decided_at >= $2 AND decided_by <> 'policy' ORDER BY decided_at DESC LIMIT 100",
    )
    .bind(agent_id)
    .bind(since)
    .fetch_all(ex)
    .await?;
    rows.iter()
        .map(|r| Ok((col(r, "body")?, col(r, "decided_at")?)))
        .collect()
}

/// Mails sent to this person since `since`.
pub async fn prompts_since<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    user_id: &str,
    since: Millis,
) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM prompts WHERE user_id = $1 AND at >= $2")
        .bind(user_id)
        .bind(since)
        .fetch_one(ex)
        .await?;
    col(&row, "n")
}

/// Records a mail to this person about this request, if they have had fewer than `limit`
/// since `since` (and none about this request yet): one conditional insert, so the count and the
/// record cannot be split by another writer. True when recorded. On PostgreSQL the caller holds
/// a lock per person (see [`lock_prompts`]); SQLite has a single writer.
pub async fn take_prompt(
    conn: &mut AnyConnection,
    user_id: &str,
    request_id: &str,
    at: Millis,
    since: Millis,
    limit: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO prompts (user_id, request_id, at)          SELECT $1, $2, $3 WHERE (SELECT COUNT(*) FROM prompts WHERE user_id = $1 AND at >= $4) < $5          ON CONFLICT (user_id, request_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(request_id)
    .bind(at)
    .bind(since)
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// PostgreSQL: serialises prompt counting for one person until the transaction ends, so
/// concurrent mails cannot both see room under the limit.
pub async fn lock_prompts(conn: &mut AnyConnection, user_id: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("prompts:{user_id}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records that this person opened this request's page, unless they had before; returns when
/// they first did.
pub async fn first_view(
    conn: &mut AnyConnection,
    request_id: &str,
    user_id: &str,
    at: Millis,
) -> Result<Millis, StoreError> {
    sqlx::query(
        "INSERT INTO page_views (request_id, user_id, first_at) VALUES ($1, $2, $3) \
         ON CONFLICT (request_id, user_id) DO NOTHING",
    )
    .bind(request_id)
    .bind(user_id)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query("SELECT first_at FROM page_views WHERE request_id = $1 AND user_id = $2")
        .bind(request_id)
        .bind(user_id)
        .fetch_one(conn)
        .await?;
    col(&row, "first_at")
}

/// When this person first opened this request's page, if ever.
pub async fn viewed_at<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    request_id: &str,
    user_id: &str,
) -> Result<Option<Millis>, StoreError> {
    let row = sqlx::query("SELECT first_at FROM page_views WHERE request_id = $1 AND user_id = $2")
        .bind(request_id)
        .bind(user_id)
        .fetch_optional(ex)
        .await?;
    row.as_ref().map(|r| col(r, "first_at")).transpose()
}
