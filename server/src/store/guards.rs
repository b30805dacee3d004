//! Storage for the fatigue guards: settings, prompts sent, first page views, and what intake
//! reads about an agent's requests (identical pending ones, how many wait, recent denials).

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Executor};

use super::group::{AnyQuery, Params};
use super::{col, list_placeholders, Backend, StoreError};
use crate::clock::Millis;

/// Every stored setting.
pub async fn settings<'e, E: Executor<'e, Database = Any>>(
    ex: E,
) -> Result<HashMap<String, String>, StoreError> {
    let rows = sqlx::query("SELECT key, value FROM settings")
        .fetch_all(ex)
        .await?;
    rows.iter()
        .map(|r| Ok((col(r, "key")?, col(r, "value")?)))
        .collect()
}

/// Sets one setting.
pub async fn put_setting(
    conn: &mut AnyConnection,
    key: &str,
    value: &str,
    by: &str,
    at: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO settings (key, value, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (key) DO UPDATE SET value = $2, updated_by = $3, updated_at = $4",
    )
    .bind(key)
    .bind(value)
    .bind(by)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// What intake must know about an agent before it adds a request that will wait for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeLoad {
    /// Its pending, unexpired request with the same `action_hash`, if any (the oldest).
    pub identical_pending: Option<String>,
    /// Whether a person denied one of its requests since the cooldown began.
    pub denied_recently: bool,
}

/// The statement behind [`intake_loads`], for `n` asks: each row of `asked` is one request's
/// position, agent, action hash, time and start of the cooldown, bound in that order.
///
/// The `+` in `+expires_at` keeps SQLite's planner from walking pending requests by expiry
/// (`requests_pending`) and reading every row to compare hashes: without statistics it
/// prefers the range, which made intake slow down as requests piled up. With
/// the term out of the running, `requests_pending_same` (agent, hash, created_at) answers
/// with one index probe, already in order. The plan is checked by a test below. The numbers
/// are cast because PostgreSQL types a `VALUES` list's parameters as text otherwise.
///
/// How many requests wait is not counted here but in [`pending_count`], and only when intake
/// cannot tell without it (see `service::guards::PendingBounds`): counting walks one index
/// entry per waiting request.
pub(crate) fn intake_loads_sql(backend: Backend, n: usize) -> String {
    let mut p = Params::new(backend);
    let asked = (0..n)
        .map(|_| {
            format!(
                "(CAST({} AS BIGINT), {}, {}, CAST({} AS BIGINT), CAST({} AS BIGINT))",
                p.one(),
                p.one(),
                p.one(),
                p.one(),
                p.one()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH asked (i, agent_id, action_hash, now_at, denied_since) AS (VALUES {asked}) \
         SELECT a.i AS i, \
           (SELECT r.id FROM requests r WHERE r.agent_id = a.agent_id \
              AND r.action_hash = a.action_hash AND r.status = 'pending' \
              AND +r.expires_at > a.now_at ORDER BY r.created_at LIMIT 1) AS same, \
           CASE WHEN EXISTS (SELECT 1 FROM requests r WHERE r.agent_id = a.agent_id \
              AND r.status = 'denied' AND r.decided_at >= a.denied_since \
              AND r.decided_by <> 'policy') THEN 1 ELSE 0 END AS denied \
         FROM asked a"
    )
}

/// One request intake is about to add: whose, what (its action hash), when, and since when a
/// person's denial counts ([`Millis::MAX`] when the cooldown is off).
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The agent.
    pub agent_id: &'a str,
    /// The request's action hash.
    pub action_hash: &'a str,
    /// Now: a pending request that expired is no longer identical.
    pub now: Millis,
    /// The start of the cooldown.
    pub denied_since: Millis,
}

/// [`IntakeLoad`] for each ask, in order, in one statement (on SQLite intake's writer reads
/// them with the rest of its batch's first read instead: see `store::intake`).
pub async fn intake_loads(
    conn: &mut AnyConnection,
    asks: &[Ask<'_>],
) -> Result<Vec<IntakeLoad>, StoreError> {
    if asks.is_empty() {
        return Ok(Vec::new());
    }
    let sql = intake_loads_sql(Backend::of(conn), asks.len());
    let query = bind_asks(sqlx::query(AssertSqlSafe(sql)), asks)?;
    let rows = query.fetch_all(&mut *conn).await?;
    loads_from(&rows, asks.len())
}

/// Binds the asks' parameters, in the order [`intake_loads_sql`] takes them.
pub(crate) fn bind_asks<'q>(
    mut query: AnyQuery<'q>,
    asks: &[Ask<'q>],
) -> Result<AnyQuery<'q>, StoreError> {
    for (i, ask) in asks.iter().enumerate() {
        query = query
            .bind(i64::try_from(i).map_err(StoreError::corrupt)?)
            .bind(ask.agent_id)
            .bind(ask.action_hash)
            .bind(ask.now)
            .bind(ask.denied_since);
    }
    Ok(query)
}

/// The loads of `n` asks from the rows [`intake_loads_sql`] returned.
pub(crate) fn loads_from<'r>(
    rows: impl IntoIterator<Item = &'r AnyRow>,
    n: usize,
) -> Result<Vec<IntakeLoad>, StoreError> {
    let mut loads = vec![
        IntakeLoad {
            identical_pending: None,
            denied_recently: false,
        };
        n
    ];
    for row in rows {
        let i = usize::try_from(col::<i64>(row, "i")?).map_err(StoreError::corrupt)?;
        let load = loads
            .get_mut(i)
            .ok_or_else(|| StoreError::corrupt("an intake load for no ask"))?;
        *load = IntakeLoad {
            identical_pending: col(row, "same")?,
            denied_recently: col::<i64>(row, "denied")? > 0,
        };
    }
    Ok(loads)
}

