//! Storage: every SQL statement Countersign runs, behind one seam for SQLite and PostgreSQL.
//!
//! We go through sqlx's `Any` driver so that each statement is written once: both engines accept
//! `$N` placeholders, `RETURNING`, `ON CONFLICT` and the plain types we use (text, 64-bit
//! integers for unix-millisecond times and counters). What differs per engine lives here too:
//!
//! - **SQLite** runs one writer. All write transactions go through a pool of exactly one
//!   connection, so concurrent requests queue in-process instead of colliding inside SQLite and
//!   seeing "database is locked"; reads use a separate pool and never block on writes (WAL).
//!   Other processes (the CLI while the server runs) wait on `busy_timeout`.
//! - **PostgreSQL** serves several replicas: decisions are announced with `NOTIFY` (see
//!   [`crate::service::waiters`]) and background jobs take a transaction-scoped advisory lock.
//!
//! Statements are literals where they can be; where one is assembled (a shared column list, a
//! placeholder list for N rows, a `FOR UPDATE` on PostgreSQL), every piece is a constant or a
//! count, never input, which is what each `AssertSqlSafe` asserts to sqlx; values are bound.
//!
//! This module must never decide anything: it reads and writes rows; the rules are in
//! [`crate::domain`] and the use cases in [`crate::service`].

pub mod agents;
pub mod audit;
pub mod callbacks;
pub mod ceremonies;
pub mod coordination;
pub mod credentials;
pub mod grants;
pub mod group;
pub mod guards;
pub mod intake;
pub mod listings;
pub mod policies;
pub mod requests;
pub mod sessions;
pub mod standing;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, AssertSqlSafe, Executor, Transaction};

/// The database engines we support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: one file, one process.
    Sqlite,
    /// For several replicas behind a load balancer.
    Postgres,
}

impl Backend {
    /// The engine behind a connection.
    pub(crate) fn of(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name().eq_ignore_ascii_case("postgresql") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// Errors from the storage layer. The services map them; callers never see SQL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Running the migrations failed.
    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be read back (a bug, or a row edited by hand).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A change of status its lifecycle does not have (a bug in the caller); nothing was written.
    #[error(transparent)]
    IllegalTransition(#[from] crate::domain::lifecycle::IllegalTransition),
    /// Statements grouped in a way the engine cannot run as one (a bug in the caller); nothing
    /// was run (see [`group`]).
    #[error("statements grouped wrongly: {0}")]
    Misgrouped(String),
    /// The URL names an engine we don't support.
    #[error("unsupported DATABASE_URL scheme (use sqlite:// or postgres://)")]
    UnsupportedUrl,
}

impl StoreError {
    /// Builds a [`StoreError::Corrupt`] from anything displayable.
    pub fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string())
    }

    /// True when the error is a unique-constraint violation (a lost insert race).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(e)) => e.is_unique_violation(),
            _ => false,
        }
    }
}

/// A database URL. PostgreSQL URLs may carry a password, so `Debug` (and so any log line or
/// panic message that prints a [`Db`] or the configuration) shows the URL with the password
/// replaced; only [`DatabaseUrl::expose`] gives the text to connect with.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL (checked when [`Db::connect`] opens it).
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, to connect with or hand to a child process.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL as it may be shown: any password replaced by `<redacted>`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                // Only fails for URLs that cannot have credentials, which this one has.
                let _ = u.set_password(Some("<redacted>"));
                u.to_string()
            }
            Ok(_) => self.0.clone(),
            // Not parseable: show no more than the scheme.
            Err(_) => format!(
                "{}:<unparsed>",
                self.0.split(':').next().unwrap_or_default()
            ),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// How hard SQLite works to keep the last commits through a power cut (`PRAGMA synchronous`,
