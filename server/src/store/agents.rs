//! Agents and their credentials (API-key hashes, registered public keys, seen assertion ids).

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Executor};

use super::group::{Params, StatementGroup};
use super::{col, text_col, StoreError};
use crate::clock::Millis;
use crate::domain::lifecycle::AgentStatus;

/// One row of `agents`.
#[derive(Debug, Clone)]
pub struct AgentRow {
    /// The agent's id (a UUID), also the `sub` of its grants.
    pub id: String,
    /// A human name, e.g. "invoice-bot".
    pub name: String,
    /// The person responsible for it.
    pub owner_id: String,
    /// `active` or `suspended`.
    pub status: AgentStatus,
    /// `api_key` or `public_key`.
    pub key_type: String,
    /// SHA-256 (hex) of the API key's secret part.
    pub api_key_hash: Option<String>,
    /// The registered Ed25519 public JWK (JSON).
    pub public_jwk: Option<String>,
    /// RFC 7638 thumbprint of that JWK (`cnf.jkt` of its grants).
    pub jwk_thumbprint: Option<String>,
    /// When it was registered.
    pub created_at: Millis,
    /// When it last created a request.
    pub last_seen_at: Option<Millis>,
    /// Advances with every change of status or credential (see [`set_status`]).
    pub epoch: i64,
    /// Where its requests' decisions are announced (see [`super::callbacks`]); written only
    /// by [`super::callbacks::set_url`], so [`insert`] leaves it unset.
    pub callback_url: Option<String>,
    /// The agent it is a sub-agent of, if any; written only by [`set_parent`], so [`insert`]
    /// leaves it unset.
    pub parent_id: Option<String>,
}

const COLUMNS: &str = "id, name, owner_id, status, key_type, api_key_hash, public_jwk, \
                       jwk_thumbprint, created_at, last_seen_at, epoch, callback_url, parent_id";

fn from_row(row: &AnyRow) -> Result<AgentRow, StoreError> {
    Ok(AgentRow {
        id: col(row, "id")?,
        name: col(row, "name")?,
        owner_id: col(row, "owner_id")?,
        status: text_col(row, "status")?,
        key_type: col(row, "key_type")?,
        api_key_hash: col(row, "api_key_hash")?,
        public_jwk: col(row, "public_jwk")?,
        jwk_thumbprint: col(row, "jwk_thumbprint")?,
        created_at: col(row, "created_at")?,
        last_seen_at: col(row, "last_seen_at")?,
        epoch: col(row, "epoch")?,
        callback_url: col(row, "callback_url")?,
        parent_id: col(row, "parent_id")?,
    })
}

/// Inserts a new agent.
pub async fn insert(conn: &mut AnyConnection, a: &AgentRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO agents (id, name, owner_id, status, key_type, api_key_hash, public_jwk, \
         jwk_thumbprint, created_at, last_seen_at, epoch) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&a.id)
    .bind(&a.name)
    .bind(&a.owner_id)
    .bind(a.status.as_str())
    .bind(&a.key_type)
    .bind(&a.api_key_hash)
    .bind(&a.public_jwk)
    .bind(&a.jwk_thumbprint)
    .bind(a.created_at)
    .bind(a.last_seen_at)
    .bind(a.epoch)
    .execute(conn)
    .await?;
    Ok(())
}

/// Looks an agent up by id.
pub async fn get<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    id: &str,
) -> Result<Option<AgentRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE id = $1");
    let row = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(id)
        .fetch_optional(ex)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every agent, or one owner's, newest first.
pub async fn list<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    owner_id: Option<&str>,
) -> Result<Vec<AgentRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM agents WHERE ($1 IS NULL OR owner_id = $1) ORDER BY created_at DESC"
    );
    let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(owner_id)
        .fetch_all(ex)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Moves an agent from one status to another and advances its epoch; false when it was not in
