//! How an agent proves who it is: an API key, or an Ed25519 key that signs a fresh assertion
//! for every call (`agent-api.md`, "Identity of the caller").
//!
//! Secrets never leave through `Debug` and are wiped from memory when dropped (the API key by
//! `zeroize`, the signing key by `ed25519-dalek`'s own `zeroize` support). This module never
//! does I/O.

use std::fmt;

use ed25519_dalek::SigningKey;
use reqwest::header::HeaderValue;
use serde_json::json;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::jws;

/// How long each signed assertion is valid. The contract allows at most 60 s; half of that
/// leaves room for a slow clock on either side and is still useless to anyone who copies it
/// (and the server refuses a replayed `jti` anyway).
pub const ASSERTION_LIFETIME_SECS: i64 = 30;

/// An agent's credential.
// The key is held inline, unboxed: a credential is built once per client, and
// `Credentials::Ed25519 { agent_id, signing_key }` reads better without a `Box`.
#[allow(clippy::large_enum_variant)]
pub enum Credentials {
    /// The API key shown once by `countersign agent create` (`cs_agent_<id>_<secret>`), sent
    /// as `Authorization: Bearer <key>`.
    ApiKey(String),
    /// An Ed25519 key registered with `countersign agent create --public-key key.jwk` (see
    /// [`public_jwk`](crate::public_jwk)). Every call sends a freshly signed JWT.
    Ed25519 {
        /// The agent's id (the assertion's `iss` and `sub`).
        agent_id: String,
        /// The private key.
        signing_key: SigningKey,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
            Self::Ed25519 { agent_id, .. } => f
                .debug_struct("Ed25519")
                .field("agent_id", agent_id)
                .field("signing_key", &"<redacted>")
                .finish(),
        }
    }
}

/// A credential ready to authorise calls.
pub(crate) enum Auth {
    ApiKey {
        header: Zeroizing<String>,
        agent_id: Option<String>,
    },
    Ed25519 {
        agent_id: String,
        key: SigningKey,
    },
}

impl Auth {
    pub(crate) fn new(credentials: Credentials) -> Result<Self, Error> {
        match credentials {
            Credentials::ApiKey(key) => {
                let key = Zeroizing::new(key);
                let rest = key.strip_prefix("cs_agent_").ok_or_else(|| {
                    Error::Config(
                        "the API key is not a Countersign agent key (cs_agent_<id>_<secret>)"
                            .into(),
                    )
                })?;
                // Ids hold no underscore, so the id is what comes before the last one.
                let agent_id = rest.rsplit_once('_').map(|(id, _)| id.to_owned());
                Ok(Self::ApiKey {
                    header: Zeroizing::new(format!("Bearer {}", key.as_str())),
                    agent_id,
                })
            }
            Credentials::Ed25519 {
                agent_id,
                signing_key,
            } => {
                if agent_id.is_empty() {
                    return Err(Error::Config(
                        "agent_id: required with an Ed25519 key (the assertion's iss and sub)"
                            .into(),
                    ));
                }
                Ok(Self::Ed25519 {
                    agent_id,
                    key: signing_key,
                })
            }
        }
    }

    /// The agent's id, where the credential says it.
    pub(crate) fn agent_id(&self) -> Option<&str> {
        match self {
            Self::ApiKey { agent_id, .. } => agent_id.as_deref(),
            Self::Ed25519 { agent_id, .. } => Some(agent_id),
        }
    }

    /// The `Authorization` header for one call at `now` (unix seconds): the key, or a new
    /// assertion for `audience` (the server's public URL) with its own `jti`.
    pub(crate) fn header(&self, audience: &str, now: i64) -> Result<HeaderValue, Error> {
        let mut value = match self {
            Self::ApiKey { header, .. } => HeaderValue::from_str(header),
            Self::Ed25519 { agent_id, key } => {
                let token = assertion(agent_id, key, audience, now);
                HeaderValue::from_str(&format!("Bearer {token}"))
            }
        }
        .map_err(|_| Error::Config("the credential is not valid in an HTTP header".into()))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// A signed agent assertion: `iss` = `sub` = the agent, `aud` = the server, valid
/// [`ASSERTION_LIFETIME_SECS`] from `now`, with a random `jti`.
pub(crate) fn assertion(agent_id: &str, key: &SigningKey, audience: &str, now: i64) -> String {
    let claims = json!({
        "iss": agent_id,
        "sub": agent_id,
        "aud": audience,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
        "jti": uuid::Uuid::new_v4().simple().to_string(),
    });
    jws::sign("JWT", &claims, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_name_their_agent_and_are_never_shown() {
        let auth = Auth::new(Credentials::ApiKey("cs_agent_0193ab_s3cr3t".into())).expect("a key");
        assert_eq!(auth.agent_id(), Some("0193ab"));
        let header = auth.header("http://localhost:3000", 0).expect("a header");
        assert_eq!(header.to_str().ok(), Some("Bearer cs_agent_0193ab_s3cr3t"));
        assert!(header.is_sensitive());
        let shown = format!("{:?}", Credentials::ApiKey("cs_agent_0193ab_s3cr3t".into()));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(matches!(
            Auth::new(Credentials::ApiKey("sk_live_123".into())),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn every_assertion_is_fresh_short_and_addressed_to_the_server() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let shown = format!(
            "{:?}",
            Credentials::Ed25519 {
                agent_id: "a1".into(),
                signing_key: key.clone()
            }
        );
        assert!(
            shown.contains("a1") && shown.contains("<redacted>"),
            "{shown}"
        );
        let auth = Auth::new(Credentials::Ed25519 {
            agent_id: "a1".into(),
            signing_key: key,
        })
        .expect("a key");
        assert_eq!(auth.agent_id(), Some("a1"));
        let claims = |header: HeaderValue| {
            let text = header.to_str().expect("ascii").to_owned();
            let token = text.strip_prefix("Bearer ").expect("bearer").to_owned();
            jws::split(&token).expect("a JWS").claims().expect("claims")
        };
        let first = claims(auth.header("https://cs.example", 1_000).expect("signed"));
        let second = claims(auth.header("https://cs.example", 1_000).expect("signed"));
        assert_eq!(first["iss"], "a1");
        assert_eq!(first["sub"], "a1");
        assert_eq!(first["aud"], "https://cs.example");
        assert_eq!(first["iat"], 1_000);
        assert_eq!(first["exp"], 1_000 + ASSERTION_LIFETIME_SECS);
        assert_ne!(first["jti"], second["jti"], "a jti is never reused");
        assert!(matches!(
            Auth::new(Credentials::Ed25519 {
                agent_id: String::new(),
                signing_key: SigningKey::from_bytes(&[9; 32]),
            }),
            Err(Error::Config(_))
        ));
    }
}
