//! Compact JWS (RFC 7515) with EdDSA over Ed25519 (RFC 8037), as far as this client needs it:
//! signing an agent's assertions, and checking the server's grants against its JWKS.
//!
//! Why by hand on `ed25519-dalek` instead of a JWT library: the one algorithm the contract
//! uses is a few lines over a signature crate the workspace already has, while `jsonwebtoken`
//! 10 would bring its own copies of crates the server links in other versions (duplicate
//! versions in the build, which `cargo deny` reports), and general JWT libraries accept more
//! than we want (other algorithms, keys named by the token). What we accept is narrow on
//! purpose (RFC 8725): `alg` must be `EdDSA`, `typ` must be the grant's, a token cannot name
//! its own key (`jwk`, `jku`, `x5u`, `x5c`) or demand extensions (`crit`), only canonical
//! unpadded base64url decodes, and signatures are checked with `verify_strict` (no small-order
//! keys, no malleable signatures).
//!
//! No I/O here and no clock: the caller passes the keys and the current time, so every rule is
//! a unit test.

use std::collections::HashMap;

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde_json::{json, Map, Value};

use crate::error::Error;
use crate::model::GrantClaims;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The `typ` of every grant (explicit typing, RFC 8725 §3.11).
pub const GRANT_TYP: &str = "countersign-grant+jwt";
/// The longest token we parse: the server's grants always fit in 8 KiB.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Header members that would let a token choose its own key or demand extensions.
const REFUSED_HEADER_MEMBERS: [&str; 5] = ["jwk", "jku", "x5u", "x5c", "crit"];
/// The claims every grant carries.
const REQUIRED_CLAIMS: [&str; 8] = [
    "iss",
    "sub",
    "aud",
    "jti",
    "iat",
    "exp",
    "action_hash",
    "request_id",
];

/// Signs `claims` as a compact JWS with the header `{"alg":"EdDSA","typ":typ}`.
pub(crate) fn sign(typ: &str, claims: &Value, key: &SigningKey) -> String {
    let header = json!({ "alg": "EdDSA", "typ": typ });
    let mut out = B64.encode(header.to_string());
    out.push('.');
    B64.encode_string(claims.to_string(), &mut out);
    let signature = key.sign(out.as_bytes());
    out.push('.');
    B64.encode_string(signature.to_bytes(), &mut out);
    out
}

/// The public half of an Ed25519 key as a JWK (RFC 8037 §2), the form
/// `countersign agent create --public-key` takes.
pub fn public_jwk(key: &SigningKey) -> Value {
    json!({ "kty": "OKP", "crv": "Ed25519", "x": B64.encode(key.verifying_key().as_bytes()) })
}

/// A compact JWS split into its decoded parts; nothing verified yet.
pub(crate) struct Compact<'a> {
    pub header: Map<String, Value>,
    /// `BASE64URL(header) . BASE64URL(payload)` as received: what the signature covers.
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Signature,
}

fn malformed(detail: &str) -> Error {
    Error::invalid_grant("token", detail)
}

/// Splits and decodes a compact JWS, checking its structure and encodings (not its signature).
pub(crate) fn split(token: &str) -> Result<Compact<'_>, Error> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed("longer than 8 KiB"));
    }
    let mut segments = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(malformed(
            "a compact JWS has exactly three dot-separated segments",
        ));
    };
    let header_bytes = B64
        .decode(h)
        .map_err(|_| malformed("the header is not unpadded base64url"))?;
    let Ok(Value::Object(header)) = serde_json::from_slice::<Value>(&header_bytes) else {
        return Err(malformed("the header is not a JSON object"));
    };
    let payload = B64
        .decode(p)
        .map_err(|_| malformed("the payload is not unpadded base64url"))?;
    let signature = B64
        .decode(s)
        .map_err(|_| malformed("the signature is not unpadded base64url"))?;
    let signature: [u8; 64] = signature
        .as_slice()
        .try_into()
        .map_err(|_| Error::invalid_grant("signature", "an Ed25519 signature is 64 bytes"))?;
    Ok(Compact {
        header,
        signing_input: &token[..h.len() + 1 + p.len()],
        payload,
        signature: Signature::from_bytes(&signature),
    })
}

