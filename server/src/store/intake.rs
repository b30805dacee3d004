//! The intake writer's transaction (see `service::writer`): how it begins, what it reads first,
//! and how it ends.
//!
//! A batch's transaction reads the agents it writes for, the audit chain's head and the newest
//! policy version, and the fatigue guards' probe for its requests that would wait for people
//! (`store::guards::intake_loads`). On PostgreSQL the first three are locks taken in a fixed
//! order (the agents first, then, after the uses of standing approvals, the head, and the
//! policy read last while the head is held), so each has its place in the transaction; but
//! they ride on statements that run anyway: the head is locked and read with the probe
//! ([`BatchTx::hold_head`]; the agents are held by then, so no other writer can add to what the
//! probe reads), and the policy is read in the statement that writes the batch, which also
//! announces its new requests to the other replicas ([`BatchTx::write_reading_policy`]). A
//! pending batch takes five round trips: `BEGIN`, agents, head and probe, writes, `COMMIT`.
//! On SQLite `BEGIN IMMEDIATE` already holds the whole database until the transaction ends:
//! nothing they say can change before it does, so all of it is read at once, in one hand-off.
//!
//! On SQLite the transaction is also begun and ended by hand ([`BatchTx`]), because every
//! statement is a hand-off to the connection's thread and back, and sqlx's `Transaction` spends
//! one on `BEGIN` and one on `COMMIT` alone: here `BEGIN IMMEDIATE` travels with the first read
//! and `COMMIT` with the batch's writes, so a batch takes two hand-offs. Giving the connection
//! back to the pool is one more (the pool checks a returned connection with a round trip to its
//! thread before anyone may take it), so the writer keeps it ([`HeldWriter`]) across the batches
//! of a busy spell. A transaction begun by hand is invisible to sqlx, which would hand the
//! connection to the next user still inside it; so a held connection is marked as possibly in a
//! transaction from `BEGIN` until a `COMMIT` or `ROLLBACK` is known to have run, and one still
//! so marked is closed, never reused or given back.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Row};

use super::agents::{self, AgentState, Hold};
use super::audit::Head;
use super::group::{Params, StatementGroup};
use super::guards::{self, Ask, IntakeLoad};
use super::{col, coordination, policies, text_col, Backend, Db, StoreError, WriteTx};

/// SQLite's one write connection, held by the intake writer across batches.
pub struct HeldWriter {
    conn: PoolConnection<Any>,
    /// From `BEGIN` until its `COMMIT` or `ROLLBACK` is known to have run: a transaction may be
    /// open on the connection, so it must not be used again.
    maybe_in_transaction: bool,
}

impl HeldWriter {
    /// Takes the write connection from its pool (waiting for whoever has it).
    pub async fn acquire(db: &Db) -> Result<Self, StoreError> {
        Ok(Self {
            conn: db.writer().acquire().await?,
            maybe_in_transaction: false,
        })
    }

    /// False once a transaction may have been left open on it: drop it (it is then closed)
    /// and take another.
    pub fn usable(&self) -> bool {
        !self.maybe_in_transaction
    }
}

impl Drop for HeldWriter {
    fn drop(&mut self) {
        if self.maybe_in_transaction {
            // Closing the connection ends whatever transaction it was in, which rolls back.
            self.conn.close_on_drop();
        }
    }
}

/// A batch's transaction: on SQLite begun and ended by hand on a [`HeldWriter`], on PostgreSQL
/// one of sqlx's. End it with [`BatchTx::commit`] or [`BatchTx::rollback`]. Dropped without
/// either (an early return on an error), it rolls back: on PostgreSQL as sqlx's do, on SQLite
/// by closing its connection, which is still marked as possibly in a transaction. The pool
/// lets nobody else take the write connection until that close has ended the transaction.
pub struct BatchTx<'c> {
    inner: Inner<'c>,
}

enum Inner<'c> {
    Sqlite(&'c mut HeldWriter),
    Postgres(WriteTx),
}

