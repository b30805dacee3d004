//! Logs and metrics. Logs are structured (`tracing`, JSON when `COUNTERSIGN_LOG_FORMAT=json`);
//! no secret — API key, token, passkey assertion, enrolment link — is ever a field of a log
//! event. Metrics are counters, one gauge and histograms kept by `prometheus-client` and
//! rendered in its text format (OpenMetrics, which Prometheus scrapes): latencies are
//! histograms, not summaries, so that Prometheus can add them up across replicas.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// Everything exported at `/metrics`. Each field is a handle on a series of the registry, so
/// recording is an atomic add and needs no lock.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests created, by initial status.
    pub requests_pending: Counter,
    /// Requests allowed by policy at once.
    pub requests_allowed: Counter,
    /// Requests denied by policy at once.
    pub requests_denied_by_policy: Counter,
    /// Requests approved by people.
    pub requests_approved: Counter,
    /// Requests denied by people.
    pub requests_denied: Counter,
    /// Requests cancelled by their agent.
    pub requests_cancelled: Counter,
    /// Requests that expired.
    pub requests_expired: Counter,
    /// Grants redeemed.
    pub grants_redeemed: Counter,
    /// Redemptions refused (already used, expired, revoked, invalid).
    pub grants_refused: Counter,
    /// Agent calls refused for bad credentials.
    pub auth_failures: Counter,
    /// From a decision's commit waking a long-waiting agent to that agent's answer being ready.
    pub decision_delivery: LatencyHistogram,
    /// Outgoing mail (shared with the mail sender's tasks).
    pub mail: Arc<MailCounters>,
    /// Calls refused by the per-address limits at the edge (shared with `http::limits`).
    pub limited: Arc<LimitedCounters>,
    /// Callbacks to agents: attempts by result, final outcomes, and delivery latency.
    pub callbacks: CallbackMetrics,
    /// Agents long-waiting right now; set from the waiters when rendered.
    waiting_agents: Gauge,
    /// Time to answer each HTTP call, by method, route and status.
    http: Family<HttpLabels, Histogram, fn() -> Histogram>,
}

/// Calls refused with `429 rate_limited` by a per-client-address limit, by limit.
#[derive(Debug, Default)]
pub struct LimitedCounters {
    /// Sign-in start and finish.
    pub sign_in: Counter,
    /// Enrolment start and finish.
    pub enrol: Counter,
    /// Redemptions from an address with too many refused ones.
    pub redeem: Counter,
    /// Agent calls from an address with too many failed authentications.
    pub agent_auth: Counter,
}

/// What became of outgoing mail.
#[derive(Debug, Default)]
pub struct MailCounters {
    /// Taken by the SMTP server.
    pub sent: Counter,
    /// Written to the log instead (no `COUNTERSIGN_SMTP_URL`).
    pub logged: Counter,
    /// Given up on after the last attempt, or refused for good by the server.
    pub failed: Counter,
    /// Dropped before any attempt: the queue was full.
    pub dropped: Counter,
    /// Not sent because the approver had had their mails for the minute (the request waits in
    /// their inbox).
    pub held: Counter,
    /// Attempts the SMTP server did not take (each retry that follows one counts again).
    pub failed_attempts: Counter,
}

/// What became of callbacks to agents (see `service::callbacks`).
#[derive(Debug)]
pub struct CallbackMetrics {
    /// Attempts the endpoint answered with 2xx.
    pub attempt_delivered: Counter,
    /// Attempts it answered with anything else.
    pub attempt_http_error: Counter,
    /// Attempts that got no answer within the per-attempt timeout.
    pub attempt_timeout: Counter,
    /// Attempts that could not connect (or whose connection failed).
    pub attempt_connect_error: Counter,
    /// Attempts not made: the host resolved to an address callbacks may not reach, or to none.
    pub attempt_refused: Counter,
    /// Callbacks delivered in the end.
    pub delivered: Counter,
    /// Callbacks given up on.
    pub failed: Counter,
    /// From the decision to the endpoint's 2xx, retries included.
    pub latency: LatencyHistogram,
}

/// Upper bounds (seconds) of the callback latency buckets: from an immediate delivery to the
/// end of the retry schedule.
const CALLBACK_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0,
];