/// `from`.
///
/// The epoch is what makes a suspension final the moment it commits: every write made on the
/// agent's behalf (a new request, a grant, a redemption) compares the epoch it was authorised
/// under with the current one inside its own transaction (see [`current_for_write`]).
pub async fn set_status(
    conn: &mut AnyConnection,
    id: &str,
    from: AgentStatus,
    to: AgentStatus,
) -> Result<bool, StoreError> {
    from.to(to)?;
    let done = sqlx::query(
        "UPDATE agents SET status = $3, epoch = epoch + 1 WHERE id = $1 AND status = $2",
    )
    .bind(id)
    .bind(from.as_str())
    .bind(to.as_str())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One agent as the admins' list shows it: the row without its credential material, with its
/// owner and how many of its requests wait for people.
#[derive(Debug, Clone)]
pub struct AgentListing {
    /// The agent's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its owner's user id.
    pub owner_id: String,
    /// Its owner's e-mail.
    pub owner_email: String,
    /// Its owner's display name.
    pub owner_name: String,
    /// `active` or `suspended`.
    pub status: AgentStatus,
    /// `api_key` or `public_key`.
    pub key_type: String,
    /// RFC 7638 thumbprint of its registered public key, if any.
    pub jwk_thumbprint: Option<String>,
    /// When it was registered.
    pub created_at: Millis,
    /// When it last created a request.
    pub last_seen_at: Option<Millis>,
    /// Its requests still pending (and not yet past their expiry) at `now`.
    pub pending_requests: i64,
    /// Where its decisions are announced, if anywhere.
    pub callback_url: Option<String>,
    /// The agent it is a sub-agent of, if any.
    pub parent_id: Option<String>,
}

/// Every agent with its owner and its count of pending requests, newest first: one statement
/// (a join, and a count per agent answered from the partial index `requests_pending_by_agent`),
/// so the admins' page costs one round trip however many agents there are.
pub async fn list_with_owners<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    now: Millis,
) -> Result<Vec<AgentListing>, StoreError> {
    let rows = sqlx::query(
        "SELECT a.id, a.name, a.owner_id, u.email AS owner_email, u.display_name AS owner_name, \
         a.status, a.key_type, a.jwk_thumbprint, a.created_at, a.last_seen_at, a.callback_url, a.parent_id, \
         (SELECT COUNT(*) FROM requests r WHERE r.agent_id = a.id AND r.status = 'pending' \
          AND r.expires_at > $1) AS pending_requests \
         FROM agents a JOIN users u ON u.id = a.owner_id \
         ORDER BY a.created_at DESC, a.id",
    )
    .bind(now)
    .fetch_all(ex)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AgentListing {
                id: col(row, "id")?,
                name: col(row, "name")?,
                owner_id: col(row, "owner_id")?,
                owner_email: col(row, "owner_email")?,
                owner_name: col(row, "owner_name")?,
                status: text_col(row, "status")?,
                key_type: col(row, "key_type")?,
                jwk_thumbprint: col(row, "jwk_thumbprint")?,
                created_at: col(row, "created_at")?,
                last_seen_at: col(row, "last_seen_at")?,
                pending_requests: col(row, "pending_requests")?,
                callback_url: col(row, "callback_url")?,
                parent_id: col(row, "parent_id")?,
            })
        })
        .collect()
}

/// An agent's credential: exactly one of an API-key digest or a public key (with its
/// thumbprint), named by `key_type`.
#[derive(Debug, Clone, Copy)]
pub struct Credential<'a> {
    /// `api_key` or `public_key`.
    pub key_type: &'a str,
    /// SHA-256 (hex) of the API key's secret part.
    pub api_key_hash: Option<&'a str>,
    /// The registered Ed25519 public JWK (JSON).
    pub public_jwk: Option<&'a str>,
    /// Its RFC 7638 thumbprint.
    pub jwk_thumbprint: Option<&'a str>,
}

