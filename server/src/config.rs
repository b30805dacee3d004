//! Configuration, from the environment. Every setting has a default that runs Countersign on
//! one machine with SQLite and no further setup.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::domain::callback::{AllowList, RetrySchedule};
use crate::domain::guards::Guards;
use crate::store::{DatabaseUrl, Durability};

/// What the server and the command line need to know about their surroundings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `COUNTERSIGN_LISTEN`, default `127.0.0.1:3000`.
    pub listen: SocketAddr,
    /// `COUNTERSIGN_PUBLIC_URL`, default `http://localhost:3000`. It is the WebAuthn origin, its
    /// host the relying-party id, the `iss` of every grant and the `aud` agents sign for.
    pub public_url: Url,
    /// `COUNTERSIGN_DATA_DIR`, default `./data`: the SQLite file, the grant-signing key, the
    /// audit checkpoint key and the checkpoint file.
    pub data_dir: PathBuf,
    /// `DATABASE_URL`, default a SQLite file in the data directory. Its password stays out of
    /// `Debug`.
    pub database_url: DatabaseUrl,
    /// `COUNTERSIGN_SQLITE_SYNCHRONOUS`, `normal` (default) or `full`: whether a SQLite commit
    /// waits for the disk, i.e. what a power cut can lose (see [`Durability`]).
    pub sqlite_durability: Durability,
    /// `COUNTERSIGN_SMTP_URL`; unset means mail goes to the log.
    pub smtp_url: Option<SmtpUrl>,
    /// `COUNTERSIGN_MAIL_FROM`, default `Countersign <countersign@HOST>` with the public URL's
    /// host: the `From` of every mail.
    pub mail_from: String,
    /// `COUNTERSIGN_MAIL_RETRY_DELAYS`, seconds, default `1,5,30,120,600`: how long to wait
    /// before each new attempt at a mail the SMTP server did not take.
    pub mail_retry_delays: Vec<Duration>,
    /// `LEPTOS_SITE_ROOT`, default `target/site`: the compiled wasm, JS and CSS.
    pub site_root: PathBuf,
    /// The fatigue guards until an admin sets them (see `domain::guards`):
    /// `COUNTERSIGN_MAX_PENDING_PER_AGENT` (100), `COUNTERSIGN_PROMPTS_PER_APPROVER_PER_MINUTE`
    /// (10), `COUNTERSIGN_DENY_COOLDOWN_SECONDS` (600), `COUNTERSIGN_APPROVE_DELAY_MS` (1500),
    /// `COUNTERSIGN_COLLAPSE_IDENTICAL` (true).
    pub guard_defaults: Guards,
    /// Per-client-address limits on unauthenticated traffic, and whose forwarding headers
    /// name the client (see `http::limits`).
    pub edge_limits: EdgeLimits,
    /// `COUNTERSIGN_CHECKPOINT_INTERVAL_SECONDS`, default 60 (1 to 86400): how often, at most,
    /// the server signs an audit checkpoint while the chain grows. Important events get one
    /// within a second whatever this says (see `service::checkpoints`).
    pub checkpoint_interval: Duration,
    /// `COUNTERSIGN_CALLBACK_ALLOW`, default empty: hosts, addresses and CIDR blocks that
    /// agents' callbacks may reach although they are not globally routable, and over plain
    /// http (see `domain::callback`).
    pub callback_allow: AllowList,
    /// `COUNTERSIGN_CALLBACK_RETRY_FIRST_SECONDS`, default 1 (fractions allowed, at most 60):
    /// the first wait before a failed callback is tried again; each later wait doubles.
    pub callback_retry: RetrySchedule,
    /// `COUNTERSIGN_CREDENTIAL_KEY_FILE`, default `credential-key` in the data directory: the
    /// key that seals credential providers' secrets (created, mode 0600, when missing). Every
    /// replica must have the same one; point them all at one copy of it.
    pub credential_key_file: PathBuf,
}

