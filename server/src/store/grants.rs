//! Grants: the single-use tokens. We store their claims, never the signed token: a token can be
//! re-signed from its claims when the waiting agent reads the request, so a database reader
//! cannot lift a usable token from a row.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Executor};

use super::group::{Params, StatementGroup};
use super::{col, text_col, StoreError};
use crate::clock::Millis;
use crate::domain::lifecycle::{grant, GrantStatus, IllegalTransition};

/// One row of `grants`.
#[derive(Debug, Clone)]
pub struct GrantRow {
    /// The grant id (`jti`).
    pub jti: String,
    /// The request it answers.
    pub request_id: String,
    /// The agent it was issued to.
    pub agent_id: String,
    /// Where it is in its life.
    pub status: GrantStatus,
    /// The JWT claims (JSON).
    pub claims: String,
    /// When it was issued.
    pub issued_at: Millis,
    /// When it stops being redeemable.
    pub expires_at: Millis,
    /// When it was redeemed.
    pub redeemed_at: Option<Millis>,
    /// When it was revoked.
    pub revoked_at: Option<Millis>,
    /// `succeeded` or `failed`, as the agent reported.
    pub outcome: Option<String>,
    /// When the outcome was reported.
    pub reported_at: Option<Millis>,
    /// The agent's epoch when the grant was issued: it redeems only while the agent is still at
    /// that epoch (see [`crate::store::agents::set_status`]).
    pub agent_epoch: i64,
}

const COLUMNS: &str = "jti, request_id, agent_id, status, claims, issued_at, expires_at, \
                       redeemed_at, revoked_at, outcome, reported_at, agent_epoch";

fn from_row(row: &AnyRow) -> Result<GrantRow, StoreError> {
    Ok(GrantRow {
        jti: col(row, "jti")?,
        request_id: col(row, "request_id")?,
        agent_id: col(row, "agent_id")?,
        status: text_col(row, "status")?,
        claims: col(row, "claims")?,
        issued_at: col(row, "issued_at")?,
        expires_at: col(row, "expires_at")?,
        redeemed_at: col(row, "redeemed_at")?,
        revoked_at: col(row, "revoked_at")?,
        outcome: col(row, "outcome")?,
        reported_at: col(row, "reported_at")?,
        agent_epoch: col(row, "agent_epoch")?,
    })
}

/// Stores a newly issued grant.
pub async fn insert(conn: &mut AnyConnection, g: &GrantRow) -> Result<(), StoreError> {
    if g.status != grant::INITIAL {
        return Err(IllegalTransition {
            machine: "grant",
            from: "nothing",
            to: g.status.as_str(),
        }
        .into());
    }
    sqlx::query(
        "INSERT INTO grants (jti, request_id, agent_id, status, claims, issued_at, expires_at, \
         agent_epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&g.jti)
    .bind(&g.request_id)
    .bind(&g.agent_id)
    .bind(g.status.as_str())
    .bind(&g.claims)
    .bind(g.issued_at)
    .bind(g.expires_at)
    .bind(g.agent_epoch)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds the insert of new grants, in one statement, to `group` (the intake writer's batch).
pub fn insert_rows<'q>(
    group: &mut StatementGroup<'q>,
    rows: Vec<&'q GrantRow>,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    if let Some(g) = rows.iter().find(|g| g.status != grant::INITIAL) {
        return Err(IllegalTransition {
            machine: "grant",
            from: "nothing",
            to: g.status.as_str(),
        }
        .into());
    }
    let n = rows.len();
    let sql = move |p: &mut Params| {
        format!(
            "INSERT INTO grants (jti, request_id, agent_id, status, claims, issued_at, \
             expires_at, agent_epoch) VALUES {}",
            p.values(n, 8)
        )
    };
    group.push(sql, move |mut q| {
        for g in rows {
            q = q
                .bind(g.jti.as_str())
                .bind(g.request_id.as_str())
                .bind(g.agent_id.as_str())
                .bind(g.status.as_str())
                .bind(g.claims.as_str())
                .bind(g.issued_at)
                .bind(g.expires_at)
                .bind(g.agent_epoch);
        }
        q
    });
    Ok(())
}

/// Reads a grant by id.
pub async fn get<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    jti: &str,
) -> Result<Option<GrantRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM grants WHERE jti = $1");
    let row = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(jti)
        .fetch_optional(ex)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Reads the grant that answers a request.
