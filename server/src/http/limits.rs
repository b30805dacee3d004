//! Per-client-address limits on the traffic nobody has authenticated yet.
//!
//! Starting or finishing a sign-in or an enrolment writes (a ceremony row is inserted, or taken
//! with `DELETE … RETURNING`), and on SQLite every write goes through the one writer connection
//! that agents' request intake and every decision share. So that an anonymous flood cannot
//! queue enough of those writes to starve them, the edge counts per client address:
//!
//! - every call to sign-in and to enrolment (start and finish share one budget each): past
//!   the limit a call is refused before its handler runs;
//! - refused redemptions and failed agent authentications, and only those: a gateway that
//!   redeems valid grants, or an agent host whose credentials work, is never slowed however
//!   busy (which is why redemption is not limited per call: one gateway may legitimately
//!   redeem for many downstream systems). An address over its failure limit is refused before
//!   any work is done for it: no signature checked, no `jti` written, no writer transaction
//!   begun. A valid credential from that address waits too, for at most one refill interval:
//!   we cannot know it is valid without doing the work the limit exists to avoid.
//!
//! A refusal is `429 rate_limited` (problem+json) with `Retry-After`, and is counted in
//! `countersign_rate_limited_total{limit=…}`.
//!
//! **Whose address.** The TCP peer's. A forwarding header (`X-Forwarded-For`, or RFC 7239
//! `Forwarded` when so configured) is read only when the peer is one of
//! `COUNTERSIGN_TRUSTED_PROXIES`, and then the client is the right-most address in it that is
//! not itself a trusted proxy: each proxy appends the address it received the request from, so
//! reading from the right, every hop up to the first untrusted one was written by a proxy we
//! trust, and anything further left is the client's own claim. Only the configured header is
//! read: a proxy that writes one passes the other through untouched. IPv6 clients are counted
//! by their /64, which one host is routinely given; otherwise a single host would have 2^64
//! fresh budgets.
//!
//! **How.** `governor`'s GCRA, keyed by client: a burst of N, refilled evenly over the
//! period (`COUNTERSIGN_LIMIT_*` = `N/min`). We use `governor` directly rather than
//! `tower_governor`: its header-reading key extractor believes any caller's header, and a
//! layer that counts every request cannot count only failures, which is what redemption and
//! agent authentication need. `governor` cannot look at a budget without spending from it, so
//! a failure limit remembers, beside the GCRA state, until when an exhausted address is
//! refused. Counts are per process (each replica counts its own).
//!
//! **Memory.** Every 10 s, addresses whose budget is whole again (indistinguishable from one
//! never seen) and expired refusals are dropped, so what is kept is bounded by the addresses
//! seen in the last two refill periods (a minute each by default) and 10 s: tens of bytes
//! each, and only as many as calls arrived in that time.

use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderName};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::problem::ApiError;
use crate::config::{EdgeLimits, ForwardedHeader, Rate};
use crate::service::Error;
use crate::telemetry::{bump, LimitedCounters};

/// How often forgotten addresses are purged.
const PURGE_EVERY: Duration = Duration::from_secs(10);

/// Limits that count every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    /// `POST /api/ui/sign-in/start` and `/finish`.
    SignIn,
    /// `POST /api/ui/enrol/start` and `/finish`.
    Enrol,
}

/// Limits that count only failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failures {
    /// Refused `POST /api/v1/grants/redeem`.
    Redeem,
    /// Agent credentials refused by the [`AgentAuth`](super::agent_api::AgentAuth) extractor.
    AgentAuth,
}

/// What a client is counted by: its IPv4 address, or the /64 of its IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key of a client at `ip` (an IPv4-mapped IPv6 address counts as the IPv4 one).
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => Self(IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) & (u128::MAX << 64),
            ))),
            v4 => Self(v4),
        }
    }
}

/// Every limit of one router, shared by all its connections.
#[derive(Debug)]
pub struct Limits {
    sign_in: Option<CallBudget>,
    enrol: Option<CallBudget>,
    redeem: Option<FailureBudget>,
    agent_auth: Option<FailureBudget>,
    proxies: TrustedProxies,
    limited: Arc<LimitedCounters>,
}