/// Replaces an agent's credential, but only if it still is the one the caller read
/// (`expected_api_key_hash` and `expected_thumbprint`, `None` meaning "none"): a compare-and-set,
/// so two admins changing the same agent's key at once cannot both believe their key is the
/// one in force. False when the agent is gone or its credential changed meanwhile.
pub async fn replace_credential(
    conn: &mut AnyConnection,
    id: &str,
    expected_api_key_hash: Option<&str>,
    expected_thumbprint: Option<&str>,
    new: Credential<'_>,
) -> Result<bool, StoreError> {
    // COALESCE instead of `IS NOT DISTINCT FROM`: both engines accept it, and neither a digest
    // nor a thumbprint is ever empty.
    let done = sqlx::query(
        "UPDATE agents SET key_type = $4, api_key_hash = $5, public_jwk = $6, jwk_thumbprint = $7, \
         epoch = epoch + 1 WHERE id = $1 AND COALESCE(api_key_hash, '') = $2 AND COALESCE(jwk_thumbprint, '') = $3",
    )
    .bind(id)
    .bind(expected_api_key_hash.unwrap_or(""))
    .bind(expected_thumbprint.unwrap_or(""))
    .bind(new.key_type)
    .bind(new.api_key_hash)
    .bind(new.public_jwk)
    .bind(new.jwk_thumbprint)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An agent's status and epoch as a writing transaction sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentState {
    /// `active` or `suspended`.
    pub status: AgentStatus,
    /// See [`set_status`].
    pub epoch: i64,
    /// The agent it is a sub-agent of.
    pub parent_id: Option<String>,
}

/// How a writing transaction holds the agents it read until it commits (PostgreSQL; SQLite's
/// write transaction already excludes every other writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The transaction only reads the agents (`FOR SHARE`).
    Read,
    /// The transaction will also update them (`FOR NO KEY UPDATE`; taking a share lock and
    /// upgrading it later could deadlock with another transaction doing the same).
    Update,
}

/// Reads the status and epoch of these agents inside the caller's write transaction and holds
/// them until it commits, so a suspension or key change either commits before (and this
/// transaction sees it) or waits until after (and finds this transaction's writes to undo).
/// Rows are locked in id order, so two transactions holding several agents cannot deadlock.
pub async fn current_for_write(
    conn: &mut AnyConnection,
    backend: super::Backend,
    ids: &[&str],
    hold: Hold,
) -> Result<std::collections::HashMap<String, AgentState>, StoreError> {
    let mut out = std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let lock = match (backend, hold) {
        (super::Backend::Sqlite, _) => "",
        (super::Backend::Postgres, Hold::Read) => " FOR SHARE",
        (super::Backend::Postgres, Hold::Update) => " FOR NO KEY UPDATE",
    };
    let sql = format!(
        "SELECT id, status, epoch, parent_id FROM agents WHERE id IN ({}) ORDER BY id{lock}",
        super::list_placeholders(1, ids.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
    for id in ids {
        q = q.bind(*id);
    }
    for row in q.fetch_all(conn).await? {
        out.insert(
            col(&row, "id")?,
            AgentState {
                status: text_col(&row, "status")?,
                epoch: col(&row, "epoch")?,
                parent_id: col(&row, "parent_id")?,
            },
        );
    }
    Ok(out)
}

/// The most ancestors an agent may have: a sub-agent of a sub-agent … at most this deep. It
/// bounds every walk up or down the tree, and keeps the registered lineage that audit events
/// carry small.
pub const MAX_LINEAGE: usize = 8;

/// The agent's ancestors, outermost first (its parent last); empty for an agent that is no
/// one's sub-agent. One statement: a recursive walk up `parent_id`, bounded so that even a
/// cycle (which [`set_parent`]'s callers refuse) could not make it run away.
pub async fn lineage<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    id: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "WITH RECURSIVE up(id, parent_id, depth) AS ( \
           SELECT id, parent_id, 0 FROM agents WHERE id = $1 \
           UNION ALL \
           SELECT a.id, a.parent_id, up.depth + 1 FROM agents a JOIN up ON a.id = up.parent_id \
           WHERE up.depth < 16) \
         SELECT id FROM up WHERE depth > 0 ORDER BY depth DESC",
    )
    .bind(id)
    .fetch_all(ex)
    .await?;
    rows.iter().map(|r| col(r, "id")).collect()
}

