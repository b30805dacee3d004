//! Parsing and validation of an agent's `POST /api/v1/requests` body.
//!
//! This module owns the agent-facing request contract: it turns untrusted
//! bytes into a validated [`NewRequest`], or into a [`FieldError`] naming the
//! exact JSON path at fault and a sentence a developer can act on. It also
//! defines what part of a request is hashed ([`NewRequest::hashed_view`]) and
//! how ([`NewRequest::action_hash`]).
//!
//! It must never perform I/O, speak HTTP, touch the database, read the clock
//! or log: the HTTP layer maps [`FieldError`] to a `400 invalid_request`
//! problem document, and storage decides what to persist. It must never
//! panic or overflow the stack on any input, however hostile.
//!
//! Parsing runs in two passes:
//! 1. a strict structural pass over the raw text that builds a
//!    `serde_json::Value` while rejecting duplicate keys, NUL characters,
//!    excessive nesting and (inside `action.params`) non-interoperable
//!    numbers, tracking the JSON path so each rejection names its field, and
//!    re-reading every fractional number with a correctly rounded parser so
//!    the hash covers exactly the double the agent wrote;
//! 2. a schema pass over that value that checks field names, types, required
//!    fields and formats, producing hand-written messages.
//!
//! The files follow those seams: `types` (the validated request and its hashed view), `strict`
//! (pass 1, also used for the API's other JSON bodies), `validate` (pass 2) and `schema` (the
//! JSON Schema the OpenAPI document publishes, built from the same limits). The two ways in,
//! [`parse_new_request`] and [`parse_strict_json`], are here.

use serde_json::Value;

mod schema;
mod strict;
#[cfg(test)]
mod test_support;
mod types;
mod validate;

pub use types::{
    Action, Amount, Context, DataSensitivity, Delegation, FieldError, Intent, Limits, NewRequest,
};

use strict::parse_strict;
use validate::validate_request;

/// Largest integer every JSON implementation can represent exactly
/// (2^53 − 1, I-JSON / RFC 7493 §2.2); JCS hashing relies on it.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Nesting allowed outside `action.params`. The schema itself needs four
/// levels (body → context → delegation → entry); this cap only exists so a
/// hostile body is refused well before serde_json's recursion limit (128).
const BODY_NESTING_CAP: usize = 64;

/// Upper bound on [`Limits::max_depth`]: `action.params` starts at body depth
/// 3, so this keeps the deepest accepted value below serde_json's recursion
/// limit of 128 whatever a caller configures.
const PARAMS_NESTING_CAP: usize = 100;

const TYPE_MAX_BYTES: usize = 128;
const TARGET_MAX_CHARS: usize = 256;
const OPERATION_MAX_CHARS: usize = 256;
const GOAL_MAX_CHARS: usize = 1000;
const RATIONALE_MAX_CHARS: usize = 4000;
const ENVIRONMENT_MAX_BYTES: usize = 32;
const TASK_ID_MAX_CHARS: usize = 128;
const ACTOR_MAX_CHARS: usize = 256;
const ON_BEHALF_OF_MAX_CHARS: usize = 256;
const AMOUNT_MAX_INTEGER_DIGITS: usize = 15;
const AMOUNT_MAX_FRACTION_DIGITS: usize = 6;
const CURRENCY_LETTERS: usize = 3;

