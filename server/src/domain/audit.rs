//! The audit chain's rules: how an event is hashed and how a chain is checked.
//!
//! `hash = SHA-256(prev_hash || canonical(event without hash))`, where `canonical` is RFC 8785
//! JSON of `{seq, at, actor, kind, request_id, data, prev_hash}`. Because each hash covers the
//! previous one, editing, deleting or reordering any stored event breaks every link after it,
//! and [`ChainVerifier`] names the first event whose stored hash no longer matches.
//!
//! This module never reads or writes storage; [`crate::store::audit`] appends and reads rows.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::canonical::{canonical_json, sha256_prefixed};

/// The `prev_hash` of the first event.
pub const GENESIS_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// One event on the chain, as stored and exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position on the chain, from 1, without gaps.
    pub seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// Who caused it: `agent:<id>`, `user:<id>`, `system`, `cli`.
    pub actor: String,
    /// What happened, e.g. `request.created`, `approval.recorded`, `grant.redeemed`.
    pub kind: String,
    /// The request it belongs to, when it belongs to one.
    pub request_id: Option<String>,
    /// The evidence: whatever this kind of event records.
    pub data: Value,
    /// The previous event's hash.
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}

/// Computes an event's hash from its fields and its predecessor's hash.
pub fn event_hash(
    seq: i64,
    at: i64,
    actor: &str,
    kind: &str,
    request_id: Option<&str>,
    data: &Value,
    prev_hash: &str,
) -> String {
    let body = json!({
        "seq": seq,
        "at": at,
        "actor": actor,
        "kind": kind,
        "request_id": request_id,
        "data": data,
        "prev_hash": prev_hash,
    });
    let mut input = String::with_capacity(prev_hash.len() + 256);
    input.push_str(prev_hash);
    input.push_str(&canonical_json(&body));
    sha256_prefixed(input.as_bytes())
}

impl AuditEvent {
    /// The hash this event should have, recomputed from its contents.
    pub fn expected_hash(&self) -> String {
        event_hash(
            self.seq,
            self.at,
            &self.actor,
            &self.kind,
            self.request_id.as_deref(),
            &self.data,
            &self.prev_hash,
        )
    }
}

/// Where and why a chain stops being trustworthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at event {seq}: {reason}")]
pub struct BrokenLink {
    /// The first event that does not check out.
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks a chain one event at a time, in `seq` order, without holding it in memory.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next_seq: i64,
    prev_hash: String,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
        }
    }
}

impl ChainVerifier {
    /// A verifier expecting the first event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next event.
    pub fn check(&mut self, e: &AuditEvent) -> Result<(), BrokenLink> {
        let broken = |reason: String| BrokenLink { seq: e.seq, reason };
        if e.seq != self.next_seq {
            return Err(BrokenLink {
                seq: self.next_seq,
                reason: format!("event {} is missing (found {} next)", self.next_seq, e.seq),
            });
        }
        if e.prev_hash != self.prev_hash {
            return Err(broken(format!(
                "prev_hash {} does not match the hash of event {} ({})",
                e.prev_hash,
                e.seq - 1,
                self.prev_hash
            )));
        }
        let expected = e.expected_hash();
        if e.hash != expected {
            return Err(broken(format!(
                "stored hash {} does not match its contents (recomputed {expected})",
                e.hash
            )));
        }
        self.next_seq += 1;
        self.prev_hash = e.hash.clone();
        Ok(())
    }

    /// How many events have been checked.
    pub fn checked(&self) -> i64 {
        self.next_seq - 1
    }

    /// The hash of the last event checked (the chain head).
    pub fn head(&self) -> &str {
        &self.prev_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let data = json!({"n": seq, "text": "ä\u{1F600}"});
                let hash = event_hash(
                    seq,
                    1000 + seq,
                    "system",
                    "test.event",
                    Some("r1"),
                    &data,
                    &prev,
                );
                let e = AuditEvent {
                    seq,
                    at: 1000 + seq,
                    actor: "system".into(),
                    kind: "test.event".into(),
                    request_id: Some("r1".into()),
                    data,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    fn verify(events: &[AuditEvent]) -> Result<i64, BrokenLink> {
        let mut v = ChainVerifier::new();
        for e in events {
            v.check(e)?;
        }
        Ok(v.checked())
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
    }

    #[test]
    fn editing_any_field_breaks_the_chain_at_that_event() {
        for victim in 0..5 {
            let mut c = chain(5);
            c[victim].data = json!({"n": 999});
            assert_eq!(verify(&c).unwrap_err().seq, victim as i64 + 1);
            let mut c = chain(5);
            c[victim].actor = "user:mallory".into();
            assert_eq!(verify(&c).unwrap_err().seq, victim as i64 + 1);
        }
    }

    #[test]
    fn a_rehashed_edit_still_breaks_the_next_link() {
        let mut c = chain(4);
        c[1].kind = "forged".into();
        c[1].hash = c[1].expected_hash();
        assert_eq!(verify(&c).unwrap_err().seq, 3);
    }

    #[test]
    fn a_deleted_event_is_named() {
        let mut c = chain(4);
        c.remove(2);
        assert_eq!(verify(&c).unwrap_err().seq, 3);
    }
}