/// Upper bounds (seconds) of the decision delivery buckets: the target is a few milliseconds,
/// so the resolution is there.
const DELIVERY_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Upper bounds (seconds) of the per-route buckets: from a millisecond to a long-wait's minute.
const HTTP_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A latency histogram (seconds), with its count readable in process (the library's is not).
#[derive(Debug)]
pub struct LatencyHistogram {
    histogram: Histogram,
    count: AtomicU64,
}

impl LatencyHistogram {
    fn new(histogram: Histogram) -> Self {
        Self {
            histogram,
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn record(&self, d: Duration) {
        self.histogram.observe(d.as_secs_f64());
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// The labels of one per-route series. All three come from bounded sets, so a client cannot
/// make the number of series grow: the method is one of the standard ones or `other`, the
/// route is the router's pattern (`/api/v1/requests/{id}`) or `unmatched`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RedemptionResult {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptResult {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Limit {
    limit: &'static str,
}

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

/// The series of `family` with this label set, created now so that it is exported (as 0)
/// before anything happens.
fn series<S, F: Fn() -> Counter>(family: &Family<S, Counter, F>, labels: S) -> Counter
where
    S: Clone + std::hash::Hash + Eq,
{
    family.get_or_create(&labels).clone()
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("countersign");

        let requests = Family::<Outcome, Counter>::default();
        registry.register("requests", "Approval requests by outcome", requests.clone());
        let outcome = |outcome| series(&requests, Outcome { outcome });

        let redemptions = Family::<RedemptionResult, Counter>::default();
        registry.register(
            "grant_redemptions",
            "Grant redemptions by result",
            redemptions.clone(),
        );
        let result = |result| series(&redemptions, RedemptionResult { result });

        let auth_failures = Counter::default();
        registry.register(
            "agent_auth_failures",
            "Agent calls refused for bad credentials",
            auth_failures.clone(),
        );

        let limited = Family::<Limit, Counter>::default();
        registry.register(
            "rate_limited",
            "Calls refused with 429 by a per-client-address limit",
            limited.clone(),
        );
        let limit = |limit| series(&limited, Limit { limit });

        let waiting_agents = Gauge::default();
        registry.register(
            "waiting_agents",
            "Agents currently long-waiting for a decision",
            waiting_agents.clone(),
        );

        let mails = Family::<Outcome, Counter>::default();
        registry.register("mails", "Outgoing mail by outcome", mails.clone());
        let mail = |outcome| series(&mails, Outcome { outcome });
        let failed_attempts = Counter::default();
        registry.register(
            "mail_failed_attempts",
            "SMTP attempts that failed (retried or not)",
            failed_attempts.clone(),
        );

        let delivery = Histogram::new(DELIVERY_BUCKETS);
        registry.register(
            "decision_delivery_seconds",
            "From a decision's commit waking a long-waiting agent to its answer being ready",
            delivery.clone(),
        );

        let attempts = Family::<AttemptResult, Counter>::default();
        registry.register(
            "callback_attempts",
            "Callback attempts to agents' endpoints by result",
            attempts.clone(),
        );
        let attempt = |result| series(&attempts, AttemptResult { result });
        let callbacks = Family::<Outcome, Counter>::default();
        registry.register(
            "callbacks",
            "Callbacks to agents by final outcome",
            callbacks.clone(),
        );
        let callback = |outcome| series(&callbacks, Outcome { outcome });
        let callback_latency = Histogram::new(CALLBACK_BUCKETS);
        registry.register(
            "callback_delivery_seconds",
            "From a request's decision to its callback's delivery, retries included",
            callback_latency.clone(),
        );

        let http = Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            http_histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "From an HTTP call's arrival to its answer's head (a stream's first byte), by method, route pattern and status",
            http.clone(),
        );

        Self {
            requests_pending: outcome("pending"),
            requests_allowed: outcome("allowed"),
            requests_denied_by_policy: outcome("denied_by_policy"),
            requests_approved: outcome("approved"),
            requests_denied: outcome("denied"),
            requests_cancelled: outcome("cancelled"),
            requests_expired: outcome("expired"),
            grants_redeemed: result("redeemed"),
            grants_refused: result("refused"),
            auth_failures,
            decision_delivery: LatencyHistogram::new(delivery),
            mail: Arc::new(MailCounters {
                sent: mail("sent"),
                logged: mail("logged"),
                failed: mail("failed"),
                dropped: mail("dropped"),
                held: mail("held"),
                failed_attempts,
            }),
            limited: Arc::new(LimitedCounters {
                sign_in: limit("sign_in"),
                enrol: limit("enrol"),
                redeem: limit("redeem"),
                agent_auth: limit("agent_auth"),
            }),
            callbacks: CallbackMetrics {
                attempt_delivered: attempt("delivered"),
                attempt_http_error: attempt("http_error"),
                attempt_timeout: attempt("timeout"),
                attempt_connect_error: attempt("connect_error"),
                attempt_refused: attempt("refused"),
                delivered: callback("delivered"),
                failed: callback("failed"),
                latency: LatencyHistogram::new(callback_latency),
            },
            waiting_agents,
            http,
            registry,
        }
    }
}

/// Adds one to a counter.
pub fn bump(c: &Counter) {
    c.inc();
}

/// A request method as a label: the standard ones by name, anything else as `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("other")
}

impl Metrics {
    /// Records one answered HTTP call; `route` is the router's pattern, None when no route
    /// matched (static files, unknown paths).
    pub fn http_request(
        &self,
        method: &axum::http::Method,
        route: Option<&str>,
        status: u16,
        took: Duration,
    ) {
        let labels = HttpLabels {
            method: method_label(method),
            route: route.unwrap_or("unmatched").to_string(),
            status,
        };
        self.http.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// The text exposition of every metric, with the waiting agents as given.
    pub fn render(&self, waiting_agents: usize) -> String {
        self.waiting_agents
            .set(i64::try_from(waiting_agents).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_counters_gauge_and_histograms() {
        let m = Metrics::default();
        m.decision_delivery.record(Duration::from_micros(300));
        let text = m.render(3);
        assert!(text.contains("countersign_waiting_agents 3"));
        assert!(text.contains("countersign_decision_delivery_seconds_count 1"));
        assert!(text.contains("# TYPE countersign_decision_delivery_seconds histogram"));
        // 300 µs falls in the 0.5 ms bucket, and (cumulatively) in every one above it.
        assert!(text.contains("countersign_decision_delivery_seconds_bucket{le=\"0.00025\"} 0"));
        assert!(text.contains("countersign_decision_delivery_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("countersign_decision_delivery_seconds_bucket{le=\"+Inf\"} 1"));
        bump(&m.mail.sent);
        let text = m.render(0);
        assert!(text.contains("countersign_mails_total{outcome=\"sent\"} 1"));
        assert!(text.contains("countersign_mail_failed_attempts_total 0"));
        bump(&m.limited.agent_auth);
        let text = m.render(0);
        assert!(text.contains("countersign_rate_limited_total{limit=\"agent_auth\"} 1"));
        assert!(text.contains("countersign_rate_limited_total{limit=\"sign_in\"} 0"));
        assert!(text.contains("countersign_requests_total{outcome=\"expired\"} 0"));
        assert!(text.contains("countersign_grant_redemptions_total{result=\"refused\"} 0"));
        bump(&m.callbacks.attempt_timeout);
        m.callbacks.latency.record(Duration::from_millis(40));
        let text = m.render(0);
        assert!(text.contains("countersign_callback_attempts_total{result=\"timeout\"} 1"));
        assert!(text.contains("countersign_callback_attempts_total{result=\"refused\"} 0"));
        assert!(text.contains("countersign_callbacks_total{outcome=\"failed\"} 0"));
        assert!(text.contains("countersign_callback_delivery_seconds_bucket{le=\"0.05\"} 1"));
    }

    #[test]
    fn per_route_latency_is_a_histogram_with_bounded_labels() {
        let m = Metrics::default();
        let get = axum::http::Method::GET;
        let odd = axum::http::Method::from_bytes(b"BREW").unwrap();
        m.http_request(
            &get,
            Some("/api/v1/requests/{id}"),
            200,
            Duration::from_millis(3),
        );
        m.http_request(&odd, None, 405, Duration::from_millis(1));
        let text = m.render(0);
        assert!(text.contains("# TYPE countersign_http_request_duration_seconds histogram"));
        assert!(text.contains(
            "countersign_http_request_duration_seconds_bucket{le=\"0.005\",method=\"GET\",route=\"/api/v1/requests/{id}\",status=\"200\"} 1"
        ), "{text}");
        assert!(text.contains(
            "countersign_http_request_duration_seconds_count{method=\"other\",route=\"unmatched\",status=\"405\"} 1"
        ), "{text}");
    }
}
