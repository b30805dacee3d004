//! Several statements sent to the database as one.
//!
//! On SQLite every statement is a hand-off to the connection's thread and back, and under load
//! each hand-off costs more than the statement: the intake writer's batch spent most of its time
//! between statements (see `service::writer`). On PostgreSQL each is a network round trip. So a
//! [`StatementGroup`] sends its statements as one:
//!
//! - SQLite runs a string of several statements in one hand-off, binding anonymous parameters
//!   (`?`) in order across them.
//! - PostgreSQL's extended protocol takes one statement per message, but one statement may hold
//!   several that change data: all but the last become `WITH` clauses of the last (sN AS (…)),
//!   which PostgreSQL runs whether or not the last one reads them (a clause that only reads
//!   would be skipped, so only the last statement may be a `SELECT`; the group refuses
//!   anything else, see [`StoreError::Misgrouped`]). They see the same snapshot,
//!   not each other's rows, and the foreign keys between them are checked when the whole
//!   statement ends; so a group's statements must not read what an earlier one wrote. Their
//!   parameters are numbered across the group (`$1…`), which [`Params`] does.
//!
//! Each statement comes with the function that binds its parameters, in the order its
//! placeholders were taken from [`Params`].

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AssertSqlSafe};

use super::{Backend, StoreError};

/// A statement whose parameters are still to be bound.
pub type AnyQuery<'q> = Query<'q, Any, AnyArguments>;

type Binder<'q> = Box<dyn FnOnce(AnyQuery<'q>) -> AnyQuery<'q> + Send + 'q>;

/// The placeholders of a statement's parameters, taken in the order they are bound: `?` on
/// SQLite, `$1`, `$2`, … on PostgreSQL (numbered on across a group's statements). SQLite's
/// anonymous `?` matters for speed too: sqlx asks SQLite for each parameter's name while
/// binding, and SQLite finds a named one (`$7`) by walking its list of names, so binding a
/// batch's hundreds of named parameters took time quadratic in their number (5.6% of intake's
/// CPU).
#[derive(Debug)]
pub struct Params {
    backend: Backend,
    taken: usize,
}

impl Params {
    /// Placeholders for a statement of its own.
    pub fn new(backend: Backend) -> Self {
        Self { backend, taken: 0 }
    }

    /// The next parameter's placeholder.
    pub fn one(&mut self) -> String {
        self.taken += 1;
        match self.backend {
            Backend::Postgres => format!("${}", self.taken),
            Backend::Sqlite => "?".to_string(),
        }
    }

    /// `n` placeholders, comma-separated (an `IN (…)` list).
    pub fn list(&mut self, n: usize) -> String {
        (0..n).map(|_| self.one()).collect::<Vec<_>>().join(", ")
    }

    /// `rows` rows of `cols` placeholders for a multi-row `VALUES`, bound row by row.
    pub fn values(&mut self, rows: usize, cols: usize) -> String {
        (0..rows)
            .map(|_| format!("({})", self.list(cols)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Statements to run together, in order, inside the caller's transaction.
pub struct StatementGroup<'q> {
    params: Params,
    statements: Vec<(String, Binder<'q>)>,
}

impl<'q> StatementGroup<'q> {
    /// An empty group for this engine.
    pub fn new(backend: Backend) -> Self {
        Self {
            params: Params::new(backend),
            statements: Vec::new(),
        }
    }

    /// The engine the statements are written for.
    pub fn backend(&self) -> Backend {
        self.params.backend
    }

    /// Adds a statement, written with the group's placeholders, and the function that binds its
    /// parameters in the order the placeholders were taken.
    pub fn push(
        &mut self,
        sql: impl FnOnce(&mut Params) -> String,
        bind: impl FnOnce(AnyQuery<'q>) -> AnyQuery<'q> + Send + 'q,
    ) {
        let sql = sql(&mut self.params);
        self.statements.push((sql, Box::new(bind)));
    }

    /// Runs the statements, in one hand-off or round trip. If one fails, the statement fails
    /// and the caller's transaction must roll back (on SQLite, those before it have run).
    pub async fn execute(self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        if let Some(query) = self.query()? {
            query.execute(conn).await?;
        }
        Ok(())
    }

    /// [`StatementGroup::execute`], returning the rows the last statement reads.
    pub async fn fetch_all(self, conn: &mut AnyConnection) -> Result<Vec<AnyRow>, StoreError> {
        Ok(match self.query()? {
            Some(query) => query.fetch_all(conn).await?,
            None => Vec::new(),
        })
    }

    /// The statements as one, their parameters bound; `None` when there are none.
    fn query(self) -> Result<Option<AnyQuery<'q>>, StoreError> {
        let Some(((last, _), earlier)) = self.statements.split_last() else {
            return Ok(None);
        };
        let sql = match self.params.backend {
            Backend::Sqlite => self
                .statements
                .iter()
                .map(|(sql, _)| sql.as_str())
                .collect::<Vec<_>>()
                .join(";\n"),
            Backend::Postgres if earlier.is_empty() => last.clone(),
            Backend::Postgres => {
                // A `WITH` clause that only reads runs only if the last statement reads it: it
                // would be skipped without a word.
                if let Some((sql, _)) = earlier.iter().find(|(sql, _)| !changes_data(sql)) {
                    return Err(StoreError::Misgrouped(format!(
                        "only the last statement of a group may read: {sql}"
                    )));
                }
                let with = earlier
                    .iter()
                    .enumerate()
                    .map(|(i, (sql, _))| format!("s{i} AS ({sql})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("WITH {with} {last}")
            }
        };
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (_, bind) in self.statements {
            query = bind(query);
        }
        Ok(Some(query))
    }
}

/// Whether a statement is one PostgreSQL runs as a `WITH` clause whatever reads it.
fn changes_data(sql: &str) -> bool {
    let verb = sql.split_whitespace().next().unwrap_or_default();
    ["INSERT", "UPDATE", "DELETE"]
        .iter()
        .any(|v| verb.eq_ignore_ascii_case(v))
}
