//! The SCRAM-SHA-256 verifier of a password (RFC 5802, RFC 7677), in PostgreSQL's stored form
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
//!
//! Why compute it here: `CREATE ROLE … PASSWORD '<verifier>'` gives the downstream server what
//! it stores anyway, so the released password itself never travels in a statement that the
//! server could log (`log_statement = 'ddl'` is common). PBKDF2 and HMAC come from RustCrypto;
//! only the assembly, a few lines, is ours.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::seal::hmac_sha256;

/// PostgreSQL's default iteration count.
pub const ITERATIONS: u32 = 4096;

/// The verifier of `password` with `salt`. The password must be ASCII without control
/// characters (ours are hex), for which SASLprep changes nothing.
pub fn verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let (stored, server) = keys(password, salt, iterations);
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored),
        B64.encode(server)
    )
}

/// `(StoredKey, ServerKey)` for a password.
fn keys(password: &str, salt: &[u8], iterations: u32) -> ([u8; 32], [u8; 32]) {
    let mut salted = zeroize::Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut *salted);
    let client_key = hmac_sha256(&*salted, &[b"Client Key"]);
    let stored: [u8; 32] = Sha256::digest(client_key).into();
    let server = hmac_sha256(&*salted, &[b"Server Key"]);
    (stored, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677, section 3: the example exchange for user "user", password "pencil". A server
    /// holding our verifier must produce the same server signature, and the client's proof
    /// must check against our StoredKey.
    #[test]
    fn matches_the_rfc_7677_example_exchange() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let (stored, server) = keys("pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature = hmac_sha256(&server, &[auth_message.as_bytes()]);
        assert_eq!(
            B64.encode(server_signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let proof = B64
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        let client_signature = hmac_sha256(&stored, &[auth_message.as_bytes()]);
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(<[u8; 32]>::from(Sha256::digest(&client_key)), stored);
        let v = verifier("pencil", &salt, 4096);
        assert!(v.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
    }
}