impl Compact<'_> {
    /// The payload as a JSON object, *unverified*.
    pub(crate) fn claims(&self) -> Result<Map<String, Value>, Error> {
        match serde_json::from_slice::<Value>(&self.payload) {
            Ok(Value::Object(claims)) => Ok(claims),
            _ => Err(malformed("the payload is not a JSON object")),
        }
    }

    fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }
}

/// The `kid` of a grant, after the header checks that need no key: `alg` EdDSA, `typ` the
/// grant's, no member that names a key or demands an extension.
pub(crate) fn grant_kid(compact: &Compact<'_>) -> Result<String, Error> {
    let alg = compact.header_str("alg");
    if alg != Some("EdDSA") {
        return Err(Error::invalid_grant(
            "alg",
            format!("alg must be EdDSA, not {}", shown(alg)),
        ));
    }
    let typ = compact.header_str("typ");
    if typ != Some(GRANT_TYP) {
        return Err(Error::invalid_grant(
            "typ",
            format!("typ must be {GRANT_TYP}, not {}", shown(typ)),
        ));
    }
    if let Some(name) = REFUSED_HEADER_MEMBERS
        .iter()
        .find(|name| compact.header.contains_key(**name))
    {
        return Err(Error::invalid_grant(
            name,
            format!("the header member {name} is not accepted"),
        ));
    }
    compact
        .header_str("kid")
        .map(str::to_owned)
        .ok_or_else(|| Error::invalid_grant("kid", "the grant names no kid"))
}

/// A header value for a message: short, printable, or a stand-in.
fn shown(value: Option<&str>) -> String {
    match value {
        Some(v) if v.len() <= 40 && v.chars().all(|c| c.is_ascii_graphic()) => format!("{v:?}"),
        Some(_) => "an unexpected value".into(),
        None => "absent".into(),
    }
}

/// What a grant must say to be accepted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expectations<'a> {
    /// `iss`: the server's public URL.
    pub issuer: &'a str,
    /// `aud`: the system that is about to act (the action's `target`).
    pub audience: &'a str,
    /// `action_hash`, when the caller knows the action it is about to perform.
    pub action_hash: Option<&'a str>,
    /// Seconds of clock difference tolerated on `exp`.
    pub leeway: i64,
}