impl Limits {
    /// The limits `config` asks for, purged in the background for as long as they are in use
    /// (the purging task holds only a weak reference, and ends with them).
    pub fn start(config: &EdgeLimits, limited: Arc<LimitedCounters>) -> Arc<Self> {
        let quota = |rate: Option<Rate>| rate.and_then(quota_of);
        let limits = Arc::new(Self {
            sign_in: quota(config.sign_in).map(|q| CallBudget::new(q, DefaultClock::default())),
            enrol: quota(config.enrol).map(|q| CallBudget::new(q, DefaultClock::default())),
            redeem: quota(config.redeem_failures)
                .map(|q| FailureBudget::new(q, DefaultClock::default())),
            agent_auth: quota(config.agent_auth_failures)
                .map(|q| FailureBudget::new(q, DefaultClock::default())),
            proxies: TrustedProxies {
                nets: config.trusted_proxies.clone(),
                header: match config.forwarded_header {
                    ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
                    ForwardedHeader::Forwarded => HeaderName::from_static("forwarded"),
                },
            },
            limited,
        });
        // Outside a runtime (a router built only to be inspected) nothing is served, so
        // nothing accumulates.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(purge_while_used(Arc::downgrade(&limits)));
        }
        limits
    }

    /// The client a request is counted as (see the module docs for whose address that is).
    pub fn client(&self, extensions: &Extensions, headers: &HeaderMap) -> Result<ClientKey, Error> {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .ok_or_else(|| {
                Error::internal(
                    "no peer address: serve the router with http::serve_router (it adds ConnectInfo)",
                )
            })?
            .0
            .ip();
        Ok(ClientKey::of(self.proxies.client(peer, headers)))
    }

    /// Spends one call of `client`'s budget, or refuses.
    pub fn take_call(&self, which: Calls, client: ClientKey) -> Result<(), Error> {
        let (budget, counter) = match which {
            Calls::SignIn => (&self.sign_in, &self.limited.sign_in),
            Calls::Enrol => (&self.enrol, &self.limited.enrol),
        };
        match budget {
            Some(b) => b.take(&client).map_err(|wait| refusal(counter, wait)),
            None => Ok(()),
        }
    }

    /// Lets `client` try something whose failures count, unless it is over the limit.
    pub fn gate(
        self: &Arc<Self>,
        which: Failures,
        client: ClientKey,
    ) -> Result<FailureGate, Error> {
        let (budget, counter) = self.failures(which);
        if let Some(b) = budget {
            b.admit(&client).map_err(|wait| refusal(counter, wait))?;
        }
        Ok(FailureGate {
            limits: self.clone(),
            which,
            client,
        })
    }

    fn failures(&self, which: Failures) -> (&Option<FailureBudget>, &Counter) {
        match which {
            Failures::Redeem => (&self.redeem, &self.limited.redeem),
            Failures::AgentAuth => (&self.agent_auth, &self.limited.agent_auth),
        }
    }

    fn purge(&self) {
        for b in [&self.sign_in, &self.enrol].into_iter().flatten() {
            b.purge();
        }
        for b in [&self.redeem, &self.agent_auth].into_iter().flatten() {
            b.purge();
        }
    }
}

/// One client's attempt at something whose failures count.
#[derive(Debug)]
pub struct FailureGate {
    limits: Arc<Limits>,
    which: Failures,
    client: ClientKey,
}

impl FailureGate {
    /// Finds the router's limits and the client in a request, and refuses (429) a client over
    /// its `which` limit.
    pub fn enter(
        extensions: &Extensions,
        headers: &HeaderMap,
        which: Failures,
    ) -> Result<Self, Error> {
        let limits = extensions
            .get::<Arc<Limits>>()
            .ok_or_else(|| Error::internal("the limits are missing from the request"))?;
        let client = limits.client(extensions, headers)?;
        limits.gate(which, client)
    }

    /// The attempt failed: count it against the client.
    pub fn failed(&self) {
        if let Some(b) = self.limits.failures(self.which).0 {
            b.failed(&self.client);
        }
    }
}

/// Middleware for routes where every call counts (sign-in, enrolment).
pub async fn count_calls(
    State((limits, which)): State<(Arc<Limits>, Calls)>,
    req: Request,
    next: Next,
) -> Response {
    let checked = limits
        .client(req.extensions(), req.headers())
        .and_then(|client| limits.take_call(which, client));
    match checked {
        Ok(()) => next.run(req).await,
        Err(e) => ApiError(e).into_response(),
    }
}

