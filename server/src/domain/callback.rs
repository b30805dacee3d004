//! Signed callbacks (OpenID CIBA's "ping" mode): the rules, without the network.
//!
//! When a request leaves `pending`, Countersign tells the agent's registered callback URL so the
//! agent need not hold a long-wait open. The callback says only *which* request changed and *to
//! what*; it never carries the grant. The agent fetches that with its own credential
//! (`GET /api/v1/requests/{id}`), so a callback that reaches the wrong party, or is replayed,
//! hands out nothing.
//!
//! This module owns:
//!
//! - which callback URLs are acceptable ([`check_url`]): http(s) only, no user info, https
//!   unless the host is on the operator's allow list (`COUNTERSIGN_CALLBACK_ALLOW`);
//! - which addresses a callback may be sent to ([`classify`], [`check_addresses`]): only
//!   globally routable ones, unless allowed. Without this an owner could point a callback at
//!   the server's own admin ports, a cloud metadata endpoint (169.254.169.254) or anything on
//!   the private network behind it (server-side request forgery);
//! - the retry schedule ([`RetrySchedule`]) and the signed body's claims ([`claims`]).
//!
//! It must never resolve names, open connections or read the clock: the service resolves, hands
//! every address in here, and connects only to an address this module accepted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{json, Value};
use url::Url;

use crate::clock::Millis;

/// The JWS `typ` of a callback body (RFC 8725 §3.11 explicit typing): a grant can never be
/// mistaken for a callback, or the other way round.
pub const CALLBACK_TYP: &str = "countersign-callback+jwt";
/// The media type of a callback's body: the compact JWS itself.
pub const CALLBACK_CONTENT_TYPE: &str = "application/jwt";
/// How long a callback's signature stays valid (`exp - iat`), in seconds. Short: a receiver
/// should refuse old ones, and a retry is signed afresh.
pub const CALLBACK_LIFETIME_SECS: i64 = 60;
/// The longest callback URL we accept.
pub const MAX_URL_LEN: usize = 2048;

/// What kind of address an IP address is, for deciding whether a callback may go there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Globally routable: the only kind a callback may reach without the allow list.
    Global,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), IPv6 ULA (`fc00::/7`) and the deprecated
    /// site-local `fec0::/10`.
    Private,
    /// `169.254/16` (cloud metadata lives here), `fe80::/10`.
    LinkLocal,
    /// Carrier-grade NAT, RFC 6598 `100.64/10`.
    SharedCgnat,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// RFC 5737 / RFC 3849 / RFC 9637 documentation ranges.
    Documentation,
    /// RFC 2544 benchmarking, `198.18/15`.
    Benchmarking,
    /// Anything else set aside: `192.0.0.0/24`, `240/4`, IPv4-compatible IPv6, discard-only,
    /// IETF protocol assignments, and all IPv6 outside `2000::/3`.
    Reserved,
}

impl AddressClass {
    /// Whether a callback may be sent there without the allow list.
    pub fn is_global(self) -> bool {
        self == Self::Global
    }

    /// The words used in refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::SharedCgnat => "carrier-grade NAT",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::Reserved => "reserved",
        }
    }
}

/// Classifies an address. IPv4 addresses inside IPv6 (mapped `::ffff:a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`) are judged by the IPv4 address they lead to:
/// otherwise `::ffff:127.0.0.1` would reach loopback as a "global" IPv6 address.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::*;
    let table: [([u8; 4], u32, AddressClass); 16] = [
        ([0, 0, 0, 0], 8, Unspecified),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedCgnat),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Benchmarking),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map_or(Global, |(_, _, class)| *class)
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::*;
    let s = ip.segments();
    let bits = u128::from(ip);
    let in_v6 = |net: u128, prefix: u32| {
        let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
        bits & mask == net & mask
    };
    let low_v4 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if ip.is_unspecified() {
        return Unspecified;
    }
    if ip.is_loopback() {
        return Loopback;
    }
    // ::ffff:a.b.c.d (IPv4-mapped) and 64:ff9b::a.b.c.d (NAT64): the IPv4 address decides.
    if in_v6(0xffff_0000_0000, 96) || in_v6(0x0064_ff9b_u128 << 96, 96) {
        return classify_v4(low_v4);
    }
    // 2002:AABB:CCDD::/48 (6to4) relays to the IPv4 address AABBCCDD.
    if s[0] == 0x2002 {
        return classify_v4(Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2])));
    }
    if in_v6(0, 96) {
        // IPv4-compatible (deprecated, RFC 4291 §2.5.5.1).
        return Reserved;
    }
    if in_v6(0x2001_0db8_u128 << 96, 32) || in_v6(0x3fff_u128 << 112, 20) {
        return Documentation;
    }
    if in_v6(0xfc00_u128 << 112, 7) || in_v6(0xfec0_u128 << 112, 10) {
        return Private;
    }
    if in_v6(0xfe80_u128 << 112, 10) {
        return LinkLocal;
    }
    if in_v6(0xff00_u128 << 112, 8) {
        return Multicast;
    }
    // Local-use NAT64 (64:ff9b:1::/48), discard-only (100::/64), IETF protocol assignments
    // (2001::/23, Teredo among them), and everything outside global unicast (2000::/3).
    if in_v6(0x0064_ff9b_0001_u128 << 80, 48)
        || in_v6(0x0100_u128 << 112, 64)
        || in_v6(0x2001_u128 << 112, 23)
        || !in_v6(0x2000_u128 << 112, 3)
    {
        return Reserved;
    }
    Global
}

