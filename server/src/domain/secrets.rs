//! Secrets we hand out and how we recognise them later: agent API keys, enrolment tokens and
//! other one-time links. We store only SHA-256 digests of them. These are 256-bit random values,
//! so a fast hash is enough — there is nothing to brute-force, unlike a password — and it keeps
//! agent authentication cheap on every call.
//!
//! Secret-holding types redact themselves in `Debug` and are not `Serialize`, so a stray log line
//! or JSON dump cannot leak them.

use std::fmt;

use rand_core::{CryptoRngCore, RngCore};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::canonical::sha256_hex;

/// The fixed prefix of every agent API key, so secret scanners can recognise leaked keys.
pub const API_KEY_PREFIX: &str = "cs_agent_";

/// A secret string (an API key or a one-time token), shown once and then forgotten.
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret itself; call only where it is deliberately shown to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `n` random bytes as lowercase hex.
pub fn random_hex<R: CryptoRngCore + ?Sized>(rng: &mut R, n: usize) -> String {
    let mut buf = Zeroizing::new(vec![0u8; n]);
    rng.fill_bytes(&mut buf);
    hex::encode(&*buf)
}

/// Digest under which a secret is stored.
pub fn digest(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

/// Compares two digests without leaking, through timing, how much of them matched.
pub fn digests_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A new API key for an agent: `cs_agent_<agent id>_<64 hex chars>`, and the digest to store.
pub fn new_api_key<R: CryptoRngCore + ?Sized>(rng: &mut R, agent_id: &str) -> (Secret, String) {
    let secret = random_hex(rng, 32);
    let hash = digest(&secret);
    (
        Secret::new(format!("{API_KEY_PREFIX}{agent_id}_{secret}")),
        hash,
    )
}

/// Splits an API key into the agent id and the secret part, if it has the right shape. The id
/// is a UUID (hyphens, no underscores), so the first underscore after the prefix ends it.
pub fn parse_api_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(API_KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    let secret_ok = secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit());
    (id_ok && secret_ok).then_some((id, secret))
}

/// A one-time token for links (enrolment), base64url-free hex of 32 random bytes.
pub fn new_token<R: RngCore + CryptoRngCore + ?Sized>(rng: &mut R) -> (Secret, String) {
    let token = random_hex(rng, 32);
    let hash = digest(&token);
    (Secret::new(token), hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn api_keys_round_trip_and_verify_by_digest() {
        let id = "0191c3a4-5b6c-7d8e-9f00-112233445566";
        let (key, hash) = new_api_key(&mut OsRng, id);
        let (parsed_id, secret) = parse_api_key(key.expose()).unwrap();
        assert_eq!(parsed_id, id);
        assert!(digests_match(&digest(secret), &hash));
        assert!(!digests_match(&digest("0".repeat(64).as_str()), &hash));
    }

    #[test]
    fn malformed_keys_are_not_parsed() {
        assert!(parse_api_key("cs_agent_nope").is_none());
        assert!(parse_api_key("Bearer something").is_none());
        let id = "0191c3a4-5b6c-7d8e-9f00-112233445566";
        assert!(parse_api_key(&format!("cs_agent_{id}_{}", "g".repeat(64))).is_none());
        assert!(parse_api_key(&format!("cs_agent_{id}_{}", "a".repeat(63))).is_none());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let (key, _) = new_api_key(&mut OsRng, "0191c3a4-5b6c-7d8e-9f00-112233445566");
        assert!(!format!("{key:?}").contains("cs_agent_"));
    }
}
