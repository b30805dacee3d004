//! The downstream system's side: [`Downstream`] verifies a grant against the server's JWKS
//! and redeems it, once, just before acting. Needs no credential.
//!
//! The JWKS is cached: fetched on first use, again after [`JWKS_MAX_AGE`], and again when a
//! grant names a key the cache does not hold (the server rotated keys, or another replica
//! signed it), but such refetches at most once per [`JWKS_REFETCH_MIN_INTERVAL`], so tokens
//! with made-up `kid`s cannot make us hammer the server.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::error::Error;
use crate::jws::{self, Expectations};
use crate::model::GrantClaims;
use crate::transport::{now_secs, Server, CALL_TIMEOUT};

/// How long a fetched JWKS is trusted before it is fetched again.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);
/// The least time between two refetches caused by an unknown `kid`.
pub const JWKS_REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// A downstream system of one Countersign server: it verifies grants and redeems them.
///
/// Cheap to clone; clones share the JWKS cache.
#[derive(Clone)]
pub struct Downstream {
    server: Server,
    jwks: Arc<Mutex<JwksCache>>,
    leeway: Duration,
}

impl fmt::Debug for Downstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Downstream")
            .field("public_url", &self.server.public_url)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl Downstream {
    /// A downstream system of the server at `base_url`, which is also taken as the server's
    /// public URL (the `iss` of its grants) unless [`with_public_url`](Self::with_public_url)
    /// says otherwise.
    pub fn new(base_url: &str) -> Result<Self, Error> {
        Ok(Self::from_server(Server::new(base_url)?))
    }

    pub(crate) fn from_server(server: Server) -> Self {
        Self {
            server,
            jwks: Arc::new(Mutex::new(JwksCache::default())),
            leeway: Duration::ZERO,
        }
    }

    /// The server's public URL (`COUNTERSIGN_PUBLIC_URL`, the grants' `iss`), when it differs
    /// from the address this side connects to.
    pub fn with_public_url(mut self, public_url: &str) -> Self {
        self.server.set_public_url(public_url);
        self
    }

    /// Sends through this `reqwest` client instead of the default one.
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.server.http = http;
        self
    }

    /// Tolerates this much clock difference on a grant's `exp` (none by default: grants live a
    /// minute, and redeeming checks expiry on the server anyway).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// `GET /.well-known/jwks.json`, as the server sends it.
    pub async fn jwks(&self) -> Result<Value, Error> {
        let call = self
            .server
            .http
            .get(self.server.url(&[".well-known", "jwks.json"]))
            .timeout(CALL_TIMEOUT);
        let (status, body) = self.server.send(call).await?;
        serde_json::from_slice(&body)
            .map_err(|e| Error::bad_response(status, format!("the JWKS is not JSON: {e}")))
    }

    /// Verifies a grant here, without using it up, and returns its claims.
    ///
    /// Checks the EdDSA signature with the server's key named by `kid` (see the module docs
    /// for the cache), `typ` (`countersign-grant+jwt`), `iss` (the public URL), `aud` =
    /// `audience` (this system: the action's `target`), `exp`, and that `action_hash` is
    /// there. Use [`verify_grant_for_action`](Self::verify_grant_for_action) to also compare
    /// the action hash with the action about to be performed. Refusals are
    /// [`Error::InvalidGrant`] naming what is wrong. Only [`redeem`](Self::redeem) guards
    /// against a second use.
    pub async fn verify_grant(&self, token: &str, audience: &str) -> Result<GrantClaims, Error> {
        self.verify(token, audience, None).await
    }

    /// [`verify_grant`](Self::verify_grant), and the grant's `action_hash` must be
    /// `action_hash` (`sha256:<hex>`: the hash of the action this system is about to perform,
    /// as the agent's request state reported it).
    pub async fn verify_grant_for_action(
        &self,
        token: &str,
        audience: &str,
        action_hash: &str,
    ) -> Result<GrantClaims, Error> {
        self.verify(token, audience, Some(action_hash)).await
    }

    async fn verify(
        &self,
        token: &str,
        audience: &str,
        action_hash: Option<&str>,
    ) -> Result<GrantClaims, Error> {
        // What needs no key is checked first: garbage never causes a fetch.
        let kid = jws::grant_kid(&jws::split(token)?)?;
        let fetch = lock(&self.jwks).plan_fetch(&kid, Instant::now());
        if fetch {
            let jwks = self.jwks().await?;
            let keys = jws::keys_of(&jwks).ok_or_else(|| {
                Error::bad_response(200, "the JWKS has no \"keys\" array".to_owned())
            })?;
            lock(&self.jwks).store(keys, Instant::now());
        }
        let keys = lock(&self.jwks).keys.clone();
        let expected = Expectations {
            issuer: &self.server.public_url,
            audience,
            action_hash,
            leeway: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
        };
        jws::verify_grant(token, &keys, &expected, now_secs())
    }

    /// `POST /api/v1/grants/redeem`: uses the grant up, just before acting, and returns its
    /// claims as the server verified them. A second call is [`Error::GrantAlreadyRedeemed`];
    /// also [`Error::GrantExpired`], [`Error::GrantRevoked`], or [`Error::InvalidRequest`]
    /// (`field` `token`) for a token that is no grant of this server.
    pub async fn redeem(&self, token: &str) -> Result<GrantClaims, Error> {
        self.redeem_body(json!({ "token": token })).await
    }

    /// [`redeem`](Self::redeem), refused by the server ([`Error::InvalidRequest`], `field`
    /// `action_hash`) unless the grant is for `action_hash`.
    pub async fn redeem_for_action(
        &self,
        token: &str,
        action_hash: &str,
    ) -> Result<GrantClaims, Error> {
        self.redeem_body(json!({ "token": token, "action_hash": action_hash }))
            .await
    }

    /// [`redeem`](Self::redeem) for an action that moves `amount`: required for a grant whose
    /// approver capped the amount (`amount_max` in its authorization details), which the server
    /// redeems only for an amount within the cap, in its currency
    /// ([`Error::InvalidRequest`], `field` `amount`, otherwise; the grant stays unused).
    pub async fn redeem_amount(
        &self,
        token: &str,
        amount: &crate::Amount,
    ) -> Result<GrantClaims, Error> {
        self.redeem_body(json!({ "token": token, "amount": amount }))
            .await
    }

    async fn redeem_body(&self, body: Value) -> Result<GrantClaims, Error> {
        let call = self
            .server
            .http
            .post(self.server.url(&["api", "v1", "grants", "redeem"]))
            .timeout(CALL_TIMEOUT)
            .json(&body);
        let (status, body) = self.server.send(call).await?;
        #[derive(Deserialize)]
        struct Redeemed {
            claims: GrantClaims,
        }
        serde_json::from_slice::<Redeemed>(&body)
            .map(|r| r.claims)
            .map_err(|e| Error::bad_response(status, format!("not a redemption: {e}")))
    }
}

