//! Task-scoped credentials: what an admin configures (a named provider and its settings), what
//! a policy rule releases (`credential = "orders-db"`), and what the approver is told will be
//! released.
//!
//! Two kinds of provider exist, for downstream systems that will never verify a grant:
//!
//! - [`ProviderKind::Postgres`]: Countersign creates a login role of its own naming for one
//!   task, member of a template role, and drops it when the task ends ([`postgres`] builds the
//!   statements);
//! - [`ProviderKind::Http`]: Countersign forwards the one approved call to an upstream API and
//!   adds the secret itself (the gateway), so the agent never holds it.
//!
//! The provider's secret (an admin connection string, an API token) is sealed at rest with
//! [`seal::CredentialKey`]; this module only ever sees it as a [`super::secrets::Secret`].

pub mod postgres;
pub mod scram;
pub mod seal;

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

/// How long a released credential lives, when a rule does not say (`credential_ttl_seconds`).
pub const DEFAULT_CREDENTIAL_TTL_SECONDS: u32 = 600;

/// Allowed values of `credential_ttl_seconds`: a task, not a standing credential.
pub const CREDENTIAL_TTL_SECONDS_RANGE: RangeInclusive<u32> = 60..=3600;

/// Allowed values of a PostgreSQL provider's `connection_limit`.
pub const CONNECTION_LIMIT_RANGE: RangeInclusive<u32> = 1..=100;

/// Allowed values of a PostgreSQL provider's `statement_timeout_ms`.
pub const STATEMENT_TIMEOUT_MS_RANGE: RangeInclusive<u32> = 100..=3_600_000;

/// Allowed values of an HTTP provider's `timeout_seconds`.
pub const UPSTREAM_TIMEOUT_SECONDS_RANGE: RangeInclusive<u32> = 1..=60;

/// A setting or name that cannot be used, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SettingsError {
    /// The offending field, e.g. `template_role`.
    pub field: &'static str,
    /// Why, in a sentence.
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError {
        field,
        reason: reason.into(),
    }
}

/// Checks a provider's name: `^[a-z0-9][a-z0-9_-]{0,63}$`, the form policy rules refer to.
pub fn check_provider_name(name: &str) -> Result<(), SettingsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(refuse("name", "must match ^[a-z0-9][a-z0-9_-]{0,63}$"))
    }
}

/// The two kinds of downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum ProviderKind {
    /// A PostgreSQL server: a login role per task.
    Postgres,
    /// An HTTP API: one approved call forwarded with the secret added.
    Http,
}

impl ProviderKind {
    /// `postgres` or `http`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses the stored text.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "postgres" => Some(Self::Postgres),
            "http" => Some(Self::Http),
            _ => None,
        }
    }
}

/// A PostgreSQL provider's settings (its admin connection string is the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresSettings {
    /// The role every released login is made a member of: it holds the privileges.
    pub template_role: String,
    /// How many sessions a released login may hold at once.
    pub connection_limit: u32,
    /// The released login's `statement_timeout`, in milliseconds.
    pub statement_timeout_ms: u32,
}

/// An HTTP provider's settings (the secret is the header's value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSettings {
    /// The upstream's base URL; a forwarded call's path is appended to it.
    pub base_url: String,
    /// The header that carries the secret, e.g. `Authorization`.
    pub header: String,
    /// The operations it covers, e.g. `POST /v2/transfers` (`*` in the path matches one
    /// segment or more, as in policy globs).
    pub operations: Vec<String>,
    /// How long a forwarded call may take, in seconds.
    pub timeout_seconds: u32,
}

/// A provider's settings, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProviderSettings {
    /// See [`PostgresSettings`].
    Postgres(PostgresSettings),
    /// See [`HttpSettings`].
    Http(HttpSettings),
}

impl ProviderSettings {
    /// Its kind.
    pub fn kind(&self) -> ProviderKind {
        match self {
            Self::Postgres(_) => ProviderKind::Postgres,
            Self::Http(_) => ProviderKind::Http,
        }
    }

