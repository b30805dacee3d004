//! Signed checkpoints of the audit chain: what the server signs, how a verifier checks a
//! checkpoint's signature, and how a chain is checked to still extend the checkpoints it is
//! given.
//!
//! # Why
//!
//! The chain's hashes make every edit, deletion, insertion or swap visible, except one: delete
//! the *newest* events and set the head row back, and what remains is a shorter chain that is
//! linked perfectly. Nothing inside the database can tell, because whoever can rewrite the
//! database can rewrite anything kept there. A checkpoint is the server's Ed25519 signature over
//! the head `{seq, hash, time}` at one moment, kept outside the database (a file in the data
//! directory, and in the hands of whoever fetched it; see [`crate::service::checkpoints`]). A
//! chain that no longer holds that hash at that `seq`, or is shorter, has lost events. It is
//! Certificate Transparency's signed tree head (RFC 6962 §3.5) for a hash chain: a later
//! checkpoint's head covers every earlier event by the chain's hashes, so holding the newest
//! one protects everything before it.
//!
//! # The token
//!
//! A compact JWS with its own `typ` ([`CHECKPOINT_TYP`], RFC 8725 §3.11 explicit typing), made
//! and checked with the same primitives as grants ([`super::jose`]), under a key of its own
//! ([`CheckpointKey`]): claims `{"iss": public URL, "seq", "hash", "time": unix ms}`. A
//! verifier picks the key by the header's `kid`, which must be the RFC 7638 thumbprint of a key
//! *it already trusts*: a checkpoint never brings its own key, and nothing here reads a key
//! from the database (the party we defend against controls it).
//!
//! # What it must never do
//!
//! No I/O and no clock: times are passed in. It never trusts the readable copy of a
//! checkpoint's fields next to its token ([`SignedCheckpoint`] as stored): [`verify`] derives
//! every field from the signed payload.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::audit::AuditEvent;
use super::jose::{
    peek_unverified, verify_compact, GrantSigningKey, JoseError, PublicJwk, MAX_TOKEN_LEN,
};
use crate::clock::{rfc3339, Millis};

/// The `typ` of a checkpoint token. Distinct from the grant's, so neither can stand in for the
/// other even under a key that signed both (ours never do).
pub const CHECKPOINT_TYP: &str = "countersign-checkpoint+jwt";

/// Kinds of event after which the server signs a checkpoint soon instead of at its interval:
/// every change to who may act or how (agents' credentials and the kill switch, policy, the
/// guards, people, their roles and passkeys) and every recorded approval. These are the events
/// an attacker who rewrites the database most wants gone (a suspension, a resumption, a key
/// change, who approved what), and they come at the pace of people, so signing after each costs
/// nothing. Events at machine pace (requests, grants, redemptions, outcomes, expiries) are
/// covered by the interval.
pub const IMPORTANT_KINDS: &[&str] = &[
    "agent.created",
    "agent.suspended",
    "agent.resumed",
    "agent.key_rotated",
    "agent.public_key_set",
    "agent.parent_set",
    "policy.applied",
    "settings.changed",
    "user.invited",
    "user.enrolled",
    "user.updated",
    "user.deactivated",
    "user.reactivated",
    "passkey.added",
    "passkey.removed",
    "approval.recorded",
];

/// Every event caused by a person (`user:<id>`: an approval, a denial, a cancellation, a
/// revocation, a sign-in) is important too: people act at human pace.
pub const PERSON_ACTOR_PREFIX: &str = "user:";

/// So is every event the operator's command line causes (actor `cli`).
pub const IMPORTANT_ACTORS: &[&str] = &["cli"];

/// Whether an event of this kind, caused by this actor, deserves a checkpoint soon.
pub fn is_important(kind: &str, actor: &str) -> bool {
    IMPORTANT_KINDS.contains(&kind)
        || actor.starts_with(PERSON_ACTOR_PREFIX)
        || IMPORTANT_ACTORS.contains(&actor)
}

