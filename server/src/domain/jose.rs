//! JOSE primitives for Countersign: Ed25519 keys, JWKs, JWK thumbprints and
//! compact JWS.
//!
//! # What this module owns
//!
//! * The server's grant-signing key ([`GrantSigningKey`]): generation, loading
//!   from / exporting to a 32-byte seed, and its key id (`kid`), which is the
//!   RFC 7638 JWK thumbprint of its public key.
//! * Ed25519 public keys in JWK form ([`PublicJwk`], RFC 7517 + RFC 8037 §2)
//!   and the published key set ([`Jwks`], served at `/.well-known/jwks.json`).
//! * RFC 7638 thumbprints, used both as our `kid` and as the `cnf.jkt` that
//!   binds a grant to a key-holding agent.
//! * Compact JWS (RFC 7515 §7.1) signing of grants and strict verification
//!   ([`verify_compact`], [`peek_unverified`]).
//! * Verification of the short-lived JWT assertions agents send as
//!   `Authorization: Bearer <jwt>` ([`verify_agent_assertion`], RFC 7519).
//!
//! # What it must never do
//!
//! No I/O of any kind: no files, HTTP, database or logging. It never reads
//! the clock either: the current time is always passed in as unix seconds
//! (`now: i64`), so every time-dependent decision is deterministic and
//! testable. Replay protection for assertion `jti`s is the caller's job (it
//! needs the database); [`VerifiedAssertion`] hands back the `jti` and `exp`
//! for that.
//!
//! # Hardening choices (RFC 8725, JWT Best Current Practices)
//!
//! * Exactly one algorithm, `EdDSA` with Ed25519 (RFC 8037 §3.1); the key
//!   type, not the token, decides the algorithm, and `none`/HMAC/anything
//!   else is refused before any cryptography runs (RFC 8725 §2.1, §3.1).
//! * Signatures are checked with `verify_strict`, which rejects small-order
//!   keys and non-canonical signatures (signature malleability).
//! * Headers that would let a token choose its own key (`jwk`, `jku`, `x5u`,
//!   `x5c`) or demand extensions we do not implement (`crit`, RFC 7515
//!   §4.1.11) are refused.
//! * Only canonical unpadded base64url is accepted (RFC 7515 §2, Appendix C),
//!   and tokens are size-limited before any decoding.
//! * Error messages never echo key material or the token, so they are safe
//!   to return to the caller.

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// base64url without padding (RFC 7515 §2). The engine's decoder rejects
/// `=`, the standard alphabet's `+`/`/`, and non-zero trailing bits.
const URL_SAFE_NO_PAD: base64::engine::GeneralPurpose =
    base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The only JWS `alg` we produce or accept (RFC 8037 §3.1).
pub const ALG_EDDSA: &str = "EdDSA";
/// The JWK `kty` for Ed25519 keys (RFC 8037 §2).
pub const KTY_OKP: &str = "OKP";
/// The JWK `crv` for Ed25519 keys (RFC 8037 §2).
pub const CRV_ED25519: &str = "Ed25519";
/// The explicit `typ` of grant tokens (RFC 8725 §3.11 explicit typing).
pub const GRANT_TYP: &str = "countersign-grant+jwt";
/// Upper bound on the length of any compact JWS we will parse or produce.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Default maximum `exp - iat` for agent assertions, in seconds.
pub const DEFAULT_MAX_LIFETIME_SECS: i64 = 60;
/// Default tolerated clock skew for an agent assertion's `iat`, in seconds.
pub const DEFAULT_MAX_SKEW_SECS: i64 = 30;
/// Maximum length of an assertion `jti`, in characters.
pub const MAX_JTI_CHARS: usize = 128;

/// Header parameters we refuse outright. `jwk`/`jku`/`x5u`/`x5c` would let
/// the token nominate its own verification key (RFC 8725 §3.10 warns against
/// trusting them; RFC 7515 §4.1.2–4.1.6); `crit` announces extensions that a
/// recipient MUST understand or reject (RFC 7515 §4.1.11) and we implement
/// none.
const FORBIDDEN_HEADER_PARAMS: [&str; 5] = ["jwk", "jku", "x5u", "x5c", "crit"];

/// Length of an unpadded base64url Ed25519 signature (64 bytes).
const SIGNATURE_B64_LEN: usize = 86;

/// Errors from this module. Every `Display` message is safe to show to the
/// party that sent the token or key: none contains key material or the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// Structurally invalid token or JSON (bad segments, base64, JSON, types).
    #[error("malformed: {0}")]
    Malformed(String),
    /// The JWS `alg` is not `EdDSA`.
    #[error("unsupported algorithm {0:?}: only \"EdDSA\" is accepted")]
    UnsupportedAlgorithm(String),
    /// The signature does not verify under the expected key.
    #[error("signature verification failed")]
    BadSignature,
    /// `exp` is at or before the current time.
    #[error("token has expired")]
    Expired,
    /// `iat` (or `nbf`) lies further in the future than the allowed clock skew.
    #[error("token is not yet valid (issued in the future beyond the allowed clock skew)")]
    NotYetValid,
    /// `exp - iat` exceeds the allowed maximum lifetime.
    #[error("token lifetime (exp - iat) exceeds the allowed maximum")]
    LifetimeTooLong,
    /// `aud` does not name this server.
    #[error("token audience does not match this server")]
    WrongAudience,
    /// `iss`/`sub` do not name the expected agent.
    #[error("token issuer/subject does not match the agent")]
    WrongIssuer,
    /// A required claim is absent.
    #[error("missing required claim `{0}`")]
    MissingClaim(&'static str),
    /// A key (JWK or seed) is unusable.
    #[error("invalid key: {0}")]
    InvalidKey(String),
}

fn malformed(msg: &str) -> JoseError {
    JoseError::Malformed(msg.to_owned())
}

fn invalid_key(msg: &str) -> JoseError {
    JoseError::InvalidKey(msg.to_owned())
}

// ---------------------------------------------------------------------------
// Signing key
// ---------------------------------------------------------------------------

/// The server's grant-signing key. Not `Serialize`; `Debug` prints only the
/// kid (never key material). The secret is zeroized on drop (ed25519-dalek's
/// `SigningKey` wipes itself with the `zeroize` feature).
pub struct GrantSigningKey {
    signing: SigningKey,
    /// RFC 7638 thumbprint of the public key.
    kid: String,
    /// base64url of `{"alg":"EdDSA","typ":"countersign-grant+jwt","kid":…}`,
    /// computed once because every approval signs a grant with it.
    grant_header_b64: String,
}