impl<'c> BatchTx<'c> {
    /// SQLite: `BEGIN IMMEDIATE` and the batch's first read, with the guards' loads of `asks`,
    /// in one hand-off.
    pub async fn begin_sqlite(
        held: &'c mut HeldWriter,
        agent_ids: &[&str],
        asks: &[Ask<'_>],
    ) -> Result<(Self, BatchStart), StoreError> {
        if !held.usable() {
            return Err(StoreError::corrupt(
                "the intake writer's connection may still be in a transaction",
            ));
        }
        held.maybe_in_transaction = true;
        let start = sqlite_start(&mut held.conn, agent_ids, asks).await?;
        Ok((
            Self {
                inner: Inner::Sqlite(held),
            },
            start,
        ))
    }

    /// PostgreSQL: a pooled transaction, and the batch's agents held in it.
    pub async fn begin_postgres(
        db: &Db,
        agent_ids: &[&str],
    ) -> Result<(Self, BatchStart), StoreError> {
        let mut tx = db.begin().await?;
        let agents =
            agents::current_for_write(&mut tx, Backend::Postgres, agent_ids, Hold::Update).await?;
        Ok((
            Self {
                inner: Inner::Postgres(tx),
            },
            BatchStart {
                agents,
                head: None,
                newest_policy: None,
                loads: None,
            },
        ))
    }

    /// PostgreSQL: holds the audit chain's head until the transaction ends, and reads it with
    /// the guards' loads of `asks`, in one statement. Taken after the batch's agents and the
    /// uses of its standing approvals (in the order every writer takes those locks), before
    /// anything is appended; the newest policy is read after it, by
    /// [`BatchTx::write_reading_policy`]. SQLite read both at the start.
    pub async fn hold_head(
        &mut self,
        asks: &[Ask<'_>],
    ) -> Result<(Head, Vec<IntakeLoad>), StoreError> {
        let head =
            "SELECT seq AS head_seq, hash AS head_hash FROM audit_head WHERE id = 1 FOR UPDATE";
        let sql = if asks.is_empty() {
            head.to_string()
        } else {
            // One row per ask, each with the head.
            format!(
                "WITH head AS ({head}) \
                 SELECT h.head_seq, h.head_hash, l.i, l.same, l.denied \
                 FROM head h LEFT JOIN ({}) AS l ON TRUE",
                guards::intake_loads_sql(Backend::Postgres, asks.len())
            )
        };
        let query = guards::bind_asks(sqlx::query(AssertSqlSafe(sql)), asks)?;
        let rows = query.fetch_all(self.conn()).await?;
        let head = head_of(rows.first().ok_or_else(no_head)?)?;
        let loads = match asks.len() {
            0 => Vec::new(),
            n => guards::loads_from(&rows, n)?,
        };
        Ok((head, loads))
    }

    /// PostgreSQL: runs `group` and, in the same statement, reads the newest policy version
    /// and hash (`None` when none was ever applied) and announces the `pending` requests on
    /// `channel` to the other replicas (delivered when the transaction commits). Called with
    /// the head held ([`BatchTx::hold_head`]): no policy can be applied, on any replica, between
    /// this read and the commit, because applying one appends to the chain too.
    pub async fn write_reading_policy<'q>(
        &mut self,
        mut group: StatementGroup<'q>,
        channel: &str,
        pending: &[&str],
    ) -> Result<Option<(i64, String)>, StoreError> {
        // The notifications are a subquery of one row that the policy, possibly absent, is
        // joined to: the row is always there, so it always runs.
        let n = pending.len();
        let sql = move |p: &mut Params| {
            let first = match n {
                0 => "(SELECT 1 AS one) AS o".to_string(),
                n => format!("(SELECT {}) AS o", coordination::notify_sql(p, n)),
            };
            format!(
                "SELECT v.version AS policy_version, v.hash AS policy_hash \
                 FROM {first} LEFT JOIN ({}) AS v ON TRUE",
                policies::NEWEST
            )
        };
        if n == 0 {
            group.push(sql, |q| q);
        } else {
            group.push(sql, coordination::notify_binder(channel, pending));
        }
        let rows = group.fetch_all(self.conn()).await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::corrupt("the newest policy's read returned no row"))?;
        newest_policy_of(row)
    }

    /// The engine the transaction runs on.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// The connection, for the statements in between.
    pub fn conn(&mut self) -> &mut AnyConnection {
        match &mut self.inner {
            Inner::Sqlite(held) => &mut held.conn,
            Inner::Postgres(tx) => tx,
        }
    }

