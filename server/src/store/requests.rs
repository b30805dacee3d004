//! Approval requests, their approvals, and agents' idempotency keys.
//!
//! Every status change goes through [`change`] (or, for the kill switch, [`cancel_all_of_agent`]):
//! it first asks [`crate::domain::lifecycle::request`]'s table whether the move exists, then
//! makes it one conditional `UPDATE … WHERE status = <from>`: when approve, deny, cancel and
//! expiry race, the database lets exactly one of them change the row and the others see zero
//! rows affected. The one that wins also writes the agent's callback into the outbox
//! ([`super::callbacks::enqueue`]) in the same transaction.
//!
//! Statements that scan (the kill switch, the sweeper, listings) write the status they look for
//! as a literal, the same text as [`RequestStatus::as_str`] (its tests pin the text): SQLite uses
//! a partial index such as `… WHERE status = 'pending'` only for a query with that literal.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Executor};

use super::group::{Params, StatementGroup};
use super::{col, text_col, StoreError};
use crate::clock::Millis;
use crate::domain::lifecycle::{Deadline, IllegalTransition, RequestStatus};

/// One row of `requests`.
#[derive(Debug, Clone)]
pub struct RequestRow {
    /// A UUID (v7, so ids sort by creation time).
    pub id: String,
    /// The agent that asked.
    pub agent_id: String,
    /// Where it is in its life.
    pub status: RequestStatus,
    /// `sha256:` of the canonical `{agent_id, action, intent, context}`.
    pub action_hash: String,
    /// The validated request as the agent sent it (JSON).
    pub body: String,
    /// `action.type`, for listing and policy.
    pub action_type: String,
    /// `action.target`, the grant's audience.
    pub target: String,
    /// The policy version that decided.
    pub policy_version: i64,
    /// Its hash.
    pub policy_hash: String,
    /// The rule that matched (or `default`).
    pub rule_id: String,
    /// The one-line explanation shown to agent and approver.
    pub explanation: String,
    /// Distinct approvals needed (0 when policy allowed or denied outright).
    pub approvals_required: i64,
    /// Who may approve: the rule's approver sources and options (JSON).
    pub approver_rule: String,
    /// Lifetime of the grant, once issued.
    pub grant_ttl_seconds: i64,
    /// The credential provider the deciding rule releases from, if any.
    pub credential: Option<String>,
    /// How long that credential lives, in seconds.
    pub credential_ttl_seconds: Option<i64>,
    /// When it was created.
    pub created_at: Millis,
    /// When it expires if still pending.
    pub expires_at: Millis,
    /// When it left `pending`.
    pub decided_at: Option<Millis>,
    /// Who decided: a user id, `policy`, `agent`, `system`.
    pub decided_by: Option<String>,
    /// For denials: a machine-readable reason code.
    pub reason_code: Option<String>,
    /// For denials: the human reason.
    pub reason: Option<String>,
}

pub(crate) const COLUMNS: &str =
    "id, agent_id, status, action_hash, body, action_type, target, policy_version, \
     policy_hash, rule_id, explanation, approvals_required, approver_rule, grant_ttl_seconds, \
     credential, credential_ttl_seconds, created_at, expires_at, decided_at, decided_by, reason_code, reason";

pub(crate) fn from_row(row: &AnyRow) -> Result<RequestRow, StoreError> {
    Ok(RequestRow {
        id: col(row, "id")?,
        agent_id: col(row, "agent_id")?,
        status: text_col(row, "status")?,
        action_hash: col(row, "action_hash")?,
        body: col(row, "body")?,
        action_type: col(row, "action_type")?,
        target: col(row, "target")?,
        policy_version: col(row, "policy_version")?,
        policy_hash: col(row, "policy_hash")?,
        rule_id: col(row, "rule_id")?,
        explanation: col(row, "explanation")?,
        approvals_required: col(row, "approvals_required")?,
        approver_rule: col(row, "approver_rule")?,
        grant_ttl_seconds: col(row, "grant_ttl_seconds")?,
        credential: col(row, "credential")?,
        credential_ttl_seconds: col(row, "credential_ttl_seconds")?,
        created_at: col(row, "created_at")?,
        expires_at: col(row, "expires_at")?,
        decided_at: col(row, "decided_at")?,
        decided_by: col(row, "decided_by")?,
        reason_code: col(row, "reason_code")?,
        reason: col(row, "reason")?,
    })
}