/// [`intake_loads`] for one request, outside a transaction (intake reads it when the pending
/// cap refuses a request: an identical one already waiting, or a recent denial, answers first).
pub async fn intake_load(conn: &mut AnyConnection, ask: Ask<'_>) -> Result<IntakeLoad, StoreError> {
    intake_loads(conn, &[ask])
        .await?
        .pop()
        .ok_or_else(|| StoreError::corrupt("no intake load"))
}

/// How many of the agent's requests are pending, counted up to `cap` (an index walk of at most
/// `cap` entries).
///
/// The cap is written into the statement rather than bound: SQLite plans a `LIMIT` with the
/// value bound to it, so it re-prepares a statement whose `LIMIT` parameter is bound again,
/// on every execution (profiling found intake's read recompiled on every request). The cap
/// is an admin's setting, so the statement cache holds one statement per value in use.
pub async fn pending_count<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_id: &str,
    cap: u32,
) -> Result<i64, StoreError> {
    let sql = format!(
        "SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM requests WHERE agent_id = $1 \
         AND status = 'pending' LIMIT {cap}) AS p"
    );
    // `cap` is a number: nothing else goes into the text.
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(agent_id)
        .fetch_one(ex)
        .await?;
    col(&row, "n")
}

/// When the earliest of the agent's pending requests expires (read only when a request is
/// refused for the cap: it visits every pending request of the agent).
pub async fn first_expiry<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_id: &str,
) -> Result<Option<Millis>, StoreError> {
    let row = sqlx::query(
        "SELECT MIN(expires_at) AS first FROM requests WHERE agent_id = $1 AND status = 'pending'",
    )
    .bind(agent_id)
    .fetch_one(ex)
    .await?;
    col(&row, "first")
}

/// Bodies and times of the agent's requests that a person denied since `since`.
pub async fn denied_by_people_since<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_id: &str,
    since: Millis,
) -> Result<Vec<(String, Millis)>, StoreError> {
    let rows = sqlx::query(
        "SELECT body, decided_at FROM requests WHERE agent_id = $1 AND status = 'denied' \
         AND decided_at >= $2 AND decided_by <> 'policy' ORDER BY decided_at DESC LIMIT 100",
    )
    .bind(agent_id)
    .bind(since)
    .fetch_all(ex)
    .await?;
    rows.iter()
        .map(|r| Ok((col(r, "body")?, col(r, "decided_at")?)))
        .collect()
}

/// Mails sent since `since` to each of these people; someone with none is absent.
pub async fn prompts_since_each<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    user_ids: &[&str],
    since: Millis,
) -> Result<HashMap<String, i64>, StoreError> {
    if user_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT user_id, COUNT(*) AS n FROM prompts WHERE at >= $1 AND user_id IN ({}) \
         GROUP BY user_id",
        list_placeholders(2, user_ids.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str())).bind(since);
    for id in user_ids {
        q = q.bind(*id);
    }
    q.fetch_all(ex)
        .await?
        .iter()
        .map(|r| Ok((col(r, "user_id")?, col(r, "n")?)))
        .collect()
}

