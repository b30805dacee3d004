//! Provider secrets at rest: sealed with AES-256-GCM under the credential key, a 32-byte key
//! kept in the data directory beside the grant-signing key (mode 0600), never in the database.
//!
//! Each provider's name is the associated data of its sealed secret, so a sealed value copied
//! onto another provider's row does not open. Two subkeys are derived from the credential key
//! (HMAC-SHA-256 with a fixed label each): one seals, one fingerprints. The fingerprint is an
//! HMAC of the secret, not a plain hash, so the audit chain can name which secret was in force
//! without offering a weak password (an admin DSN's) to an offline guess.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::domain::secrets::Secret;

/// The version tag of the sealed form (`v1.<nonce>.<ciphertext>`), so the scheme can change.
const SEALED_PREFIX: &str = "v1.";

/// A sealed value that does not open: wrong key, another provider's value, or damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the provider's secret cannot be opened with this credential key (another replica's key, or a damaged value)")]
pub struct Unsealable;

/// HMAC-SHA-256 of `parts` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The credential key.
pub struct CredentialKey {
    seal: Zeroizing<[u8; 32]>,
    fingerprint: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialKey(<redacted>)")
    }
}

impl CredentialKey {
    /// The key from its 32 stored bytes; `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 32 {
            return None;
        }
        Some(Self {
            seal: Zeroizing::new(hmac_sha256(bytes, &[b"countersign credential seal v1"])),
            fingerprint: Zeroizing::new(hmac_sha256(
                bytes,
                &[b"countersign credential fingerprint v1"],
            )),
        })
    }

    /// Seals `secret` for the provider `name`.
    pub fn seal<R: CryptoRngCore + ?Sized>(
        &self,
        rng: &mut R,
        name: &str,
        secret: &Secret,
    ) -> String {
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&*self.seal));
        let sealed = match cipher.encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: secret.expose().as_bytes(),
                aad: name.as_bytes(),
            },
        ) {
            Ok(sealed) => sealed,
            // Only for inputs over 64 GiB.
            Err(_) => unreachable!("AES-GCM seals any secret of sane size"),
        };
        format!(
            "{SEALED_PREFIX}{}.{}",
            B64.encode(nonce),
            B64.encode(sealed)
        )
    }

    /// Opens what [`seal`](Self::seal) sealed for the same provider name.
    pub fn open(&self, name: &str, sealed: &str) -> Result<Secret, Unsealable> {
        let rest = sealed.strip_prefix(SEALED_PREFIX).ok_or(Unsealable)?;
        let (nonce, body) = rest.split_once('.').ok_or(Unsealable)?;
        let nonce = B64.decode(nonce).map_err(|_| Unsealable)?;
        let body = B64.decode(body).map_err(|_| Unsealable)?;
        if nonce.len() != 12 {
            return Err(Unsealable);
        }
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&*self.seal));
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &body,
                        aad: name.as_bytes(),
                    },
                )
                .map_err(|_| Unsealable)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| Unsealable)?;
        Ok(Secret::new(text.to_string()))
    }

    /// The secret's fingerprint: `hmac-sha256:` and the first 16 bytes of the HMAC, in hex.
    pub fn fingerprint(&self, secret: &Secret) -> String {
        let mac = hmac_sha256(&*self.fingerprint, &[secret.expose().as_bytes()]);
        format!("hmac-sha256:{}", hex::encode(&mac[..16]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn key(byte: u8) -> CredentialKey {
        CredentialKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_provider_and_key() {
        let secret = Secret::new("postgres://admin:hunter2@db/orders".into());
        let sealed = key(1).seal(&mut OsRng, "orders-db", &secret);
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            key(1).open("orders-db", &sealed).unwrap().expose(),
            secret.expose()
        );
        assert_eq!(key(1).open("other-db", &sealed).unwrap_err(), Unsealable);
        assert_eq!(key(2).open("orders-db", &sealed).unwrap_err(), Unsealable);
        let mut damaged = sealed.clone();
        damaged.pop();
        assert_eq!(key(1).open("orders-db", &damaged).unwrap_err(), Unsealable);
        assert_eq!(key(1).open("orders-db", "v1.x").unwrap_err(), Unsealable);
        // A fresh nonce each time: the same secret never seals to the same text.
        assert_ne!(sealed, key(1).seal(&mut OsRng, "orders-db", &secret));
    }

    #[test]
    fn fingerprints_are_stable_per_key_and_reveal_nothing_plain() {
        let secret = Secret::new("hunter2".into());
        let fp = key(1).fingerprint(&secret);
        assert_eq!(fp, key(1).fingerprint(&Secret::new("hunter2".into())));
        assert_ne!(fp, key(2).fingerprint(&secret));
        assert_ne!(fp, key(1).fingerprint(&Secret::new("hunter3".into())));
        assert!(fp.starts_with("hmac-sha256:") && fp.len() == 12 + 32);
        // Not the plain SHA-256 a guesser could compare against.
        let plain = crate::domain::canonical::sha256_hex(b"hunter2");
        assert!(!plain.starts_with(&fp[12..]));
        assert!(CredentialKey::from_bytes(&[0; 31]).is_none());
    }
}
