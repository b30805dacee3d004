//! Connections to a PostgreSQL provider's server, with its admin connection string.
//!
//! One small pool per provider, made on first use and replaced when the provider's secret
//! changes (its fingerprint differs). Statement logging is off on these connections: the
//! statements that create a login carry its password verifier. Errors are described without
//! the connection string (it holds the admin password).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Postgres, Row, Transaction};

use crate::domain::credential::postgres::{is_our_login, RevokeStep};
use crate::domain::secrets::Secret;
use crate::service::Error;

/// How long getting a connection to a provider may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections per provider pool: issuing holds one for a moment, revocation and the reaper one
/// each.
const POOL_SIZE: u32 = 4;

/// The pools, by provider name, each with the fingerprint of the secret it was made from.
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<String, (String, PgPool)>>,
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pools")
    }
}

impl Pools {
    /// The pool for a provider whose admin connection string is `dsn`.
    pub fn get(&self, name: &str, fingerprint: &str, dsn: &Secret) -> Result<PgPool, Error> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((fp, pool)) = pools.get(name) {
            if fp == fingerprint {
                return Ok(pool.clone());
            }
        }
        let options = PgConnectOptions::from_str(dsn.expose())
            .map_err(|_| {
                Error::ProviderUnavailable(format!(
                    "the admin connection string of credential provider {name} is not valid"
                ))
            })?
            .application_name("countersign")
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(0)
            .acquire_timeout(CONNECT_TIMEOUT)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(options);
        pools.insert(name.to_string(), (fingerprint.to_string(), pool.clone()));
        Ok(pool)
    }

    /// Forgets a provider's pool (it was removed).
    pub fn forget(&self, name: &str) {
        self.pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

/// A database error in words that hold no connection string: the server's own message, or
/// what went wrong on the way to it.
pub fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::PoolTimedOut => {
            format!("no connection within {} s", CONNECT_TIMEOUT.as_secs())
        }
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Tls(_) => "TLS failed".into(),
        sqlx::Error::Configuration(_) => "the connection settings are not valid".into(),
        sqlx::Error::Protocol(p) => format!("protocol error: {p}"),
        _ => "the connection failed".into(),
    }
}

/// Opens a transaction on the provider's server; failing to is `provider_unavailable` (503).
pub async fn begin(pool: &PgPool, provider: &str) -> Result<Transaction<'static, Postgres>, Error> {
    pool.begin().await.map_err(|e| {
        Error::ProviderUnavailable(format!(
            "credential provider {provider} cannot be reached: {}",
            describe(&e)
        ))
    })
}

/// Runs DDL statements in `tx`; a refusal is `upstream_failed` (502), e.g. a template role
/// that does not exist.
pub async fn execute_all(
    tx: &mut Transaction<'static, Postgres>,
    provider: &str,
    statements: &[String],
) -> Result<(), Error> {
    for statement in statements {
        sqlx::raw_sql(AssertSqlSafe(statement.as_str()))
            .execute(&mut **tx)
            .await
            .map_err(|e| {
                Error::UpstreamFailed(format!(
                    "credential provider {provider} refused to create the login: {}",
                    describe(&e)
                ))
            })?;
    }
    Ok(())
}

/// What a revocation step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDone {
    /// The statement ran; for `TerminateSessions`, how many sessions were ended.
    Ran(i64),
    /// The role did not exist (never committed, or already dropped): nothing to do.
    NoRole,
}

/// Runs one revocation step in a transaction of its own.
pub async fn run_step(pool: &PgPool, step: RevokeStep, login: &str) -> Result<StepDone, String> {
    let mut tx = pool.begin().await.map_err(|e| describe(&e))?;
    let exists = sqlx::query("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(login)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| describe(&e))?
        .is_some();
    if !exists {
        return Ok(StepDone::NoRole);
    }
    let statement = step.statement(login);
    let done = match step {
        RevokeStep::TerminateSessions => {
            let row = sqlx::query(AssertSqlSafe(statement.as_str()))
                .bind(login)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| describe(&e))?;
            StepDone::Ran(row.try_get::<i64, _>("n").map_err(|e| describe(&e))?)
        }
        _ => {
            sqlx::raw_sql(AssertSqlSafe(statement.as_str()))
                .execute(&mut *tx)
                .await
                .map_err(|e| describe(&e))?;
            StepDone::Ran(0)
        }
    };
    tx.commit().await.map_err(|e| describe(&e))?;
    Ok(done)
}

/// The logins of ours (`cs_…`) that are members of `template_role` on the provider's server,
/// with the end of their validity (unix ms), if set.
pub async fn our_logins(
    pool: &PgPool,
    template_role: &str,
) -> Result<Vec<(String, Option<i64>)>, String> {
    let rows = sqlx::query(
        "SELECT r.rolname AS name, \
         (EXTRACT(EPOCH FROM r.rolvaliduntil) * 1000)::bigint AS valid_until \
         FROM pg_roles r JOIN pg_auth_members m ON m.member = r.oid \
         JOIN pg_roles t ON t.oid = m.roleid \
         WHERE t.rolname = $1 AND r.rolname LIKE 'cs\\_%'",
    )
    .bind(template_role)
    .fetch_all(pool)
    .await
    .map_err(|e| describe(&e))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get("name").map_err(|e| describe(&e))?;
        if is_our_login(&name) {
            out.push((name, row.try_get("valid_until").map_err(|e| describe(&e))?));
        }
    }
    Ok(out)
}
