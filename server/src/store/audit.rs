//! The audit chain's table. Appends happen inside the caller's transaction, so a state change
//! and its evidence commit (or vanish) together.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Executor};

use super::group::{Params, StatementGroup};
use super::{col, list_placeholders, Backend, StoreError};
use crate::clock::Millis;
use crate::domain::audit::{event_hash_of_canonical, AuditEvent};
use crate::domain::audit_kind::EventKind;
use crate::domain::canonical::canonical_json;

/// An event to append (its position and hashes are assigned when it is appended).
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Unix milliseconds.
    pub at: Millis,
    /// Who caused it.
    pub actor: String,
    /// What happened.
    pub kind: EventKind,
    /// The request it belongs to.
    pub request_id: Option<String>,
    /// The evidence.
    pub data: Value,
}

/// Appends an event after the current chain head (a trigger then moves the head's hash to it).
pub async fn append(
    conn: &mut AnyConnection,
    at: Millis,
    actor: &str,
    kind: EventKind,
    request_id: Option<&str>,
    data: &Value,
) -> Result<AuditEvent, StoreError> {
    let event = NewEvent {
        at,
        actor: actor.to_string(),
        kind,
        request_id: request_id.map(str::to_string),
        data: data.clone(),
    };
    let mut appended = append_many(conn, std::slice::from_ref(&event)).await?;
    appended
        .pop()
        .ok_or_else(|| StoreError::corrupt("append returned no event"))
}

/// Appends events, in order, after the current chain head, in two statements whatever their
/// number.
///
/// The head row is advanced by the number of events with `UPDATE … RETURNING` first: on
/// PostgreSQL that row lock serialises appenders across replicas until our transaction ends,
/// and on SQLite the write transaction already holds the database lock. So `seq` has no gaps and
/// each event's `prev_hash` really is its predecessor's hash. The events are then inserted in
/// one multi-row statement, and a trigger leaves the head at the last one's hash.
pub async fn append_many(
    conn: &mut AnyConnection,
    events: &[NewEvent],
) -> Result<Vec<AuditEvent>, StoreError> {
    let prepared: Vec<Prepared> = events.iter().cloned().map(NewEvent::prepared).collect();
    let refs: Vec<&Prepared> = prepared.iter().collect();
    let (first_seq, hashes) = append_prepared(conn, &refs).await?;
    Ok(events
        .iter()
        .zip(hashes)
        .enumerate()
        .map(|(i, (e, (prev, hash)))| AuditEvent {
            seq: first_seq + i as i64,
            at: e.at,
            actor: e.actor.clone(),
            kind: e.kind.as_str().to_string(),
            request_id: e.request_id.clone(),
            data: e.data.clone(),
            prev_hash: prev,
            hash,
        })
        .collect())
}

/// An event whose data is already canonical JSON: what [`append_prepared`] takes. Preparing
/// is the costly part of hashing an event, and it does not depend on the chain, so intake does
/// it before its batch's transaction begins rather than inside it (see `service::writer`).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The event.
    pub event: NewEvent,
    /// Its data, canonical (RFC 8785): what is hashed and stored.
    data_json: String,
}

impl NewEvent {
    /// The event with its data made canonical.
    pub fn prepared(self) -> Prepared {
        let data_json = canonical_json(&self.data);
        Prepared {
            event: self,
            data_json,
        }
    }
}

/// [`append_many`] for prepared events; returns the first event's `seq` and each event's
/// `(prev_hash, hash)`.
pub async fn append_prepared(
    conn: &mut AnyConnection,
    events: &[&Prepared],
) -> Result<(i64, Vec<(String, String)>), StoreError> {
    if events.is_empty() {
        return Ok((0, Vec::new()));
    }
    let head = reserve(conn, events.len()).await?;
    let mut group = StatementGroup::new(Backend::of(conn));
    let links = append_rows(&mut group, HeadSeen::Reserved(head), events);
    group.execute(conn).await?;
    let first_seq = links.first().map_or(0, |l| l.seq);
    Ok((
        first_seq,
        links.into_iter().map(|l| (l.prev_hash, l.hash)).collect(),
    ))
}