/// `COUNTERSIGN_CALLBACK_ALLOW`: hosts and networks an admin lets callbacks reach although they
/// are not global (an agent on the same private network), and may reach over plain http.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
}

impl AllowList {
    /// Parses a comma-separated list of host names, IP addresses and CIDR blocks, e.g.
    /// `agents.internal,10.1.0.0/16,127.0.0.1`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bare = entry.trim_start_matches('[').trim_end_matches(']');
            if let Ok(net) = bare.parse::<IpNet>() {
                out.nets.push(net.trunc());
            } else if let Ok(ip) = bare.parse::<IpAddr>() {
                out.nets.push(IpNet::from(ip));
            } else if is_host_name(entry) {
                out.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "{entry:?} is not a host name, IP address or CIDR block; write e.g. \
                     agents.internal,10.1.0.0/16,127.0.0.1"
                ));
            }
        }
        Ok(out)
    }

    /// Whether nothing is allowed beyond the defaults.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.nets.is_empty()
    }

    /// Whether this address is in one of the allowed networks.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether this URL host is allowed: a listed name, or an address literal in a listed
    /// network.
    pub fn allows_host(&self, host: &url::Host<&str>) -> bool {
        match host {
            url::Host::Domain(d) => self.hosts.iter().any(|h| h.eq_ignore_ascii_case(d)),
            url::Host::Ipv4(ip) => self.allows_ip(IpAddr::V4(*ip)),
            url::Host::Ipv6(ip) => self.allows_ip(IpAddr::V6(*ip)),
        }
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`, so an allowed IPv4 network covers its mapped form too.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Why a callback URL or address was refused. The messages name the rule, never the URL's
/// path or query (which may carry the agent's own secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackUrlError {
    /// Not a URL at all, or too long.
    #[error("not a usable URL: {0}")]
    Malformed(String),
    /// Not http or https.
    #[error("a callback URL must be https (or http for a host on COUNTERSIGN_CALLBACK_ALLOW)")]
    Scheme,
    /// http to a host the operator has not allowed.
    #[error("a callback URL must be https unless its host is on COUNTERSIGN_CALLBACK_ALLOW")]
    HttpsRequired,
    /// `user:password@` in the URL.
    #[error("a callback URL must not carry a user name or password")]
    UserInfo,
    /// An address that is not globally routable.
    #[error(
        "the callback host resolves to a {} address ({ip}), which callbacks may not reach \
         unless an admin allows it with COUNTERSIGN_CALLBACK_ALLOW",
        class.as_str()
    )]
    NotGlobal {
        /// The address.
        ip: IpAddr,
        /// What it is.
        class: AddressClass,
    },
    /// The name resolved to nothing.
    #[error("the callback host does not resolve to any address")]
    NoAddress,
}

/// Checks a callback URL's form: http(s), a host, no user info, no fragment, https unless the
/// host is allowed, and an address literal must be global (or allowed). A host *name* is
/// checked later, against every address it resolves to ([`check_addresses`]), at registration
/// and again at every delivery.
pub fn check_url(raw: &str, allow: &AllowList) -> Result<Url, CallbackUrlError> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(CallbackUrlError::Malformed(format!(
            "longer than {MAX_URL_LEN} characters"
        )));
    }
    let url = Url::parse(raw).map_err(|e| CallbackUrlError::Malformed(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CallbackUrlError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CallbackUrlError::UserInfo);
    }
    if url.fragment().is_some() {
        return Err(CallbackUrlError::Malformed(
            "a fragment is never sent; leave it out".into(),
        ));
    }
    let host = url
        .host()
        .ok_or_else(|| CallbackUrlError::Malformed("no host".into()))?;
    let allowed = allow.allows_host(&host);
    if url.scheme() == "http" && !allowed {
        return Err(CallbackUrlError::HttpsRequired);
    }
    let literal = match host {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    };
    if let Some(ip) = literal {
        check_addresses(&host, &[ip], allow)?;
    }
    Ok(url)
}

/// Checks every address a callback host resolved to and returns them, the only ones to connect
/// to. All must pass: a name with one private address among public ones could otherwise reach
/// the private one whenever the client happened to try it.
pub fn check_addresses(
    host: &url::Host<&str>,
    addresses: &[IpAddr],
    allow: &AllowList,
) -> Result<Vec<IpAddr>, CallbackUrlError> {
    let host_allowed = allow.allows_host(host);
    for ip in addresses {
        let class = classify(*ip);
        if !class.is_global() && !host_allowed && !allow.allows_ip(*ip) {
            return Err(CallbackUrlError::NotGlobal { ip: *ip, class });
        }
    }
    if addresses.is_empty() {
        return Err(CallbackUrlError::NoAddress);
    }
    Ok(addresses.to_vec())
}

/// The origin of a callback URL (`https://host:port`): what logs and the audit chain show. The
/// path and query may hold a secret the agent put there to recognise us, so they never do.
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// When to try a callback again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// The wait after the first failed attempt; each later wait doubles.
    pub first: Duration,
    /// No wait is longer than this.
    pub max_delay: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// No attempt starts later than this after the request was decided.
    pub give_up_after: Duration,
}

