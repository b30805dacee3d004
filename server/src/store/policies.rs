//! Policy versions. Applying a policy never edits a row: it adds a version.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor};

use super::{col, StoreError};
use crate::clock::Millis;

/// One applied policy.
#[derive(Debug, Clone)]
pub struct PolicyVersionRow {
    /// 1, 2, 3… in order of application.
    pub version: i64,
    /// `sha256:` of the normalised source.
    pub hash: String,
    /// The normalised TOML, exactly what `policy show` prints.
    pub source: String,
    /// Who applied it (a user id, or `cli:<user>`).
    pub applied_by: String,
    /// When.
    pub applied_at: Millis,
}

fn from_row(row: &AnyRow) -> Result<PolicyVersionRow, StoreError> {
    Ok(PolicyVersionRow {
        version: col(row, "version")?,
        hash: col(row, "hash")?,
        source: col(row, "source")?,
        applied_by: col(row, "applied_by")?,
        applied_at: col(row, "applied_at")?,
    })
}

/// The newest policy version and its hash (no row when none was ever applied); the intake
/// writer reads it inside its own statements too (`store::intake`).
pub(crate) const NEWEST: &str =
    "SELECT version, hash FROM policy_versions ORDER BY version DESC LIMIT 1";

/// The number and hash of the newest version, if any was ever applied: what a replica compares
/// with the policy it has parsed, on every request, without reading the source.
pub async fn newest_version<'e, E: Executor<'e, Database = Any>>(
    ex: E,
) -> Result<Option<(i64, String)>, StoreError> {
    let newest: Option<(i64, String)> = sqlx::query_as(NEWEST).fetch_optional(ex).await?;
    Ok(newest)
}

/// The newest version, if any was ever applied.
pub async fn active<'e, E: Executor<'e, Database = Any>>(
    ex: E,
) -> Result<Option<PolicyVersionRow>, StoreError> {
    let row = sqlx::query(
        "SELECT version, hash, source, applied_by, applied_at FROM policy_versions \
         ORDER BY version DESC LIMIT 1",
    )
    .fetch_optional(ex)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every version, newest first.
pub async fn history<'e, E: Executor<'e, Database = Any>>(
    ex: E,
) -> Result<Vec<PolicyVersionRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT version, hash, source, applied_by, applied_at FROM policy_versions ORDER BY version DESC",
    )
    .fetch_all(ex)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Appends a version after the current newest one and returns its number. On SQLite writes are
/// serialised, so concurrent applies queue; on PostgreSQL two applies racing may compute the same
/// number, and the primary key then refuses the second (it fails whole and can be retried).
pub async fn append(
    conn: &mut AnyConnection,
    hash: &str,
    source: &str,
    applied_by: &str,
    at: Millis,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO policy_versions (version, hash, source, applied_by, applied_at) \
         SELECT COALESCE(MAX(version), 0) + 1, $1, $2, $3, $4 FROM policy_versions \
         RETURNING version",
    )
    .bind(hash)
    .bind(source)
    .bind(applied_by)
    .bind(at)
    .fetch_one(conn)
    .await?;
    col(&row, "version")
}
