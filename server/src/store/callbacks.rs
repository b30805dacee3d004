//! Agents' callback URLs and the callback outbox.
//!
//! A delivery row is written by [`enqueue`], which [`super::requests::change`] and
//! [`super::requests::cancel_all_of_agent`] call in the transaction that moves the request out
//! of `pending`: the callback exists exactly when the decision does. Workers then [`claim`]
//! rows with one conditional `UPDATE` that takes a lease and counts the attempt; every later
//! write names the attempt it finishes (`attempts = $n`), so a worker whose lease ran out (it
//! hung, or died and came back) cannot overwrite what the worker that took over recorded.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor};

use super::{col, StoreError};
use crate::clock::Millis;

/// One callback owed to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// The request whose news it is (one callback per request).
    pub request_id: String,
    /// Its agent.
    pub agent_id: String,
    /// The URL registered when the request was decided (attempts use the current one).
    pub url: String,
    /// The request's final status.
    pub status: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts started so far (the claimed one included).
    pub attempts: i64,
    /// When the request was decided.
    pub created_at: Millis,
}

const COLUMNS: &str = "request_id, agent_id, url, status, state, attempts, created_at";

fn from_row(row: &AnyRow) -> Result<DeliveryRow, StoreError> {
    Ok(DeliveryRow {
        request_id: col(row, "request_id")?,
        agent_id: col(row, "agent_id")?,
        url: col(row, "url")?,
        status: col(row, "status")?,
        state: col(row, "state")?,
        attempts: col(row, "attempts")?,
        created_at: col(row, "created_at")?,
    })
}

/// Owes the request's agent a callback, if it has a callback URL: called in the transaction
/// that moved the request out of `pending`, after that write, so the row records the new status.
pub async fn enqueue(
    conn: &mut AnyConnection,
    request_id: &str,
    at: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO callback_deliveries \
         (request_id, agent_id, url, status, state, attempts, created_at, next_attempt_at) \
         SELECT r.id, r.agent_id, a.callback_url, r.status, 'pending', 0, $2, $2 \
         FROM requests r JOIN agents a ON a.id = r.agent_id \
         WHERE r.id = $1 AND a.callback_url IS NOT NULL \
         ON CONFLICT (request_id) DO NOTHING",
    )
    .bind(request_id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets (or, with `None`, clears) an agent's callback URL. False when there is no such agent.
pub async fn set_url(
    conn: &mut AnyConnection,
    agent_id: &str,
    url: Option<&str>,
) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE agents SET callback_url = $2 WHERE id = $1")
        .bind(agent_id)
        .bind(url)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// An agent's callback URL: `None` for no agent, `Some(None)` for an agent without one.
pub async fn url_of<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_id: &str,
) -> Result<Option<Option<String>>, StoreError> {
    let row = sqlx::query("SELECT callback_url FROM agents WHERE id = $1")
        .bind(agent_id)
        .fetch_optional(ex)
        .await?;
    row.map(|r| col::<Option<String>>(&r, "callback_url"))
        .transpose()
}

/// Claims up to `limit` callbacks that are due and not leased: each gets a lease until
/// `lease_until` and its attempt counted, in one statement. The conditions are repeated outside
/// the subquery so that on PostgreSQL a worker that waited for another's row lock re-checks
/// them against the row as the other left it, and skips it: two workers never hold the same
/// attempt.
pub async fn claim(
    conn: &mut AnyConnection,
    now: Millis,
    lease_until: Millis,
    limit: i64,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let sql = format!(
        "UPDATE callback_deliveries SET attempts = attempts + 1, lease_until = $2 \
         WHERE request_id IN (SELECT request_id FROM callback_deliveries \
             WHERE state = 'pending' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until <= $1) \
             ORDER BY next_attempt_at LIMIT $3) \
         AND state = 'pending' AND next_attempt_at <= $1 \
         AND (lease_until IS NULL OR lease_until <= $1) \
         RETURNING {COLUMNS}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    let mut out: Vec<DeliveryRow> = rows.iter().map(from_row).collect::<Result<_, _>>()?;
    out.sort_by_key(|a| a.created_at);
    Ok(out)
}

/// When the next callback falls due (or its lease runs out), if any is still owed.
pub async fn next_due<'e, E: Executor<'e, Database = Any>>(
    ex: E,
) -> Result<Option<Millis>, StoreError> {
    let row = sqlx::query(
        "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > next_attempt_at \
         THEN lease_until ELSE next_attempt_at END) AS due \
         FROM callback_deliveries WHERE state = 'pending'",
    )
    .fetch_one(ex)
    .await?;
    col(&row, "due")
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// The endpoint took it.
    Delivered,
    /// Failed; try again at this time.
    RetryAt(Millis, &'a str),
    /// Failed for the last time.
    Failed(&'a str),
}

/// Records how attempt number `attempt` of a callback ended. False when that attempt is no
/// longer the current one (its lease ran out and another worker took over): nothing is written
/// and the caller records nothing else either.
pub async fn finish(
    conn: &mut AnyConnection,
    request_id: &str,
    attempt: i64,
    now: Millis,
    outcome: Outcome<'_>,
) -> Result<bool, StoreError> {
    let (state, next, error): (&str, Millis, Option<&str>) = match outcome {
        Outcome::Delivered => ("delivered", now, None),
        Outcome::RetryAt(at, e) => ("pending", at, Some(e)),
        Outcome::Failed(e) => ("failed", now, Some(e)),
    };
    let finished_at = (state != "pending").then_some(now);
    let done = sqlx::query(
        "UPDATE callback_deliveries SET state = $3, next_attempt_at = $4, lease_until = NULL, \
         last_error = $5, finished_at = $6 \
         WHERE request_id = $1 AND attempts = $2 AND state = 'pending'",
    )
    .bind(request_id)
    .bind(attempt)
    .bind(state)
    .bind(next)
    .bind(error)
    .bind(finished_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A request's callback, if one is owed or was sent.
pub async fn get<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    request_id: &str,
) -> Result<Option<DeliveryRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM callback_deliveries WHERE request_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(request_id)
        .fetch_optional(ex)
        .await?;
    row.as_ref().map(from_row).transpose()
}