/// The lock, even if a thread panicked while holding it: the cache is always consistent (it
/// is replaced whole).
fn lock(cache: &Mutex<JwksCache>) -> MutexGuard<'_, JwksCache> {
    cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The server's verification keys by `kid`, and when they were fetched.
#[derive(Debug, Default)]
struct JwksCache {
    keys: HashMap<String, VerifyingKey>,
    fetched_at: Option<Instant>,
    /// The last refetch caused by an unknown `kid`.
    unknown_kid_refetch_at: Option<Instant>,
}

impl JwksCache {
    /// Whether to fetch the JWKS before verifying a grant signed by `kid`; a refetch for an
    /// unknown `kid` is remembered, to space the next one.
    fn plan_fetch(&mut self, kid: &str, now: Instant) -> bool {
        let Some(fetched_at) = self.fetched_at else {
            return true;
        };
        if now.duration_since(fetched_at) > JWKS_MAX_AGE {
            return true;
        }
        if self.keys.contains_key(kid) {
            return false;
        }
        let spaced = self
            .unknown_kid_refetch_at
            .is_none_or(|at| now.duration_since(at) >= JWKS_REFETCH_MIN_INTERVAL);
        if spaced {
            self.unknown_kid_refetch_at = Some(now);
        }
        spaced
    }

    fn store(&mut self, keys: HashMap<String, VerifyingKey>, now: Instant) {
        self.keys = keys;
        self.fetched_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> VerifyingKey {
        ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key()
    }

    #[test]
    fn the_cache_fetches_first_then_when_old_or_asked_for_a_new_kid_but_not_too_often() {
        let t0 = Instant::now();
        let mut cache = JwksCache::default();
        assert!(cache.plan_fetch("k1", t0), "nothing fetched yet");
        cache.store(HashMap::from([("k1".to_owned(), key())]), t0);
        assert!(!cache.plan_fetch("k1", t0 + Duration::from_secs(1)));

        // An unknown kid refetches at once (a rotation must not wait)…
        assert!(cache.plan_fetch("k2", t0 + Duration::from_secs(1)));
        cache.store(
            HashMap::from([("k1".to_owned(), key())]),
            t0 + Duration::from_secs(1),
        );
        // …but made-up kids do not make us fetch on every token.
        assert!(!cache.plan_fetch("k3", t0 + Duration::from_secs(2)));
        assert!(!cache.plan_fetch("k4", t0 + Duration::from_secs(5)));
        assert!(cache.plan_fetch("k5", t0 + Duration::from_secs(6)));
        cache.store(
            HashMap::from([("k1".to_owned(), key())]),
            t0 + Duration::from_secs(6),
        );

        // A known kid is refetched only when the set is old.
        assert!(!cache.plan_fetch("k1", t0 + Duration::from_secs(300)));
        assert!(cache.plan_fetch("k1", t0 + Duration::from_secs(307)));
    }

    #[tokio::test]
    async fn garbage_tokens_are_refused_without_asking_the_server() {
        // Nothing listens on port 9 (discard): a fetch would be a transport error.
        let downstream = Downstream::new("http://127.0.0.1:9").expect("a downstream");
        for token in ["", "a.b.c", "eyJhbGciOiJub25lIn0.e30.AAAA"] {
            let e = downstream
                .verify_grant(token, "bank-api")
                .await
                .expect_err("refused");
            assert_eq!(e.code(), "invalid_grant", "{token}: {e}");
        }
    }
}