/// in WAL mode). PostgreSQL has its own settings for this (`synchronous_commit`); we leave them
/// to its operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// `NORMAL`: the WAL is synced at checkpoints, not at every commit. A crash of the process
    /// loses nothing; a power cut or OS crash can lose the commits since the last sync (at most
    /// the last few hundred milliseconds of writes; the database stays consistent and the audit
    /// chain intact, it just ends earlier). The default: every commit is one write to the
    /// page cache, not a wait for the disk.
    #[default]
    Normal,
    /// `FULL`: every commit waits for the WAL to reach the disk; nothing acknowledged is lost
    /// even on a power cut.
    Full,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

/// A transaction on the write path.
pub type WriteTx = Transaction<'static, Any>;

/// The connection pools for one database.
#[derive(Debug, Clone)]
pub struct Db {
    backend: Backend,
    url: DatabaseUrl,
    read: AnyPool,
    write: AnyPool,
}

impl Db {
    /// Connects, creating the SQLite file if needed, and runs pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, Durability::default()).await
    }

    /// [`Db::connect`], with SQLite syncing commits as `durability` says.
    pub async fn connect_with(url: &str, durability: Durability) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let options = AnyConnectOptions::from_str(url)?;
        let db = match backend {
            Backend::Sqlite => {
                // A SQLite connection lives in this process and cannot drop like a network
                // one: the pools' usual ping before handing out a connection is a round trip to
                // its worker thread for nothing (it was 6% of intake's CPU when profiled).
                let write = AnyPoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(move |c, _| sqlite_setup(c, durability))
                    .connect_with(options.clone())
                    .await?;
                let read = AnyPoolOptions::new()
                    .max_connections(8)
                    .min_connections(1)
                    .test_before_acquire(false)
                    .after_connect(move |c, _| sqlite_setup(c, durability))
                    .connect_with(options)
                    .await?;
                Self {
                    backend,
                    url: DatabaseUrl::new(url),
                    read,
                    write,
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await?;
                Self {
                    backend,
                    url: DatabaseUrl::new(url),
                    read: pool.clone(),
                    write: pool,
                }
            }
        };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => {
                sqlx::migrate!("../migrations/sqlite")
                    .run(&self.write)
                    .await?
            }
            Backend::Postgres => {
                sqlx::migrate!("../migrations/postgres")
                    .run(&self.write)
                    .await?
            }
        }
        Ok(())
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL this database was opened with (PostgreSQL's listener opens its own connection).
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The pool for reads.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// One read connection, for reads that take several statements (a person and their groups).
    pub async fn read_conn(&self) -> Result<sqlx::pool::PoolConnection<Any>, StoreError> {
        Ok(self.read.acquire().await?)
    }

    /// The pool for single-statement writes outside a transaction (on SQLite, the one writer).
    pub fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// Starts a write transaction.
    ///
    /// On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken up front, so a writer in
    /// another process (the CLI) makes us wait on `busy_timeout` rather than fail later when a
    /// deferred transaction tries to upgrade its read lock.
    pub async fn begin(&self) -> Result<WriteTx, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        })
    }

    /// True when the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.read).await.is_ok()
    }

    /// The database engine's version, for the startup log: SQLite's is the library built into
    /// this binary (bundled by libsqlite3-sys), PostgreSQL's the server's.
    pub async fn engine_version(&self) -> Result<String, StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => "SELECT sqlite_version() AS version",
            Backend::Postgres => "SELECT current_setting('server_version') AS version",
        };
        let row = sqlx::query(sql).fetch_one(&self.read).await?;
        col(&row, "version")
    }

    /// SQLite: copies what the WAL holds into the database file without waiting for anyone
    /// (`PASSIVE`), on a reading connection, so the writer does not do it in its commits (see
    /// [`sqlite_setup`]). Returns the WAL's size in pages and how many of them are now copied.
    /// Nothing to do on PostgreSQL.
    pub async fn checkpoint_wal(&self) -> Result<Option<(i64, i64)>, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&self.read)
            .await?;
        Ok(Some((col(&row, "log")?, col(&row, "checkpointed")?)))
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// How often the server checkpoints the SQLite WAL in the background while little is written
/// (see [`sqlite_setup`]).
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// How often while much is written: while the WAL holds at least [`CHECKPOINT_BUSY_PAGES`] and
/// keeps changing, each checkpoint follows the last after this.
///
/// Why: with `synchronous = NORMAL` a checkpoint `fsync`s the WAL and the database file, and
/// while the file system commits that data the writer's own writes to the WAL wait (ext4 holds
/// new writes while its journal commits). The pause grows with what the checkpoint copies:
/// measured under the intake benchmark, checkpoints every 250 ms held some requests for
/// 25–50 ms (the p99), every 20 ms for under 20, at the same throughput (every 10 ms cost a
/// sixth of it: each checkpoint's syncs have a fixed price). Idle, the server still only
/// checks four times a second.
pub const CHECKPOINT_BUSY_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// See [`CHECKPOINT_BUSY_EVERY`]: a WAL of 256 KiB of 4 KiB pages, a few dozen requests' worth.
pub const CHECKPOINT_BUSY_PAGES: i64 = 64;