    /// Runs `group` and commits: on SQLite in one hand-off, the `COMMIT` sent with the group.
    /// If either fails, the transaction rolls back (see [`BatchTx`]).
    pub async fn commit(self, mut group: StatementGroup<'_>) -> Result<(), StoreError> {
        match self.inner {
            Inner::Sqlite(held) => {
                group.push(|_| "COMMIT".to_string(), |q| q);
                group.execute(&mut held.conn).await?;
                held.maybe_in_transaction = false;
            }
            Inner::Postgres(mut tx) => {
                group.execute(&mut tx).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Rolls back everything the transaction did.
    pub async fn rollback(self) {
        match self.inner {
            Inner::Sqlite(held) => match sqlx::query("ROLLBACK").execute(&mut *held.conn).await {
                Ok(_) => held.maybe_in_transaction = false,
                Err(e) => tracing::warn!(
                    error = %e,
                    "rolling back an intake batch failed; its connection is replaced"
                ),
            },
            Inner::Postgres(tx) => {
                if let Err(e) = tx.rollback().await {
                    // The pool closes the connection then; nothing was committed.
                    tracing::warn!(error = %e, "rolling back an intake batch failed");
                }
            }
        }
    }
}

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
    /// The guards' loads of the asks, in order, when read already (SQLite).
    pub loads: Option<Vec<IntakeLoad>>,
}

/// `BEGIN IMMEDIATE`, then the batch's agents, the head and the newest policy in one
/// statement, and the guards' loads of `asks` in another: one hand-off.
async fn sqlite_start(
    conn: &mut AnyConnection,
    agent_ids: &[&str],
    asks: &[Ask<'_>],
) -> Result<BatchStart, StoreError> {
    // One row when no agent is found, one per agent otherwise: the head always has its row.
    let mut sql = format!(
        "BEGIN IMMEDIATE; \
         SELECT h.seq AS head_seq, h.hash AS head_hash, \
           p.version AS policy_version, p.hash AS policy_hash, \
           a.id AS agent_id, a.status, a.epoch, a.parent_id \
         FROM audit_head h \
         LEFT JOIN ({}) p ON 1 = 1 \
         LEFT JOIN agents a ON a.id IN ({}) \
         WHERE h.id = 1",
        policies::NEWEST,
        Params::new(Backend::Sqlite).list(agent_ids.len().max(1))
    );
    if !asks.is_empty() {
        sql.push_str(";\n");
        sql.push_str(&guards::intake_loads_sql(Backend::Sqlite, asks.len()));
    }
    let mut query = sqlx::query(AssertSqlSafe(sql));
    if agent_ids.is_empty() {
        query = query.bind(None::<String>);
    }
    for id in agent_ids {
        query = query.bind(*id);
    }
    let rows = guards::bind_asks(query, asks)?.fetch_all(conn).await?;
    // The loads' rows come after the first statement's, and only they have an `i`.
    let (load_rows, rows): (Vec<_>, Vec<_>) =
        rows.iter().partition(|row| row.try_column("i").is_ok());
    let loads = guards::loads_from(load_rows, asks.len())?;
    let first = rows.first().ok_or_else(no_head)?;
    let head = head_of(first)?;
    let newest_policy = newest_policy_of(first)?;
    let mut agents = HashMap::new();
    for row in rows {
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
        loads: Some(loads),
    })
}

/// The chain's head from a row of a statement that read it (`head_seq`, `head_hash`).
fn head_of(row: &AnyRow) -> Result<Head, StoreError> {
    Ok(Head {
        seq: col(row, "head_seq")?,
        hash: col(row, "head_hash")?,
    })
}

/// The head's row is missing: it is written by the first migration and never deleted.
fn no_head() -> StoreError {
    StoreError::corrupt("the audit chain has no head row")
}

/// The newest policy version and hash from a row that joined [`policies::NEWEST`] as
/// `policy_version` and `policy_hash` (`None` when none was ever applied).
fn newest_policy_of(row: &AnyRow) -> Result<Option<(i64, String)>, StoreError> {
    Ok(match col::<Option<i64>>(row, "policy_version")? {
        Some(version) => Some((version, col(row, "policy_hash")?)),
        None => None,
    })
}