/// Adds the insert of new requests, in one statement, to `group` (the intake writer's batch).
pub fn insert_rows<'q>(
    group: &mut StatementGroup<'q>,
    requests: Vec<&'q RequestRow>,
) -> Result<(), StoreError> {
    if requests.is_empty() {
        return Ok(());
    }
    if let Some(r) = requests.iter().find(|r| !r.status.is_initial()) {
        return Err(IllegalTransition {
            machine: "request",
            from: "nothing",
            to: r.status.as_str(),
        }
        .into());
    }
    let n = requests.len();
    let sql = move |p: &mut Params| {
        format!(
            "INSERT INTO requests (id, agent_id, status, action_hash, body, action_type, target, \
             policy_version, policy_hash, rule_id, explanation, approvals_required, \
             approver_rule, grant_ttl_seconds, credential, credential_ttl_seconds, created_at, \
             expires_at, decided_at, decided_by, reason_code, reason) VALUES {}",
            p.values(n, 22)
        )
    };
    group.push(sql, move |mut q| {
        for r in requests {
            q = q
                .bind(r.id.as_str())
                .bind(r.agent_id.as_str())
                .bind(r.status.as_str())
                .bind(r.action_hash.as_str())
                .bind(r.body.as_str())
                .bind(r.action_type.as_str())
                .bind(r.target.as_str())
                .bind(r.policy_version)
                .bind(r.policy_hash.as_str())
                .bind(r.rule_id.as_str())
                .bind(r.explanation.as_str())
                .bind(r.approvals_required)
                .bind(r.approver_rule.as_str())
                .bind(r.grant_ttl_seconds)
                .bind(r.credential.as_deref())
                .bind(r.credential_ttl_seconds)
                .bind(r.created_at)
                .bind(r.expires_at)
                .bind(r.decided_at)
                .bind(r.decided_by.as_deref())
                .bind(r.reason_code.as_deref())
                .bind(r.reason.as_deref());
        }
        q
    });
    Ok(())
}

/// Adds to `group` the first time each agent asked for each action type, for those of these
/// requests that are the first (see `agent_actions` in the migrations): a pair seen before is
/// only looked up, and nothing is written.
pub fn first_asks_rows<'q>(group: &mut StatementGroup<'q>, requests: &[&'q RequestRow]) {
    let mut firsts: Vec<(&str, &str, Millis)> = requests
        .iter()
        .map(|r| (r.agent_id.as_str(), r.action_type.as_str(), r.created_at))
        .collect();
    // The earliest of each pair, once.
    firsts.sort_unstable();
    firsts.dedup_by(|later, first| (later.0, later.1) == (first.0, first.1));
    if firsts.is_empty() {
        return;
    }
    let n = firsts.len();
    let sql = move |p: &mut Params| {
        format!(
            "INSERT INTO agent_actions (agent_id, action_type, first_at) VALUES {} \
             ON CONFLICT (agent_id, action_type) DO NOTHING",
            p.values(n, 3)
        )
    };
    group.push(sql, move |q| {
        firsts.into_iter().fold(q, |q, (agent, action, at)| {
            q.bind(agent).bind(action).bind(at)
        })
    });
}

/// Reads a request.
pub async fn get<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    id: &str,
) -> Result<Option<RequestRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM requests WHERE id = $1");
    let row = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(id)
        .fetch_optional(ex)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// A change of status to write: from what to what, when, who made it and why.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// The status the request must still be in.
    pub from: RequestStatus,
    /// The status it moves to.
    pub to: RequestStatus,
    /// When.
    pub at: Millis,
    /// A user id, `agent`, `system`.
    pub by: &'a str,
    /// For denials and cancellations.
    pub reason_code: Option<&'a str>,
    /// For denials and cancellations.
    pub reason: Option<&'a str>,
    /// When set, the write only happens if the request still has this `action_hash`.
    pub expected_hash: Option<&'a str>,
}