/// The chain head at one moment: the statement a checkpoint signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The newest event's position.
    pub seq: i64,
    /// The newest event's hash.
    pub hash: String,
    /// When it was signed (unix ms).
    pub time: Millis,
}

/// A checkpoint: its token and, for people and `jq`, a readable copy of what it says. Stored one
/// per line in the checkpoint file and served in the checkpoint feed. Verifiers read only
/// `jws` ([`verify`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// The newest event's position when it was signed.
    pub seq: i64,
    /// That event's hash.
    pub hash: String,
    /// When it was signed (unix ms).
    pub time: Millis,
    /// The public URL of the server that signed it.
    pub iss: String,
    /// The signing key's RFC 7638 thumbprint.
    pub kid: String,
    /// The compact JWS.
    pub jws: String,
}

impl fmt::Display for SignedCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the checkpoint at event {} ({}) signed {} by key {}",
            self.seq,
            self.hash,
            rfc3339(self.time),
            self.kid
        )
    }
}

/// The key checkpoints are signed with: an Ed25519 key of their own, never the grant key (see
/// `service::checkpoints` for why). A distinct type, so one cannot be passed for the other.
/// Not `Serialize`; `Debug` shows only the kid.
pub struct CheckpointKey(GrantSigningKey);

impl CheckpointKey {
    /// A fresh key from a cryptographically secure RNG.
    pub fn generate<R: rand_core::CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        Self(GrantSigningKey::generate(rng))
    }

    /// Loads a key from its 32-byte Ed25519 seed.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, JoseError> {
        GrantSigningKey::from_secret_bytes(bytes).map(Self)
    }

    /// The 32-byte seed, for the caller to persist (in a 0600 file); wiped when dropped.
    pub fn secret_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        self.0.secret_bytes()
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        self.0.kid()
    }

    /// The public half, as a verifier pins it.
    pub fn public_jwk(&self) -> PublicJwk {
        self.0.public_jwk()
    }

    /// Signs the head as a checkpoint of the chain of the server at `issuer`.
    pub fn sign(&self, issuer: &str, head: &Head) -> Result<SignedCheckpoint, JoseError> {
        let claims = json!({
            "iss": issuer,
            "seq": head.seq,
            "hash": head.hash,
            "time": head.time,
        });
        let jws = self.0.sign_compact(CHECKPOINT_TYP, &claims)?;
        Ok(SignedCheckpoint {
            seq: head.seq,
            hash: head.hash.clone(),
            time: head.time,
            iss: issuer.to_string(),
            kid: self.kid().to_string(),
            jws,
        })
    }
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

/// Why a checkpoint is refused. Messages name the key, never repeat the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not a compact JWS, or not one with the claims of a checkpoint.
    #[error("is not a checkpoint: {0}")]
    Malformed(String),
    /// Signed (or claiming to be signed) by a key the verifier was not told to trust.
    #[error("is signed by key {kid}, which is not one of the keys trusted")]
    UntrustedKey {
        /// The header's `kid`.
        kid: String,
    },
    /// The signature does not verify: the checkpoint was altered or forged.
    #[error("has a signature that does not verify under key {kid}: it was altered or forged")]
    BadSignature {
        /// The trusted key it was checked with.
        kid: String,
    },
    /// A token of another type (e.g. a grant) under a trusted key.
    #[error("is a {typ:?} token, not a checkpoint ({CHECKPOINT_TYP})")]
    WrongType {
        /// The header's `typ`.
        typ: String,
    },
}

