//! Coordination between replicas: `NOTIFY` and transaction-scoped advisory locks.
//!
//! These exist only on PostgreSQL, where several replicas share one database. On SQLite there
//! is one process and one writer (see [`crate::store`]), so there is nobody to tell and nothing
//! to lock against: every function here does nothing there, and callers need not ask which
//! engine they run on.

use sqlx::AnyConnection;

use super::group::{AnyQuery, Params, StatementGroup};
use super::{Backend, StoreError};

/// Sends `payload` on `channel` to every replica that listens; delivered when the caller's
/// transaction commits (and never if it rolls back).
pub async fn notify(
    conn: &mut AnyConnection,
    backend: Backend,
    channel: &str,
    payload: &str,
) -> Result<(), StoreError> {
    notify_many(conn, backend, channel, &[payload]).await
}

/// [`notify`] for each of `payloads`, in one statement (one round trip, however many: the
/// intake writer announces a whole batch of new requests at once).
pub async fn notify_many(
    conn: &mut AnyConnection,
    backend: Backend,
    channel: &str,
    payloads: &[&str],
) -> Result<(), StoreError> {
    let mut group = StatementGroup::new(backend);
    notify_rows(&mut group, channel, payloads);
    group.execute(conn).await
}

/// Adds [`notify_many`]'s statement to `group` (nothing on SQLite).
pub fn notify_rows(group: &mut StatementGroup<'_>, channel: &str, payloads: &[&str]) {
    let backend = group.backend();
    if backend != Backend::Postgres || payloads.is_empty() {
        return;
    }
    // A `SELECT`: in a group it must come last (see `group`).
    let n = payloads.len();
    let sql = move |p: &mut Params| format!("SELECT {}", notify_sql(p, n));
    group.push(sql, notify_binder(channel, payloads));
}

/// `pg_notify` of `n` payloads on a channel, as a select list of one row (`notified`, how many
/// were sent): for a statement that reads something else too, where it is a subquery that must
/// always be run (its row is always there, so PostgreSQL cannot skip it). Bind it with
/// [`notify_binder`].
pub(crate) fn notify_sql(p: &mut Params, n: usize) -> String {
    // The payloads are bound first, the channel last; only placeholders are spliced in.
    let payloads = p.values(n, 1);
    let channel = p.one();
    format!("COUNT(pg_notify({channel}, p)) AS notified FROM (VALUES {payloads}) AS t(p)")
}

/// Binds [`notify_sql`]'s parameters.
pub(crate) fn notify_binder<'q>(
    channel: &str,
    payloads: &[&str],
) -> impl FnOnce(AnyQuery<'q>) -> AnyQuery<'q> + Send + 'q {
    let payloads: Vec<String> = payloads.iter().map(|p| p.to_string()).collect();
    let channel = channel.to_string();
    move |q| payloads.into_iter().fold(q, |q, p| q.bind(p)).bind(channel)
}

/// Waits for the advisory lock `key` and holds it until the caller's transaction ends.
pub async fn lock(conn: &mut AnyConnection, backend: Backend, key: i64) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Takes the advisory lock `key` for the caller's transaction if nobody holds it; false when
/// another replica does. Always true on SQLite.
pub async fn try_lock(
    conn: &mut AnyConnection,
    backend: Backend,
    key: i64,
) -> Result<bool, StoreError> {
    if backend != Backend::Postgres {
        return Ok(true);
    }
    let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
        .bind(key)
        .fetch_one(conn)
        .await?;
    Ok(got)
}
