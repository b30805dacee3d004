//! Standing approvals: rows, the conditional write that uses one, and the writes that end them.
//!
//! Using one is `UPDATE … SET uses_left = uses_left - 1 WHERE id = $1 AND status = 'active'
//! AND uses_left > 0 AND expires_at > now`. It is one statement, so racing uses of the last
//! use have exactly one winner (SQLite's one writer; PostgreSQL's row lock, with the `WHERE`
//! re-checked after the lock is granted). Ending one (`status = 'revoked'`) takes the same row,
//! so no use can commit after a revocation did.

use sqlx::{Any, AnyConnection, AssertSqlSafe, Executor};

use super::{col, StoreError};
use crate::clock::Millis;

/// A stored standing approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandingRow {
    /// Its id.
    pub id: String,
    /// The agent it approves for (and, through it, its sub-agents inside the pattern).
    pub agent_id: String,
    /// The person whose passkey ceremony created it.
    pub created_by: String,
    /// The request whose approval created it.
    pub request_id: String,
    /// That approval's ceremony.
    pub ceremony_id: String,
    /// The rule it stands under: later requests must be decided by the same rule.
    pub rule_id: String,
    /// `action.type` it covers.
    pub action_type: String,
    /// `action.target` it covers.
    pub target: String,
    /// The rest of the pattern, JSON (`domain::terms::Pattern`).
    pub pattern: String,
    /// Uses it was given.
    pub uses_total: i64,
    /// Uses left.
    pub uses_left: i64,
    /// Unix ms.
    pub created_at: Millis,
    /// Unix ms: it covers nothing from then on.
    pub expires_at: Millis,
    /// `active` or `revoked`.
    pub status: String,
    /// When it was revoked.
    pub ended_at: Option<Millis>,
    /// Who revoked it (`user:<id>`, `system`).
    pub ended_by: Option<String>,
    /// Why (`revoked_by_person`, `agent_suspended`, `key_changed`, `policy_changed`).
    pub end_reason: Option<String>,
}

const COLUMNS: &str = "id, agent_id, created_by, request_id, ceremony_id, rule_id, action_type, \
     target, pattern, uses_total, uses_left, created_at, expires_at, status, ended_at, ended_by, \
     end_reason";

fn from_row(row: &sqlx::any::AnyRow) -> Result<StandingRow, StoreError> {
    Ok(StandingRow {
        id: col(row, "id")?,
        agent_id: col(row, "agent_id")?,
        created_by: col(row, "created_by")?,
        request_id: col(row, "request_id")?,
        ceremony_id: col(row, "ceremony_id")?,
        rule_id: col(row, "rule_id")?,
        action_type: col(row, "action_type")?,
        target: col(row, "target")?,
        pattern: col(row, "pattern")?,
        uses_total: col(row, "uses_total")?,
        uses_left: col(row, "uses_left")?,
        created_at: col(row, "created_at")?,
        expires_at: col(row, "expires_at")?,
        status: col(row, "status")?,
        ended_at: col(row, "ended_at")?,
        ended_by: col(row, "ended_by")?,
        end_reason: col(row, "end_reason")?,
    })
}

/// Stores a new standing approval.
pub async fn insert(conn: &mut AnyConnection, r: &StandingRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO standing_approvals (id, agent_id, created_by, request_id, ceremony_id, \
         rule_id, action_type, target, pattern, uses_total, uses_left, created_at, expires_at, \
         status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'active')",
    )
    .bind(&r.id)
    .bind(&r.agent_id)
    .bind(&r.created_by)
    .bind(&r.request_id)
    .bind(&r.ceremony_id)
    .bind(&r.rule_id)
    .bind(&r.action_type)
    .bind(&r.target)
    .bind(&r.pattern)
    .bind(r.uses_total)
    .bind(r.uses_left)
    .bind(r.created_at)
    .bind(r.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// One standing approval.
pub async fn get<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    id: &str,
) -> Result<Option<StandingRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM standing_approvals WHERE id = $1");
    let row = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(id)
        .fetch_optional(ex)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The live standing approvals of these agents for this action type and target: active, in