/// Checks a checkpoint token against the keys the verifier trusts and returns what it says.
pub fn verify(jws: &str, trusted: &[PublicJwk]) -> Result<SignedCheckpoint, CheckpointError> {
    let malformed = |e: JoseError| CheckpointError::Malformed(e.to_string());
    let (header, _) = peek_unverified(jws).map_err(malformed)?;
    let kid = header
        .kid
        .ok_or_else(|| CheckpointError::Malformed("its header names no key (kid)".into()))?;
    // The kid is only a hint for choosing among trusted keys: it must equal the thumbprint we
    // compute ourselves, so a key file's own `kid` member cannot make a key stand for another.
    let key = trusted
        .iter()
        .find(|k| k.thumbprint() == kid)
        .ok_or_else(|| CheckpointError::UntrustedKey { kid: kid.clone() })?;
    let verifying = key.verifying_key().map_err(malformed)?;
    let (header, claims) = verify_compact(jws, &verifying).map_err(|e| match e {
        JoseError::BadSignature => CheckpointError::BadSignature { kid: kid.clone() },
        other => malformed(other),
    })?;
    if header.typ.as_deref() != Some(CHECKPOINT_TYP) {
        return Err(CheckpointError::WrongType {
            typ: header.typ.unwrap_or_default(),
        });
    }
    let bad = |what: &str| CheckpointError::Malformed(format!("its claims have no valid {what}"));
    let seq = claims
        .get("seq")
        .and_then(Value::as_i64)
        .filter(|s| *s >= 1)
        .ok_or_else(|| bad("seq"))?;
    let hash = claims
        .get("hash")
        .and_then(Value::as_str)
        .filter(|h| is_event_hash(h))
        .ok_or_else(|| bad("hash"))?;
    let time = claims
        .get("time")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("time"))?;
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("iss"))?;
    Ok(SignedCheckpoint {
        seq,
        hash: hash.to_string(),
        time,
        iss: iss.to_string(),
        kid,
        jws: jws.to_string(),
    })
}

/// `sha256:` and 64 lowercase hex digits, the form of every event hash.
fn is_event_hash(h: &str) -> bool {
    h.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The checkpoint tokens found in a document, each with where it was found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// `(where, token)`, in document order; `where` is `line N` or `entry N`.
    pub tokens: Vec<(String, String)>,
    /// Where a line was neither a checkpoint entry nor a token (a write cut short by a crash,
    /// or not a checkpoint file at all). The caller says so.
    pub skipped: Vec<String>,
}

/// Finds checkpoint tokens in the forms we hand them out: the checkpoint file (JSON lines of
/// [`SignedCheckpoint`]), the checkpoint feed (`{"checkpoints": [...]}`), or tokens one per line.
/// Only the tokens are taken; [`verify`] says what each one means.
pub fn find_tokens(text: &str) -> Found {
    let mut found = Found::default();
    if let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(text) {
        if let Some(Value::Array(entries)) = doc.get("checkpoints") {
            for (i, entry) in entries.iter().enumerate() {
                let place = format!("entry {}", i + 1);
                match token_of(entry) {
                    Some(t) => found.tokens.push((place, t)),
                    None => found.skipped.push(place),
                }
            }
            return found;
        }
    }
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let place = format!("line {}", i + 1);
        let token = if line.starts_with('{') {
            serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| token_of(&v))
        } else if looks_like_compact_jws(line) {
            Some(line.to_string())
        } else {
            None
        };
        match token {
            Some(t) => found.tokens.push((place, t)),
            None => found.skipped.push(place),
        }
    }
    found
}

fn token_of(entry: &Value) -> Option<String> {
    match entry {
        Value::String(s) if looks_like_compact_jws(s) => Some(s.clone()),
        Value::Object(o) => o
            .get("jws")
            .and_then(Value::as_str)
            .filter(|s| looks_like_compact_jws(s))
            .map(str::to_string),
        _ => None,
    }
}