    /// Checks every setting, naming the first that is wrong.
    pub fn check(&self) -> Result<(), SettingsError> {
        match self {
            Self::Postgres(s) => {
                postgres::check_role_name(&s.template_role)
                    .map_err(|r| refuse("template_role", r))?;
                if s.template_role.starts_with(postgres::LOGIN_PREFIX) {
                    return Err(refuse(
                        "template_role",
                        format!(
                            "must not start with {:?}: Countersign names its logins so",
                            postgres::LOGIN_PREFIX
                        ),
                    ));
                }
                in_range(
                    "connection_limit",
                    s.connection_limit,
                    &CONNECTION_LIMIT_RANGE,
                )?;
                in_range(
                    "statement_timeout_ms",
                    s.statement_timeout_ms,
                    &STATEMENT_TIMEOUT_MS_RANGE,
                )
            }
            Self::Http(s) => {
                let url = url::Url::parse(&s.base_url)
                    .map_err(|e| refuse("base_url", format!("is not a URL ({e})")))?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(refuse("base_url", "must be an http:// or https:// URL"));
                }
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(refuse("base_url", "must have no query or fragment"));
                }
                let header_ok = !s.header.is_empty()
                    && s.header.len() <= 64
                    && s.header
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !header_ok {
                    return Err(refuse(
                        "header",
                        "must be a header name such as Authorization",
                    ));
                }
                if s.operations.is_empty() {
                    return Err(refuse(
                        "operations",
                        "must list at least one operation, e.g. \"POST /v2/transfers\"",
                    ));
                }
                for op in &s.operations {
                    parse_operation(op).map_err(|r| refuse("operations", r))?;
                }
                in_range(
                    "timeout_seconds",
                    s.timeout_seconds,
                    &UPSTREAM_TIMEOUT_SECONDS_RANGE,
                )
            }
        }
    }
}

fn in_range(
    field: &'static str,
    value: u32,
    range: &RangeInclusive<u32>,
) -> Result<(), SettingsError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(refuse(
            field,
            format!("must be between {} and {}", range.start(), range.end()),
        ))
    }
}

/// The HTTP methods an operation may name.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Splits an operation (`POST /v2/transfers`) into method and path, or says what is wrong.
pub fn parse_operation(op: &str) -> Result<(&str, &str), String> {
    let (method, path) = op
        .split_once(' ')
        .ok_or_else(|| format!("{op:?} is not \"METHOD /path\""))?;
    if !METHODS.contains(&method) {
        return Err(format!(
            "{op:?}: the method must be one of {}",
            METHODS.join(", ")
        ));
    }
    if !path.starts_with('/') || path.contains(char::is_whitespace) || path.contains('#') {
        return Err(format!(
            "{op:?}: the path must start with / and hold no spaces"
        ));
    }
    Ok((method, path))
}

/// Whether a provider's list of operations covers `operation` (an action's `operation`, such
/// as `POST /v2/transfers/7`): same method, and the path matches, where `*` stands for one or
/// more characters within a segment (policy globs, applied segment by segment).
pub fn covers(operations: &[String], operation: &str) -> bool {
    let Ok((method, path)) = parse_operation(operation) else {
        return false;
    };
    let path = path.split('?').next().unwrap_or(path);
    operations.iter().any(|allowed| {
        let Ok((m, p)) = parse_operation(allowed) else {
            return false;
        };
        let (want, have): (Vec<&str>, Vec<&str>) =
            (p.split('/').collect(), path.split('/').collect());
        m == method
            && want.len() == have.len()
            && want
                .iter()
                .zip(&have)
                .all(|(w, h)| super::policy::glob_match(w, h) && !(w.contains('*') && h.is_empty()))
    })
}

/// What a rule releases: the provider's name and how long the credential lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The provider policy named.
    pub provider: String,
    /// Seconds the credential lives once released.
    pub ttl_seconds: u32,
}