/// Middleware for routes where only refusals count (redemption): every client error the
/// handler answers (a bad, spent, expired or revoked grant, a malformed body) is one. Server
/// errors are ours, not the client's, and are not counted.
pub async fn count_refusals(
    State((limits, which)): State<(Arc<Limits>, Failures)>,
    req: Request,
    next: Next,
) -> Response {
    let gate = match limits
        .client(req.extensions(), req.headers())
        .and_then(|client| limits.gate(which, client))
    {
        Ok(gate) => gate,
        Err(e) => return ApiError(e).into_response(),
    };
    let response = next.run(req).await;
    if response.status().is_client_error() {
        gate.failed();
    }
    response
}

/// A 429, counted.
fn refusal(counter: &Counter, wait: Duration) -> Error {
    bump(counter);
    // Whole seconds, rounded up: a client that waits as told is let through.
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Error::RateLimited {
        retry_after: secs.max(1),
    }
}

/// `N` per period: a burst of N, one more every period / N.
fn quota_of(rate: Rate) -> Option<Quota> {
    // The configuration allows at most a million per second, so the interval is never zero
    // (which is the only case `with_period` refuses).
    Quota::with_period(rate.per / rate.count.get()).map(|q| q.allow_burst(rate.count))
}

async fn purge_while_used(limits: Weak<Limits>) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match limits.upgrade() {
            Some(limits) => limits.purge(),
            None => return,
        }
    }
}

type Keyed<C, MW> = RateLimiter<ClientKey, DashMapStateStore<ClientKey>, C, MW>;

/// A budget every call spends from.
struct CallBudget<C: Clock = DefaultClock> {
    limiter: Keyed<C, governor::middleware::NoOpMiddleware<C::Instant>>,
}

impl<C: Clock> CallBudget<C> {
    fn new(quota: Quota, clock: C) -> Self {
        Self {
            limiter: RateLimiter::dashmap_with_clock(quota, clock),
        }
    }

    /// Spends one call, or says how long until one is available.
    fn take(&self, client: &ClientKey) -> Result<(), Duration> {
        self.limiter
            .check_key(client)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    fn purge(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

impl<C: Clock> std::fmt::Debug for CallBudget<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallBudget")
            .field("clients", &self.limiter.len())
            .finish()
    }
}

/// A budget only failures spend from; an address that has spent it is refused until the
/// budget has room again.
struct FailureBudget<C: Clock = DefaultClock> {
    failures: Keyed<C, StateInformationMiddleware>,
    /// Until when each exhausted client is refused. `governor` has no way to ask whether a
    /// key could pass without spending from it, so the moment a failure empties a budget is
    /// written down here.
    refused_until: Mutex<HashMap<ClientKey, C::Instant>>,
    replenish: Nanos,
}

impl<C: Clock> FailureBudget<C> {
    fn new(quota: Quota, clock: C) -> Self {
        Self {
            failures: RateLimiter::dashmap_with_clock(quota, clock)
                .with_middleware::<StateInformationMiddleware>(),
            refused_until: Mutex::new(HashMap::new()),
            replenish: Nanos::from(quota.replenish_interval()),
        }
    }

    fn refused(&self) -> MutexGuard<'_, HashMap<ClientKey, C::Instant>> {
        // The map holds plain values that every writer leaves consistent; a panic elsewhere
        // while it was held does not make it wrong.
        self.refused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets the client try, or says how long until it may.
    fn admit(&self, client: &ClientKey) -> Result<(), Duration> {
        let now = self.failures.clock().now();
        match self.refused().get(client) {
            Some(until) if *until > now => Err(until.duration_since(now).into()),
            _ => Ok(()),
        }
    }

    /// Counts a failure; the one that empties the budget starts a refusal.
    fn failed(&self, client: &ClientKey) {
        let now = self.failures.clock().now();
        let until = match self.failures.check_key(client) {
            Ok(state) if state.remaining_burst_capacity() > 0 => return,
            // That was the last failure the budget had room for: refuse until it has room for
            // one more (which is at most one refill interval away).
            Ok(_) => now + self.replenish,
            // Over already (attempts that were let in together, before any of them failed).
            Err(not_until) => not_until.earliest_possible(),
        };
        let mut refused = self.refused();
        let entry = refused.entry(*client).or_insert(until);
        *entry = (*entry).max(until);
    }

    fn purge(&self) {
        self.failures.retain_recent();
        self.failures.shrink_to_fit();
        let now = self.failures.clock().now();
        let mut refused = self.refused();
        refused.retain(|_, until| *until > now);
        refused.shrink_to_fit();
    }
}

impl<C: Clock> std::fmt::Debug for FailureBudget<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureBudget")
            .field("clients", &self.failures.len())
            .field("refused", &self.refused().len())
            .finish()
    }
}

