//! Several statements sent to the database as one.
//!
//! On SQLite every statement is a hand-off to the connection's thread and back, and under load
//! each hand-off costs more than the statement: the intake writer's batch spent most of its time
//! between statements (see `service::writer`). SQLite runs a string of several statements in
//! one hand-off, binding parameters in order across them when they are anonymous (`?`), so a
//! [`StatementGroup`] joins its statements into one string there. PostgreSQL's extended protocol
//! takes one statement per message, so there the group runs its statements in turn; its
//! statements number their parameters from `$1` each.
//!
//! Each statement of a group comes with the function that binds its parameters, in order; the
//! placeholders come from [`values_placeholders`](super::values_placeholders) or
//! [`placeholder`], which write them right for the engine.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AssertSqlSafe};

use super::{Backend, StoreError};

/// A statement whose parameters are still to be bound.
pub type AnyQuery<'q> = Query<'q, Any, AnyArguments>;

type Binder<'q> = Box<dyn FnOnce(AnyQuery<'q>) -> AnyQuery<'q> + Send + 'q>;

/// Statements to run together, in order, inside the caller's transaction.
pub struct StatementGroup<'q> {
    backend: Backend,
    statements: Vec<(String, Binder<'q>)>,
}

impl<'q> StatementGroup<'q> {
    /// An empty group for this engine.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            statements: Vec::new(),
        }
    }

    /// The engine the statements are written for.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Adds a statement and the function that binds its parameters.
    pub fn push(
        &mut self,
        sql: String,
        bind: impl FnOnce(AnyQuery<'q>) -> AnyQuery<'q> + Send + 'q,
    ) {
        self.statements.push((sql, Box::new(bind)));
    }

    /// Runs the statements: on SQLite in one hand-off, on PostgreSQL one after another. The
    /// first that fails stops the rest; the caller's transaction then rolls back what ran.
    pub async fn execute(self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => {
                if self.statements.is_empty() {
                    return Ok(());
                }
                let sql = self
                    .statements
                    .iter()
                    .map(|(sql, _)| sql.as_str())
                    .collect::<Vec<_>>()
                    .join(";\n");
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for (_, bind) in self.statements {
                    query = bind(query);
                }
                query.execute(conn).await?;
            }
            Backend::Postgres => {
                for (sql, bind) in self.statements {
                    bind(sqlx::query(AssertSqlSafe(sql)))
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// The placeholder of a statement's `n`th parameter (from 1): `$n` on PostgreSQL, `?` on
/// SQLite (where a group binds anonymous parameters in order across its statements, and
/// numbered ones by their absolute position).
pub(crate) fn placeholder(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Postgres => format!("${n}"),
        Backend::Sqlite => "?".to_string(),
    }
}

/// The placeholders of `n` parameters from the `first`th on, comma-separated (for an
/// `IN (…)` list in a group's statement).
pub(crate) fn placeholders(backend: Backend, first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| placeholder(backend, i))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::Db;

    async fn sqlite() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("g.db").display());
        let db = Db::connect(&url).await.unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn statements_run_in_order_with_their_own_parameters() {
        let (_dir, db) = sqlite().await;
        let mut tx = db.begin().await.unwrap();
        sqlx::query("CREATE TABLE t (a TEXT, b INTEGER)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let mut group = StatementGroup::new(db.backend());
        let backend = group.backend();
        group.push(
            format!(
                "INSERT INTO t (a, b) VALUES {}",
                crate::store::values_placeholders(backend, 2, 2)
            ),
            |q| q.bind("x").bind(1_i64).bind("y").bind(2_i64),
        );
        group.push(
            format!(
                "UPDATE t SET b = b + {} WHERE a = {}",
                placeholder(backend, 1),
                placeholder(backend, 2)
            ),
            |q| q.bind(40_i64).bind("y"),
        );
        group.execute(&mut tx).await.unwrap();
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT a, b FROM t ORDER BY a")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert_eq!(rows, vec![("x".into(), 1), ("y".into(), 42)]);
    }

    #[tokio::test]
    async fn a_failing_statement_fails_the_group() {
        let (_dir, db) = sqlite().await;
        let mut tx = db.begin().await.unwrap();
        sqlx::query("CREATE TABLE t (a TEXT PRIMARY KEY)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let mut group = StatementGroup::new(db.backend());
        let p = placeholder(group.backend(), 1);
        group.push(format!("INSERT INTO t (a) VALUES ({p})"), |q| q.bind("x"));
        group.push(format!("INSERT INTO t (a) VALUES ({p})"), |q| q.bind("x"));
        assert!(group.execute(&mut tx).await.is_err());
    }
}
