//! The first read of the intake writer's batch (see `service::writer`).
//!
//! A batch's transaction reads the agents it writes for, the audit chain's head and the newest
//! policy version. On PostgreSQL each of those is a lock taken in a fixed order (the agents
//! first, the head when appending, the policy read last while the head is held), so they stay
//! separate statements at their places in the transaction. On SQLite `BEGIN IMMEDIATE` already
//! holds the whole database until the transaction ends: nothing they say can change before it
//! does, so all three are read at once, in one statement and one hand-off.

use std::collections::HashMap;

use sqlx::{AnyConnection, AssertSqlSafe};

use super::agents::{self, AgentState, Hold};
use super::audit::Head;
use super::group::Params;
use super::{col, text_col, Backend, StoreError};

/// What a batch's transaction reads first.
#[derive(Debug)]
pub struct BatchStart {
    /// The batch's agents as the transaction sees them, held until it ends.
    pub agents: HashMap<String, AgentState>,
    /// The chain's head, when read already (SQLite).
    pub head: Option<Head>,
    /// The newest policy version and hash (`None` inside when none was ever applied), when
    /// read already (SQLite).
    pub newest_policy: Option<Option<(i64, String)>>,
}

/// Reads the batch's agents (and on SQLite the head and the newest policy with them).
pub async fn batch_start(
    conn: &mut AnyConnection,
    backend: Backend,
    agent_ids: &[&str],
) -> Result<BatchStart, StoreError> {
    if backend == Backend::Postgres {
        return Ok(BatchStart {
            agents: agents::current_for_write(conn, backend, agent_ids, Hold::Update).await?,
            head: None,
            newest_policy: None,
        });
    }
    // One row when no agent is found, one per agent otherwise: the head always has its row.
    let sql = format!(
        "SELECT h.seq AS head_seq, h.hash AS head_hash, \
           p.version AS policy_version, p.hash AS policy_hash, \
           a.id AS agent_id, a.status, a.epoch, a.parent_id \
         FROM audit_head h \
         LEFT JOIN (SELECT version, hash FROM policy_versions ORDER BY version DESC LIMIT 1) p \
           ON 1 = 1 \
         LEFT JOIN agents a ON a.id IN ({}) \
         WHERE h.id = 1",
        Params::new(backend).list(agent_ids.len().max(1))
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    if agent_ids.is_empty() {
        query = query.bind(None::<String>);
    }
    for id in agent_ids {
        query = query.bind(*id);
    }
    let rows = query.fetch_all(conn).await?;
    let first = rows
        .first()
        .ok_or_else(|| StoreError::corrupt("the audit chain has no head row"))?;
    let head = Head {
        seq: col(first, "head_seq")?,
        hash: col(first, "head_hash")?,
    };
    let newest_policy = match col::<Option<i64>>(first, "policy_version")? {
        Some(version) => Some((version, col(first, "policy_hash")?)),
        None => None,
    };
    let mut agents = HashMap::new();
    for row in &rows {
        if let Some(id) = col::<Option<String>>(row, "agent_id")? {
            agents.insert(
                id,
                AgentState {
                    status: text_col(row, "status")?,
                    epoch: col(row, "epoch")?,
                    parent_id: col(row, "parent_id")?,
                },
            );
        }
    }
    Ok(BatchStart {
        agents,
        head: Some(head),
        newest_policy: Some(newest_policy),
    })
}