/// Parses and validates an agent's request body.
///
/// Returns the first problem found, in document order for structural
/// problems and in schema order (action, intent, context, expires_in)
/// otherwise. JSON `null` for an optional field means the same as leaving it
/// out; duplicate object keys are always rejected because different JSON
/// parsers resolve them differently, which would let a reviewer and a
/// downstream system see different requests behind one hash.
pub fn parse_new_request(body: &[u8], limits: &Limits) -> Result<NewRequest, FieldError> {
    if body.len() > limits.max_body_bytes {
        return Err(FieldError::body(format!(
            "request body is larger than {} bytes",
            limits.max_body_bytes
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| FieldError::body("request body is not valid UTF-8"))?;
    let value = parse_strict(text, Some(limits))?;
    validate_request(value, limits)
}

/// Parses any other JSON body with the structural rules of the first pass: valid UTF-8 and
/// JSON, no key given twice, no NUL character, at most 64 levels deep; each refusal names its
/// field. The schema of the body is the caller's to check (the HTTP edge deserialises the
/// value into its type).
pub fn parse_strict_json(body: &[u8]) -> Result<Value, FieldError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| FieldError::body("request body is not valid UTF-8"))?;
    parse_strict(text, None)
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Map, Number};

    #[test]
    fn invalid_utf8_is_rejected() {
        let detail = rejected_whole(b"{\"action\": \"\xff\xfe\"}");
        assert_eq!(detail, "request body is not valid UTF-8");
        // A lone surrogate encoded in UTF-8 (CESU) is not UTF-8 either.
        assert_eq!(
            rejected_whole(b"\"\xed\xa0\x80\""),
            "request body is not valid UTF-8"
        );
    }

    #[test]
    fn oversized_body_is_rejected_before_parsing() {
        let limits = Limits::default();
        let body = vec![b' '; limits.max_body_bytes + 1];
        let err = parse_new_request(&body, &limits).expect_err("too big");
        assert_eq!(err.field, None);
        assert_eq!(err.detail, "request body is larger than 65536 bytes");
    }

    // --- fuzzing ----------------------------------------------------------

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9_.-]{0,10}",
            prop::collection::vec(any::<char>(), 0..8).prop_map(String::from_iter),
            Just("\u{0}".to_owned()),
            Just("5000.00".to_owned()),
            Just("EUR".to_owned()),
            Just("public".to_owned()),
        ]
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
            arb_text().prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(arb_text(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Bodies shaped like the contract, with each part randomly present,
    /// absent, or replaced by arbitrary JSON, to reach the deeper checks.
    fn arb_body() -> impl Strategy<Value = Value> {
        let field = |good: BoxedStrategy<Value>| {
            prop_oneof![
                3 => good.prop_map(Some),
                1 => Just(None),
                1 => arb_json().prop_map(Some),
            ]
        };
        let action = (
            field("[a-z0-9_.-]{0,12}".prop_map(Value::from).boxed()),
            field(arb_text().prop_map(Value::from).boxed()),
            field(arb_text().prop_map(Value::from).boxed()),
            field(arb_json().prop_map(|v| json!({ "v": v })).boxed()),
        )
            .prop_map(|(t, target, op, params)| {
                let mut m = Map::new();
                for (k, v) in [
                    ("type", t),
                    ("target", target),
                    ("operation", op),
                    ("params", params),
                ] {
                    if let Some(v) = v {
                        m.insert(k.into(), v);
                    }
                }
                Value::Object(m)
            });
        let context = (
            field("[a-z-]{0,8}".prop_map(Value::from).boxed()),
            field(
                prop::sample::select(vec!["public", "internal", "secret"])
                    .prop_map(Value::from)
                    .boxed(),
            ),
            field(
                ("[0-9]{1,3}(\\.[0-9]{1,7})?", "[A-Z]{2,4}")
                    .prop_map(|(v, c)| json!({"value": v, "currency": c}))
                    .boxed(),
            ),
            field(
                prop::collection::vec(arb_text().prop_map(|a| json!({"actor": a})), 0..3)
                    .prop_map(Value::from)
                    .boxed(),
            ),
        )
            .prop_map(|(env, sens, amount, delegation)| {
                let mut m = Map::new();
                for (k, v) in [
                    ("environment", env),
                    ("data_sensitivity", sens),
                    ("amount", amount),
                    ("delegation", delegation),
                ] {
                    if let Some(v) = v {
                        m.insert(k.into(), v);
                    }
                }
                Value::Object(m)
            });
        (
            field(action.boxed()),
            field(arb_text().prop_map(|g| json!({ "goal": g })).boxed()),
            field(context.boxed()),
            field((-5i64..100_000).prop_map(Value::from).boxed()),
        )
            .prop_map(|(action, intent, context, expires)| {
                let mut m = Map::new();
                for (k, v) in [
                    ("action", action),
                    ("intent", intent),
                    ("context", context),
                    ("expires_in", expires),
                ] {
                    if let Some(v) = v {
                        m.insert(k.into(), v);
                    }
                }
                Value::Object(m)
            })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_new_request(&bytes, &Limits::default());
        }

        #[test]
        fn random_json_text_never_panics(text in "[\\[\\]{}\":,0-9a-z.eE+\\\\ -]{0,64}") {
            let _ = parse(&text);
        }

        #[test]
        fn random_json_never_panics(value in arb_json()) {
            let _ = parse_value(&value);
            let _ = parse_value(&json!({ "action": value }));
        }

        #[test]
        fn contract_shaped_bodies_never_panic_and_hash_stably(body in arb_body()) {
            let compact = serde_json::to_string(&body).expect("serialise");
            let pretty = serde_json::to_string_pretty(&body).expect("serialise");
            match (parse(&compact), parse(&pretty)) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(a.action_hash("agent"), b.action_hash("agent"));
                    prop_assert_eq!(a, b);
                }
                (Err(a), Err(b)) => prop_assert_eq!(a.field, b.field),
                (a, b) => prop_assert!(false, "compact {:?} vs pretty {:?}", a, b),
            }
        }
    }
}