/// How many levels of sub-agents hang below the agent (0: none): walked down level by level
/// with [`children_of`], never further than `MAX_LINEAGE + 1` levels (enough to tell that a
/// change would exceed the cap).
pub async fn subtree_height(conn: &mut AnyConnection, id: &str) -> Result<usize, StoreError> {
    let mut level = vec![id.to_string()];
    let mut height = 0;
    while height <= MAX_LINEAGE {
        let next: Vec<String> = children_of(&mut *conn, &level)
            .await?
            .into_iter()
            .map(|(child, _)| child)
            .collect();
        if next.is_empty() {
            break;
        }
        height += 1;
        level = next;
    }
    Ok(height)
}

/// The direct sub-agents of these agents, as (child, parent), in id order (so a transaction
/// that locks them one by one locks in a stable order).
pub async fn children_of(
    conn: &mut AnyConnection,
    parents: &[String],
) -> Result<Vec<(String, String)>, StoreError> {
    if parents.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id, parent_id FROM agents WHERE parent_id IN ({}) ORDER BY id",
        super::list_placeholders(1, parents.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
    for p in parents {
        q = q.bind(p.as_str());
    }
    let rows = q.fetch_all(conn).await?;
    rows.iter()
        .map(|r| Ok((col(r, "id")?, col(r, "parent_id")?)))
        .collect()
}

/// Sets (or clears) an agent's parent; false when there is no such agent. The epoch is left
/// alone: a new parent changes neither the agent's credential nor its status.
pub async fn set_parent(
    conn: &mut AnyConnection,
    id: &str,
    parent_id: Option<&str>,
) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE agents SET parent_id = $2 WHERE id = $1")
        .bind(id)
        .bind(parent_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Reads an agent's status inside the caller's write transaction and, on PostgreSQL, holds its
/// row (`FOR SHARE`) until the transaction ends: a suspension of that agent (an `UPDATE` of the
/// row) then either committed before, and is seen here, or waits for this transaction.
pub async fn status_held(
    conn: &mut AnyConnection,
    backend: super::Backend,
    id: &str,
) -> Result<Option<AgentStatus>, StoreError> {
    let lock = match backend {
        super::Backend::Sqlite => "",
        super::Backend::Postgres => " FOR SHARE",
    };
    let sql = format!("SELECT status FROM agents WHERE id = $1{lock}");
    let row = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(|r| text_col(r, "status")).transpose()
}

/// Adds to `group` the recording of these agents' activity at `at` (one statement for a
/// whole batch of requests).
pub fn touch_rows<'q>(group: &mut StatementGroup<'q>, ids: Vec<&'q str>, at: Millis) {
    if ids.is_empty() {
        return;
    }
    let n = ids.len();
    let sql = move |p: &mut Params| {
        format!(
            "UPDATE agents SET last_seen_at = {} WHERE id IN ({})",
            p.one(),
            p.list(n)
        )
    };
    group.push(sql, move |q| {
        ids.into_iter().fold(q.bind(at), |q, id| q.bind(id))
    });
}

/// Remembers an assertion's `jti` until it expires. Returns false when the agent already used
/// it: that assertion is a replay.
pub async fn remember_jti<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_id: &str,
    jti: &str,
    expires_at: Millis,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO assertion_jtis (agent_id, jti, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (agent_id, jti) DO NOTHING",
    )
    .bind(agent_id)
    .bind(jti)
    .bind(expires_at)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets assertion ids that can no longer be replayed (their assertion has expired).
pub async fn purge_jtis<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    now: Millis,
) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM assertion_jtis WHERE expires_at < $1")
        .bind(now)
        .execute(ex)
        .await?;
    Ok(done.rows_affected())
}
