//! Fixtures shared by the intake's unit tests: the example body and builders of bodies.

use serde_json::{json, Value};

use super::{parse_new_request, FieldError, Limits, NewRequest};

pub(super) const EXAMPLE: &str = r#"{
      "action":  { "type": "payments.transfer", "target": "bank-api",
                   "operation": "POST /v2/transfers",
                   "params": { "to": "DE89 3704 0044 0532 0130 00", "amount": "5000.00" } },
      "intent":  { "goal": "Pay supplier invoice INV-1042",
                   "rationale": "Invoice approved in ticket FIN-77; due today" },
      "context": { "environment": "production", "data_sensitivity": "confidential",
                   "amount": { "value": "5000.00", "currency": "EUR" },
                   "task_id": "run-8812",
                   "delegation": [ { "actor": "planner-agent", "on_behalf_of": "alice@example.com" } ] },
      "expires_in": 300
    }"#;

pub(super) fn parse(body: &str) -> Result<NewRequest, FieldError> {
    parse_new_request(body.as_bytes(), &Limits::default())
}

pub(super) fn parse_value(body: &Value) -> Result<NewRequest, FieldError> {
    parse(&body.to_string())
}

/// Asserts that `body` is rejected at `field`, returning the detail.
#[track_caller]
pub(super) fn rejected_at(body: &Value, field: &str) -> String {
    match parse_value(body) {
        Ok(request) => panic!("expected rejection at {field}, got {request:?}"),
        Err(err) => {
            assert_eq!(err.field.as_deref(), Some(field), "detail: {}", err.detail);
            err.detail
        }
    }
}

/// Asserts that `body` is rejected with no field (a whole-body problem).
#[track_caller]
pub(super) fn rejected_whole(body: &[u8]) -> String {
    match parse_new_request(body, &Limits::default()) {
        Ok(request) => panic!("expected rejection, got {request:?}"),
        Err(err) => {
            assert_eq!(err.field, None, "detail: {}", err.detail);
            err.detail
        }
    }
}

pub(super) fn minimal() -> Value {
    json!({"action": {"type": "files.delete", "target": "fs"}})
}

/// `minimal()` with one field set at a dotted path of object keys.
pub(super) fn with(path: &str, value: Value) -> Value {
    let mut body = minimal();
    let mut cursor = &mut body;
    let keys: Vec<&str> = path.split('.').collect();
    for (i, key) in keys.iter().enumerate() {
        let object = cursor.as_object_mut().expect("object on path");
        if i + 1 == keys.len() {
            object.insert((*key).to_owned(), value);
            break;
        }
        cursor = object.entry(*key).or_insert_with(|| json!({}));
    }
    body
}

pub(super) fn params(value: Value) -> Value {
    with("action.params", value)
}

/// `depth` nested single-member objects, the innermost holding 1.
pub(super) fn nested_objects(depth: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..depth {
        value = json!({ "n": value });
    }
    value
}