impl<'a> Change<'a> {
    /// A change from `pending` to `to` at `at` by `by`, with no reason and no hash check.
    pub fn from_pending(to: RequestStatus, at: Millis, by: &'a str) -> Self {
        Self {
            from: RequestStatus::Pending,
            to,
            at,
            by,
            reason_code: None,
            reason: None,
            expected_hash: None,
        }
    }
}

/// Moves a request from `c.from` to `c.to`, if the request lifecycle has that transition (else
/// [`StoreError::IllegalTransition`], and nothing is written). The write is one conditional
/// `UPDATE`: it happens only while the request is still in `c.from`, on the right side of its
/// deadline for this transition (an expiry only after it, a decision only before it, with the
/// deadline as the decision time of an expiry), and, when `c.expected_hash` is set, still bound
/// to that action. Returns false when someone else got there first, the deadline is on the wrong
/// side, or the hash differs: the caller then re-reads to say which.
pub async fn change(
    conn: &mut AnyConnection,
    id: &str,
    c: &Change<'_>,
) -> Result<bool, StoreError> {
    let transition = c.from.to(c.to)?;
    let (decided_at, deadline) = match transition.deadline {
        Deadline::Before => ("$3", "AND expires_at > $3"),
        Deadline::After => ("expires_at", "AND expires_at <= $3"),
        Deadline::Any => ("$3", ""),
    };
    let sql = format!(
        "UPDATE requests SET status = $2, decided_at = {decided_at}, decided_by = $4, \
         reason_code = $5, reason = $6 \
         WHERE id = $1 AND status = $8 {deadline} AND ($7 IS NULL OR action_hash = $7)"
    );
    // Built from the two constant fragments above only.
    let done = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(id)
        .bind(c.to.as_str())
        .bind(c.at)
        .bind(c.by)
        .bind(c.reason_code)
        .bind(c.reason)
        .bind(c.expected_hash)
        .bind(c.from.as_str())
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    if c.from == RequestStatus::Pending {
        // The agent's callback is owed from this moment: written here, in the same
        // transaction, so it commits or rolls back with the decision (an outbox).
        super::callbacks::enqueue(conn, id, c.at).await?;
    }
    Ok(true)
}

/// Cancels every pending, unexpired request of an agent in one statement (the kill switch) and
/// returns their ids, oldest first. One statement, before any audit append, for the same reason
/// as [`crate::store::grants::revoke_all_of_agent`].
pub async fn cancel_all_of_agent(
    conn: &mut AnyConnection,
    agent_id: &str,
    t: &Change<'_>,
) -> Result<Vec<String>, StoreError> {
    let transition = RequestStatus::Pending.to(RequestStatus::Cancelled)?;
    debug_assert_eq!(transition.deadline, Deadline::Before);
    let rows = sqlx::query(
        "UPDATE requests SET status = 'cancelled', decided_at = $2, decided_by = $3, \
         reason_code = $4, reason = $5 \
         WHERE agent_id = $1 AND status = 'pending' AND expires_at > $2 RETURNING id",
    )
    .bind(agent_id)
    .bind(t.at)
    .bind(t.by)
    .bind(t.reason_code)
    .bind(t.reason)
    .fetch_all(&mut *conn)
    .await?;
    let mut ids: Vec<String> = rows
        .iter()
        .map(|r| col::<String>(r, "id"))
        .collect::<Result<_, _>>()?;
    // Ids are UUIDv7: sorted is oldest first.
    ids.sort();
    for id in &ids {
        super::callbacks::enqueue(conn, id, t.at).await?;
    }
    Ok(ids)
}

/// Locks a request for a decision: true when it is still pending, unexpired and bound to this
/// `action_hash`. The row stays locked until the caller's transaction ends, so nothing else
/// decides it meanwhile (on SQLite the write transaction already excludes other writers).
pub async fn lock_pending(
    conn: &mut AnyConnection,
    id: &str,
    action_hash: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE requests SET status = status \
         WHERE id = $1 AND status = 'pending' AND action_hash = $2 AND expires_at > $3",
    )
    .bind(id)
    .bind(action_hash)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks a pending request expired if its time has passed. True when this call did it.