/// The first retry waits this long by default (`COUNTERSIGN_CALLBACK_RETRY_FIRST_SECONDS`).
pub const DEFAULT_RETRY_FIRST: Duration = Duration::from_secs(1);

impl Default for RetrySchedule {
    /// 1 s, 2 s, 4 s … capped at 2 min, 10 attempts, nothing after 10 minutes: about six
    /// minutes of trying, which outlasts a deploy or a restart of the agent's endpoint, while a
    /// callback arriving later than that would be news to no one (the agent polls too).
    fn default() -> Self {
        Self::starting_at(DEFAULT_RETRY_FIRST)
    }
}

impl RetrySchedule {
    /// The default schedule with another first wait (tests use milliseconds).
    pub fn starting_at(first: Duration) -> Self {
        Self {
            first,
            max_delay: Duration::from_secs(120),
            max_attempts: 10,
            give_up_after: Duration::from_secs(600),
        }
    }

    /// The wait after failed attempt number `attempt` (1-based), before any limit.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max_delay)
    }

    /// When to make the next attempt, after `attempts` have failed, the last ending at `now`,
    /// for a callback owed since `created_at`; `None` when it is time to give up.
    pub fn next_attempt(&self, attempts: u32, created_at: Millis, now: Millis) -> Option<Millis> {
        if attempts >= self.max_attempts {
            return None;
        }
        let delay = i64::try_from(self.delay_after(attempts).as_millis()).unwrap_or(i64::MAX);
        let at = now.saturating_add(delay);
        let limit = i64::try_from(self.give_up_after.as_millis()).unwrap_or(i64::MAX);
        (at <= created_at.saturating_add(limit)).then_some(at)
    }
}