/// The chain's head: the last event's `seq` and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The last event's position (0 before the first).
    pub seq: i64,
    /// The last event's hash.
    pub hash: String,
}

/// How the head was learnt by an appender, which says what is left to do to it.
#[derive(Debug, Clone)]
pub enum HeadSeen {
    /// Already moved past the events to append, as [`reserve`] does (this is the head as it
    /// was before).
    Reserved(Head),
    /// Read under a lock that keeps every other appender out until the transaction ends
    /// (SQLite's write transaction): appending moves it.
    Read(Head),
}

/// Moves the head `n` events on with `UPDATE … RETURNING`, and returns it as it was. On
/// PostgreSQL that row lock serialises appenders across replicas until our transaction ends;
/// on SQLite the write transaction already holds the database lock. So `seq` has no gaps and
/// each event's `prev_hash` really is its predecessor's hash.
pub async fn reserve(conn: &mut AnyConnection, n: usize) -> Result<Head, StoreError> {
    let n = i64::try_from(n).map_err(StoreError::corrupt)?;
    let row = sqlx::query("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
        .bind(n)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Head {
        seq: col::<i64>(&row, "seq")? - n,
        hash: col(&row, "hash")?,
    })
}

/// One appended event's place in the chain.
#[derive(Debug, Clone)]
pub struct Link {
    /// Its position.
    pub seq: i64,
    /// Its predecessor's hash.
    pub prev_hash: String,
    /// Its own hash.
    pub hash: String,
}

/// Adds the append of `events`, in order, after `head` to `group`: one multi-row insert (a
/// trigger leaves the head's hash at the last event's), and, when the head was only read, the
/// head moved to the last event. Returns each event's link.
pub fn append_rows<'q>(
    group: &mut StatementGroup<'q>,
    head: HeadSeen,
    events: &[&'q Prepared],
) -> Vec<Link> {
    let (Head { seq, hash }, moved) = match head {
        HeadSeen::Reserved(h) => (h, true),
        HeadSeen::Read(h) => (h, false),
    };
    let mut prev_hash = hash;
    let links: Vec<Link> = events
        .iter()
        .zip(seq + 1..)
        .map(|(p, seq)| {
            let e = &p.event;
            let hash = event_hash_of_canonical(
                seq,
                e.at,
                &e.actor,
                e.kind.as_str(),
                e.request_id.as_deref(),
                &p.data_json,
                &prev_hash,
            );
            Link {
                seq,
                prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
                hash,
            }
        })
        .collect();
    let Some(last) = links.last() else {
        return links;
    };
    let n = events.len();
    let sql = move |p: &mut Params| {
        format!(
            "INSERT INTO audit_events (seq, at, actor, kind, request_id, data, prev_hash, hash) \
             VALUES {}",
            p.values(n, 8)
        )
    };
    let rows: Vec<(&'q Prepared, Link)> = events.iter().copied().zip(links.clone()).collect();
    group.push(sql, move |mut q| {
        for (p, link) in rows {
            let e = &p.event;
            q = q
                .bind(link.seq)
                .bind(e.at)
                .bind(e.actor.as_str())
                .bind(e.kind.as_str())
                .bind(e.request_id.as_deref())
                .bind(p.data_json.as_str())
                .bind(link.prev_hash)
                .bind(link.hash);
        }
        q
    });
    if !moved {
        let sql = |p: &mut Params| {
            format!(
                "UPDATE audit_head SET seq = {}, hash = {} WHERE id = 1",
                p.one(),
                p.one()
            )
        };
        let (seq, hash) = (last.seq, last.hash.clone());
        group.push(sql, move |q| q.bind(seq).bind(hash));
    }
    links
}

fn from_row(row: &AnyRow) -> Result<AuditEvent, StoreError> {
    let data: String = col(row, "data")?;
    Ok(AuditEvent {
        seq: col(row, "seq")?,
        at: col(row, "at")?,
        actor: col(row, "actor")?,
        kind: col(row, "kind")?,
        request_id: col(row, "request_id")?,
        // A row whose data is no longer JSON was edited by hand; show it as a string so the
        // verifier reports the broken link instead of the reader failing.
        data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
        prev_hash: col(row, "prev_hash")?,
        hash: col(row, "hash")?,
    })
}

/// Up to `limit` events with `seq` above `after`, in order (for paging through the chain).
pub async fn page<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, at, actor, kind, request_id, data, prev_hash, hash FROM audit_events \
         WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(ex)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Every event of one request, in order.
pub async fn for_request<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    request_id: &str,
) -> Result<Vec<AuditEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, at, actor, kind, request_id, data, prev_hash, hash FROM audit_events \
         WHERE request_id = $1 ORDER BY seq",
    )
    .bind(request_id)
    .fetch_all(ex)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The events of each of these requests, in chain order; one statement for a page of history.