impl GrantSigningKey {
    /// Generates a fresh key from a cryptographically secure RNG
    /// (e.g. `rand_core::OsRng`).
    pub fn generate<R: rand_core::CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        Self::from_signing_key(SigningKey::generate(rng))
    }

    /// Loads a key from its 32-byte Ed25519 seed (RFC 8032 §5.1.5 private
    /// key, the JWK `d` of RFC 8037 §2), as produced by [`Self::secret_bytes`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, JoseError> {
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(bytes.try_into().map_err(|_| {
            JoseError::InvalidKey(format!(
                "an Ed25519 secret key is 32 bytes, got {}",
                bytes.len()
            ))
        })?);
        Ok(Self::from_signing_key(SigningKey::from_bytes(&seed)))
    }

    fn from_signing_key(signing: SigningKey) -> Self {
        let kid = okp_thumbprint(&URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()));
        let grant_header_b64 = URL_SAFE_NO_PAD.encode(header_json(GRANT_TYP, &kid));
        Self {
            signing,
            kid,
            grant_header_b64,
        }
    }

    /// The 32-byte seed, for the caller to persist (in a 0600 file). Wiped
    /// from memory when the returned value is dropped.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The key id: RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw public key, e.g. to verify our own grants with [`verify_compact`].
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key as a JWK carrying `kid`, `alg` and `use`, as published
    /// in the JWKS.
    pub fn public_jwk(&self) -> PublicJwk {
        PublicJwk {
            kty: KTY_OKP.to_owned(),
            crv: CRV_ED25519.to_owned(),
            x: URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes()),
            kid: Some(self.kid.clone()),
            alg: Some(ALG_EDDSA.to_owned()),
            r#use: Some("sig".to_owned()),
        }
    }

    /// Signs `claims` (which must be a JSON object) as a compact JWS with
    /// header `{"alg":"EdDSA","typ":<typ>,"kid":<kid>}`. For [`GRANT_TYP`]
    /// the header encoding is cached.
    pub fn sign_compact(&self, typ: &str, claims: &Value) -> Result<String, JoseError> {
        if !claims.is_object() {
            return Err(malformed("claims must be a JSON object"));
        }
        let payload =
            serde_json::to_vec(claims).map_err(|_| malformed("claims could not be serialised"))?;
        if typ == GRANT_TYP {
            self.sign_raw(&self.grant_header_b64, &payload)
        } else {
            let header_b64 = URL_SAFE_NO_PAD.encode(header_json(typ, &self.kid));
            self.sign_raw(&header_b64, &payload)
        }
    }

    /// Builds `header_b64 . base64url(payload) . base64url(sig)` where the
    /// signature covers the ASCII signing input (RFC 7515 §5.1 steps 1–6).
    fn sign_raw(&self, header_b64: &str, payload: &[u8]) -> Result<String, JoseError> {
        let payload_len = base64::encoded_len(payload.len(), false)
            .ok_or_else(|| malformed("claims are too large"))?;
        let total = header_b64.len() + 1 + payload_len + 1 + SIGNATURE_B64_LEN;
        // Refuse to mint something our own verifier would reject.
        if total > MAX_TOKEN_LEN {
            return Err(malformed("signed token would exceed the 8 KiB size limit"));
        }
        let mut out = String::with_capacity(total);
        out.push_str(header_b64);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut out);
        let signature = self.signing.sign(out.as_bytes());
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut out);
        Ok(out)
    }
}

impl fmt::Debug for GrantSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantSigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

// `SigningKey` zeroizes itself on drop and the other fields are public data.
impl zeroize::ZeroizeOnDrop for GrantSigningKey {}

/// The protected header, serialised with members in a fixed order.
fn header_json(typ: &str, kid: &str) -> String {
    let mut s = String::with_capacity(40 + typ.len() + kid.len());
    s.push_str("{\"alg\":\"EdDSA\",\"typ\":");
    push_json_string(&mut s, typ);
    s.push_str(",\"kid\":");
    push_json_string(&mut s, kid);
    s.push('}');
    s
}

/// Appends `value` as a JSON string literal, escaping only what RFC 8259 §7
/// requires (the form RFC 7638 §3.3 mandates for thumbprint input). Written
/// by hand because it is infallible, unlike `serde_json::to_writer`.
fn push_json_string(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let b = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// RFC 7638 §3.2 thumbprint input for an OKP key: the required members
/// `crv`, `kty`, `x` in lexicographic order, no whitespace; SHA-256;
/// base64url without padding.
fn thumbprint_of(crv: &str, kty: &str, x: &str) -> String {
    let mut input = String::with_capacity(32 + crv.len() + kty.len() + x.len());
    input.push_str("{\"crv\":");
    push_json_string(&mut input, crv);
    input.push_str(",\"kty\":");
    push_json_string(&mut input, kty);
    input.push_str(",\"x\":");
    push_json_string(&mut input, x);
    input.push('}');
    URL_SAFE_NO_PAD.encode(Sha256::digest(input.as_bytes()))
}

fn okp_thumbprint(x: &str) -> String {
    thumbprint_of(CRV_ED25519, KTY_OKP, x)
}

// ---------------------------------------------------------------------------
// JWK / JWKS
// ---------------------------------------------------------------------------

/// An Ed25519 public key in JWK form (RFC 7517 §4, RFC 8037 §2: kty `OKP`,
/// crv `Ed25519`). Serialises as a JWK object; deserialising goes through
/// [`PublicJwk::from_value`] and therefore validates (and refuses private keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub struct PublicJwk {
    /// Key type, always `"OKP"`.
    pub kty: String,
    /// Curve, always `"Ed25519"`.
    pub crv: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    /// Optional key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Optional intended algorithm; `"EdDSA"` when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Optional public key use; `"sig"` when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#use: Option<String>,
}

impl PublicJwk {
    /// Parses an agent-supplied JWK from JSON text. See [`Self::from_value`]
    /// for the rules.
    pub fn parse(json: &str) -> Result<PublicJwk, JoseError> {
        let value: Value =
            serde_json::from_str(json).map_err(|_| invalid_key("the JWK is not valid JSON"))?;
        Self::from_value(&value)
    }