/// The claims of one callback: who sends (`iss`, the public URL), to whom (`aud`, the callback
/// URL exactly as registered), when (`iat`, `exp`), a fresh `jti` per attempt so a receiver can
/// refuse replays, and the news itself: `request_id` and `status`.
pub fn claims(
    issuer: &str,
    url: &str,
    request_id: &str,
    status: &str,
    jti: &str,
    now_secs: i64,
) -> Value {
    json!({
        "iss": issuer,
        "aud": url,
        "iat": now_secs,
        "exp": now_secs + CALLBACK_LIFETIME_SECS,
        "jti": jti,
        "request_id": request_id,
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressClass::*;

    fn c(s: &str) -> AddressClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn ipv4_ranges_are_classified() {
        for (ip, class) in [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("100.64.0.1", SharedCgnat),
            ("100.127.255.254", SharedCgnat),
            ("100.128.0.1", Global),
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("169.254.169.254", LinkLocal),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.1", Global),
            ("192.0.0.8", Reserved),
            ("192.0.2.1", Documentation),
            ("192.88.99.1", Reserved),
            ("192.168.1.1", Private),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.1", Benchmarking),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.255", Broadcast),
            ("8.8.8.8", Global),
            ("1.1.1.1", Global),
            ("93.184.215.14", Global),
        ] {
            assert_eq!(c(ip), class, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges_are_classified() {
        for (ip, class) in [
            ("::", Unspecified),
            ("::1", Loopback),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fec0::1", Private),
            ("fe80::1", LinkLocal),
            ("ff02::1", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("100::1", Reserved),
            ("2001::1", Reserved),
            ("64:ff9b:1::1", Reserved),
            ("::7f00:1", Reserved),
            ("4000::1", Reserved),
            ("2606:4700:4700::1111", Global),
            ("2a00:1450:4001:80b::200e", Global),
        ] {
            assert_eq!(c(ip), class, "{ip}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_by_the_ipv4_address() {
        for (ip, class) in [
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:8.8.8.8", Global),
            ("64:ff9b::10.0.0.1", Private),
            ("64:ff9b::8.8.4.4", Global),
            ("2002:7f00:1::", Loopback),
            ("2002:c0a8:101::1", Private),
            ("2002:0808:0808::1", Global),
        ] {
            assert_eq!(c(ip), class, "{ip}");
        }
    }

    #[test]
    fn urls_need_https_no_user_info_and_a_global_literal() {
        let none = AllowList::default();
        assert!(check_url("https://agent.example.com/cb?k=1", &none).is_ok());
        assert_eq!(
            check_url("http://agent.example.com/cb", &none),
            Err(CallbackUrlError::HttpsRequired)
        );
        assert_eq!(
            check_url("ftp://agent.example.com/", &none),
            Err(CallbackUrlError::Scheme)
        );
        assert_eq!(
            check_url("https://u:p@agent.example.com/", &none),
            Err(CallbackUrlError::UserInfo)
        );
        assert!(matches!(
            check_url("https://127.0.0.1/cb", &none),
            Err(CallbackUrlError::NotGlobal {
                class: Loopback,
                ..
            })
        ));
        assert!(matches!(
            check_url("https://[::ffff:169.254.169.254]/", &none),
            Err(CallbackUrlError::NotGlobal {
                class: LinkLocal,
                ..
            })
        ));
        // An integer host is an IPv4 address to the URL standard (and to every HTTP client).
        assert!(matches!(
            check_url("https://2130706433/", &none),
            Err(CallbackUrlError::NotGlobal {
                class: Loopback,
                ..
            })
        ));
        assert!(check_url("https://x/#frag", &none).is_err());
        assert!(check_url("not a url", &none).is_err());
    }

    #[test]
    fn the_allow_list_admits_hosts_and_networks_over_http() {
        let allow = AllowList::parse(" 127.0.0.1 , agents.internal,10.1.0.0/16,[::1]").unwrap();
        assert!(check_url("http://127.0.0.1:9000/cb", &allow).is_ok());
        assert!(check_url("http://[::1]:9000/cb", &allow).is_ok());
        assert!(check_url("http://10.1.2.3/cb", &allow).is_ok());
        assert!(check_url("http://10.2.0.1/cb", &allow).is_err());
        assert!(check_url("http://agents.internal/cb", &allow).is_ok());
        let host = url::Host::Domain("agents.internal");
        assert!(check_addresses(&host, &["192.168.0.4".parse().unwrap()], &allow).is_ok());
        let other = url::Host::Domain("evil.example");
        // A name that is not listed may still resolve into a listed network…
        assert!(check_addresses(&other, &["10.1.9.9".parse().unwrap()], &allow).is_ok());
        // …but not anywhere else private, and one bad address spoils the lot.
        let mixed: Vec<IpAddr> = vec!["8.8.8.8".parse().unwrap(), "192.168.0.1".parse().unwrap()];
        assert!(check_addresses(&other, &mixed, &allow).is_err());
        assert_eq!(
            check_addresses(&other, &[], &allow),
            Err(CallbackUrlError::NoAddress)
        );
        assert!(AllowList::parse("bad host!").is_err());
        assert!(AllowList::parse("").unwrap().is_empty());
    }

    #[test]
    fn retries_back_off_exponentially_within_bounds() {
        let s = RetrySchedule::default();
        let waits: Vec<u64> = (1..=9).map(|n| s.delay_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 120, 120]);
        assert_eq!(s.delay_after(40), Duration::from_secs(120));
        // After attempt 1 fails at t=0, the next is at 1 s.
        assert_eq!(s.next_attempt(1, 0, 0), Some(1_000));
        assert_eq!(s.next_attempt(3, 0, 10_000), Some(14_000));
        // Ten attempts at most…
        assert_eq!(s.next_attempt(10, 0, 1_000), None);
        // …and none starting more than ten minutes after the decision.
        assert_eq!(s.next_attempt(9, 0, 599_000), None);
        assert_eq!(s.next_attempt(2, 0, 597_000), Some(599_000));
        // The whole default schedule fits in the ten minutes.
        let (mut now, mut n) = (0, 1);
        while let Some(at) = s.next_attempt(n, 0, now) {
            now = at;
            n += 1;
        }
        assert_eq!(n, 10);
        let fast = RetrySchedule::starting_at(Duration::from_millis(50));
        assert_eq!(fast.delay_after(3), Duration::from_millis(200));
    }

    #[test]
    fn claims_carry_no_grant_and_a_short_lifetime() {
        let v = claims("https://cs", "https://a/cb", "r1", "approved", "j1", 100);
        assert_eq!(v["exp"], 160);
        assert_eq!(v["aud"], "https://a/cb");
        assert_eq!(v["status"], "approved");
        assert!(v.get("grant").is_none());
    }
}