/// A setting that cannot be used, named.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: &'static str,
    /// Why its value was refused.
    pub reason: String,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let listen = lookup("COUNTERSIGN_LISTEN")
            .unwrap_or_else(|| "127.0.0.1:3000".into())
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError {
                name: "COUNTERSIGN_LISTEN",
                reason: format!("not a socket address ({e}); use host:port, e.g. 127.0.0.1:3000"),
            })?;
        let public_url = parse_public_url(
            &lookup("COUNTERSIGN_PUBLIC_URL").unwrap_or_else(|| "http://localhost:3000".into()),
        )?;
        let data_dir =
            PathBuf::from(lookup("COUNTERSIGN_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url = DatabaseUrl::new(lookup("DATABASE_URL").unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("countersign.db").display()
            )
        }));
        let sqlite_durability = match lookup("COUNTERSIGN_SQLITE_SYNCHRONOUS").as_deref() {
            None => Durability::default(),
            Some(v) if v.eq_ignore_ascii_case("normal") => Durability::Normal,
            Some(v) if v.eq_ignore_ascii_case("full") => Durability::Full,
            Some(v) => {
                return Err(ConfigError {
                    name: "COUNTERSIGN_SQLITE_SYNCHRONOUS",
                    reason: format!("{v:?} is neither `normal` nor `full`"),
                })
            }
        };
        let guard_defaults = guard_defaults(&lookup)?;
        let edge_limits = EdgeLimits::from_lookup(&lookup)?;
        let checkpoint_interval = match lookup("COUNTERSIGN_CHECKPOINT_INTERVAL_SECONDS") {
            Some(v) => parse_checkpoint_interval(&v)?,
            None => Duration::from_secs(DEFAULT_CHECKPOINT_INTERVAL_SECS),
        };
        let smtp_url = lookup("COUNTERSIGN_SMTP_URL")
            .map(|raw| SmtpUrl::parse(&raw))
            .transpose()?;
        let mail_from = match lookup("COUNTERSIGN_MAIL_FROM") {
            Some(from) => parse_mail_from("COUNTERSIGN_MAIL_FROM", &from)?,
            None => default_mail_from(&public_url)?,
        };
        let mail_retry_delays = match lookup("COUNTERSIGN_MAIL_RETRY_DELAYS") {
            Some(v) => parse_retry_delays(&v)?,
            None => DEFAULT_MAIL_RETRY_DELAYS_SECS
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
        };
        let callback_allow = match lookup("COUNTERSIGN_CALLBACK_ALLOW") {
            Some(v) => AllowList::parse(&v).map_err(|reason| ConfigError {
                name: "COUNTERSIGN_CALLBACK_ALLOW",
                reason,
            })?,
            None => AllowList::default(),
        };
        let callback_retry = match lookup("COUNTERSIGN_CALLBACK_RETRY_FIRST_SECONDS") {
            Some(v) => RetrySchedule::starting_at(parse_callback_retry_first(&v)?),
            None => RetrySchedule::default(),
        };
        let credential_key_file = lookup("COUNTERSIGN_CREDENTIAL_KEY_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("credential-key"));
        Ok(Self {
            credential_key_file,
            listen,
            public_url,
            data_dir,
            database_url,
            sqlite_durability,
            smtp_url,
            mail_from,
            mail_retry_delays,
            site_root: PathBuf::from(
                lookup("LEPTOS_SITE_ROOT").unwrap_or_else(|| "target/site".into()),
            ),
            guard_defaults,
            edge_limits,
            checkpoint_interval,
            callback_allow,
            callback_retry,
        })
    }

    /// The public URL without a trailing slash, as used in `iss`, `aud` and links.
    pub fn issuer(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_string()
    }
}