pub async fn for_each_request<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    request_ids: &[&str],
) -> Result<std::collections::HashMap<String, Vec<AuditEvent>>, StoreError> {
    let mut out: std::collections::HashMap<String, Vec<AuditEvent>> = Default::default();
    if request_ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT seq, at, actor, kind, request_id, data, prev_hash, hash FROM audit_events \
         WHERE request_id IN ({}) ORDER BY seq",
        list_placeholders(1, request_ids.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
    for id in request_ids {
        q = q.bind(*id);
    }
    for row in q.fetch_all(ex).await? {
        let event = from_row(&row)?;
        if let Some(id) = event.request_id.clone() {
            out.entry(id).or_default().push(event);
        }
    }
    Ok(out)
}

/// The chain head as recorded (`seq`, `hash`).
pub async fn head<'e, E: Executor<'e, Database = Any>>(ex: E) -> Result<(i64, String), StoreError> {
    let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(ex)
        .await?;
    Ok((col(&row, "seq")?, col(&row, "hash")?))
}

/// The newest event's `seq` and `hash`, read from the events themselves (not from the head row,
/// which is only bookkeeping for appends); `None` for an empty chain.
pub async fn last_event<'e, E: Executor<'e, Database = Any>>(
    ex: E,
) -> Result<Option<(i64, String)>, StoreError> {
    let row = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(ex)
        .await?;
    row.map(|r| Ok((col(&r, "seq")?, col(&r, "hash")?)))
        .transpose()
}

/// The stored hash of the event at `seq`, if there is one.
pub async fn hash_at<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    seq: i64,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT hash FROM audit_events WHERE seq = $1")
        .bind(seq)
        .fetch_optional(ex)
        .await?;
    row.map(|r| col(&r, "hash")).transpose()
}

/// The first event with `after < seq <= upto` that is of one of `kinds`, or caused by one of
/// `actors`, or by an actor starting with `actor_prefix` (the rule of
/// [`crate::domain::checkpoint::is_important`]). A range walk on the primary key: the caller
/// asks only about the events appended since it last asked.
pub async fn first_of<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    after: i64,
    upto: i64,
    kinds: &[&str],
    actors: &[&str],
    actor_prefix: &str,
) -> Result<Option<i64>, StoreError> {
    let mut sql = String::from(
        "SELECT seq FROM audit_events WHERE seq > $1 AND seq <= $2 \
         AND (actor LIKE $3 ESCAPE '\\'",
    );
    let mut next = 4;
    if !kinds.is_empty() {
        sql.push_str(&format!(
            " OR kind IN ({})",
            list_placeholders(next, kinds.len())
        ));
        next += kinds.len();
    }
    if !actors.is_empty() {
        sql.push_str(&format!(
            " OR actor IN ({})",
            list_placeholders(next, actors.len())
        ));
    }
    sql.push_str(") ORDER BY seq LIMIT 1");
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(after)
        .bind(upto)
        .bind(format!("{}%", like_escape(actor_prefix)));
    for k in kinds.iter().chain(actors) {
        q = q.bind(*k);
    }
    let row = q.fetch_optional(ex).await?;
    row.map(|r| col(&r, "seq")).transpose()
}

