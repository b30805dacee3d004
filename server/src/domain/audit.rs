//! The audit chain's rules: how an event is hashed and how a chain is checked.
//!
//! `hash = SHA-256(prev_hash || canonical(event without hash))`, where `canonical` is RFC 8785
//! JSON of `{seq, at, actor, kind, request_id, data, prev_hash}`. Because each hash covers the
//! previous one, editing, deleting or reordering any stored event breaks every link after it,
//! and [`ChainVerifier`] names the first event whose stored hash no longer matches.
//!
//! This module never reads or writes storage; [`crate::store::audit`] appends and reads rows.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::canonical::{canonical_json, sha256_prefixed, write_canonical, write_string};

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
    event_hash_of_canonical(
        seq,
        at,
        actor,
        kind,
        request_id,
        &canonical_json(data),
        prev_hash,
    )
}

/// [`event_hash`], with `data` already in canonical form.
///
/// The event object is written out member by member, in the order RFC 8785 sorts its keys
/// (`actor, at, data, kind, prev_hash, request_id, seq`), instead of being built as a `Value`
/// and sorted: appending then neither copies the event's data nor canonicalises it again, and
/// the data can be made canonical before the appending transaction begins (see
/// `store::audit::Prepared`). A test checks it against the general route.
pub fn event_hash_of_canonical(
    seq: i64,
    at: i64,
    actor: &str,
    kind: &str,
    request_id: Option<&str>,
    data_json: &str,
    prev_hash: &str,
) -> String {
    let mut input = String::with_capacity(2 * prev_hash.len() + data_json.len() + 192);
    input.push_str(prev_hash);
    input.push_str("{\"actor\":");
    write_string(actor, &mut input);
    input.push_str(",\"at\":");
    write_canonical(&Value::from(at), &mut input);
    input.push_str(",\"data\":");
    input.push_str(data_json);
    input.push_str(",\"kind\":");
    write_string(kind, &mut input);
    input.push_str(",\"prev_hash\":");
    write_string(prev_hash, &mut input);
    input.push_str(",\"request_id\":");
    match request_id {
        Some(id) => write_string(id, &mut input),
        None => input.push_str("null"),
    }
    input.push_str(",\"seq\":");
    write_canonical(&Value::from(seq), &mut input);
    input.push('}');
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
    use serde_json::json;

    /// The event object built as a `Value` and made canonical as a whole: what
    /// [`event_hash_of_canonical`] writes out by hand must hash the same.
    fn reference_hash(e: &AuditEvent) -> String {
        let body = json!({
            "seq": e.seq,
            "at": e.at,
            "actor": e.actor,
            "kind": e.kind,
            "request_id": e.request_id,
            "data": e.data,
            "prev_hash": e.prev_hash,
        });
        sha256_prefixed(format!("{}{}", e.prev_hash, canonical_json(&body)).as_bytes())
    }

    #[test]
    fn the_hand_written_event_object_is_the_canonical_one() {
        let datas = [
            json!({}),
            json!({"z": 1, "a": [true, null, 1.5e30], "é": "\u{2028}\"\\", "\u{1F600}": {"b": -0.0}}),
            json!({"request": {"action": {"type": "payments.transfer", "params": {"amount": "10.00"}}}}),
            json!([1, "two", {"three": 3}]),
        ];
        for (i, data) in datas.into_iter().enumerate() {
            for request_id in [None, Some("0190e6a2-\"quoted\"")] {
                let e = AuditEvent {
                    seq: 9_007_199_254_740_991 - i as i64,
                    at: 1_733_000_000_000 + i as i64,
                    actor: "agent:\u{00e9}\n\t".into(),
                    kind: "request.created".into(),
                    request_id: request_id.map(str::to_string),
                    data: data.clone(),
                    prev_hash: GENESIS_HASH.into(),
                    hash: String::new(),
                };
                assert_eq!(e.expected_hash(), reference_hash(&e), "{data}");
            }
        }
    }

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