/// Checkpoints the SQLite WAL until the process ends: every [`CHECKPOINT_EVERY`], or every
/// [`CHECKPOINT_BUSY_EVERY`] while each checkpoint finds much to copy.
pub async fn run_wal_checkpoints(db: Db) {
    let mut before = (0, 0);
    let mut next = CHECKPOINT_EVERY;
    loop {
        tokio::time::sleep(next).await;
        next = match db.checkpoint_wal().await {
            Ok(Some(seen)) => checkpoint_pause(&mut before, seen),
            // PostgreSQL: nothing to checkpoint.
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; the next commit-time one covers it");
                CHECKPOINT_EVERY
            }
        };
    }
}

/// How long to wait before the next checkpoint, given what the last one saw (the WAL's size in
/// pages, and how many of them are copied) and what the one before it saw.
///
/// SQLite counts both from the WAL's beginning, which it goes back to once a checkpoint has
/// copied everything, so neither says by itself how much was written in between. What does
/// tell is whether anything changed: a busy spell is a WAL of some size that moved since the
/// last look. Idle, nothing moves, however large the WAL was left.
fn checkpoint_pause(before: &mut (i64, i64), seen: (i64, i64)) -> std::time::Duration {
    let moved = seen != *before;
    *before = seen;
    // (-1, -1): another checkpoint was running (the writer's own, at a commit that found the
    // WAL past `wal_autocheckpoint`), which only happens while much is written.
    let large = seen.0 >= CHECKPOINT_BUSY_PAGES || seen.0 < 0;
    if moved && large {
        CHECKPOINT_BUSY_EVERY
    } else {
        CHECKPOINT_EVERY
    }
}

/// Per-connection SQLite settings. WAL lets readers run beside the writer; `synchronous` as
/// [`Durability`] says; the busy timeout covers writers in other processes (the CLI).
/// `temp_store = MEMORY` keeps statement journals (what lets one statement of a transaction
/// roll back alone, e.g. a multi-row insert that hits a constraint) in memory instead of a
/// temporary file: they are small and short-lived.
///
/// Checkpoints (copying the WAL back into the database file) are the server's background
/// task's ([`Db::checkpoint_wal`], see [`run_wal_checkpoints`]), on a reading connection's thread.
/// SQLite's default is for the committing connection to do it once the WAL passes 1,000 pages,
/// which put the copy (8% of intake CPU) and its pause into the writer's commits, in front of
/// every queued request. `wal_autocheckpoint = 10000` (about 40 MB) keeps the commit-time
/// checkpoint as the backstop for when nothing else runs one (the CLI, a stalled task).
/// Durability is unchanged: a commit is as durable in the WAL as in the main file.
fn sqlite_setup(
    conn: &mut sqlx::AnyConnection,
    durability: Durability,
) -> futures::future::BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        // One of two constants, never input.
        let sql = format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; \
             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
             PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 10000;",
            durability.pragma()
        );
        conn.execute(AssertSqlSafe(sql)).await?;
        Ok(())
    })
}