/// Limits on traffic nobody has authenticated yet, per client address. `None` is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeLimits {
    /// `COUNTERSIGN_LIMIT_SIGN_IN`, default `120/min`: calls to sign-in start and finish
    /// together (a sign-in is two).
    pub sign_in: Option<Rate>,
    /// `COUNTERSIGN_LIMIT_ENROL`, default `30/min`: calls to enrolment start and finish.
    pub enrol: Option<Rate>,
    /// `COUNTERSIGN_LIMIT_REDEEM_FAILURES`, default `60/min`: refused redemptions (a valid
    /// one is never counted).
    pub redeem_failures: Option<Rate>,
    /// `COUNTERSIGN_LIMIT_AGENT_AUTH_FAILURES`, default `60/min`: refused agent credentials
    /// (a valid one is never counted).
    pub agent_auth_failures: Option<Rate>,
    /// `COUNTERSIGN_TRUSTED_PROXIES`, default none: the proxies (addresses or CIDR blocks)
    /// whose forwarding header is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `COUNTERSIGN_FORWARDED_HEADER`, default `x-forwarded-for`: the header those proxies
    /// append the client's address to.
    pub forwarded_header: ForwardedHeader,
}

/// So many calls per period from one address: a burst of `count`, refilled evenly over `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many.
    pub count: NonZeroU32,
    /// Over how long.
    pub per: Duration,
}