    /// Validates a JWK: a JSON object with kty `OKP`, crv `Ed25519` and `x`
    /// a canonical unpadded base64url encoding of a valid 32-byte Ed25519
    /// point. A private part (`d`) is refused rather than silently dropped:
    /// whoever sent it has leaked their private key and must be told.
    pub fn from_value(v: &Value) -> Result<PublicJwk, JoseError> {
        let obj = v
            .as_object()
            .ok_or_else(|| invalid_key("a JWK must be a JSON object"))?;
        // Checked first, and the value is never read, so it can't leak into
        // an error message.
        if obj.contains_key("d") {
            return Err(invalid_key(
                "this JWK contains a private key (member \"d\"); send only the public key \
                 (kty, crv, x) and keep the private key secret",
            ));
        }
        let kty = jwk_str(obj, "kty")?.ok_or_else(|| invalid_key("the JWK has no \"kty\""))?;
        if kty != KTY_OKP {
            return Err(invalid_key(
                "unsupported key type: only kty \"OKP\" with crv \"Ed25519\" is accepted",
            ));
        }
        let crv = jwk_str(obj, "crv")?.ok_or_else(|| invalid_key("the JWK has no \"crv\""))?;
        if crv != CRV_ED25519 {
            return Err(invalid_key(
                "unsupported curve: only crv \"Ed25519\" is accepted",
            ));
        }
        let x = jwk_str(obj, "x")?.ok_or_else(|| invalid_key("the JWK has no \"x\""))?;
        decode_ed25519_public(x)?;
        let kid = jwk_str(obj, "kid")?;
        let alg = jwk_str(obj, "alg")?;
        if alg.is_some_and(|a| a != ALG_EDDSA) {
            return Err(invalid_key("an Ed25519 JWK's \"alg\" must be \"EdDSA\""));
        }
        let r#use = jwk_str(obj, "use")?;
        if r#use.is_some_and(|u| u != "sig") {
            return Err(invalid_key("the JWK's \"use\" must be \"sig\""));
        }
        // Other members are ignored, as RFC 7517 §4 requires.
        Ok(PublicJwk {
            kty: kty.to_owned(),
            crv: crv.to_owned(),
            x: x.to_owned(),
            kid: kid.map(str::to_owned),
            alg: alg.map(str::to_owned),
            r#use: r#use.map(str::to_owned),
        })
    }

    /// RFC 7638 JWK thumbprint (SHA-256, base64url without padding). Only the
    /// required members take part (§3.2), so `kid`/`alg`/`use` don't affect it.
    pub fn thumbprint(&self) -> String {
        thumbprint_of(&self.crv, &self.kty, &self.x)
    }

    /// The key as an `ed25519_dalek::VerifyingKey`, re-validating the JWK
    /// (its fields are public and may have been built by hand).
    pub fn verifying_key(&self) -> Result<VerifyingKey, JoseError> {
        if self.kty != KTY_OKP || self.crv != CRV_ED25519 {
            return Err(invalid_key(
                "only kty \"OKP\" with crv \"Ed25519\" is supported",
            ));
        }
        decode_ed25519_public(&self.x)
    }
}

impl TryFrom<Value> for PublicJwk {
    type Error = JoseError;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        PublicJwk::from_value(&value)
    }
}

/// Reads an optional string member; present-but-not-a-string is an error.
fn jwk_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, JoseError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JoseError::InvalidKey(format!(
            "the JWK member \"{name}\" must be a string"
        ))),
    }
}

fn decode_ed25519_public(x: &str) -> Result<VerifyingKey, JoseError> {
    let bytes = decode_b64url(x)
        .map_err(|_| invalid_key("\"x\" must be unpadded base64url (RFC 7515 §2)"))?;
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| invalid_key("\"x\" must encode exactly 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| invalid_key("\"x\" is not a valid Ed25519 public key"))?;
    // A small-order key can "verify" signatures without any private key;
    // verify_strict would refuse them later, but say so at registration.
    if key.is_weak() {
        return Err(invalid_key("\"x\" is a weak (small-order) Ed25519 key"));
    }
    Ok(key)
}

/// A JWK Set (RFC 7517 §5), as published at `/.well-known/jwks.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys, current signing key first by convention.
    pub keys: Vec<PublicJwk>,
}

impl Jwks {
    /// The key whose `kid` equals `kid`, if any.
    pub fn find(&self, kid: &str) -> Option<&PublicJwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

// ---------------------------------------------------------------------------
// Compact JWS parsing and verification
// ---------------------------------------------------------------------------

/// The JWS protected header members we use. Parsing refuses any `alg` other
/// than `EdDSA` and the parameters `jwk`, `jku`, `x5u`, `x5c`, `crit`;
/// other members are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwsHeader {
    /// Always `"EdDSA"` once parsed.
    pub alg: String,
    /// Media type of the complete JWS (RFC 7515 §4.1.9), if present.
    pub typ: Option<String>,
    /// Key id (RFC 7515 §4.1.4), if present.
    pub kid: Option<String>,
}

/// A compact JWS whose three segments have been decoded (but not verified).
struct Parts<'a> {
    header: JwsHeader,
    /// `BASE64URL(header) . BASE64URL(payload)`, exactly as received; the
    /// signature covers these bytes, so nothing is re-serialised (RFC 7515 §5.2 step 8).
    signing_input: &'a str,
    /// Decoded payload; parsed as JSON only when needed.
    payload: Vec<u8>,
    signature: Signature,
}

/// Canonical unpadded base64url only: the engine rejects `=`, the standard
/// alphabet's `+` and `/`, whitespace, and non-zero trailing bits.
fn decode_b64url(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(s)
}

fn split_token(token: &str) -> Result<Parts<'_>, JoseError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed("token exceeds the 8 KiB size limit"));
    }
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(malformed(
            "a compact JWS has exactly three dot-separated segments",
        ));
    };
    let header = parse_header(h)?;
    // Every segment's encoding is checked before any cryptography, so bad
    // encodings are reported as such even when the signature is also wrong
    // (and a correctly signed but padded token is still refused).
    let payload = decode_b64url(p).map_err(|_| malformed("payload is not unpadded base64url"))?;
    let signature =
        decode_b64url(s).map_err(|_| malformed("signature is not unpadded base64url"))?;
    let signature: [u8; 64] = signature
        .as_slice()
        .try_into()
        .map_err(|_| malformed("an Ed25519 signature is 64 bytes"))?;
    Ok(Parts {
        header,
        signing_input: &token[..h.len() + 1 + p.len()],
        payload,
        signature: Signature::from_bytes(&signature),
    })
}

fn parse_header(header_b64: &str) -> Result<JwsHeader, JoseError> {
    let bytes =
        decode_b64url(header_b64).map_err(|_| malformed("header is not unpadded base64url"))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|_| malformed("header is not valid JSON"))?;
    let Value::Object(obj) = value else {
        return Err(malformed("header must be a JSON object"));
    };
    // alg first: an unsupported algorithm is the most useful thing to report
    // (RFC 8725 §3.1: the algorithm must be one we chose, never `none`).
    let alg = match obj.get("alg") {
        Some(Value::String(a)) => a,
        Some(_) => return Err(malformed("header \"alg\" must be a string")),
        None => return Err(malformed("header has no \"alg\"")),
    };
    if alg != ALG_EDDSA {
        return Err(JoseError::UnsupportedAlgorithm(display_safe_alg(alg)));
    }
    for name in FORBIDDEN_HEADER_PARAMS {
        if obj.contains_key(name) {
            return Err(JoseError::Malformed(format!(
                "header parameter \"{name}\" is not accepted"
            )));
        }
    }
    let optional = |name: &str| -> Result<Option<String>, JoseError> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(JoseError::Malformed(format!(
                "header \"{name}\" must be a string"
            ))),
        }
    };
    Ok(JwsHeader {
        alg: ALG_EDDSA.to_owned(),
        typ: optional("typ")?,
        kid: optional("kid")?,
    })
}

