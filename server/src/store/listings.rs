//! Read-only listings for people's pages: the inbox, a request's surroundings, the history.
//! Nothing here writes; every query is bounded by a `LIMIT`.

use sqlx::{Any, Executor};

use super::requests::{from_row, RequestRow, COLUMNS};
use super::{col, StoreError};
use crate::clock::Millis;

/// Pending, unexpired requests, newest first.
pub async fn pending<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    now: Millis,
    limit: i64,
) -> Result<Vec<RequestRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM requests WHERE status = 'pending' AND expires_at > $1 \
         ORDER BY created_at DESC LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(limit)
        .fetch_all(ex)
        .await?;
    rows.iter().map(from_row).collect()
}

/// What a history listing asks for. Empty strings mean "any".
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Only this agent's requests.
    pub agent_id: String,
    /// Only this status (never `pending`).
    pub status: String,
    /// Only requests created at or after this time.
    pub since: Millis,
    /// Only requests of agents this person owns or that this person decided; None for all
    /// (admins).
    pub visible_to: Option<String>,
    /// At most this many.
    pub limit: i64,
}

/// Finished requests, newest first.
pub async fn finished<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    q: &HistoryQuery,
) -> Result<Vec<RequestRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM requests WHERE status <> 'pending' \
         AND ($1 = '' OR agent_id = $1) AND ($2 = '' OR status = $2) AND created_at >= $3 \
         AND ($4 = '' OR agent_id IN (SELECT id FROM agents WHERE owner_id = $4) \
              OR decided_by = $4 OR id IN (SELECT request_id FROM approvals WHERE user_id = $4)) \
         ORDER BY created_at DESC LIMIT $5"
    );
    let rows = sqlx::query(&sql)
        .bind(&q.agent_id)
        .bind(&q.status)
        .bind(q.since)
        .bind(q.visible_to.clone().unwrap_or_default())
        .bind(q.limit)
        .fetch_all(ex)
        .await?;
    rows.iter().map(from_row).collect()
}

/// An agent's most recent requests other than `except`, newest first.
pub async fn recent_of_agent<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_id: &str,
    except: &str,
    limit: i64,
) -> Result<Vec<RequestRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM requests WHERE agent_id = $1 AND id <> $2 \
         ORDER BY created_at DESC LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(agent_id)
        .bind(except)
        .bind(limit)
        .fetch_all(ex)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Whether the agent asked for this action type before `before`.
pub async fn asked_before<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_id: &str,
    action_type: &str,
    before: Millis,
) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM requests WHERE agent_id = $1 AND action_type = $2 AND created_at < $3",
    )
    .bind(agent_id)
    .bind(action_type)
    .bind(before)
    .fetch_one(ex)
    .await?;
    Ok(col::<i64>(&row, "n")? > 0)
}

/// One approval, with the approver's name.
#[derive(Debug, Clone)]
pub struct ApprovalRow {
    /// User id.
    pub user_id: String,
    /// Their display name.
    pub display_name: String,
    /// Their e-mail.
    pub email: String,
    /// Unix ms.
    pub decided_at: Millis,
}

/// A request's approvals, in order.
pub async fn approvals<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    request_id: &str,
) -> Result<Vec<ApprovalRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT a.user_id, u.display_name, u.email, a.decided_at FROM approvals a \
         JOIN users u ON u.id = a.user_id WHERE a.request_id = $1 ORDER BY a.decided_at",
    )
    .bind(request_id)
    .fetch_all(ex)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ApprovalRow {
                user_id: col(r, "user_id")?,
                display_name: col(r, "display_name")?,
                email: col(r, "email")?,
                decided_at: col(r, "decided_at")?,
            })
        })
        .collect()
}

/// The most recent requests of any agent, newest first (for dry runs in the policy editor).
pub async fn recent<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    limit: i64,
) -> Result<Vec<RequestRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM requests ORDER BY created_at DESC LIMIT $1");
    let rows = sqlx::query(&sql).bind(limit).fetch_all(ex).await?;
    rows.iter().map(from_row).collect()
}