/// The proxies whose forwarding header is believed, and which header that is.
#[derive(Debug)]
struct TrustedProxies {
    nets: Vec<ipnet::IpNet>,
    header: HeaderName,
}

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the
    /// right-most hop of the header that is not a trusted proxy. A hop that cannot be read
    /// ends the walk at the last address known (a proxy we trust).
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        // Several header lines are one list, in order.
        for line in headers.get_all(&self.header).iter().rev() {
            let Ok(text) = line.to_str() else {
                return client;
            };
            for element in text.rsplit(',') {
                let hop = if self.header == "forwarded" {
                    forwarded_for(element)
                } else {
                    node(element)
                };
                let Some(hop) = hop else {
                    return client;
                };
                client = hop.to_canonical();
                if !self.trusts(client) {
                    return client;
                }
            }
        }
        client
    }
}

/// The `for=` of one RFC 7239 `Forwarded` element (`for=192.0.2.60;proto=http;by=…`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            node(value)
        } else {
            None
        }
    })
}

/// An address as forwarding headers write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]:4711`, optionally quoted. Obfuscated names (`unknown`, `_hidden`) are not
/// addresses.
fn node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Some(bracketed) = text.strip_prefix('[') {
        let (v6, _port) = bracketed.split_once(']')?;
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let (v4, _port) = text.rsplit_once(':')?;
    v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::num::NonZeroU32;

    fn quota(n: u32, per_secs: u64) -> Quota {
        quota_of(Rate {
            count: NonZeroU32::new(n).unwrap(),
            per: Duration::from_secs(per_secs),
        })
        .unwrap()
    }

    fn key(ip: &str) -> ClientKey {
        ClientKey::of(ip.parse().unwrap())
    }

    #[test]
    fn a_call_budget_refuses_past_its_burst_and_refills_evenly() {
        let clock = FakeRelativeClock::default();
        let budget = CallBudget::new(quota(3, 60), clock.clone());
        let a = key("192.0.2.1");
        for _ in 0..3 {
            assert!(budget.take(&a).is_ok());
        }
        assert_eq!(budget.take(&a), Err(Duration::from_secs(20)));
        assert!(budget.take(&key("192.0.2.2")).is_ok(), "another client");
        clock.advance(Duration::from_secs(20));
        assert!(budget.take(&a).is_ok(), "one call back after 60 s / 3");
        assert!(budget.take(&a).is_err());
    }

    #[test]
    fn a_failure_budget_counts_only_failures_and_refuses_before_the_work() {
        let clock = FakeRelativeClock::default();
        let budget = FailureBudget::new(quota(3, 60), clock.clone());
        let a = key("192.0.2.1");
        // Admission spends nothing: successes never count.
        for _ in 0..100 {
            assert!(budget.admit(&a).is_ok());
        }
        budget.failed(&a);
        budget.failed(&a);
        assert!(budget.admit(&a).is_ok(), "two failures of three");
        budget.failed(&a);
        assert_eq!(budget.admit(&a), Err(Duration::from_secs(20)));
        assert!(budget.admit(&key("192.0.2.2")).is_ok(), "another client");
        clock.advance(Duration::from_secs(20));
        assert!(budget.admit(&a).is_ok(), "room for one more after a refill");
        budget.failed(&a);
        assert_eq!(budget.admit(&a), Err(Duration::from_secs(20)));
        // Attempts let in together, before any of them failed, may all fail: the refusal
        // lasts until the budget has room again.
        clock.advance(Duration::from_secs(20));
        budget.failed(&a);
        budget.failed(&a);
        assert_eq!(budget.admit(&a), Err(Duration::from_secs(20)));
    }

    #[test]
    fn purging_forgets_clients_whose_budget_is_full_again() {
        let clock = FakeRelativeClock::default();
        let calls = CallBudget::new(quota(2, 60), clock.clone());
        let failures = FailureBudget::new(quota(1, 60), clock.clone());
        for i in 0..1000u32 {
            let k = ClientKey::of(IpAddr::V4(Ipv4Addr::from(0xC000_0200 + i)));
            let _ = calls.take(&k);
            failures.failed(&k);
        }
        assert_eq!(calls.limiter.len(), 1000);
        assert_eq!(failures.refused().len(), 1000);
        calls.purge();
        failures.purge();
        assert_eq!(calls.limiter.len(), 1000, "still within their refill");
        // A key goes once its budget is whole again and it would refill no further.
        clock.advance(Duration::from_secs(121));
        calls.purge();
        failures.purge();
        assert_eq!(calls.limiter.len(), 0);
        assert_eq!(failures.failures.len(), 0);
        assert_eq!(failures.refused().len(), 0);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
    }

    fn proxies(nets: &[&str], header: &'static str) -> TrustedProxies {
        TrustedProxies {
            nets: nets.iter().map(|n| n.parse().unwrap()).collect(),
            header: HeaderName::from_static(header),
        }
    }

    fn client_of(p: &TrustedProxies, peer: &str, lines: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for l in lines {
            headers.append(p.header.clone(), l.parse().unwrap());
        }
        p.client(peer.parse().unwrap(), &headers).to_string()
    }

    #[test]
    fn x_forwarded_for_is_read_right_to_left_and_only_from_trusted_proxies() {
        let p = proxies(&["10.0.0.0/8", "192.0.2.1/32"], "x-forwarded-for");
        // Not a trusted peer: its header is its own claim.
        assert_eq!(
            client_of(&p, "203.0.113.5", &["198.51.100.1"]),
            "203.0.113.5"
        );
        // A trusted peer without a header is the client.
        assert_eq!(client_of(&p, "10.0.0.2", &[]), "10.0.0.2");
        assert_eq!(client_of(&p, "10.0.0.2", &["198.51.100.1"]), "198.51.100.1");
        // The right-most untrusted hop wins, whatever the client put to its left.
        assert_eq!(
            client_of(
                &p,
                "10.0.0.2",
                &["1.2.3.4, 198.51.100.1, 10.9.9.9, 192.0.2.1"]
            ),
            "198.51.100.1"
        );
        // Several lines are one list.
        assert_eq!(
            client_of(&p, "10.0.0.2", &["1.2.3.4", "198.51.100.1, 10.9.9.9"]),
            "198.51.100.1"
        );
        // Garbage where a trusted proxy should have written an address: the last known hop.
        assert_eq!(
            client_of(&p, "10.0.0.2", &["198.51.100.1, nonsense"]),
            "10.0.0.2"
        );
        assert_eq!(
            client_of(&p, "10.0.0.2", &["nonsense, 198.51.100.1"]),
            "198.51.100.1"
        );
        assert_eq!(
            client_of(&p, "10.0.0.2", &["nonsense, 10.0.0.3"]),
            "10.0.0.3"
        );
        // Only trusted hops: the left-most of them.
        assert_eq!(
            client_of(&p, "10.0.0.2", &["10.0.0.7, 10.0.0.3"]),
            "10.0.0.7"
        );
        // Ports, brackets and mapped addresses.
        assert_eq!(
            client_of(&p, "10.0.0.2", &["[2001:db8::5]:443, 198.51.100.2:5555"]),
            "198.51.100.2"
        );
        assert_eq!(
            client_of(&p, "::ffff:10.0.0.2", &["2001:db8::5"]),
            "2001:db8::5"
        );
        // Forwarded is not read when X-Forwarded-For is the configured header.
        let mut headers = HeaderMap::new();
        headers.insert("forwarded", "for=198.51.100.9".parse().unwrap());
        assert_eq!(
            p.client("10.0.0.2".parse().unwrap(), &headers).to_string(),
            "10.0.0.2"
        );
    }

    #[test]
    fn forwarded_is_read_by_its_for_parameters() {
        let p = proxies(&["10.0.0.0/8"], "forwarded");
        assert_eq!(
            client_of(
                &p,
                "10.0.0.2",
                &["for=1.2.3.4, For=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.1.1.1;by=10.0.0.2"]
            ),
            "2001:db8:cafe::17"
        );
        assert_eq!(
            client_of(&p, "10.0.0.2", &["proto=http;for=192.0.2.60:80"]),
            "192.0.2.60"
        );
        assert_eq!(client_of(&p, "10.0.0.2", &["for=unknown"]), "10.0.0.2");
        assert_eq!(
            client_of(&p, "10.0.0.2", &["for=_hidden, for=10.0.0.9"]),
            "10.0.0.9"
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.9".parse().unwrap());
        assert_eq!(
            p.client("10.0.0.2".parse().unwrap(), &headers).to_string(),
            "10.0.0.2"
        );
    }
}
