//! The audit chain's table. Appends happen inside the caller's transaction, so a state change
//! and its evidence commit (or vanish) together.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor};

use super::{col, StoreError};
use crate::clock::Millis;
use crate::domain::audit::{event_hash, AuditEvent};
use crate::domain::canonical::canonical_json;

/// Appends an event after the current chain head (a trigger then moves the head's hash to it).
///
/// The head row is advanced with `UPDATE … RETURNING` first: on PostgreSQL that row lock
/// serialises appenders across replicas until our transaction ends, and on SQLite the write
/// transaction already holds the database lock. So `seq` has no gaps and each event's
/// `prev_hash` really is its predecessor's hash.
pub async fn append(
    conn: &mut AnyConnection,
    at: Millis,
    actor: &str,
    kind: &str,
    request_id: Option<&str>,
    data: &Value,
) -> Result<AuditEvent, StoreError> {
    let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut *conn)
        .await?;
    let seq: i64 = col(&head, "seq")?;
    let prev_hash: String = col(&head, "hash")?;
    let hash = event_hash(seq, at, actor, kind, request_id, data, &prev_hash);
    sqlx::query(
        "INSERT INTO audit_events (seq, at, actor, kind, request_id, data, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(seq)
    .bind(at)
    .bind(actor)
    .bind(kind)
    .bind(request_id)
    .bind(canonical_json(data))
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    Ok(AuditEvent {
        seq,
        at,
        actor: actor.to_string(),
        kind: kind.to_string(),
        request_id: request_id.map(str::to_string),
        data: data.clone(),
        prev_hash,
        hash,
    })
}

fn from_row(row: &AnyRow) -> Result<AuditEvent, StoreError> {
    let data: String = col(row, "data")?;
    Ok(AuditEvent {
        seq: col(row, "seq")?,
        at: col(row, "at")?,
        actor: col(row, "actor")?,
        kind: col(row, "kind")?,
        request_id: col(row, "request_id")?,
        // A row whose data is no longer JSON was edited by hand; show it as a string so the
        // verifier reports the broken link instead of the reader failing.
        data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
        prev_hash: col(row, "prev_hash")?,
        hash: col(row, "hash")?,
    })
}

/// Up to `limit` events with `seq` above `after`, in order (for paging through the chain).
pub async fn page<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, at, actor, kind, request_id, data, prev_hash, hash FROM audit_events \
         WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(ex)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Every event of one request, in order.
pub async fn for_request<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    request_id: &str,
) -> Result<Vec<AuditEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, at, actor, kind, request_id, data, prev_hash, hash FROM audit_events \
         WHERE request_id = $1 ORDER BY seq",
    )
    .bind(request_id)
    .fetch_all(ex)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The chain head as recorded (`seq`, `hash`).
pub async fn head<'e, E: Executor<'e, Database = Any>>(ex: E) -> Result<(i64, String), StoreError> {
    let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(ex)
        .await?;
    Ok((col(&row, "seq")?, col(&row, "hash")?))
}