/// Which events an audit listing asks for. Empty strings mean "any".
#[derive(Debug, Clone)]
pub struct EventQuery {
    /// Only this request's events.
    pub request_id: String,
    /// Only events about this agent: its own, its requests', and those naming it in their data.
    pub agent_id: String,
    /// Only events caused by this actor (`user:<id>`, `agent:<id>`, `system`, …).
    pub actor: String,
    /// Only this kind.
    pub kind: String,
    /// Only events at or after this time (unix ms).
    pub from: Millis,
    /// Only events before this time (unix ms).
    pub to: Millis,
    /// Only events with `seq` below this (the paging cursor; `i64::MAX` for the newest).
    pub before_seq: i64,
    /// At most this many.
    pub limit: i64,
}

impl Default for EventQuery {
    fn default() -> Self {
        Self {
            request_id: String::new(),
            agent_id: String::new(),
            actor: String::new(),
            kind: String::new(),
            from: i64::MIN,
            to: i64::MAX,
            before_seq: i64::MAX,
            limit: 50,
        }
    }
}

/// An event found by [`search`], with the agent of the request it belongs to (if any).
#[derive(Debug, Clone)]
pub struct ListedEvent {
    /// The event as stored.
    pub event: AuditEvent,
    /// `requests.agent_id` of its request.
    pub request_agent_id: Option<String>,
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Events matching `q`, newest first: one statement, every value bound.
///
/// Empty filters are written as `($n = '' OR …)` rather than assembled into the SQL text, so
/// the statement is the same for every search (one prepared statement per backend) and nothing
/// the caller typed ever becomes SQL. The newest-first walk uses the primary key on `seq`, and
/// a request filter the index on `request_id`; the other filters are checked row by row on
/// that walk, which stays cheap for a page of 50 unless the filter is very selective on a
/// very long chain.
///
/// The agent filter matches the agent's own events (`actor = agent:<id>`), every event of its
/// requests, and the events whose data names it (`"agent_id":"<id>"`, e.g. `agent.created`):
/// the data is stored as canonical JSON (no whitespace), so that text is exact.
pub async fn search<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    q: &EventQuery,
) -> Result<Vec<ListedEvent>, StoreError> {
    let (agent_actor, agent_in_data) = if q.agent_id.is_empty() {
        (String::new(), String::new())
    } else {
        let quoted = serde_json::to_string(&q.agent_id).map_err(StoreError::corrupt)?;
        (
            format!("agent:{}", q.agent_id),
            format!("%\"agent_id\":{}%", like_escape(&quoted)),
        )
    };
    let rows = sqlx::query(
        "SELECT e.seq, e.at, e.actor, e.kind, e.request_id, e.data, e.prev_hash, e.hash, \
                r.agent_id AS request_agent_id \
         FROM audit_events e LEFT JOIN requests r ON r.id = e.request_id \
         WHERE e.seq < $1 \
           AND ($2 = '' OR e.request_id = $2) \
           AND ($3 = '' OR e.actor = $4 OR r.agent_id = $3 OR e.data LIKE $5 ESCAPE '\\') \
           AND ($6 = '' OR e.actor = $6) \
           AND ($7 = '' OR e.kind = $7) \
           AND e.at >= $8 AND e.at < $9 \
         ORDER BY e.seq DESC LIMIT $10",
    )
    .bind(q.before_seq)
    .bind(&q.request_id)
    .bind(&q.agent_id)
    .bind(agent_actor)
    .bind(agent_in_data)
    .bind(&q.actor)
    .bind(&q.kind)
    .bind(q.from)
    .bind(q.to)
    .bind(q.limit)
    .fetch_all(ex)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ListedEvent {
                event: from_row(row)?,
                request_agent_id: col(row, "request_agent_id")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::like_escape;

    #[test]
    fn like_patterns_match_wildcards_literally() {
        assert_eq!(like_escape("a_b%c\\d"), "a\\_b\\%c\\\\d");
        assert_eq!(like_escape("3f2a-9c"), "3f2a-9c");
    }
}