/// time and with a use left. Oldest first, so the earliest grant of trust is used first.
pub async fn candidates<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_ids: &[&str],
    action_type: &str,
    target: &str,
    now: Millis,
) -> Result<Vec<StandingRow>, StoreError> {
    if agent_ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (0..agent_ids.len())
        .map(|i| format!("${}", i + 4))
        .collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM standing_approvals WHERE status = 'active' AND action_type = $1 \
         AND target = $2 AND expires_at > $3 AND uses_left > 0 AND agent_id IN ({}) \
         ORDER BY created_at, id",
        placeholders.join(", ")
    );
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(action_type)
        .bind(target)
        .bind(now);
    for id in agent_ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(ex).await?;
    rows.iter().map(from_row).collect()
}

/// Uses one use, if one is left and the approval is active and in time: the one conditional
/// write of the module docs. Returns the uses left after it, or `None` when it lost.
pub async fn use_one(
    conn: &mut AnyConnection,
    id: &str,
    now: Millis,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(
        "UPDATE standing_approvals SET uses_left = uses_left - 1 \
         WHERE id = $1 AND status = 'active' AND uses_left > 0 AND expires_at > $2 \
         RETURNING uses_left",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(|r| col(r, "uses_left")).transpose()
}

/// Gives a use back, inside the transaction that took it, when that transaction ends up
/// writing nothing for it (its idempotency key was taken).
pub async fn give_back(conn: &mut AnyConnection, id: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE standing_approvals SET uses_left = uses_left + 1 WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes one active standing approval. False when it was not active.
pub async fn revoke(
    conn: &mut AnyConnection,
    id: &str,
    by: &str,
    reason: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE standing_approvals SET status = 'revoked', ended_at = $2, ended_by = $3, \
         end_reason = $4 WHERE id = $1 AND status = 'active'",
    )
    .bind(id)
    .bind(now)
    .bind(by)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every active standing approval of these agents (the kill switch, a key change),
/// returning their ids.
pub async fn revoke_all_of_agents(
    conn: &mut AnyConnection,
    agent_ids: &[&str],
    by: &str,
    reason: &str,
    now: Millis,
) -> Result<Vec<String>, StoreError> {
    if agent_ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (0..agent_ids.len())
        .map(|i| format!("${}", i + 4))
        .collect();
    let sql = format!(
        "UPDATE standing_approvals SET status = 'revoked', ended_at = $1, ended_by = $2, \
         end_reason = $3 WHERE status = 'active' AND agent_id IN ({}) RETURNING id",
        placeholders.join(", ")
    );
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(now)
        .bind(by)
        .bind(reason);
    for id in agent_ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(conn).await?;
    let mut ids: Vec<String> = rows
        .iter()
        .map(|r| col(r, "id"))
        .collect::<Result<_, _>>()?;
    ids.sort();
    Ok(ids)
}

/// Every active standing approval (for a policy change to re-check), oldest first.
pub async fn all_active<'e, E: Executor<'e, Database = Any>>(
    ex: E,
) -> Result<Vec<StandingRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM standing_approvals WHERE status = 'active' ORDER BY created_at, id"
    );
    let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
        .fetch_all(ex)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Standing approvals for a list: of these agents (all agents when `None`), newest first,
/// leaving out those that ran out or were revoked before `since`.
pub async fn listed<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_ids: Option<&[String]>,
    since: Millis,
) -> Result<Vec<StandingRow>, StoreError> {
    let filter = match agent_ids {
        Some([]) => return Ok(Vec::new()),
        Some(ids) => {
            let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
            format!(" AND agent_id IN ({})", placeholders.join(", "))
        }
        None => String::new(),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM standing_approvals WHERE (expires_at > $1 OR ended_at > $1){filter} \
         ORDER BY created_at DESC, id LIMIT 500"
    );
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str())).bind(since);
    for id in agent_ids.unwrap_or_default() {
        q = q.bind(id.as_str());
    }
    let rows = q.fetch_all(ex).await?;
    rows.iter().map(from_row).collect()
}