/// The forwarding header a trusted proxy appends to. Only one is read: a proxy that writes
/// one passes the other through from the client untouched, so reading both would let any
/// client choose its own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …`
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1, …`
    Forwarded,
}

/// Up to this many calls per period (so a period is never shorter than a microsecond a call).
const MAX_RATE_COUNT: u32 = 1_000_000;

impl EdgeLimits {
    fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let rate = |name: &'static str, default: &str| match lookup(name) {
            Some(v) => parse_rate(name, &v),
            None => parse_rate(name, default),
        };
        let trusted_proxies = match lookup("COUNTERSIGN_TRUSTED_PROXIES") {
            Some(v) => parse_proxies(&v)?,
            None => Vec::new(),
        };
        let forwarded_header = match lookup("COUNTERSIGN_FORWARDED_HEADER")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("x-forwarded-for") => ForwardedHeader::XForwardedFor,
            Some("forwarded") => ForwardedHeader::Forwarded,
            Some(other) => {
                return Err(ConfigError {
                    name: "COUNTERSIGN_FORWARDED_HEADER",
                    reason: format!("{other:?} is not x-forwarded-for or forwarded"),
                })
            }
        };
        Ok(Self {
            sign_in: rate("COUNTERSIGN_LIMIT_SIGN_IN", "120/min")?,
            enrol: rate("COUNTERSIGN_LIMIT_ENROL", "30/min")?,
            redeem_failures: rate("COUNTERSIGN_LIMIT_REDEEM_FAILURES", "60/min")?,
            agent_auth_failures: rate("COUNTERSIGN_LIMIT_AGENT_AUTH_FAILURES", "60/min")?,
            trusted_proxies,
            forwarded_header,
        })
    }
}

/// `N/s`, `N/min` or `N/h` (N from 1 to a million), or `off`.
fn parse_rate(name: &'static str, raw: &str) -> Result<Option<Rate>, ConfigError> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let err = || ConfigError {
        name,
        reason: format!(
            "{raw:?} is not a rate; write N/s, N/min or N/h (N from 1 to {MAX_RATE_COUNT}), \
             e.g. 60/min, or off"
        ),
    };
    let (count, unit) = raw.split_once('/').ok_or_else(err)?;
    let count = count
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n <= MAX_RATE_COUNT)
        .and_then(NonZeroU32::new)
        .ok_or_else(err)?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(err()),
    };
    Ok(Some(Rate { count, per }))
}

/// Comma-separated addresses or CIDR blocks, IPv4 or IPv6.
fn parse_proxies(raw: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| ConfigError {
                    name: "COUNTERSIGN_TRUSTED_PROXIES",
                    reason: format!(
                        "{p:?} is not an IP address or CIDR block; write e.g. \
                         10.0.0.0/8,192.0.2.7,2001:db8::/32"
                    ),
                })
        })
        .collect()
}

/// Seconds between attempts at a mail the SMTP server did not take: about 13 minutes in all,
/// longer than a request waits by default, so a short outage of the relay loses nothing.
pub const DEFAULT_MAIL_RETRY_DELAYS_SECS: [u64; 5] = [1, 5, 30, 120, 600];

/// `COUNTERSIGN_SMTP_URL`, checked. It may carry the relay's password, so it is kept out of
/// `Debug` (and so out of any log line that prints the configuration): only the scheme, host,
/// port and query show.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl(String);

impl SmtpUrl {
    /// Checks the forms lettre's `AsyncSmtpTransport::from_url` understands, so a typo fails at
    /// start-up with the variable named instead of at the first mail: `smtp://host[:port]`
    /// (plain, port 25), `smtp://host[:port]?tls=required` (STARTTLS, port 587; or
    /// `tls=opportunistic`), `smtps://host[:port]` (TLS from the first byte, port 465), each
    /// optionally with `user:password@` (percent-encoded) for AUTH. Error messages never repeat
    /// the value: it may hold the password.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let err = |reason: &str| ConfigError {
            name: "COUNTERSIGN_SMTP_URL",
            reason: reason.to_string(),
        };
        let url = Url::parse(raw).map_err(|e| ConfigError {
            name: "COUNTERSIGN_SMTP_URL",
            reason: format!("not a URL ({e})"),
        })?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(err("must name the SMTP server's host"));
        }
        for (key, value) in url.query_pairs() {
            match (url.scheme(), key.as_ref(), value.as_ref()) {
                ("smtp", "tls", "required" | "opportunistic") => {}
                ("smtp", "tls", _) => {
                    return Err(err("tls must be `required` (STARTTLS) or `opportunistic`"))
                }
                _ => {
                    return Err(err(
                        "the only query parameter understood is `tls` on smtp:// URLs \
                         (smtps:// is TLS already)",
                    ))
                }
            }
        }
        match url.scheme() {
            "smtp" | "smtps" => {}
            _ => {
                return Err(err(
                    "must be smtp://host[:port] (plain), smtp://host[:port]?tls=required \
                     (STARTTLS) or smtps://host[:port] (TLS), with user:password@ for AUTH",
                ))
            }
        }
        if !url.username().is_empty() && url.password().is_none() {
            return Err(err(
                "has a user name but no password; write user:password@ (percent-encoded)",
            ));
        }
        Ok(Self(raw.to_string()))
    }

    /// The URL itself, password included: only for building the SMTP transport.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it authenticates.
    pub fn has_credentials(&self) -> bool {
        Url::parse(&self.0).is_ok_and(|u| u.password().is_some())
    }

    /// Whether the whole conversation is encrypted (`smtps://`, or STARTTLS required).
    pub fn is_encrypted(&self) -> bool {
        Url::parse(&self.0).is_ok_and(|u| {
            u.scheme() == "smtps" || u.query_pairs().any(|(k, v)| k == "tls" && v == "required")
        })
    }

    /// Whether the server is this machine (where plain SMTP with a password is acceptable).
    pub fn is_loopback(&self) -> bool {
        // smtp:// is not a scheme the URL standard knows, so its host stays text (an IPv4
        // address is not parsed as one): judge the text.
        Url::parse(&self.0).is_ok_and(|u| {
            let host = u.host_str().unwrap_or_default();
            host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
    }
}

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match Url::parse(&self.0) {
            Ok(u) => {
                let auth = if u.password().is_some() {
                    "<credentials>@"
                } else {
                    ""
                };
                let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                let query = u.query().map(|q| format!("?{q}")).unwrap_or_default();
                write!(
                    f,
                    "SmtpUrl({}://{auth}{}{port}{query})",
                    u.scheme(),
                    u.host_str().unwrap_or_default()
                )
            }
            Err(_) => f.write_str("SmtpUrl(<invalid>)"),
        }
    }
}

/// Checks a `From` mailbox: `addr@example.com` or `Name <addr@example.com>`.
fn parse_mail_from(name: &'static str, raw: &str) -> Result<String, ConfigError> {
    raw.parse::<lettre::message::Mailbox>()
        .map(|m| m.to_string())
        .map_err(|e| ConfigError {
            name,
            reason: format!(
                "{raw:?} is not a mailbox ({e}); use addr@example.com or Name <addr@example.com>"
            ),
        })
}