/// The `alg` value is attacker-controlled; echo it only when it looks like
/// an algorithm name, so error messages can't carry arbitrary token content.
fn display_safe_alg(alg: &str) -> String {
    let plausible = !alg.is_empty()
        && alg.len() <= 16
        && alg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'+' || b == b'_');
    if plausible {
        alg.to_owned()
    } else {
        "(unrecognised)".to_owned()
    }
}

fn decode_claims(payload: &[u8]) -> Result<Value, JoseError> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|_| malformed("payload is not valid JSON"))?;
    if !value.is_object() {
        return Err(malformed("claims must be a JSON object"));
    }
    Ok(value)
}

/// Checks the signature of an already-split token (RFC 7515 §5.2 step 8).
fn verify_parts(parts: &Parts<'_>, key: &VerifyingKey) -> Result<(), JoseError> {
    // verify_strict: rejects small-order keys and non-canonical R/s, so a
    // valid signature can't be mutated into a second valid one.
    key.verify_strict(parts.signing_input.as_bytes(), &parts.signature)
        .map_err(|_| JoseError::BadSignature)
}

/// Splits and decodes a compact JWS WITHOUT verifying it, to read what is
/// needed to choose a key (`kid`, `iss`). Applies the same structural and
/// header checks as [`verify_compact`]. Never trust the result for anything
/// but key selection.
pub fn peek_unverified(token: &str) -> Result<(JwsHeader, Value), JoseError> {
    let parts = split_token(token)?;
    let claims = decode_claims(&parts.payload)?;
    Ok((parts.header, claims))
}

/// Verifies a compact JWS (EdDSA only, `verify_strict`) and returns its
/// header and claims. Claims are decoded only after the signature checks out.
pub fn verify_compact(token: &str, key: &VerifyingKey) -> Result<(JwsHeader, Value), JoseError> {
    let parts = split_token(token)?;
    verify_parts(&parts, key)?;
    let claims = decode_claims(&parts.payload)?;
    Ok((parts.header, claims))
}

// ---------------------------------------------------------------------------
// Agent assertions (RFC 7519 JWT, RFC 7523-style client assertion)
// ---------------------------------------------------------------------------

/// The policy an agent assertion is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssertionCheck<'a> {
    /// This server's public URL; `aud` must equal it exactly (RFC 7519 §4.1.3
    /// compares case-sensitively, with no normalisation).
    pub audience: &'a str,
    /// Current unix time in seconds, supplied by the caller.
    pub now: i64,
    /// Maximum `exp - iat` (normally [`DEFAULT_MAX_LIFETIME_SECS`]).
    pub max_lifetime_secs: i64,
    /// How far in the future `iat` may be (normally [`DEFAULT_MAX_SKEW_SECS`]).
    pub max_skew_secs: i64,
}

impl<'a> AssertionCheck<'a> {
    /// A check with the default 60 s lifetime and 30 s skew.
    pub fn new(audience: &'a str, now: i64) -> Self {
        Self {
            audience,
            now,
            max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
            max_skew_secs: DEFAULT_MAX_SKEW_SECS,
        }
    }
}

/// The result of a successful [`verify_agent_assertion`]. The caller must
/// record `jti` until `exp` and refuse a second use (replay protection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The authenticated agent (`iss` = `sub`).
    pub agent_id: String,
    /// The assertion's unique id.
    pub jti: String,
    /// Expiry (unix seconds): the jti need not be remembered after this.
    pub exp: i64,
}

/// Verifies an agent's signed assertion with the agent's registered key.
/// `expected_agent_id` is the `iss` the caller already looked the key up by
/// (via [`peek_unverified`]); `iss` and `sub` must both equal it.
///
/// Requires: `alg` EdDSA; valid strict signature; `aud` equal to (or an array
/// containing) `check.audience`; integer `iat` and `exp` with
/// `0 < exp - iat <= max_lifetime_secs`, `exp > now`,
/// `iat <= now + max_skew_secs` (and likewise `nbf` if present); a `jti` of
/// 1..=128 characters without control characters.
pub fn verify_agent_assertion(
    token: &str,
    key: &PublicJwk,
    expected_agent_id: &str,
    check: &AssertionCheck<'_>,
) -> Result<VerifiedAssertion, JoseError> {
    let vk = key.verifying_key()?;
    let parts = split_token(token)?;
    // Explicit typing (RFC 8725 §3.11): one of our grants is never an
    // agent assertion, whoever signed it.
    if parts.header.typ.as_deref() == Some(GRANT_TYP) {
        return Err(malformed("a grant cannot be used as an agent assertion"));
    }
    verify_parts(&parts, &vk)?;
    let claims = decode_claims(&parts.payload)?;
    let Value::Object(claims) = claims else {
        return Err(malformed("claims must be a JSON object"));
    };
    check_assertion_claims(&claims, expected_agent_id, check)
}

fn check_assertion_claims(
    claims: &Map<String, Value>,
    expected_agent_id: &str,
    check: &AssertionCheck<'_>,
) -> Result<VerifiedAssertion, JoseError> {
    // iss / sub (RFC 7519 §4.1.1, §4.1.2): the agent asserts about itself.
    let iss = string_claim(claims, "iss")?;
    let sub = string_claim(claims, "sub")?;
    if iss != expected_agent_id || sub != expected_agent_id {
        return Err(JoseError::WrongIssuer);
    }

    // aud (RFC 7519 §4.1.3): a string or an array of strings; we must be in it.
    match claims.get("aud") {
        None => return Err(JoseError::MissingClaim("aud")),
        Some(Value::String(a)) => {
            if a != check.audience {
                return Err(JoseError::WrongAudience);
            }
        }
        Some(Value::Array(items)) => {
            let mut found = false;
            for item in items {
                match item {
                    Value::String(a) => found |= a == check.audience,
                    _ => return Err(malformed("\"aud\" array members must be strings")),
                }
            }
            if !found {
                return Err(JoseError::WrongAudience);
            }
        }
        Some(_) => return Err(malformed("\"aud\" must be a string or an array of strings")),
    }

    // Times (RFC 7519 §4.1.4, §4.1.6). No leeway on exp: the lifetime is
    // already tiny and the skew allowance lives on iat.
    let iat = numeric_date(claims, "iat")?.ok_or(JoseError::MissingClaim("iat"))?;
    let exp = numeric_date(claims, "exp")?.ok_or(JoseError::MissingClaim("exp"))?;
    if exp <= iat {
        return Err(malformed("\"exp\" must be after \"iat\""));
    }
    // exp > iat, so this can't be negative; checked_sub guards overflow
    // with extreme values.
    match exp.checked_sub(iat) {
        Some(lifetime) if lifetime <= check.max_lifetime_secs => {}
        _ => return Err(JoseError::LifetimeTooLong),
    }
    if exp <= check.now {
        return Err(JoseError::Expired);
    }
    let latest_acceptable = check.now.saturating_add(check.max_skew_secs);
    if iat > latest_acceptable {
        return Err(JoseError::NotYetValid);
    }
    // nbf is optional (RFC 7519 §4.1.5) but honoured if sent.
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > latest_acceptable) {
        return Err(JoseError::NotYetValid);
    }

    // jti (RFC 7519 §4.1.7): the caller records it to stop replays, so it
    // must exist and be bounded; control characters are refused because it
    // ends up in the database and logs.
    let jti = string_claim(claims, "jti")?;
    let jti_chars = jti.chars().count();
    if jti_chars == 0 || jti_chars > MAX_JTI_CHARS {
        return Err(malformed("\"jti\" must be 1 to 128 characters"));
    }
    if jti.chars().any(char::is_control) {
        return Err(malformed("\"jti\" must not contain control characters"));
    }

    Ok(VerifiedAssertion {
        agent_id: iss.to_owned(),
        jti: jti.to_owned(),
        exp,
    })
}