/// Records a mail to this person about this request, if they have had fewer than `limit`
/// since `since` (and none about this request yet): one conditional insert, so the count and the
/// record cannot be split by another writer. True when recorded. On PostgreSQL the caller holds
/// a lock per person (see [`lock_prompts`]); SQLite has a single writer.
pub async fn take_prompt(
    conn: &mut AnyConnection,
    user_id: &str,
    request_id: &str,
    at: Millis,
    since: Millis,
    limit: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO prompts (user_id, request_id, at) \
         SELECT $1, $2, $3 WHERE (SELECT COUNT(*) FROM prompts WHERE user_id = $1 AND at >= $4) < $5 \
         ON CONFLICT (user_id, request_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(request_id)
    .bind(at)
    .bind(since)
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// PostgreSQL: serialises prompt counting for one person until the transaction ends, so
/// concurrent mails cannot both see room under the limit.
pub async fn lock_prompts(conn: &mut AnyConnection, user_id: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("prompts:{user_id}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records that this person opened this request's page, unless they had before; returns when
/// they first did.
pub async fn first_view(
    conn: &mut AnyConnection,
    request_id: &str,
    user_id: &str,
    at: Millis,
) -> Result<Millis, StoreError> {
    sqlx::query(
        "INSERT INTO page_views (request_id, user_id, first_at) VALUES ($1, $2, $3) \
         ON CONFLICT (request_id, user_id) DO NOTHING",
    )
    .bind(request_id)
    .bind(user_id)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query("SELECT first_at FROM page_views WHERE request_id = $1 AND user_id = $2")
        .bind(request_id)
        .bind(user_id)
        .fetch_one(conn)
        .await?;
    col(&row, "first_at")
}

/// When this person first opened this request's page, if ever.
pub async fn viewed_at<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    request_id: &str,
    user_id: &str,
) -> Result<Option<Millis>, StoreError> {
    let row = sqlx::query("SELECT first_at FROM page_views WHERE request_id = $1 AND user_id = $2")
        .bind(request_id)
        .bind(user_id)
        .fetch_optional(ex)
        .await?;
    row.as_ref().map(|r| col(r, "first_at")).transpose()
}

/// Of these requests, those this person has been shown already (on their page or in the inbox).
pub async fn viewed_of<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    request_ids: &[&str],
    user_id: &str,
) -> Result<std::collections::HashSet<String>, StoreError> {
    if request_ids.is_empty() {
        return Ok(Default::default());
    }
    let sql = format!(
        "SELECT request_id FROM page_views WHERE user_id = $1 AND request_id IN ({})",
        super::list_placeholders(2, request_ids.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str())).bind(user_id);
    for id in request_ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(ex).await?;
    rows.iter().map(|r| col(r, "request_id")).collect()
}

/// Records that this person was shown these requests, keeping earlier times (one statement).
pub async fn first_views(
    conn: &mut AnyConnection,
    request_ids: &[&str],
    user_id: &str,
    at: Millis,
) -> Result<(), StoreError> {
    if request_ids.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = (0..request_ids.len())
        .map(|i| format!("(${}, $1, $2)", i + 3))
        .collect();
    let sql = format!(
        "INSERT INTO page_views (request_id, user_id, first_at) VALUES {} \
         ON CONFLICT (request_id, user_id) DO NOTHING",
        rows.join(", ")
    );
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(user_id)
        .bind(at);
    for id in request_ids {
        q = q.bind(*id);
    }
    q.execute(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Each part of intake's read is answered from its index, without visiting the agent's
    /// other requests: the identical-request probe once scanned them all.
    #[tokio::test]
    async fn intake_load_reads_only_what_it_needs_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("plan.db").display());
        let db = super::super::Db::connect(&url).await.unwrap();
        let sql = intake_loads_sql(Backend::Sqlite, 2);
        let plan = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .bind(0i64)
            .bind("agent")
            .bind("sha256:00")
            .bind(0i64)
            .bind(0i64)
            .bind(1i64)
            .bind("agent")
            .bind("sha256:01")
            .bind(0i64)
            .bind(0i64)
            .fetch_all(db.reader())
            .await
            .unwrap();
        let steps: Vec<String> = plan.iter().map(|r| col(r, "detail").unwrap()).collect();
        assert!(
            steps
                .iter()
                .any(|s| s.contains("requests_pending_same (agent_id=? AND action_hash=?)")),
            "the identical-request probe uses its index: {steps:#?}"
        );
        assert!(
            !steps.iter().any(|s| s.contains("TEMP B-TREE")
                || s.starts_with("SCAN r")
                || s.contains("USING INDEX requests_agent ")
                || s.contains("expires_at>?")),
            "nothing walks or sorts the agent's requests: {steps:#?}"
        );
    }
}