fn looks_like_compact_jws(s: &str) -> bool {
    s.len() <= MAX_TOKEN_LEN
        && s.split('.').count() == 3
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A verified checkpoint and where the verifier got it (a file and line, a URL and entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedCheckpoint {
    /// What it says, verified.
    pub checkpoint: SignedCheckpoint,
    /// Where it came from, for messages.
    pub source: String,
}

/// The chain does not extend a checkpoint: events were removed or rewritten after it was signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the chain does not extend {} (from {origin}): {reason}", .checkpoint)]
pub struct Contradiction {
    /// The checkpoint it contradicts (boxed: it holds its token, and this travels in `Err`).
    pub checkpoint: Box<SignedCheckpoint>,
    /// Where that checkpoint came from.
    pub origin: String,
    /// What is different.
    pub reason: String,
}

/// Checks, along a walk of the chain in `seq` order, that every checkpoint's event is there with
/// the checkpoint's hash. Combined with [`super::audit::ChainVerifier`] on the same walk (links
/// intact from the first event to the last), that proves the chain still extends each one.
#[derive(Debug, Clone)]
pub struct ExtensionCheck {
    /// Not yet reached, the lowest `seq` last (popped first).
    pending: Vec<SourcedCheckpoint>,
    /// How many were found in place.
    confirmed: usize,
}

impl ExtensionCheck {
    /// A check of these checkpoints, in any order.
    pub fn new(mut checkpoints: Vec<SourcedCheckpoint>) -> Self {
        checkpoints.sort_by_key(|c| std::cmp::Reverse(c.checkpoint.seq));
        Self {
            pending: checkpoints,
            confirmed: 0,
        }
    }

    /// Looks at the next event of the walk (already checked by the chain verifier).
    pub fn observe(&mut self, e: &AuditEvent) -> Result<(), Contradiction> {
        while let Some(next) = self.pending.last() {
            if next.checkpoint.seq > e.seq {
                break;
            }
            let Some(c) = self.pending.pop() else { break };
            if c.checkpoint.seq < e.seq {
                // The verifier refuses gaps, so this means the walk skipped events.
                return Err(contradiction(c, format!("event {} is missing", e.seq - 1)));
            }
            if c.checkpoint.hash != e.hash {
                let reason = format!(
                    "event {} now has hash {}: it, or an event before it, was rewritten",
                    e.seq, e.hash
                );
                return Err(contradiction(c, reason));
            }
            self.confirmed += 1;
        }
        Ok(())
    }

    /// After the last event (`last_seq`, 0 for an empty chain): a checkpoint beyond it was
    /// signed over events that are gone. Returns how many checkpoints were confirmed.
    pub fn finish(mut self, last_seq: i64) -> Result<usize, Contradiction> {
        // The highest seq is first in `pending`: the checkpoint missing the most events.
        if !self.pending.is_empty() {
            let c = self.pending.swap_remove(0);
            let reason = format!(
                "the chain now ends at event {last_seq}, so events {} to {} (at least) were removed",
                last_seq + 1,
                c.checkpoint.seq
            );
            return Err(contradiction(c, reason));
        }
        Ok(self.confirmed)
    }
}

fn contradiction(c: SourcedCheckpoint, reason: String) -> Contradiction {
    Contradiction {
        checkpoint: Box::new(c.checkpoint),
        origin: c.source,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{event_hash, ChainVerifier, GENESIS_HASH};
    use crate::domain::jose::GRANT_TYP;

    fn key(seed: u8) -> CheckpointKey {
        CheckpointKey::from_secret_bytes(&[seed; 32]).unwrap()
    }

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let data = json!({ "n": seq });
                let hash = event_hash(seq, seq, "system", "test.event", None, &data, &prev);
                AuditEvent {
                    seq,
                    at: seq,
                    actor: "system".into(),
                    kind: "test.event".into(),
                    request_id: None,
                    data,
                    prev_hash: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                }
            })
            .collect()
    }

    fn signed(k: &CheckpointKey, e: &AuditEvent) -> SourcedCheckpoint {
        let head = Head {
            seq: e.seq,
            hash: e.hash.clone(),
            time: 1_700_000_000_000,
        };
        SourcedCheckpoint {
            checkpoint: k.sign("https://cs.example", &head).unwrap(),
            source: format!("test {}", e.seq),
        }
    }

    fn check(events: &[AuditEvent], cps: Vec<SourcedCheckpoint>) -> Result<usize, Contradiction> {
        let mut v = ChainVerifier::new();
        let mut x = ExtensionCheck::new(cps);
        for e in events {
            v.check(e).unwrap();
            x.observe(e)?;
        }
        x.finish(v.checked())
    }

    #[test]
    fn a_checkpoint_verifies_under_its_key_and_says_what_was_signed() {
        let k = key(1);
        let c = chain(3);
        let s = signed(&k, &c[2]).checkpoint;
        let v = verify(&s.jws, &[key(2).public_jwk(), k.public_jwk()]).unwrap();
        assert_eq!(v, s);
        assert_eq!((v.seq, v.hash.as_str()), (3, c[2].hash.as_str()));
        assert_eq!(v.iss, "https://cs.example");
        let (header, _) = peek_unverified(&s.jws).unwrap();
        assert_eq!(header.typ.as_deref(), Some(CHECKPOINT_TYP));
        assert_eq!(header.kid.as_deref(), Some(k.kid()));
    }

    #[test]
    fn an_untrusted_key_or_an_altered_token_is_refused() {
        let k = key(1);
        let s = signed(&k, &chain(1)[0]).checkpoint;
        assert_eq!(
            verify(&s.jws, &[key(2).public_jwk()]),
            Err(CheckpointError::UntrustedKey {
                kid: k.kid().into()
            })
        );
        assert_eq!(
            verify(&s.jws, &[]),
            Err(CheckpointError::UntrustedKey {
                kid: k.kid().into()
            })
        );
        // Another payload under the same header and signature.
        let mut parts: Vec<String> = s.jws.split('.').map(str::to_string).collect();
        let forged = json!({ "iss": "https://cs.example", "seq": 99, "hash": s.hash, "time": 1 });
        parts[1] = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&forged).unwrap(),
        );
        assert_eq!(
            verify(&parts.join("."), &[k.public_jwk()]),
            Err(CheckpointError::BadSignature {
                kid: k.kid().into()
            })
        );
        // A trusted key's JWK claiming another kid does not make it that key.
        let mut liar = key(2).public_jwk();
        liar.kid = Some(k.kid().into());
        assert!(matches!(
            verify(&s.jws, &[liar]),
            Err(CheckpointError::UntrustedKey { .. })
        ));
    }

    #[test]
    fn a_token_of_another_type_is_not_a_checkpoint() {
        let inner = GrantSigningKey::from_secret_bytes(&[1; 32]).unwrap();
        let grant = inner
            .sign_compact(
                GRANT_TYP,
                &json!({ "iss": "x", "seq": 1, "hash": format!("sha256:{}", "a".repeat(64)), "time": 1 }),
            )
            .unwrap();
        assert_eq!(
            verify(&grant, &[key(1).public_jwk()]),
            Err(CheckpointError::WrongType {
                typ: GRANT_TYP.into()
            })
        );
    }

    #[test]
    fn claims_must_be_those_of_a_checkpoint() {
        let k = key(1);
        for claims in [
            json!({ "iss": "x", "seq": 0, "hash": format!("sha256:{}", "a".repeat(64)), "time": 1 }),
            json!({ "iss": "x", "seq": 1, "hash": "sha256:nothex", "time": 1 }),
            json!({ "iss": "x", "seq": 1, "hash": format!("sha256:{}", "a".repeat(64)) }),
            json!({ "seq": 1, "hash": format!("sha256:{}", "a".repeat(64)), "time": 1 }),
        ] {
            let t = k.0.sign_compact(CHECKPOINT_TYP, &claims).unwrap();
            assert!(
                matches!(
                    verify(&t, &[k.public_jwk()]),
                    Err(CheckpointError::Malformed(_))
                ),
                "{claims}"
            );
        }
        assert!(matches!(
            verify("not a token", &[k.public_jwk()]),
            Err(CheckpointError::Malformed(_))
        ));
    }

    #[test]
    fn a_chain_that_grew_extends_its_checkpoints() {
        let k = key(1);
        let c = chain(6);
        let cps = vec![signed(&k, &c[4]), signed(&k, &c[1]), signed(&k, &c[4])];
        assert_eq!(check(&c, cps), Ok(3));
        assert_eq!(check(&c, vec![]), Ok(0));
    }

    #[test]
    fn a_truncated_chain_contradicts_the_checkpoint_beyond_its_end() {
        let k = key(1);
        let c = chain(6);
        let cps = vec![signed(&k, &c[1]), signed(&k, &c[5]), signed(&k, &c[4])];
        let err = check(&c[..3], cps).unwrap_err();
        assert_eq!(err.checkpoint.seq, 6, "the one that lost the most is named");
        assert!(err.reason.contains("ends at event 3"), "{}", err.reason);
        assert!(err.to_string().contains("from test 6"), "{err}");
        assert_eq!(
            check(&[], vec![signed(&k, &c[0])])
                .unwrap_err()
                .checkpoint
                .seq,
            1
        );
    }

    #[test]
    fn a_rewritten_chain_contradicts_the_checkpoint_at_the_changed_hash() {
        let k = key(1);
        let c = chain(4);
        let cps = vec![signed(&k, &c[2])];
        // Truncated to event 2, then a different event 3 and 4 appended, properly linked.
        let mut other = c[..2].to_vec();
        for seq in 3..=4 {
            let data = json!({ "n": -seq });
            let prev = other.last().unwrap().hash.clone();
            let hash = event_hash(seq, seq, "system", "test.event", None, &data, &prev);
            other.push(AuditEvent {
                seq,
                at: seq,
                actor: "system".into(),
                kind: "test.event".into(),
                request_id: None,
                data,
                prev_hash: prev,
                hash,
            });
        }
        let err = check(&other, cps).unwrap_err();
        assert_eq!(err.checkpoint.seq, 3);
        assert!(
            err.reason.contains("event 3 now has hash"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn tokens_are_found_in_the_file_the_feed_and_bare_lines() {
        let k = key(1);
        let c = chain(2);
        let a = signed(&k, &c[0]).checkpoint;
        let b = signed(&k, &c[1]).checkpoint;
        let file = format!(
            "{}\n\n{}\n{{\"seq\":3,\"ha",
            serde_json::to_string(&a).unwrap(),
            b.jws
        );
        let found = find_tokens(&file);
        assert_eq!(
            found.tokens,
            vec![
                ("line 1".into(), a.jws.clone()),
                ("line 3".into(), b.jws.clone())
            ]
        );
        assert_eq!(found.skipped, vec!["line 4".to_string()]);
        let feed = json!({ "keys": [k.public_jwk()], "checkpoints": [a, b.jws, 7] });
        let found = find_tokens(&feed.to_string());
        assert_eq!(found.tokens.len(), 2);
        assert_eq!(found.tokens[1].0, "entry 2");
        assert_eq!(found.skipped, vec!["entry 3".to_string()]);
        // A file of one entry is read as lines, not as a feed.
        let one = find_tokens(&serde_json::to_string(&signed(&k, &c[0]).checkpoint).unwrap());
        assert_eq!(one.tokens.len(), 1);
    }

    #[test]
    fn people_and_the_operator_and_changes_to_who_may_act_are_important() {
        assert!(is_important("agent.suspended", "system"));
        assert!(is_important("policy.applied", "test"));
        assert!(is_important("request.denied", "user:u1"));
        assert!(is_important("request.created", "cli"));
        assert!(!is_important("request.denied", "policy"));
        assert!(!is_important("request.approved", "policy"));
        assert!(!is_important("grant.issued", "system"));
        assert!(!is_important("request.created", "agent:a1"));
        assert!(!is_important("request.created", "client"));
    }

    #[test]
    fn the_key_never_shows_in_debug() {
        let k = key(7);
        let shown = format!("{k:?}");
        assert!(shown.contains(k.kid()));
        assert!(!shown.contains(&hex::encode([7u8; 32])));
    }
}