fn string_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, JoseError> {
    match claims.get(name) {
        None => Err(JoseError::MissingClaim(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(JoseError::Malformed(format!(
            "claim \"{name}\" must be a string"
        ))),
    }
}

/// A NumericDate (RFC 7519 §2) restricted to integral values. `1700000000.0`
/// is accepted (it is integral); fractions, strings and values outside the
/// exactly-representable range (|t| < 2^53) are refused.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, JoseError> {
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let bad = || JoseError::Malformed(format!("claim \"{name}\" must be an integer NumericDate"));
    let Value::Number(n) = value else {
        return Err(bad());
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        // Non-integral or u64 > i64::MAX both end up here.
        Some(f) if f.fract() == 0.0 && f.abs() < MAX_EXACT && !n.is_u64() => {
            // Exact: |f| < 2^53 and integral, so the cast loses nothing.
            Ok(Some(f as i64))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use serde_json::json;

    const AUD: &str = "https://countersign.example";
    const NOW: i64 = 1_700_000_000;
    const AGENT: &str = "agent-123";

    // RFC 8037 Appendix A.1 / A.2 / A.3 / A.4.
    const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
    const RFC8037_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

    fn key(seed: u64) -> GrantSigningKey {
        GrantSigningKey::generate(&mut rand::rngs::StdRng::seed_from_u64(seed))
    }

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Signs arbitrary header JSON and payload bytes.
    fn sign_with_header(k: &GrantSigningKey, header: &Value, payload: &[u8]) -> String {
        k.sign_raw(&b64(header.to_string()), payload).unwrap()
    }

    fn claims(iat: i64, exp: i64) -> Value {
        json!({"iss": AGENT, "sub": AGENT, "aud": AUD, "iat": iat, "exp": exp, "jti": "j-1"})
    }

    fn assertion(k: &GrantSigningKey, c: &Value) -> String {
        k.sign_compact("JWT", c).unwrap()
    }

    fn check_assert(k: &GrantSigningKey, token: &str) -> Result<VerifiedAssertion, JoseError> {
        let jwk = k.public_jwk();
        verify_agent_assertion(token, &jwk, AGENT, &AssertionCheck::new(AUD, NOW))
    }

    fn segments(token: &str) -> Vec<String> {
        token.split('.').map(str::to_owned).collect()
    }

    // --- RFC 8037 vectors ---------------------------------------------------

    #[test]
    fn rfc8037_public_key_and_thumbprint() {
        let d = URL_SAFE_NO_PAD.decode(RFC8037_D).unwrap();
        let k = GrantSigningKey::from_secret_bytes(&d).unwrap();
        let jwk = k.public_jwk();
        assert_eq!(jwk.x, RFC8037_X);
        assert_eq!(jwk.thumbprint(), RFC8037_THUMBPRINT);
        assert_eq!(k.kid(), RFC8037_THUMBPRINT);
        let parsed = PublicJwk::parse(&format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"}}"#
        ))
        .unwrap();
        assert_eq!(parsed.thumbprint(), RFC8037_THUMBPRINT);
    }

    #[test]
    fn rfc8037_a4_signature_reproduced_exactly() {
        let d = URL_SAFE_NO_PAD.decode(RFC8037_D).unwrap();
        let k = GrantSigningKey::from_secret_bytes(&d).unwrap();
        let header_b64 = b64(r#"{"alg":"EdDSA"}"#);
        assert_eq!(header_b64, "eyJhbGciOiJFZERTQSJ9");
        let jws = k
            .sign_raw(&header_b64, b"Example of Ed25519 signing")
            .unwrap();
        assert_eq!(jws, RFC8037_JWS);

        // A.5: it verifies (the payload is not JSON, so check the signature
        // step directly; verify_compact then refuses the non-object payload).
        let vk = PublicJwk::parse(&format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"}}"#
        ))
        .unwrap()
        .verifying_key()
        .unwrap();
        let parts = split_token(RFC8037_JWS).unwrap();
        verify_parts(&parts, &vk).unwrap();
        assert!(matches!(
            verify_compact(RFC8037_JWS, &vk),
            Err(JoseError::Malformed(_))
        ));
    }

    // --- signing key ------------------------------------------------------------

    #[test]
    fn secret_bytes_round_trip_and_bad_length() {
        let k = key(1);
        let again = GrantSigningKey::from_secret_bytes(&k.secret_bytes()[..]).unwrap();
        assert_eq!(again.kid(), k.kid());
        assert_eq!(again.public_jwk(), k.public_jwk());
        for len in [0, 31, 33, 64] {
            assert!(matches!(
                GrantSigningKey::from_secret_bytes(&vec![7u8; len]),
                Err(JoseError::InvalidKey(_))
            ));
        }
    }

    #[test]
    fn debug_shows_kid_but_no_key_material() {
        let k = key(2);
        let dbg = format!("{k:?}");
        assert!(dbg.contains(k.kid()));
        let secret = k.secret_bytes();
        assert!(!dbg.contains(&b64(&secret[..])));
        assert!(!dbg.contains(&format!("{:?}", &secret[..])));
        assert!(!dbg.contains(&k.public_jwk().x));
    }

    #[test]
    fn kid_is_thumbprint_and_jwks_shape() {
        let k = key(3);
        let jwk = k.public_jwk();
        assert_eq!(k.kid(), jwk.thumbprint());
        assert_eq!(jwk.kid.as_deref(), Some(k.kid()));
        let jwks = Jwks {
            keys: vec![jwk.clone()],
        };
        let text = serde_json::to_string(&jwks).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{}","kid":"{}","alg":"EdDSA","use":"sig"}}]}}"#,
                jwk.x,
                k.kid()
            )
        );
        let back: Jwks = serde_json::from_str(&text).unwrap();
        assert_eq!(back, jwks);
        assert_eq!(back.find(k.kid()), Some(&jwk));
        assert_eq!(back.find("nope"), None);
        // Thumbprint ignores optional members (RFC 7638 §3.2).
        let bare = PublicJwk {
            kid: None,
            alg: None,
            r#use: None,
            ..jwk
        };
        assert_eq!(bare.thumbprint(), k.kid());
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#, bare.x)
        );
    }

    #[test]
    fn cnf_jkt_matches_manual_rfc7638_computation() {
        let agent = key(4).public_jwk();
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, agent.x);
        assert_eq!(
            agent.thumbprint(),
            b64(Sha256::digest(canonical.as_bytes()))
        );
    }

    // --- sign / verify ------------------------------------------------------------

    #[test]
    fn grant_round_trip() {
        let k = key(5);
        let c = json!({"sub": AGENT, "cnf": {"jkt": key(6).public_jwk().thumbprint()}, "n": 1});
        let token = k.sign_compact(GRANT_TYP, &c).unwrap();
        let header_json = URL_SAFE_NO_PAD.decode(&segments(&token)[0]).unwrap();
        assert_eq!(
            String::from_utf8(header_json).unwrap(),
            format!(
                r#"{{"alg":"EdDSA","typ":"countersign-grant+jwt","kid":"{}"}}"#,
                k.kid()
            )
        );
        let (h, got) = verify_compact(&token, &k.verifying_key()).unwrap();
        assert_eq!(h.alg, "EdDSA");
        assert_eq!(h.typ.as_deref(), Some(GRANT_TYP));
        assert_eq!(h.kid.as_deref(), Some(k.kid()));
        assert_eq!(got, c);
        // Also via the published JWK.
        let vk = k.public_jwk().verifying_key().unwrap();
        assert_eq!(verify_compact(&token, &vk).unwrap().1, c);
        // peek_unverified sees the same without a key.
        let (ph, pc) = peek_unverified(&token).unwrap();
        assert_eq!(ph, h);
        assert_eq!(pc, c);
        // A non-cached typ works too.
        let other = k.sign_compact("other+jwt", &c).unwrap();
        let (h2, _) = verify_compact(&other, &k.verifying_key()).unwrap();
        assert_eq!(h2.typ.as_deref(), Some("other+jwt"));
    }

    #[test]
    fn sign_compact_refuses_non_objects_and_oversize() {
        let k = key(7);
        for bad in [json!([]), json!("x"), json!(1), Value::Null] {
            assert!(matches!(
                k.sign_compact(GRANT_TYP, &bad),
                Err(JoseError::Malformed(_))
            ));
        }
        let big = json!({"blob": "a".repeat(MAX_TOKEN_LEN)});
        assert!(matches!(
            k.sign_compact(GRANT_TYP, &big),
            Err(JoseError::Malformed(_))
        ));
        // Typ with characters needing escapes still yields valid JSON.
        let token = k.sign_compact("we\"ird\\\n", &json!({})).unwrap();
        let (h, _) = verify_compact(&token, &k.verifying_key()).unwrap();
        assert_eq!(h.typ.as_deref(), Some("we\"ird\\\n"));
    }

    #[test]
    fn tampered_payload_header_signature_are_bad_signature() {
        let k = key(8);
        let token = k.sign_compact(GRANT_TYP, &json!({"amount": 10})).unwrap();
        let s = segments(&token);
        let vk = k.verifying_key();

        let payload = b64(r#"{"amount":1000}"#);
        let t = format!("{}.{}.{}", s[0], payload, s[2]);
        assert_eq!(verify_compact(&t, &vk), Err(JoseError::BadSignature));

        let header = b64(format!(
            r#"{{"alg":"EdDSA","typ":"countersign-grant+jwt","kid":"{}x"}}"#,
            k.kid()
        ));
        let t = format!("{}.{}.{}", header, s[1], s[2]);
        assert_eq!(verify_compact(&t, &vk), Err(JoseError::BadSignature));

        let mut sig = URL_SAFE_NO_PAD.decode(&s[2]).unwrap();
        sig[10] ^= 0x01;
        let t = format!("{}.{}.{}", s[0], s[1], b64(&sig));
        assert_eq!(verify_compact(&t, &vk), Err(JoseError::BadSignature));
    }

    #[test]
    fn other_key_is_bad_signature() {
        let token = key(9).sign_compact(GRANT_TYP, &json!({})).unwrap();
        assert_eq!(
            verify_compact(&token, &key(10).verifying_key()),
            Err(JoseError::BadSignature)
        );
        // And as an agent assertion.
        let t = assertion(&key(9), &claims(NOW, NOW + 60));
        assert_eq!(check_assert(&key(10), &t), Err(JoseError::BadSignature));
    }

    #[test]
    fn alg_none_hs256_and_lookalikes_refused() {
        let k = key(11);
        let vk = k.verifying_key();
        let payload = b64(r#"{"sub":"x"}"#);
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), payload);
        assert_eq!(
            verify_compact(&none, &vk),
            Err(JoseError::UnsupportedAlgorithm("none".into()))
        );
        assert!(matches!(
            peek_unverified(&none),
            Err(JoseError::UnsupportedAlgorithm(_))
        ));
        for alg in ["none", "HS256", "eddsa", "ES256", "RS256", "Ed25519"] {
            let t = sign_with_header(&k, &json!({"alg": alg}), br#"{"sub":"x"}"#);
            assert_eq!(
                verify_compact(&t, &vk),
                Err(JoseError::UnsupportedAlgorithm(alg.into())),
                "{alg}"
            );
        }
        // Missing / non-string alg.
        for h in [json!({}), json!({"alg": 1}), json!({"alg": null})] {
            let t = sign_with_header(&k, &h, b"{}");
            assert!(matches!(
                verify_compact(&t, &vk),
                Err(JoseError::Malformed(_))
            ));
        }
        // An absurd alg value is not echoed back.
        let weird = "x".repeat(200);
        let t = sign_with_header(&k, &json!({"alg": weird}), b"{}");
        let err = verify_compact(&t, &vk).unwrap_err();
        assert!(!err.to_string().contains(&weird));
    }

    #[test]
    fn forbidden_header_params_refused() {
        let k = key(12);
        let jwk = serde_json::to_value(k.public_jwk()).unwrap();
        for (name, val) in [
            ("jwk", jwk),
            ("jku", json!("https://evil.example/jwks")),
            ("x5u", json!("https://evil.example/cert")),
            ("x5c", json!(["MIIB"])),
            ("crit", json!(["exp"])),
        ] {
            let mut h = json!({"alg": "EdDSA"});
            h[name] = val;
            let t = sign_with_header(&k, &h, b"{}");
            assert!(
                matches!(verify_compact(&t, &k.verifying_key()), Err(JoseError::Malformed(m)) if m.contains(name)),
                "{name}"
            );
            assert!(peek_unverified(&t).is_err());
        }
        // Unknown harmless members are ignored.
        let t = sign_with_header(&k, &json!({"alg": "EdDSA", "cty": "x", "foo": 1}), b"{}");
        assert!(verify_compact(&t, &k.verifying_key()).is_ok());
    }

    #[test]
    fn structural_and_base64_rules() {
        let k = key(13);
        let vk = k.verifying_key();
        let token = k.sign_compact(GRANT_TYP, &json!({"a": 1})).unwrap();
        let s = segments(&token);
        let is_malformed = |t: &str| matches!(verify_compact(t, &vk), Err(JoseError::Malformed(_)));

        // Segment count.
        assert!(is_malformed(&format!("{}.{}", s[0], s[1])));
        assert!(is_malformed(&format!("{token}.")));
        assert!(is_malformed(&format!("{token}.{}", s[2])));
        assert!(is_malformed(""));
        assert!(is_malformed(".."));

        // Padding in any segment. `{"a":1}` is 7 bytes -> needs padding.
        let padded_payload = base64::engine::general_purpose::URL_SAFE.encode(br#"{"a":1}"#);
        assert!(padded_payload.ends_with('='));
        assert!(is_malformed(&format!(
            "{}.{}.{}",
            s[0], padded_payload, s[2]
        )));
        // ...even when the signature over the padded form is genuine.
        let input = format!("{}.{}", s[0], padded_payload);
        let sig = k.signing.sign(input.as_bytes());
        let signed_padded = format!("{input}.{}", b64(sig.to_bytes()));
        assert!(is_malformed(&signed_padded));
        assert!(is_malformed(&format!("{}.{}.{}==", s[0], s[1], s[2])));
        assert!(is_malformed(&format!("{}=.{}.{}", s[0], s[1], s[2])));

        // Standard-alphabet characters.
        let std_sig = s[2].replace('-', "+").replace('_', "/");
        if std_sig != s[2] {
            assert!(is_malformed(&format!("{}.{}.{}", s[0], s[1], std_sig)));
        }
        assert!(is_malformed(&format!("{}.{}+.{}", s[0], s[1], s[2])));
        assert!(is_malformed(&format!("{}.{}/.{}", s[0], s[1], s[2])));
        // Whitespace.
        assert!(is_malformed(&format!(" {token}")));

        // Signature of the wrong length.
        assert!(is_malformed(&format!(
            "{}.{}.{}",
            s[0],
            s[1],
            b64([0u8; 63])
        )));
        assert!(is_malformed(&format!("{}.{}.", s[0], s[1])));

        // Header / claims must be JSON objects.
        let t = sign_with_header(&k, &json!(["alg", "EdDSA"]), b"{}");
        assert!(is_malformed(&t));
        for payload in [&b"[1]"[..], b"\"s\"", b"null", b"not json", b""] {
            let t = k.sign_raw(&b64(r#"{"alg":"EdDSA"}"#), payload).unwrap();
            assert!(is_malformed(&t));
            assert!(matches!(peek_unverified(&t), Err(JoseError::Malformed(_))));
        }
        // Header that isn't JSON at all.
        assert!(is_malformed(&format!("{}.{}.{}", b64("nope"), s[1], s[2])));

        // Size limit.
        let huge = format!("{}.{}.{}", s[0], "A".repeat(MAX_TOKEN_LEN), s[2]);
        assert!(is_malformed(&huge));
        assert!(matches!(
            peek_unverified(&huge),
            Err(JoseError::Malformed(_))
        ));
    }

    // --- JWK parsing -----------------------------------------------------------

    #[test]
    fn jwk_parse_accepts_public_okp() {
        let k = key(14);
        let text = serde_json::to_string(&k.public_jwk()).unwrap();
        let parsed = PublicJwk::parse(&text).unwrap();
        assert_eq!(parsed, k.public_jwk());
        assert_eq!(parsed.verifying_key().unwrap(), k.verifying_key());
        // Unknown members are ignored; optional ones may be absent.
        let x = &parsed.x;
        let p = PublicJwk::parse(&format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}","key_ops":["verify"],"ext":true}}"#
        ))
        .unwrap();
        assert_eq!(p.kid, None);
        assert_eq!(p.thumbprint(), k.kid());
    }

    #[test]
    fn jwk_with_private_part_refused() {
        let x = key(15).public_jwk().x;
        let text = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}","d":"{RFC8037_D}"}}"#);
        let err = PublicJwk::parse(&text).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, JoseError::InvalidKey(_)));
        assert!(msg.contains("this JWK contains a private key"), "{msg}");
        assert!(!msg.contains(RFC8037_D));
        // Even with another kty, the private key is what gets reported.
        let err = PublicJwk::parse(r#"{"kty":"RSA","d":"secret"}"#).unwrap_err();
        assert!(err.to_string().contains("private key"));
        // Serde deserialisation validates too.
        assert!(serde_json::from_str::<PublicJwk>(&text).is_err());
    }

    #[test]
    fn jwk_wrong_type_curve_or_encoding_refused() {
        let x = key(16).public_jwk().x;
        let bad = [
            format!(r#"{{"kty":"OKP","crv":"X25519","x":"{x}"}}"#),
            format!(r#"{{"kty":"OKP","crv":"Ed448","x":"{x}"}}"#),
            format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{x}"}}"#),
            format!(r#"{{"kty":"okp","crv":"Ed25519","x":"{x}"}}"#),
            format!(r#"{{"crv":"Ed25519","x":"{x}"}}"#),
            r#"{"kty":"OKP","crv":"Ed25519"}"#.to_owned(),
            format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}="}}"#),
            format!(
                r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
                x.replace('-', "+").replace('_', "/") + "+"
            ),
            format!(
                r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
                b64([1u8; 31])
            ),
            format!(
                r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
                b64([1u8; 33])
            ),
            // Small-order point (identity).
            format!(
                r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
                b64({
                    let mut id = [0u8; 32];
                    id[0] = 1;
                    id
                })
            ),
            format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}","alg":"ES256"}}"#),
            format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}","use":"enc"}}"#),
            format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":5}}"#),
            r#"{"kty":"OKP","crv":"Ed25519","x":1}"#.to_owned(),
            "[]".to_owned(),
            "not json".to_owned(),
        ];
        for text in &bad {
            assert!(
                matches!(PublicJwk::parse(text), Err(JoseError::InvalidKey(_))),
                "{text}"
            );
        }
        // A hand-built JWK with the wrong curve can't become a key.
        let jwk = PublicJwk {
            crv: "X25519".into(),
            ..key(16).public_jwk()
        };
        assert!(matches!(jwk.verifying_key(), Err(JoseError::InvalidKey(_))));
    }

    // --- agent assertions ---------------------------------------------------------

    #[test]
    fn assertion_happy_path() {
        let k = key(20);
        let t = assertion(&k, &claims(NOW, NOW + 60));
        let v = check_assert(&k, &t).unwrap();
        assert_eq!(
            v,
            VerifiedAssertion {
                agent_id: AGENT.into(),
                jti: "j-1".into(),
                exp: NOW + 60
            }
        );
        // peek gives the iss to look the key up by.
        let (_, c) = peek_unverified(&t).unwrap();
        assert_eq!(c["iss"], AGENT);
    }

    #[test]
    fn assertion_lifetime_boundary() {
        let k = key(21);
        assert!(check_assert(&k, &assertion(&k, &claims(NOW - 10, NOW + 50))).is_ok());
        assert_eq!(
            check_assert(&k, &assertion(&k, &claims(NOW - 11, NOW + 50))),
            Err(JoseError::LifetimeTooLong)
        );
        assert!(matches!(
            check_assert(&k, &assertion(&k, &claims(NOW + 5, NOW + 5))),
            Err(JoseError::Malformed(_))
        ));
        assert!(matches!(
            check_assert(&k, &assertion(&k, &claims(i64::MIN, i64::MAX))),
            Err(JoseError::LifetimeTooLong)
        ));
    }

    #[test]
    fn assertion_expiry_boundary() {
        let k = key(22);
        assert_eq!(
            check_assert(&k, &assertion(&k, &claims(NOW - 30, NOW))),
            Err(JoseError::Expired)
        );
        assert!(check_assert(&k, &assertion(&k, &claims(NOW - 30, NOW + 1))).is_ok());
    }

    #[test]
    fn assertion_iat_skew_boundary() {
        let k = key(23);
        assert!(check_assert(&k, &assertion(&k, &claims(NOW + 30, NOW + 60))).is_ok());
        assert_eq!(
            check_assert(&k, &assertion(&k, &claims(NOW + 31, NOW + 60))),
            Err(JoseError::NotYetValid)
        );
        let mut c = claims(NOW, NOW + 60);
        c["nbf"] = json!(NOW + 31);
        assert_eq!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::NotYetValid)
        );
        c["nbf"] = json!(NOW);
        assert!(check_assert(&k, &assertion(&k, &c)).is_ok());
    }

    #[test]
    fn assertion_audience() {
        let k = key(24);
        let mut c = claims(NOW, NOW + 60);
        c["aud"] = json!("https://other.example");
        assert_eq!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::WrongAudience)
        );
        c["aud"] = json!(format!("{AUD}/"));
        assert_eq!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::WrongAudience)
        );
        c["aud"] = json!(["https://other.example", AUD]);
        assert!(check_assert(&k, &assertion(&k, &c)).is_ok());
        c["aud"] = json!(["https://other.example"]);
        assert_eq!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::WrongAudience)
        );
        c["aud"] = json!([]);
        assert_eq!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::WrongAudience)
        );
        c["aud"] = json!([AUD, 5]);
        assert!(matches!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::Malformed(_))
        ));
        c["aud"] = json!(5);
        assert!(matches!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::Malformed(_))
        ));
        c.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::MissingClaim("aud"))
        );
    }

    #[test]
    fn assertion_issuer_subject() {
        let k = key(25);
        let mut c = claims(NOW, NOW + 60);
        c["sub"] = json!("someone-else");
        assert_eq!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::WrongIssuer)
        );
        let mut c = claims(NOW, NOW + 60);
        c["iss"] = json!("someone-else");
        c["sub"] = json!("someone-else");
        assert_eq!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::WrongIssuer)
        );
        let mut c = claims(NOW, NOW + 60);
        c.as_object_mut().unwrap().remove("sub");
        assert_eq!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::MissingClaim("sub"))
        );
        let mut c = claims(NOW, NOW + 60);
        c.as_object_mut().unwrap().remove("iss");
        assert_eq!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::MissingClaim("iss"))
        );
    }

    #[test]
    fn assertion_jti_rules() {
        let k = key(26);
        let mut c = claims(NOW, NOW + 60);
        c.as_object_mut().unwrap().remove("jti");
        assert_eq!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::MissingClaim("jti"))
        );
        for (jti, ok) in [
            (json!(""), false),
            (json!("é".repeat(128)), true),
            (json!("a".repeat(129)), false),
            (json!("a\nb"), false),
            (json!(42), false),
        ] {
            c["jti"] = jti.clone();
            let r = check_assert(&k, &assertion(&k, &c));
            assert_eq!(r.is_ok(), ok, "{jti}");
            if !ok {
                assert!(matches!(r, Err(JoseError::Malformed(_))));
            }
        }
    }

    #[test]
    fn assertion_numeric_claims_must_be_integers() {
        let k = key(27);
        let mut c = claims(NOW, NOW + 60);
        c.as_object_mut().unwrap().remove("iat");
        assert_eq!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::MissingClaim("iat"))
        );
        let mut c = claims(NOW, NOW + 60);
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            check_assert(&k, &assertion(&k, &c)),
            Err(JoseError::MissingClaim("exp"))
        );
        for bad in [
            json!(NOW.to_string()),
            json!(NOW as f64 + 0.5),
            json!(null),
            json!(u64::MAX),
        ] {
            let mut c = claims(NOW, NOW + 60);
            c["iat"] = bad.clone();
            assert!(
                matches!(
                    check_assert(&k, &assertion(&k, &c)),
                    Err(JoseError::Malformed(_))
                ),
                "{bad}"
            );
        }
        // Integral floats are integers.
        let mut c = claims(NOW, NOW + 60);
        c["iat"] = json!(NOW as f64);
        assert!(check_assert(&k, &assertion(&k, &c)).is_ok());
    }

    #[test]
    fn assertion_refuses_grant_typ_and_invalid_key() {
        let k = key(28);
        let t = k.sign_compact(GRANT_TYP, &claims(NOW, NOW + 60)).unwrap();
        assert!(matches!(check_assert(&k, &t), Err(JoseError::Malformed(_))));
        let bad_jwk = PublicJwk {
            x: "AAAA".into(),
            ..k.public_jwk()
        };
        let t = assertion(&k, &claims(NOW, NOW + 60));
        assert!(matches!(
            verify_agent_assertion(&t, &bad_jwk, AGENT, &AssertionCheck::new(AUD, NOW)),
            Err(JoseError::InvalidKey(_))
        ));
    }

    #[test]
    fn error_messages_do_not_echo_token() {
        let k = key(29);
        let t = assertion(&k, &claims(NOW - 100, NOW - 50));
        let err = check_assert(&k, &t).unwrap_err();
        let msg = err.to_string();
        for seg in segments(&t) {
            assert!(!msg.contains(&seg));
        }
        assert!(!msg.contains(AGENT));
    }
}
