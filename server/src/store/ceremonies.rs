//! WebAuthn ceremony state, kept server-side and used at most once.
//!
//! webauthn-rs hands us a state object per ceremony (it contains the challenge). Keeping it in
//! the database rather than in the browser's session cookie means it can be bound to things the
//! browser cannot change (the request, its `action_hash`, the decision) and consumed with one
//! `DELETE … RETURNING`, so a challenge can never be answered twice, on any replica.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor};

use super::{col, StoreError};
use crate::clock::Millis;

/// A ceremony in progress.
#[derive(Debug, Clone)]
pub struct CeremonyRow {
    /// Random id the browser sends back with its answer.
    pub id: String,
    /// `register`, `sign_in`, `approve` or `deny`.
    pub kind: String,
    /// The person (known for everything but a discoverable sign-in or an enrolment).
    pub user_id: Option<String>,
    /// The session the ceremony was started in.
    pub session_binding: Option<String>,
    /// For decisions: the request.
    pub request_id: Option<String>,
    /// For decisions: the `action_hash` the person was shown.
    pub action_hash: Option<String>,
    /// webauthn-rs's serialised ceremony state.
    pub state: String,
    /// Anything else the finish step needs (JSON).
    pub context: String,
    /// After this the ceremony is refused.
    pub expires_at: Millis,
}

/// Stores a new ceremony.
pub async fn insert<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    c: &CeremonyRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ceremonies (id, kind, user_id, session_binding, request_id, action_hash, state, \
         context, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&c.id)
    .bind(&c.kind)
    .bind(&c.user_id)
    .bind(&c.session_binding)
    .bind(&c.request_id)
    .bind(&c.action_hash)
    .bind(&c.state)
    .bind(&c.context)
    .bind(c.expires_at)
    .execute(ex)
    .await?;
    Ok(())
}

fn from_row(row: &AnyRow) -> Result<CeremonyRow, StoreError> {
    Ok(CeremonyRow {
        id: col(row, "id")?,
        kind: col(row, "kind")?,
        user_id: col(row, "user_id")?,
        session_binding: col(row, "session_binding")?,
        request_id: col(row, "request_id")?,
        action_hash: col(row, "action_hash")?,
        state: col(row, "state")?,
        context: col(row, "context")?,
        expires_at: col(row, "expires_at")?,
    })
}

/// Removes and returns a ceremony of the given kind. Whoever gets the row back is the only one
/// who can ever finish it; the caller still checks expiry and bindings on what it got.
pub async fn take(
    conn: &mut AnyConnection,
    id: &str,
    kinds: &[&str],
) -> Result<Option<CeremonyRow>, StoreError> {
    let row = sqlx::query(
        "DELETE FROM ceremonies WHERE id = $1 AND (kind = $2 OR kind = $3) \
         RETURNING id, kind, user_id, session_binding, request_id, action_hash, state, context, expires_at",
    )
    .bind(id)
    .bind(kinds.first().copied().unwrap_or(""))
    .bind(kinds.get(1).copied().unwrap_or(""))
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Deletes ceremonies nobody finished.
pub async fn purge_expired<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    now: Millis,
) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM ceremonies WHERE expires_at < $1")
        .bind(now)
        .execute(ex)
        .await?;
    Ok(done.rows_affected())
}