/// `$first, $first+1, …`: `n` placeholders for an `IN (…)` list whose values are bound from
/// position `first` on.
pub(crate) fn list_placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads a required column, turning a decode failure into [`StoreError::Corrupt`].
pub(crate) fn col<'r, T>(row: &'r sqlx::any::AnyRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    use sqlx::Row;
    row.try_get::<T, _>(name)
        .map_err(|e| StoreError::corrupt(format!("column {name}: {e}")))
}

/// Reads a text column holding one of the domain's enums (a status, a role…).
pub(crate) fn text_col<T>(row: &sqlx::any::AnyRow, name: &str) -> Result<T, StoreError>
where
    T: std::str::FromStr<Err = crate::domain::lifecycle::UnknownText>,
{
    let text: String = col(row, name)?;
    text.parse()
        .map_err(|e| StoreError::corrupt(format!("column {name}: {e}")))
}

/// Parses a JSON text column.
pub(crate) fn json_col<T: serde::de::DeserializeOwned>(
    row: &sqlx::any::AnyRow,
    name: &str,
) -> Result<T, StoreError> {
    let text: String = col(row, name)?;
    serde_json::from_str(&text).map_err(|e| StoreError::corrupt(format!("column {name}: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn checkpoints_follow_each_other_closely_only_while_the_wal_keeps_moving() {
        use super::{checkpoint_pause as pause, CHECKPOINT_BUSY_EVERY as BUSY, CHECKPOINT_EVERY};
        let mut before = (0, 0);
        // A small WAL: the idle pace.
        assert_eq!(pause(&mut before, (10, 10)), CHECKPOINT_EVERY);
        // Much written: the busy pace, also when the WAL started again from its beginning
        // with about as much as before (the counts alone would say nothing happened).
        assert_eq!(pause(&mut before, (500, 480)), BUSY);
        assert_eq!(pause(&mut before, (510, 510)), BUSY);
        assert_eq!(pause(&mut before, (500, 500)), BUSY);
        // Nothing written since: the idle pace, however large the WAL was left.
        assert_eq!(pause(&mut before, (500, 500)), CHECKPOINT_EVERY);
        assert_eq!(before, (500, 500));
        // Another checkpoint was running: much is written.
        assert_eq!(pause(&mut before, (-1, -1)), BUSY);
        assert_eq!(pause(&mut before, (40, 40)), CHECKPOINT_EVERY);
    }

    #[test]
    fn placeholders_number_rows_then_columns() {
        use super::group::Params;
        use super::Backend::{Postgres, Sqlite};
        assert_eq!(
            Params::new(Postgres).values(2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(Params::new(Postgres).values(1, 1), "($1)");
        assert_eq!(Params::new(Sqlite).values(2, 3), "(?, ?, ?), (?, ?, ?)");
    }

    /// The SQLite this binary ships must have the fix for the WAL-reset corruption bug
    /// (3.51.3, March 2026): a lock file that slid back to an older libsqlite3-sys fails here.
    #[tokio::test]
    async fn the_bundled_sqlite_has_the_wal_reset_fix() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("v.db").display());
        let db = super::Db::connect(&url).await.unwrap();
        let version = db.engine_version().await.unwrap();
        let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
        assert!(parts >= vec![3, 51, 3], "SQLite {version}");
    }

    /// The background checkpoint copies everything committed into the database file, from a
    /// reading connection, while the writer's own (commit-time) checkpoints wait for 10,000
    /// pages: a few hundred committed pages stay in the WAL until the background one runs.
    #[tokio::test]
    async fn the_background_checkpoint_copies_what_the_writer_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let db = super::Db::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE t (x TEXT)")
            .execute(db.writer())
            .await
            .unwrap();
        for i in 0..200 {
            sqlx::query("INSERT INTO t (x) VALUES ($1)")
                .bind(format!("{i:0>3000}"))
                .execute(db.writer())
                .await
                .unwrap();
        }
        let before = std::fs::metadata(&path).unwrap().len();
        assert!(
            before < 600_000,
            "the writer checkpointed on its own: {before} bytes"
        );
        let (pages, copied) = db.checkpoint_wal().await.unwrap().unwrap();
        assert!(pages >= 200, "{pages} pages in the WAL");
        assert_eq!(
            copied, pages,
            "a passive checkpoint with no reader copies every page"
        );
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(
            after >= 600_000,
            "the rows are in the database file: {after} bytes"
        );
    }

    /// Every connection, reader or writer, runs with the `synchronous` level asked for.
    #[tokio::test]
    async fn every_sqlite_connection_syncs_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        for (durability, level) in [(super::Durability::Normal, 1), (super::Durability::Full, 2)] {
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.path().join(format!("{level}.db")).display()
            );
            let db = super::Db::connect_with(&url, durability).await.unwrap();
            for pool in [db.reader(), db.writer()] {
                let row = sqlx::query("PRAGMA synchronous")
                    .fetch_one(pool)
                    .await
                    .unwrap();
                let got: i64 = super::col(&row, "synchronous").unwrap();
                assert_eq!(got, level, "{durability:?}");
            }
        }
    }

    /// Migration 0012 moves "when did this agent first ask for this action type" from an index
    /// into a table: a database upgraded to it must keep every pair's first time.
    #[tokio::test]
    async fn upgrading_to_0012_keeps_who_asked_for_what_first() {
        const OLD_INDEXES: &str = "SELECT name FROM sqlite_master WHERE type = 'index' \
             AND name IN ('requests_pending_by_agent', 'requests_agent_action')";
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("u.db").display());
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let all = sqlx::migrate!("../migrations/sqlite");
        let before_0012 = sqlx::migrate::Migrator::with_migrations(
            all.iter().filter(|m| m.version < 12).cloned().collect(),
        );
        before_0012.run(&pool).await.unwrap();

        sqlx::query(
            "INSERT INTO users (id, email, display_name, role, created_at) \
             VALUES ('u', 'u@example.com', 'U', 'owner', 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO agents (id, name, owner_id, status, key_type, created_at) \
             VALUES ('a', 'A', 'u', 'active', 'api_key', 0), \
             ('b', 'B', 'u', 'active', 'api_key', 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        for (id, agent, action_type, at) in [
            ("r1", "a", "payments.transfer", 3000_i64),
            ("r2", "a", "payments.transfer", 1000),
            ("r3", "a", "db.read", 2000),
            ("r4", "b", "payments.transfer", 5000),
        ] {
            sqlx::query(
                "INSERT INTO requests (id, agent_id, status, action_hash, body, action_type, \
                 target, policy_version, policy_hash, rule_id, explanation, approvals_required, \
                 approver_rule, grant_ttl_seconds, created_at, expires_at) \
                 VALUES ($1, $2, 'pending', 'h', '{}', $3, 't', 1, 'p', 'r', 'e', 1, 'any', 60, \
                 $4, $5)",
            )
            .bind(id)
            .bind(agent)
            .bind(action_type)
            .bind(at)
            .bind(at + 60_000)
            .execute(&pool)
            .await
            .unwrap();
        }
        let old = sqlx::query(OLD_INDEXES).fetch_all(&pool).await.unwrap();
        assert_eq!(old.len(), 2, "the indexes 0012 drops exist before it");

        all.run(&pool).await.unwrap();

        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT agent_id, action_type, first_at FROM agent_actions \
             ORDER BY agent_id, action_type",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let got: Vec<(&str, &str, i64)> = rows
            .iter()
            .map(|(agent, action_type, at)| (agent.as_str(), action_type.as_str(), *at))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "db.read", 2000),
                ("a", "payments.transfer", 1000),
                ("b", "payments.transfer", 5000),
            ]
        );
        let old = sqlx::query(OLD_INDEXES).fetch_all(&pool).await.unwrap();
        assert!(old.is_empty(), "0012 drops the two indexes");
    }
}