/// `Countersign <countersign@HOST>`, HOST from the public URL (an address literal for an IP).
fn default_mail_from(public_url: &Url) -> Result<String, ConfigError> {
    let domain = match public_url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => format!("[{ip}]"),
        Some(url::Host::Ipv6(ip)) => format!("[IPv6:{ip}]"),
        None => "localhost".to_string(),
    };
    parse_mail_from(
        "COUNTERSIGN_MAIL_FROM",
        &format!("Countersign <countersign@{domain}>"),
    )
    .map_err(|e| ConfigError {
        name: e.name,
        reason: format!(
            "the default sender is not usable here, set it: {}",
            e.reason
        ),
    })
}

/// Seconds between audit checkpoints while the chain grows: the longest stretch of newest
/// events (none of them important) that could be removed without a signed checkpoint showing it.
pub const DEFAULT_CHECKPOINT_INTERVAL_SECS: u64 = 60;

/// Whole seconds, 1 to a day.
fn parse_checkpoint_interval(raw: &str) -> Result<Duration, ConfigError> {
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=86_400).contains(s))
        .map(Duration::from_secs)
        .ok_or_else(|| ConfigError {
            name: "COUNTERSIGN_CHECKPOINT_INTERVAL_SECONDS",
            reason: format!("{raw:?} is not a whole number of seconds from 1 to 86400"),
        })
}

/// Seconds, fractions allowed, above 0 and at most a minute.
fn parse_callback_retry_first(raw: &str) -> Result<Duration, ConfigError> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0 && *s <= 60.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| ConfigError {
            name: "COUNTERSIGN_CALLBACK_RETRY_FIRST_SECONDS",
            reason: format!("{raw:?} is not a number of seconds above 0 and at most 60"),
        })
}