/// The sentence an approver reads before approving: what will be released if they do.
pub fn describe(
    provider: &str,
    settings: Option<&ProviderSettings>,
    ttl_seconds: u32,
    operation: Option<&str>,
) -> String {
    let minutes = ttl_seconds / 60;
    let lifetime = match (minutes, ttl_seconds % 60) {
        (1, 0) => "1 minute".to_string(),
        (m, 0) => format!("{m} minutes"),
        _ => format!("{ttl_seconds} seconds"),
    };
    match settings {
        Some(ProviderSettings::Postgres(s)) => format!(
            "a PostgreSQL login in role {} on {provider} for {lifetime}",
            s.template_role
        ),
        Some(ProviderSettings::Http(_)) => match operation {
            Some(op) => format!("one {op} to {provider} through the gateway"),
            None => format!("one call to {provider} through the gateway"),
        },
        None => format!("a credential from {provider} (a provider no longer configured)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(template: &str) -> ProviderSettings {
        ProviderSettings::Postgres(PostgresSettings {
            template_role: template.into(),
            connection_limit: 2,
            statement_timeout_ms: 30_000,
        })
    }

    #[test]
    fn provider_names_are_the_policy_form() {
        assert!(check_provider_name("orders-db").is_ok());
        assert!(check_provider_name("bank_api2").is_ok());
        for bad in ["", "Orders", "-x", "a b", &"x".repeat(65)] {
            assert_eq!(
                check_provider_name(bad).unwrap_err().field,
                "name",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn settings_name_the_field_that_is_wrong() {
        assert!(pg("orders_rw").check().is_ok());
        assert_eq!(pg("cs_rw").check().unwrap_err().field, "template_role");
        assert_eq!(pg("").check().unwrap_err().field, "template_role");
        let http = |base: &str, ops: &[&str]| {
            ProviderSettings::Http(HttpSettings {
                base_url: base.into(),
                header: "Authorization".into(),
                operations: ops.iter().map(|s| s.to_string()).collect(),
                timeout_seconds: 10,
            })
            .check()
        };
        assert!(http("http://127.0.0.1:9/api", &["POST /v2/transfers"]).is_ok());
        assert_eq!(http("ftp://x", &["GET /"]).unwrap_err().field, "base_url");
        assert_eq!(
            http("http://x/?q=1", &["GET /"]).unwrap_err().field,
            "base_url"
        );
        assert_eq!(http("http://x", &[]).unwrap_err().field, "operations");
        assert_eq!(
            http("http://x", &["FETCH /"]).unwrap_err().field,
            "operations"
        );
        assert_eq!(
            http("http://x", &["GET x"]).unwrap_err().field,
            "operations"
        );
    }

    #[test]
    fn operations_cover_by_method_and_path_segments() {
        let ops = vec![
            "POST /v2/transfers".to_string(),
            "GET /v2/accounts/*".to_string(),
        ];
        assert!(covers(&ops, "POST /v2/transfers"));
        assert!(covers(&ops, "GET /v2/accounts/7"));
        assert!(covers(&ops, "GET /v2/accounts/7?expand=1"));
        assert!(!covers(&ops, "GET /v2/accounts/"));
        assert!(!covers(&ops, "GET /v2/accounts/7/statements"));
        assert!(!covers(&ops, "PUT /v2/transfers"));
        assert!(!covers(&ops, "POST /v2/transfers/1"));
        assert!(!covers(&ops, "POST"));
    }

    #[test]
    fn the_approver_reads_what_will_be_released() {
        assert_eq!(
            describe("orders-db", Some(&pg("orders_rw")), 600, None),
            "a PostgreSQL login in role orders_rw on orders-db for 10 minutes"
        );
        let http = ProviderSettings::Http(HttpSettings {
            base_url: "http://x".into(),
            header: "Authorization".into(),
            operations: vec!["POST /v2/transfers".into()],
            timeout_seconds: 10,
        });
        assert_eq!(
            describe("bank-api", Some(&http), 60, Some("POST /v2/transfers")),
            "one POST /v2/transfers to bank-api through the gateway"
        );
        assert_eq!(
            describe("orders-db", Some(&pg("r")), 90, None),
            "a PostgreSQL login in role r on orders-db for 90 seconds"
        );
    }
}
