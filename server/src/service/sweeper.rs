//! The background sweeper: expires overdue requests and grants (with their audit events) and
//! clears away what can no longer be used (ceremonies, seen assertion ids, sessions).
//!
//! Reads already enforce expiry, so the sweeper is about tidiness and about waking agents whose
//! request expired. On PostgreSQL one replica sweeps at a time (a transaction-scoped advisory
//! lock); the conditional writes make a double sweep harmless anyway.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{Countersign, Error};
use crate::domain::audit_kind::EventKind;
use crate::store::{
    self, agents, audit, ceremonies, grants, requests, sessions::DbSessionStore, Backend,
};

/// An arbitrary, fixed key for `pg_try_advisory_xact_lock`.
const SWEEPER_LOCK: i64 = 0x0063_6f75_6e74_6572;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Requests expired.
    pub requests_expired: usize,
    /// Grants expired.
    pub grants_expired: usize,
    /// Released credentials whose task's time ran out (their revocation started).
    pub credentials_expired: usize,
}

impl Countersign {
    /// One pass of the sweeper.
    pub async fn sweep(&self) -> Result<SweepReport, Error> {
        if self.db.backend() == Backend::Postgres {
            let mut tx = self.db.begin().await?;
            if !store::coordination::try_lock(&mut tx, Backend::Postgres, SWEEPER_LOCK).await? {
                return Ok(SweepReport::default());
            }
            let report = self.sweep_once().await;
            tx.commit().await.map_err(store::StoreError::from)?;
            return report;
        }
        self.sweep_once().await
    }

    async fn sweep_once(&self) -> Result<SweepReport, Error> {
        let now = self.now();
        let mut report = SweepReport::default();
        for id in requests::overdue(self.db.reader(), now, 500).await? {
            if self.expire_request(&id).await? {
                report.requests_expired += 1;
            }
        }
        for jti in grants::overdue(self.db.reader(), now, 500).await? {
            let mut tx = self.db.begin().await?;
            if grants::expire(&mut tx, &jti, now).await? {
                let g = grants::get(&mut *tx, &jti).await?;
                audit::append(
                    &mut tx,
                    now,
                    "system",
                    EventKind::GrantExpired,
                    g.as_ref().map(|g| g.request_id.as_str()),
                    &json!({ "jti": jti }),
                )
                .await?;
                report.grants_expired += 1;
            }
            tx.commit().await.map_err(store::StoreError::from)?;
        }
        report.credentials_expired = self.expire_credentials(now).await?;
        ceremonies::purge_expired(self.db.writer(), now).await?;
        agents::purge_jtis(self.db.writer(), now).await?;
        DbSessionStore::new(self.db.clone())
            .delete_expired(now)
            .await?;
        Ok(report)
    }
}

/// Runs the sweeper every `period` until the process ends.
pub async fn run(core: Arc<Countersign>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = core.sweep().await {
            tracing::warn!(error = %e.for_log(), "sweep failed");
        }
    }
}