/// Comma-separated seconds (fractions allowed), each above 0 and at most a day, at most 20.
fn parse_retry_delays(raw: &str) -> Result<Vec<Duration>, ConfigError> {
    let err = || ConfigError {
        name: "COUNTERSIGN_MAIL_RETRY_DELAYS",
        reason: format!(
            "{raw:?} is not a list of 1 to 20 comma-separated delays in seconds (above 0, at \
             most 86400), e.g. 1,5,30,120,600"
        ),
    };
    let delays = raw
        .split(',')
        .map(|part| {
            part.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0 && *s <= 86_400.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if delays.is_empty() || delays.len() > 20 {
        return Err(err());
    }
    Ok(delays)
}

fn parse_public_url(raw: &str) -> Result<Url, ConfigError> {
    let err = |reason: String| ConfigError {
        name: "COUNTERSIGN_PUBLIC_URL",
        reason,
    };
    let url = Url::parse(raw).map_err(|e| err(format!("not a URL ({e})")))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(err("must be an http or https URL".into()));
    }
    if url.host_str().is_none() {
        return Err(err("must name a host".into()));
    }
    // WebAuthn only works in a secure context: https, or http on localhost.
    if url.scheme() == "http" && url.host_str() != Some("localhost") {
        return Err(err(
            "plain http is only allowed for localhost; browsers refuse passkeys elsewhere".into(),
        ));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(err(
            "must be an origin without a path, e.g. https://approvals.example.com".into(),
        ));
    }
    Ok(url)
}

/// The guards' defaults from the environment; each must be in its range.
fn guard_defaults(lookup: &impl Fn(&str) -> Option<String>) -> Result<Guards, ConfigError> {
    let mut g = Guards::defaults(100);
    let numbers: [(&'static str, &mut u32); 4] = [
        (
            "COUNTERSIGN_MAX_PENDING_PER_AGENT",
            &mut g.max_pending_per_agent,
        ),
        (
            "COUNTERSIGN_PROMPTS_PER_APPROVER_PER_MINUTE",
            &mut g.prompts_per_approver_per_minute,
        ),
        (
            "COUNTERSIGN_DENY_COOLDOWN_SECONDS",
            &mut g.deny_cooldown_seconds,
        ),
        ("COUNTERSIGN_APPROVE_DELAY_MS", &mut g.approve_delay_ms),
    ];
    for (name, slot) in numbers {
        if let Some(v) = lookup(name) {
            *slot = v.trim().parse::<u32>().map_err(|_| ConfigError {
                name,
                reason: format!("{v:?} is not a whole number"),
            })?;
        }
    }
    if let Some(v) = lookup("COUNTERSIGN_COLLAPSE_IDENTICAL") {
        g.collapse_identical = v.trim().parse::<bool>().map_err(|_| ConfigError {
            name: "COUNTERSIGN_COLLAPSE_IDENTICAL",
            reason: format!("{v:?} is not true or false"),
        })?;
    }
    g.validate().map_err(|e| ConfigError {
        name: match e.field {
            "max_pending_per_agent" => "COUNTERSIGN_MAX_PENDING_PER_AGENT",
            "prompts_per_approver_per_minute" => "COUNTERSIGN_PROMPTS_PER_APPROVER_PER_MINUTE",
            "deny_cooldown_seconds" => "COUNTERSIGN_DENY_COOLDOWN_SECONDS",
            _ => "COUNTERSIGN_APPROVE_DELAY_MS",
        },
        reason: e.detail,
    })?;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn sqlite_durability_is_normal_unless_full_is_asked_for() {
        assert_eq!(config(&[]).unwrap().sqlite_durability, Durability::Normal);
        let full = config(&[("COUNTERSIGN_SQLITE_SYNCHRONOUS", "FULL")]).unwrap();
        assert_eq!(full.sqlite_durability, Durability::Full);
        let e = config(&[("COUNTERSIGN_SQLITE_SYNCHRONOUS", "off")]).unwrap_err();
        assert_eq!(e.name, "COUNTERSIGN_SQLITE_SYNCHRONOUS");
    }

    #[test]
    fn defaults_run_on_sqlite_in_data() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.issuer(), "http://localhost:3000");
        assert!(c
            .database_url
            .expose()
            .starts_with("sqlite://./data/countersign.db"));
    }

    #[test]
    fn the_database_password_never_shows_in_debug() {
        let c = config(&[(
            "DATABASE_URL",
            "postgres://countersign:hunter2-s3cret@db.internal:5432/cs",
        )])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2-s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://countersign:%3Credacted%3E@db.internal:5432/cs"),
            "{shown}"
        );
        assert_eq!(
            c.database_url.expose(),
            "postgres://countersign:hunter2-s3cret@db.internal:5432/cs"
        );
    }

    #[test]
    fn refuses_plain_http_off_localhost_and_names_the_variable() {
        let e = config(&[("COUNTERSIGN_PUBLIC_URL", "http://example.com")]).unwrap_err();
        assert_eq!(e.name, "COUNTERSIGN_PUBLIC_URL");
        let e = config(&[("COUNTERSIGN_LISTEN", "nonsense")]).unwrap_err();
        assert_eq!(e.name, "COUNTERSIGN_LISTEN");
        let e = config(&[("COUNTERSIGN_MAX_PENDING_PER_AGENT", "0")]).unwrap_err();
        assert_eq!(e.name, "COUNTERSIGN_MAX_PENDING_PER_AGENT");
        assert_eq!(
            config(&[]).unwrap().guard_defaults.max_pending_per_agent,
            100
        );
        let e = config(&[("COUNTERSIGN_APPROVE_DELAY_MS", "soon")]).unwrap_err();
        assert_eq!(e.name, "COUNTERSIGN_APPROVE_DELAY_MS");
        let e = config(&[("COUNTERSIGN_COLLAPSE_IDENTICAL", "maybe")]).unwrap_err();
        assert_eq!(e.name, "COUNTERSIGN_COLLAPSE_IDENTICAL");
        for bad in ["0", "86401", "1.5", "soon"] {
            let e = config(&[("COUNTERSIGN_CHECKPOINT_INTERVAL_SECONDS", bad)]).unwrap_err();
            assert_eq!(e.name, "COUNTERSIGN_CHECKPOINT_INTERVAL_SECONDS");
        }
        assert_eq!(
            config(&[]).unwrap().checkpoint_interval,
            Duration::from_secs(60)
        );
        assert_eq!(
            config(&[("COUNTERSIGN_CHECKPOINT_INTERVAL_SECONDS", "3600")])
                .unwrap()
                .checkpoint_interval,
            Duration::from_secs(3600)
        );
        let g = config(&[("COUNTERSIGN_DENY_COOLDOWN_SECONDS", "0")])
            .unwrap()
            .guard_defaults;
        assert_eq!(g.deny_cooldown_seconds, 0);
    }

    #[test]
    fn callback_settings_are_read_and_name_the_variable_when_wrong() {
        let c = config(&[]).unwrap();
        assert!(c.callback_allow.is_empty());
        assert_eq!(c.callback_retry, RetrySchedule::default());
        let c = config(&[
            ("COUNTERSIGN_CALLBACK_ALLOW", "127.0.0.1,agents.internal"),
            ("COUNTERSIGN_CALLBACK_RETRY_FIRST_SECONDS", "0.05"),
        ])
        .unwrap();
        assert!(c.callback_allow.allows_ip("127.0.0.1".parse().unwrap()));
        assert_eq!(c.callback_retry.first, Duration::from_millis(50));
        let e = config(&[("COUNTERSIGN_CALLBACK_ALLOW", "no such host!")]).unwrap_err();
        assert_eq!(e.name, "COUNTERSIGN_CALLBACK_ALLOW");
        let e = config(&[("COUNTERSIGN_CALLBACK_RETRY_FIRST_SECONDS", "0")]).unwrap_err();
        assert_eq!(e.name, "COUNTERSIGN_CALLBACK_RETRY_FIRST_SECONDS");
    }

    #[test]
    fn edge_limits_have_defaults_and_name_the_variable_when_wrong() {
        let l = config(&[]).unwrap().edge_limits;
        let per_min = |n: u32| {
            Some(Rate {
                count: NonZeroU32::new(n).unwrap(),
                per: Duration::from_secs(60),
            })
        };
        assert_eq!(l.sign_in, per_min(120));
        assert_eq!(l.enrol, per_min(30));
        assert_eq!(l.redeem_failures, per_min(60));
        assert_eq!(l.agent_auth_failures, per_min(60));
        assert!(l.trusted_proxies.is_empty());
        assert_eq!(l.forwarded_header, ForwardedHeader::XForwardedFor);

        let l = config(&[
            ("COUNTERSIGN_LIMIT_SIGN_IN", "5/h"),
            ("COUNTERSIGN_LIMIT_ENROL", "off"),
            ("COUNTERSIGN_LIMIT_REDEEM_FAILURES", " 2 / s "),
            (
                "COUNTERSIGN_TRUSTED_PROXIES",
                "10.0.0.0/8, 192.0.2.7 ,2001:db8::1/32",
            ),
            ("COUNTERSIGN_FORWARDED_HEADER", "Forwarded"),
        ])
        .unwrap()
        .edge_limits;
        assert_eq!(l.sign_in.unwrap().count.get(), 5);
        assert_eq!(l.sign_in.unwrap().per, Duration::from_secs(3600));
        assert_eq!(l.enrol, None);
        assert_eq!(l.redeem_failures.unwrap().per, Duration::from_secs(1));
        let shown: Vec<String> = l.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        assert_eq!(l.forwarded_header, ForwardedHeader::Forwarded);

        for (name, bad) in [
            ("COUNTERSIGN_LIMIT_SIGN_IN", "0/min"),
            ("COUNTERSIGN_LIMIT_SIGN_IN", "10"),
            ("COUNTERSIGN_LIMIT_ENROL", "10/day"),
            ("COUNTERSIGN_LIMIT_REDEEM_FAILURES", "2000000/s"),
            ("COUNTERSIGN_LIMIT_AGENT_AUTH_FAILURES", "-1/s"),
            ("COUNTERSIGN_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("COUNTERSIGN_TRUSTED_PROXIES", "proxy.example.com"),
            ("COUNTERSIGN_FORWARDED_HEADER", "x-real-ip"),
        ] {
            let e = config(&[(name, bad)]).unwrap_err();
            assert_eq!(e.name, name, "{bad}");
        }
    }

    #[test]
    fn mail_defaults_come_from_the_public_url() {
        let c = config(&[]).unwrap();
        assert!(c.smtp_url.is_none());
        assert_eq!(c.mail_from, "Countersign <countersign@localhost>");
        assert_eq!(c.mail_retry_delays.len(), 5);
        let c = config(&[("COUNTERSIGN_PUBLIC_URL", "https://approvals.example.com")]).unwrap();
        assert_eq!(
            c.mail_from,
            "Countersign <countersign@approvals.example.com>"
        );
        let c = config(&[
            ("COUNTERSIGN_MAIL_FROM", "ops@example.com"),
            ("COUNTERSIGN_MAIL_RETRY_DELAYS", "0.1, 2"),
        ])
        .unwrap();
        assert_eq!(c.mail_from, "ops@example.com");
        assert_eq!(
            c.mail_retry_delays,
            vec![Duration::from_millis(100), Duration::from_secs(2)]
        );
        for bad in ["0", "1,,2", "x", "-1", "90000"] {
            let e = config(&[("COUNTERSIGN_MAIL_RETRY_DELAYS", bad)]).unwrap_err();
            assert_eq!(e.name, "COUNTERSIGN_MAIL_RETRY_DELAYS");
        }
        let e = config(&[("COUNTERSIGN_MAIL_FROM", "not an address")]).unwrap_err();
        assert_eq!(e.name, "COUNTERSIGN_MAIL_FROM");
    }

    #[test]
    fn smtp_urls_in_every_supported_form_and_no_password_in_errors_or_debug() {
        for ok in [
            "smtp://127.0.0.1:2525",
            "smtp://mail.example.com?tls=required",
            "smtp://mail.example.com:587?tls=opportunistic",
            "smtps://user:s3cret@mail.example.com",
            "smtp://user%40example.com:p%40ss@127.0.0.1:2525",
        ] {
            let c = config(&[("COUNTERSIGN_SMTP_URL", ok)]).unwrap();
            let url = c.smtp_url.unwrap();
            assert_eq!(url.expose(), ok);
            let shown = format!("{url:?}");
            assert!(
                !shown.contains("s3cret") && !shown.contains("p%40ss"),
                "{shown}"
            );
        }
        let u = SmtpUrl::parse("smtps://user:s3cret@mail.example.com").unwrap();
        assert!(u.has_credentials() && u.is_encrypted() && !u.is_loopback());
        let u = SmtpUrl::parse("smtp://127.0.0.1:2525").unwrap();
        assert!(!u.has_credentials() && !u.is_encrypted() && u.is_loopback());
        assert!(SmtpUrl::parse("smtp://[::1]:25").unwrap().is_loopback());
        assert!(SmtpUrl::parse("smtp://localhost").unwrap().is_loopback());
        assert!(SmtpUrl::parse("smtp://h?tls=required")
            .unwrap()
            .is_encrypted());
        for bad in [
            "mail.example.com:25",
            "http://user:s3cret@mail.example.com",
            "smtp://user:s3cret@mail.example.com?tls=yes",
            "smtps://user:s3cret@mail.example.com?tls=required",
            "smtp://user:s3cret@mail.example.com?starttls=1",
            "smtp://user@mail.example.com",
            "smtp://:s3cret@",
        ] {
            let e = config(&[("COUNTERSIGN_SMTP_URL", bad)]).unwrap_err();
            assert_eq!(e.name, "COUNTERSIGN_SMTP_URL", "{bad}");
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
    }
}