pub async fn expire(conn: &mut AnyConnection, id: &str, now: Millis) -> Result<bool, StoreError> {
    let c = Change::from_pending(RequestStatus::Expired, now, "system");
    change(conn, id, &c).await
}

/// Ids of pending requests whose time has passed (for the sweeper), oldest first.
pub async fn overdue<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    now: Millis,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM requests WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(ex)
    .await?;
    rows.iter().map(|r| col::<String>(r, "id")).collect()
}

/// Ids of an agent's pending requests.
pub async fn pending_of_agent<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_id: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query("SELECT id FROM requests WHERE agent_id = $1 AND status = 'pending'")
        .bind(agent_id)
        .fetch_all(ex)
        .await?;
    rows.iter().map(|r| col::<String>(r, "id")).collect()
}

/// Records one person's approval. False when they had already approved (quorum counts people,
/// not clicks).
pub async fn add_approval(
    conn: &mut AnyConnection,
    request_id: &str,
    user_id: &str,
    passkey_id: &str,
    at: Millis,
    terms: Option<&str>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO approvals (request_id, user_id, passkey_id, decided_at, terms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (request_id, user_id) DO NOTHING",
    )
    .bind(request_id)
    .bind(user_id)
    .bind(passkey_id)
    .bind(at)
    .bind(terms)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The narrowed terms (JSON) each approver of a request approved on, where they narrowed.
pub async fn approval_terms<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    request_id: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT user_id, terms FROM approvals WHERE request_id = $1 AND terms IS NOT NULL",
    )
    .bind(request_id)
    .fetch_all(ex)
    .await?;
    rows.iter()
        .map(|r| Ok((col(r, "user_id")?, col(r, "terms")?)))
        .collect()
}

/// The people who approved a request, in order.
pub async fn approvers<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    request_id: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT user_id FROM approvals WHERE request_id = $1 ORDER BY decided_at, user_id",
    )
    .bind(request_id)
    .fetch_all(ex)
    .await?;
    rows.iter().map(|r| col::<String>(r, "user_id")).collect()
}

/// A stored idempotency key: the fingerprint of the body it was first used with, and the
/// request that body created.
#[derive(Debug, Clone)]
pub struct IdempotencyRow {
    /// `sha256:` of the raw body.
    pub body_hash: String,
    /// The request it created.
    pub request_id: String,
}

/// Looks up an agent's idempotency key.
pub async fn idempotency_get<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_id: &str,
    key: &str,
) -> Result<Option<IdempotencyRow>, StoreError> {
    let row = sqlx::query(
        "SELECT body_hash, request_id FROM idempotency_keys WHERE agent_id = $1 AND key = $2",
    )
    .bind(agent_id)
    .bind(key)
    .fetch_optional(ex)
    .await?;
    row.map(|r| {
        Ok(IdempotencyRow {
            body_hash: col(&r, "body_hash")?,
            request_id: col(&r, "request_id")?,
        })
    })
    .transpose()
}

/// An idempotency key to claim for a new request.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// The agent.
    pub agent_id: String,
    /// Its key.
    pub key: String,
    /// Fingerprint of the body.
    pub body_hash: String,
    /// The request the body would create.
    pub request_id: String,
    /// When.
    pub at: Millis,
}

/// Claims idempotency keys in one statement and returns the ids of the requests whose claim
/// succeeded. A key already taken (by an earlier call, or by another claim in the same
/// statement) is skipped, not an error, so one lost race does not abort its neighbours.
pub async fn idempotency_claim(
    conn: &mut AnyConnection,
    claims: &[IdempotencyClaim],
) -> Result<Vec<String>, StoreError> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "INSERT INTO idempotency_keys (agent_id, key, body_hash, request_id, created_at) VALUES {} \
         ON CONFLICT (agent_id, key) DO NOTHING RETURNING request_id",
        Params::new(super::Backend::of(conn)).values(claims.len(), 5)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
    for c in claims {
        q = q
            .bind(c.agent_id.clone())
            .bind(c.key.clone())
            .bind(c.body_hash.clone())
            .bind(c.request_id.clone())
            .bind(c.at);
    }
    let rows = q.fetch_all(conn).await?;
    rows.iter()
        .map(|r| col::<String>(r, "request_id"))
        .collect()
}