pub async fn for_request<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    request_id: &str,
) -> Result<Option<GrantRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM grants WHERE request_id = $1");
    let row = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(request_id)
        .fetch_optional(ex)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Moves a grant from `from` to `to` at `now`, if the grant lifecycle has that transition (else
/// [`StoreError::IllegalTransition`], and nothing is written), as one conditional `UPDATE` that
/// only one of any number of concurrent callers wins. True when this call made the change.
///
/// - **Redeemed** (see [`redeem`]): only before `exp`, and only while the agent is active at the
///   epoch the grant was issued under: a suspension or key change revokes the agent's grants in
///   its own transaction, and this comparison makes "no grant from before redeems" hold even for
///   a grant that revocation could not see.
/// - **Revoked**: whenever, records `revoked_at`.
/// - **Expired**: only once `exp` has passed.
pub async fn change(
    conn: &mut AnyConnection,
    jti: &str,
    from: GrantStatus,
    to: GrantStatus,
    now: Millis,
) -> Result<bool, StoreError> {
    from.to(to)?;
    let sql = match to {
        GrantStatus::Redeemed => {
            "UPDATE grants SET status = $3, redeemed_at = $2 \
             WHERE jti = $1 AND status = $4 AND expires_at > $2 \
             AND EXISTS (SELECT 1 FROM agents a WHERE a.id = grants.agent_id \
                         AND a.status = 'active' AND a.epoch = grants.agent_epoch)"
        }
        GrantStatus::Revoked => {
            "UPDATE grants SET status = $3, revoked_at = $2 WHERE jti = $1 AND status = $4"
        }
        GrantStatus::Expired => {
            "UPDATE grants SET status = $3 WHERE jti = $1 AND status = $4 AND expires_at <= $2"
        }
        GrantStatus::Issued => {
            return Err(StoreError::corrupt(
                "the grant table has a move into issued",
            ))
        }
    };
    let done = sqlx::query(sql)
        .bind(jti)
        .bind(now)
        .bind(to.as_str())
        .bind(from.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks an issued, unexpired grant redeemed: this single conditional write is what makes a
/// grant usable exactly once (see [`change`]).
pub async fn redeem(conn: &mut AnyConnection, jti: &str, now: Millis) -> Result<bool, StoreError> {
    change(conn, jti, GrantStatus::Issued, GrantStatus::Redeemed, now).await
}

/// Revokes an issued grant. False when it was no longer `issued`.
pub async fn revoke(conn: &mut AnyConnection, jti: &str, now: Millis) -> Result<bool, StoreError> {
    change(conn, jti, GrantStatus::Issued, GrantStatus::Revoked, now).await
}

/// Records the outcome of a redeemed grant, once.
pub async fn report(
    conn: &mut AnyConnection,
    jti: &str,
    outcome: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE grants SET outcome = $2, reported_at = $3 WHERE jti = $1 AND status = 'redeemed' AND outcome IS NULL",
    )
    .bind(jti)
    .bind(outcome)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every issued grant of an agent in one statement and returns each one's `jti` and
/// request id. One statement, and before any audit append: on PostgreSQL a transaction that
/// took the audit head's lock and then waited on a grant row could deadlock with a redemption
/// holding that row and waiting for the head.
pub async fn revoke_all_of_agent(
    conn: &mut AnyConnection,
    agent_id: &str,
    now: Millis,
) -> Result<Vec<(String, String)>, StoreError> {
    GrantStatus::Issued.to(GrantStatus::Revoked)?;
    let rows = sqlx::query(
        "UPDATE grants SET status = 'revoked', revoked_at = $2 \
         WHERE agent_id = $1 AND status = 'issued' RETURNING jti, request_id",
    )
    .bind(agent_id)
    .bind(now)
    .fetch_all(conn)
    .await?;
    let mut out: Vec<(String, String)> = rows
        .iter()
        .map(|r| Ok((col(r, "jti")?, col(r, "request_id")?)))
        .collect::<Result<_, StoreError>>()?;
    // RETURNING gives no order; the audit events follow a stable one.
    out.sort();
    Ok(out)
}

/// Ids of an agent's grants that could still be redeemed.
pub async fn issued_of_agent<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    agent_id: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query("SELECT jti FROM grants WHERE agent_id = $1 AND status = 'issued'")
        .bind(agent_id)
        .fetch_all(ex)
        .await?;
    rows.iter().map(|r| col::<String>(r, "jti")).collect()
}

/// Ids of issued grants whose time has passed (for the sweeper).
pub async fn overdue<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    now: Millis,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query("SELECT jti FROM grants WHERE status = 'issued' AND expires_at <= $1 ORDER BY expires_at LIMIT $2")
        .bind(now)
        .bind(limit)
        .fetch_all(ex)
        .await?;
    rows.iter().map(|r| col::<String>(r, "jti")).collect()
}

/// Marks an issued grant expired once its time has passed. True when this call did it.
pub async fn expire(conn: &mut AnyConnection, jti: &str, now: Millis) -> Result<bool, StoreError> {
    change(conn, jti, GrantStatus::Issued, GrantStatus::Expired, now).await
}

/// Registers a grant-signing public key so every replica can verify (and JWKS can publish) it.
pub async fn register_signing_key<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    kid: &str,
    public_jwk: &str,
    at: Millis,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO signing_keys (kid, public_jwk, created_at) VALUES ($1, $2, $3) ON CONFLICT (kid) DO NOTHING")
        .bind(kid)
        .bind(public_jwk)
        .bind(at)
        .execute(ex)
        .await?;
    Ok(())
}

/// Every registered signing key's public JWK (JSON), oldest first.
pub async fn signing_keys<'e, E: Executor<'e, Database = Any>>(
    ex: E,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query("SELECT kid, public_jwk FROM signing_keys ORDER BY created_at")
        .fetch_all(ex)
        .await?;
    rows.iter()
        .map(|r| Ok((col(r, "kid")?, col(r, "public_jwk")?)))
        .collect()
}
