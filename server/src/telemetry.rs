//! Logs and metrics. Logs are structured (`tracing`, JSON when `COUNTERSIGN_LOG_FORMAT=json`);
//! no secret — API key, token, passkey assertion, enrolment link — is ever a field of a log
//! event. Metrics are a handful of counters rendered in Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    /// From a decision's commit waking a long-waiting agent to that agent's answer being ready.
    pub decision_delivery: LatencyHistogram,
    /// Outgoing mail (shared with the mail sender's tasks).
    pub mail: Arc<MailCounters>,
    /// Calls refused by the per-address limits at the edge (shared with `http::limits`).
    pub limited: Arc<LimitedCounters>,
}

/// Calls refused with `429 rate_limited` by a per-client-address limit, by limit.
#[derive(Debug, Default)]
pub struct LimitedCounters {
    /// Sign-in start and finish.
    pub sign_in: AtomicU64,
    /// Enrolment start and finish.
    pub enrol: AtomicU64,
    /// Redemptions from an address with too many refused ones.
    pub redeem: AtomicU64,
    /// Agent calls from an address with too many failed authentications.
    pub agent_auth: AtomicU64,
}

/// What became of outgoing mail.
#[derive(Debug, Default)]
pub struct MailCounters {
    /// Taken by the SMTP server.
    pub sent: AtomicU64,
    /// Written to the log instead (no `COUNTERSIGN_SMTP_URL`).
    pub logged: AtomicU64,
    /// Given up on after the last attempt, or refused for good by the server.
    pub failed: AtomicU64,
    /// Dropped before any attempt: the queue was full.
    pub dropped: AtomicU64,
    /// Not sent because the approver had had their mails for the minute (the request waits in
    /// their inbox).
    pub held: AtomicU64,
    /// Attempts the SMTP server did not take (each retry that follows one counts again).
    pub failed_attempts: AtomicU64,
}

/// Growth factor between histogram buckets: quantiles are exact to within 5 %.
const BUCKET_GROWTH: f64 = 1.05;
/// Buckets cover 1 µs to about 2 minutes at that resolution.
const BUCKETS: usize = 400;

/// A lock-free latency histogram with logarithmic buckets (1 µs upwards, 5 % apart).
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us <= 1 {
        return 0;
    }
    ((us as f64).ln() / BUCKET_GROWTH.ln())
        .ceil()
        .min((BUCKETS - 1) as f64) as usize
}

fn bucket_upper_us(i: usize) -> f64 {
    BUCKET_GROWTH.powi(i as i32)
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The `q` quantile (0..=1), as the upper edge of its bucket; None when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(Duration::from_nanos((bucket_upper_us(i) * 1000.0) as u64));
            }
        }
        None
    }
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
            "# HELP countersign_rate_limited_total Calls refused with 429 by a per-client-address limit."
        );
        let _ = writeln!(out, "# TYPE countersign_rate_limited_total counter");
        for (limit, c) in [
            ("sign_in", &self.limited.sign_in),
            ("enrol", &self.limited.enrol),
            ("redeem", &self.limited.redeem),
            ("agent_auth", &self.limited.agent_auth),
        ] {
            let _ = writeln!(
                out,
                "countersign_rate_limited_total{{limit=\"{limit}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP countersign_waiting_agents Agents currently long-waiting for a decision."
        );
        let _ = writeln!(out, "# TYPE countersign_waiting_agents gauge");
        let _ = writeln!(out, "countersign_waiting_agents {waiting_agents}");
        let _ = writeln!(
            out,
            "# HELP countersign_mails_total Outgoing mail by outcome."
        );
        let _ = writeln!(out, "# TYPE countersign_mails_total counter");
        for (outcome, c) in [
            ("sent", &self.mail.sent),
            ("logged", &self.mail.logged),
            ("failed", &self.mail.failed),
            ("dropped", &self.mail.dropped),
            ("held", &self.mail.held),
        ] {
            let _ = writeln!(
                out,
                "countersign_mails_total{{outcome=\"{outcome}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP countersign_mail_failed_attempts_total SMTP attempts that failed (retried or not)."
        );
        let _ = writeln!(out, "# TYPE countersign_mail_failed_attempts_total counter");
        let _ = writeln!(
            out,
            "countersign_mail_failed_attempts_total {}",
            get(&self.mail.failed_attempts)
        );
        let d = &self.decision_delivery;
        let _ = writeln!(out, "# HELP countersign_decision_delivery_seconds From a decision's commit waking a long-waiting agent to its answer being ready.");
        let _ = writeln!(out, "# TYPE countersign_decision_delivery_seconds summary");
        for q in ["0.5", "0.9", "0.99", "0.999"] {
            let v = q
                .parse::<f64>()
                .ok()
                .and_then(|q| d.quantile(q))
                .map(|d| d.as_secs_f64())
                .unwrap_or(f64::NAN);
            let _ = writeln!(
                out,
                "countersign_decision_delivery_seconds{{quantile=\"{q}\"}} {v}"
            );
        }
        let _ = writeln!(
            out,
            "countersign_decision_delivery_seconds_sum {}",
            d.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "countersign_decision_delivery_seconds_count {}",
            d.count()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_five_percent() {
        let h = LatencyHistogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).unwrap().as_micros() as f64;
        let p99 = h.quantile(0.99).unwrap().as_micros() as f64;
        assert!((500.0..=525.0).contains(&p50), "p50 {p50}");
        assert!((990.0..=1040.0).contains(&p99), "p99 {p99}");
        assert_eq!(h.count(), 1000);
        assert!(LatencyHistogram::default().quantile(0.5).is_none());
    }

    #[test]
    fn metrics_render_the_delivery_summary() {
        let m = Metrics::default();
        m.decision_delivery.record(Duration::from_micros(300));
        let text = m.render(3);
        assert!(text.contains("countersign_waiting_agents 3"));
        assert!(text.contains("countersign_decision_delivery_seconds_count 1"));
        assert!(text.contains("countersign_decision_delivery_seconds{quantile=\"0.5\"} 0.0003"));
        bump(&m.mail.sent);
        let text = m.render(0);
        assert!(text.contains("countersign_mails_total{outcome=\"sent\"} 1"));
        assert!(text.contains("countersign_mail_failed_attempts_total 0"));
        bump(&m.limited.agent_auth);
        let text = m.render(0);
        assert!(text.contains("countersign_rate_limited_total{limit=\"agent_auth\"} 1"));
        assert!(text.contains("countersign_rate_limited_total{limit=\"sign_in\"} 0"));
    }
}
