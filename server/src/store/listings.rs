//! Read-only listings for people's pages: the inbox, a request's surroundings, the history.
//! Nothing here writes; every query is bounded by a `LIMIT`.

use std::collections::{HashMap, HashSet};

use sqlx::{Any, AssertSqlSafe, Executor};

use super::requests::{from_row, RequestRow, COLUMNS};
use super::{col, list_placeholders, StoreError};
use crate::clock::Millis;
use crate::domain::lifecycle::RequestStatus;

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
    let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
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
    /// Only this status (never `pending`); None for any.
    pub status: Option<RequestStatus>,
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
    let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(&q.agent_id)
        .bind(q.status.map_or("", RequestStatus::as_str))
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
    let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(agent_id)
        .bind(except)
        .bind(limit)
        .fetch_all(ex)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Whether the agent asked for this action type before `before`. One probe of
/// `agent_actions` (the first time each agent asked for each type), however long the agent's
/// history.
pub async fn asked_before<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_id: &str,
    action_type: &str,
    before: Millis,
) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM agent_actions WHERE agent_id = $1 \
           AND action_type = $2 AND first_at < $3) THEN 1 ELSE 0 END AS asked",
    )
    .bind(agent_id)
    .bind(action_type)
    .bind(before)
    .fetch_one(ex)
    .await?;
    Ok(col::<i64>(&row, "asked")? == 1)
}

/// Of these requests, the ones whose agent had asked for the same action type before: one
/// statement for a whole inbox, one index probe per request.
pub async fn asked_before_each<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    request_ids: &[&str],
) -> Result<HashSet<String>, StoreError> {
    if request_ids.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = format!(
        "SELECT r.id AS id FROM requests r JOIN agent_actions f \
           ON f.agent_id = r.agent_id AND f.action_type = r.action_type \
         WHERE r.id IN ({}) AND f.first_at < r.created_at",
        list_placeholders(1, request_ids.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
    for id in request_ids {
        q = q.bind(*id);
    }
    q.fetch_all(ex)
        .await?
        .iter()
        .map(|r| col::<String>(r, "id"))
        .collect()
}

/// Who approved each of these requests so far (user ids, in order); a request nobody
/// approved yet is absent.
pub async fn approvers_of_each<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    request_ids: &[&str],
) -> Result<HashMap<String, Vec<String>>, StoreError> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    if request_ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT request_id, user_id FROM approvals WHERE request_id IN ({}) \
         ORDER BY decided_at, user_id",
        list_placeholders(1, request_ids.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
    for id in request_ids {
        q = q.bind(*id);
    }
    for r in q.fetch_all(ex).await? {
        out.entry(col(&r, "request_id")?)
            .or_default()
            .push(col(&r, "user_id")?);
    }
    Ok(out)
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
    let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(limit)
        .fetch_all(ex)
        .await?;
    rows.iter().map(from_row).collect()
}
