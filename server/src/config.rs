//! Configuration, from the environment. Every setting has a default that runs Countersign on
//! one machine with SQLite and no further setup.

use std::net::SocketAddr;
use std::path::PathBuf;

use url::Url;

/// What the server and the command line need to know about their surroundings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `COUNTERSIGN_LISTEN`, default `127.0.0.1:3000`.
    pub listen: SocketAddr,
    /// `COUNTERSIGN_PUBLIC_URL`, default `http://localhost:3000`. It is the WebAuthn origin, its
    /// host the relying-party id, the `iss` of every grant and the `aud` agents sign for.
    pub public_url: Url,
    /// `COUNTERSIGN_DATA_DIR`, default `./data`: the SQLite file and the grant-signing key.
    pub data_dir: PathBuf,
    /// `DATABASE_URL`, default a SQLite file in the data directory.
    pub database_url: String,
    /// `COUNTERSIGN_SMTP_URL`; unset means mail goes to the log.
    pub smtp_url: Option<String>,
    /// `LEPTOS_SITE_ROOT`, default `target/site`: the compiled wasm, JS and CSS.
    pub site_root: PathBuf,
    /// `COUNTERSIGN_MAX_PENDING_PER_AGENT`, default 100: past this many requests waiting for a
    /// human, an agent's next one is refused with `429 rate_limited` (approval fatigue).
    pub max_pending_per_agent: u32,
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
        let database_url = lookup("DATABASE_URL").unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("countersign.db").display()
            )
        });
        let max_pending_per_agent = match lookup("COUNTERSIGN_MAX_PENDING_PER_AGENT") {
            None => 100,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ConfigError {
                    name: "COUNTERSIGN_MAX_PENDING_PER_AGENT",
                    reason: format!("{v:?} is not a whole number of at least 1"),
                })?,
        };
        Ok(Self {
            listen,
            public_url,
            data_dir,
            database_url,
            smtp_url: lookup("COUNTERSIGN_SMTP_URL"),
            site_root: PathBuf::from(
                lookup("LEPTOS_SITE_ROOT").unwrap_or_else(|| "target/site".into()),
            ),
            max_pending_per_agent,
        })
    }

    /// The public URL without a trailing slash, as used in `iss`, `aud` and links.
    pub fn issuer(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_string()
    }
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
    fn defaults_run_on_sqlite_in_data() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.issuer(), "http://localhost:3000");
        assert!(c.database_url.starts_with("sqlite://./data/countersign.db"));
    }

    #[test]
    fn refuses_plain_http_off_localhost_and_names_the_variable() {
        let e = config(&[("COUNTERSIGN_PUBLIC_URL", "http://example.com")]).unwrap_err();
        assert_eq!(e.name, "COUNTERSIGN_PUBLIC_URL");
        let e = config(&[("COUNTERSIGN_LISTEN", "nonsense")]).unwrap_err();
        assert_eq!(e.name, "COUNTERSIGN_LISTEN");
        let e = config(&[("COUNTERSIGN_MAX_PENDING_PER_AGENT", "0")]).unwrap_err();
        assert_eq!(e.name, "COUNTERSIGN_MAX_PENDING_PER_AGENT");
        assert_eq!(config(&[]).unwrap().max_pending_per_agent, 100);
    }
}