/// Verifies a grant with the server's keys (by `kid`) at `now` (unix seconds) and returns its
/// claims. Each refusal is an [`Error::InvalidGrant`] naming the member at fault.
pub(crate) fn verify_grant(
    token: &str,
    keys: &HashMap<String, VerifyingKey>,
    expected: &Expectations<'_>,
    now: i64,
) -> Result<GrantClaims, Error> {
    let compact = split(token)?;
    let kid = grant_kid(&compact)?;
    let key = keys.get(&kid).ok_or_else(|| {
        Error::invalid_grant(
            "kid",
            format!("no key {} in the server's JWKS", shown(Some(&kid))),
        )
    })?;
    key.verify_strict(compact.signing_input.as_bytes(), &compact.signature)
        .map_err(|_| Error::invalid_grant("signature", "the signature does not verify"))?;
    let claims = compact.claims()?;
    if let Some(missing) = REQUIRED_CLAIMS.iter().find(|c| !claims.contains_key(**c)) {
        return Err(Error::invalid_grant(
            missing,
            format!("the grant has no {missing} claim"),
        ));
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(expected.issuer) {
        return Err(Error::invalid_grant(
            "iss",
            format!("the grant was not issued by {}", expected.issuer),
        ));
    }
    if text("aud") != Some(expected.audience) {
        return Err(Error::invalid_grant(
            "aud",
            format!(
                "the grant is for another audience, not {}",
                expected.audience
            ),
        ));
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| Error::invalid_grant("exp", "exp must be a whole number of seconds"))?;
    if exp + expected.leeway <= now {
        return Err(Error::invalid_grant("exp", "the grant has expired"));
    }
    let action_hash = text("action_hash")
        .filter(|h| is_sha256_tag(h))
        .ok_or_else(|| Error::invalid_grant("action_hash", "action_hash must be sha256:<hex>"))?;
    if let Some(wanted) = expected.action_hash {
        if action_hash != wanted {
            return Err(Error::invalid_grant(
                "action_hash",
                format!("the grant is for action {action_hash}, not {wanted}"),
            ));
        }
    }
    serde_json::from_value(Value::Object(claims))
        .map_err(|e| Error::invalid_grant("token", format!("the claims do not parse: {e}")))
}

/// `sha256:` and 64 lowercase hex digits.
fn is_sha256_tag(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The grant-verification keys of a JWKS document by `kid`. Entries that are not Ed25519
/// public keys with a `kid` are skipped (a newer server may publish other kinds); weak
/// (small-order) keys too.
pub(crate) fn keys_of(jwks: &Value) -> Option<HashMap<String, VerifyingKey>> {
    let entries = jwks.get("keys")?.as_array()?;
    let keys = entries
        .iter()
        .filter_map(|entry| {
            let text = |name: &str| entry.get(name).and_then(Value::as_str);
            if text("kty") != Some("OKP") || text("crv") != Some("Ed25519") {
                return None;
            }
            let bytes: [u8; 32] = B64.decode(text("x")?).ok()?.try_into().ok()?;
            let key = VerifyingKey::from_bytes(&bytes).ok()?;
            let kid = text("kid")?.to_owned();
            (!key.is_weak()).then_some((kid, key))
        })
        .collect();
    Some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://countersign.example";
    const HASH: &str = "sha256:4f1c7a8e0000000000000000000000000000000000000000000000000000abcd";

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn claims(now: i64) -> Value {
        json!({
            "iss": ISSUER, "sub": "agent-1", "aud": "bank-api", "jti": "g1",
            "iat": now, "exp": now + 60, "action_hash": HASH, "request_id": "r1",
            "authorization_details": [{ "type": "payments.transfer", "operation": "POST /v2/transfers",
                                        "params": { "amount": "5.00" } }],
            "approvers": ["u1"],
        })
    }

    /// A grant as the server signs it: `alg`, `typ`, `kid`.
    fn grant(key: &SigningKey, kid: &str, claims: &Value) -> String {
        let header = json!({ "alg": "EdDSA", "typ": GRANT_TYP, "kid": kid });
        with_header(key, &header, claims)
    }

    fn with_header(key: &SigningKey, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = key.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(signature.to_bytes()))
    }

    fn keys() -> HashMap<String, VerifyingKey> {
        HashMap::from([("k1".to_owned(), key(1).verifying_key())])
    }

    fn expected(hash: Option<&str>) -> Expectations<'_> {
        Expectations {
            issuer: ISSUER,
            audience: "bank-api",
            action_hash: hash,
            leeway: 0,
        }
    }

    fn refused_field(result: Result<GrantClaims, Error>) -> String {
        match result {
            Err(Error::InvalidGrant { field, .. }) => field,
            other => panic!("expected InvalidGrant, got {other:?}"),
        }
    }

    #[test]
    fn a_good_grant_verifies_and_its_claims_are_typed() {
        let now = 1_700_000_000;
        let token = grant(&key(1), "k1", &claims(now));
        let got = verify_grant(&token, &keys(), &expected(Some(HASH)), now).expect("verifies");
        assert_eq!(got.sub, "agent-1");
        assert_eq!(got.action_hash, HASH);
        assert_eq!(
            got.authorization_details[0].action_type,
            "payments.transfer"
        );
        assert_eq!(got.approvers, vec!["u1".to_owned()]);
        assert!(got.cnf.is_none());
        // Without an action hash to compare, the rest is still checked.
        assert!(verify_grant(&token, &keys(), &expected(None), now).is_ok());
    }

    #[test]
    fn each_wrong_member_is_named() {
        let now = 1_700_000_000;
        let good = claims(now);
        let check = |token: String| {
            refused_field(verify_grant(&token, &keys(), &expected(Some(HASH)), now))
        };

        assert_eq!(check(grant(&key(2), "k1", &good)), "signature");
        assert_eq!(check(grant(&key(1), "k9", &good)), "kid");
        let mut c = good.clone();
        c["aud"] = json!("other-api");
        assert_eq!(check(grant(&key(1), "k1", &c)), "aud");
        let mut c = good.clone();
        c["iss"] = json!("https://elsewhere.example");
        assert_eq!(check(grant(&key(1), "k1", &c)), "iss");
        let mut c = good.clone();
        c["exp"] = json!(now);
        assert_eq!(check(grant(&key(1), "k1", &c)), "exp");
        let mut c = good.clone();
        c["action_hash"] = json!(HASH.replace("abcd", "abce"));
        assert_eq!(check(grant(&key(1), "k1", &c)), "action_hash");
        let mut c = good.clone();
        c.as_object_mut().map(|m| m.remove("jti"));
        assert_eq!(check(grant(&key(1), "k1", &c)), "jti");

        let header = |h: Value| with_header(&key(1), &h, &good);
        assert_eq!(
            check(header(json!({ "alg": "EdDSA", "typ": "JWT", "kid": "k1" }))),
            "typ"
        );
        assert_eq!(check(header(json!({ "alg": "EdDSA", "kid": "k1" }))), "typ");
        assert_eq!(
            check(header(
                json!({ "alg": "none", "typ": GRANT_TYP, "kid": "k1" })
            )),
            "alg"
        );
        assert_eq!(
            check(header(json!({ "alg": "EdDSA", "typ": GRANT_TYP }))),
            "kid"
        );
        assert_eq!(
            check(header(
                json!({ "alg": "EdDSA", "typ": GRANT_TYP, "kid": "k1", "jwk": {} })
            )),
            "jwk"
        );
    }

    #[test]
    fn a_tampered_payload_fails_the_signature() {
        let now = 1_700_000_000;
        let token = grant(&key(1), "k1", &claims(now));
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut forged = claims(now);
        forged["authorization_details"][0]["params"]["amount"] = json!("5000.00");
        parts[1] = B64.encode(forged.to_string());
        let tampered = parts.join(".");
        assert_eq!(
            refused_field(verify_grant(&tampered, &keys(), &expected(None), now)),
            "signature"
        );
    }

    #[test]
    fn leeway_tolerates_a_slow_clock() {
        let now = 1_700_000_000;
        let token = grant(&key(1), "k1", &claims(now));
        let late = now + 61;
        assert!(verify_grant(&token, &keys(), &expected(None), late).is_err());
        let lenient = Expectations {
            leeway: 5,
            ..expected(None)
        };
        assert!(verify_grant(&token, &keys(), &lenient, late).is_ok());
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        for token in [
            "",
            "a.b",
            "a.b.c.d",
            "!!!.b.c",
            "e30.e30.AAAA",
            "e30.e30.",
            &"a".repeat(9000),
            "eyJhbGciOiJFZERTQSJ9.bm90IGpzb24.AAAA",
        ] {
            let e = verify_grant(token, &keys(), &expected(None), 0).expect_err(token);
            assert_eq!(e.code(), "invalid_grant");
        }
    }

    #[test]
    fn assertions_verify_with_the_public_jwk() {
        let k = key(3);
        let token = sign("JWT", &json!({ "iss": "a", "jti": "j" }), &k);
        let compact = split(&token).expect("splits");
        assert_eq!(compact.header_str("alg"), Some("EdDSA"));
        assert_eq!(compact.header_str("typ"), Some("JWT"));
        assert_eq!(compact.claims().expect("claims")["jti"], "j");
        let jwk = public_jwk(&k);
        let keys = keys_of(&json!({ "keys": [ { "kid": "me", "kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"] } ] }))
            .expect("a key set");
        assert!(keys["me"]
            .verify_strict(compact.signing_input.as_bytes(), &compact.signature)
            .is_ok());
        assert!(jwk.get("d").is_none(), "never the private part");
    }

    #[test]
    fn jwks_entries_that_are_not_ed25519_keys_are_skipped() {
        let x = B64.encode(key(1).verifying_key().as_bytes());
        let jwks = json!({ "keys": [
            { "kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB" },
            { "kty": "OKP", "crv": "X25519", "kid": "x", "x": x },
            { "kty": "OKP", "crv": "Ed25519", "x": x },
            { "kty": "OKP", "crv": "Ed25519", "kid": "short", "x": "AAAA" },
            { "kty": "OKP", "crv": "Ed25519", "kid": "weak", "x": B64.encode([0u8; 32]) },
            { "kty": "OKP", "crv": "Ed25519", "kid": "good", "x": x },
        ]});
        let keys = keys_of(&jwks).expect("a key set");
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["good"]);
        assert!(keys_of(&json!({ "nokeys": [] })).is_none());
        assert!(keys_of(&json!([1])).is_none());
    }
}
