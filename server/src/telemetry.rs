//! Logs and metrics. Logs are structured (`tracing`, JSON when `COUNTERSIGN_LOG_FORMAT=json`);
//! no secret — API key, token, passkey assertion, enrolment link — is ever a field of a log
//! event. Metrics are a handful of counters rendered in Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Sets up logging from `RUST_LOG` (default `info`). Safe to call more than once.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("COUNTERSIGN_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests created, by initial status.
    pub requests_pending: AtomicU64,
    /// Requests allowed by policy at once.
    pub requests_allowed: AtomicU64,
    /// Requests denied by policy at once.
    pub requests_denied_by_policy: AtomicU64,
    /// Requests approved by people.
    pub requests_approved: AtomicU64,
    /// Requests denied by people.
    pub requests_denied: AtomicU64,
    /// Requests cancelled by their agent.
    pub requests_cancelled: AtomicU64,
    /// Requests that expired.
    pub requests_expired: AtomicU64,
    /// Grants redeemed.
    pub grants_redeemed: AtomicU64,
    /// Redemptions refused (already used, expired, revoked, invalid).
    pub grants_refused: AtomicU64,
    /// Agent calls refused for bad credentials.
    pub auth_failures: AtomicU64,
}

/// Adds one to a counter.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Prometheus text exposition of every counter plus the given gauges.
    pub fn render(&self, waiting_agents: usize) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP countersign_requests_total Approval requests by outcome."
        );
        let _ = writeln!(out, "# TYPE countersign_requests_total counter");
        for (outcome, c) in [
            ("pending", &self.requests_pending),
            ("allowed", &self.requests_allowed),
            ("denied_by_policy", &self.requests_denied_by_policy),
            ("approved", &self.requests_approved),
            ("denied", &self.requests_denied),
            ("cancelled", &self.requests_cancelled),
            ("expired", &self.requests_expired),
        ] {
            let _ = writeln!(
                out,
                "countersign_requests_total{{outcome=\"{outcome}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP countersign_grant_redemptions_total Grant redemptions by result."
        );
        let _ = writeln!(out, "# TYPE countersign_grant_redemptions_total counter");
        let _ = writeln!(
            out,
            "countersign_grant_redemptions_total{{result=\"redeemed\"}} {}",
            get(&self.grants_redeemed)
        );
        let _ = writeln!(
            out,
            "countersign_grant_redemptions_total{{result=\"refused\"}} {}",
            get(&self.grants_refused)
        );
        let _ = writeln!(
            out,
            "# HELP countersign_agent_auth_failures_total Agent calls refused for bad credentials."
        );
        let _ = writeln!(out, "# TYPE countersign_agent_auth_failures_total counter");
        let _ = writeln!(
            out,
            "countersign_agent_auth_failures_total {}",
            get(&self.auth_failures)
        );
        let _ = writeln!(
            out,
            "# HELP countersign_waiting_agents Agents currently long-waiting for a decision."
        );
        let _ = writeln!(out, "# TYPE countersign_waiting_agents gauge");
        let _ = writeln!(out, "countersign_waiting_agents {waiting_agents}");
        out
    }
}
