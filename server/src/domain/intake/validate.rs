//! Pass 2: the schema pass over the parsed value: field names, types, required fields and
//! formats, each refusal with a hand-written message naming its field.

use serde_json::{Map, Value};

use super::strict::child;
use super::{
    Action, Amount, Context, DataSensitivity, Delegation, FieldError, Intent, Limits, NewRequest,
    ACTOR_MAX_CHARS, ENVIRONMENT_MAX_BYTES, GOAL_MAX_CHARS, ON_BEHALF_OF_MAX_CHARS,
    OPERATION_MAX_CHARS, RATIONALE_MAX_CHARS, TARGET_MAX_CHARS, TASK_ID_MAX_CHARS, TYPE_MAX_BYTES,
};
use crate::domain::canonical;

pub(super) fn validate_request(value: Value, limits: &Limits) -> Result<NewRequest, FieldError> {
    let Value::Object(mut body) = value else {
        return Err(FieldError::body(format!(
            "request body must be a JSON object, not {}",
            kind(&value)
        )));
    };
    deny_unknown(&body, "", &["action", "intent", "context", "expires_in"])?;

    let action = match take(&mut body, "action") {
        None => return Err(required("action")),
        Some(value) => validate_action(expect_object(value, "action")?, limits)?,
    };
    let intent = match take(&mut body, "intent") {
        None => Intent::default(),
        Some(value) => validate_intent(expect_object(value, "intent")?)?,
    };
    let context = match take(&mut body, "context") {
        None => Context::default(),
        Some(value) => validate_context(expect_object(value, "context")?, limits)?,
    };
    let expires_in = take(&mut body, "expires_in")
        .map(|value| validate_expires_in(&value, limits))
        .transpose()?;

    Ok(NewRequest {
        action,
        intent,
        context,
        expires_in,
    })
}

fn validate_action(mut map: Map<String, Value>, limits: &Limits) -> Result<Action, FieldError> {
    deny_unknown(&map, "action", &["type", "target", "operation", "params"])?;

    let r#type =
        take_string(&mut map, "type", "action.type")?.ok_or_else(|| required("action.type"))?;
    let type_ok = (1..=TYPE_MAX_BYTES).contains(&r#type.len())
        && r#type.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if !type_ok {
        return Err(FieldError::new(
            "action.type",
            "action.type must match ^[a-z0-9_.-]{1,128}$",
        ));
    }

    let target = take_string(&mut map, "target", "action.target")?
        .ok_or_else(|| required("action.target"))?;
    check_line(&target, "action.target", TARGET_MAX_CHARS)?;

    let operation = take_string(&mut map, "operation", "action.operation")?;
    if let Some(operation) = &operation {
        check_line(operation, "action.operation", OPERATION_MAX_CHARS)?;
    }

    let params = match take(&mut map, "params") {
        None => None,
        Some(value @ Value::Object(_)) => {
            // Measured on the canonical form, which is what gets hashed and
            // stored, so whitespace in the body neither helps nor hurts.
            let size = canonical::canonical_json(&value).len();
            if size > limits.max_params_bytes {
                return Err(FieldError::new(
                    "action.params",
                    format!(
                        "action.params is {size} bytes when serialised; at most {} are allowed",
                        limits.max_params_bytes
                    ),
                ));
            }
            match value {
                Value::Object(params) => Some(params),
                // Not reachable: the arm above matched an object.
                _ => None,
            }
        }
        Some(other) => return Err(type_error("action.params", "an object", &other)),
    };

    Ok(Action {
        r#type,
        target,
        operation,
        params,
    })
}

fn validate_intent(mut map: Map<String, Value>) -> Result<Intent, FieldError> {
    deny_unknown(&map, "intent", &["goal", "rationale"])?;
    let goal = take_string(&mut map, "goal", "intent.goal")?;
    if let Some(goal) = &goal {
        check_length(goal, "intent.goal", GOAL_MAX_CHARS)?;
    }
    let rationale = take_string(&mut map, "rationale", "intent.rationale")?;
    if let Some(rationale) = &rationale {
        check_length(rationale, "intent.rationale", RATIONALE_MAX_CHARS)?;
    }
    Ok(Intent { goal, rationale })
}

fn validate_context(mut map: Map<String, Value>, limits: &Limits) -> Result<Context, FieldError> {
    deny_unknown(
        &map,
        "context",
        &[
            "environment",
            "data_sensitivity",
            "amount",
            "task_id",
            "delegation",
        ],
    )?;

    let environment = take_string(&mut map, "environment", "context.environment")?;
    if let Some(environment) = &environment {
        let ok = (1..=ENVIRONMENT_MAX_BYTES).contains(&environment.len())
            && environment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
        if !ok {
            return Err(FieldError::new(
                "context.environment",
                "context.environment must match ^[a-z0-9_-]{1,32}$",
            ));
        }
    }

    let data_sensitivity = match take(&mut map, "data_sensitivity") {
        None => None,
        Some(value) => {
            let level = value.as_str().and_then(DataSensitivity::from_wire);
            Some(level.ok_or_else(|| {
                FieldError::new(
                    "context.data_sensitivity",
                    "context.data_sensitivity must be one of public, internal, confidential, \
                     restricted",
                )
            })?)
        }
    };

    let amount = match take(&mut map, "amount") {
        None => None,
        Some(value) => Some(validate_amount(expect_object(value, "context.amount")?)?),
    };

    let task_id = take_string(&mut map, "task_id", "context.task_id")?;
    if let Some(task_id) = &task_id {
        check_line(task_id, "context.task_id", TASK_ID_MAX_CHARS)?;
    }

    let delegation = match take(&mut map, "delegation") {
        None => Vec::new(),
        Some(Value::Array(entries)) => {
            if entries.len() > limits.max_delegation {
                return Err(FieldError::new(
                    "context.delegation",
                    format!(
                        "context.delegation has {} entries; at most {} are allowed",
                        entries.len(),
                        limits.max_delegation
                    ),
                ));
            }
            entries
                .into_iter()
                .enumerate()
                .map(|(index, entry)| validate_delegation(index, entry))
                .collect::<Result<Vec<_>, _>>()?
        }
        Some(other) => return Err(type_error("context.delegation", "an array", &other)),
    };

    Ok(Context {
        environment,
        data_sensitivity,
        amount,
        task_id,
        delegation,
    })
}

fn validate_amount(mut map: Map<String, Value>) -> Result<Amount, FieldError> {
    deny_unknown(&map, "context.amount", &["value", "currency"])?;
    let value_text = match take(&mut map, "value") {
        None => return Err(required("context.amount.value")),
        Some(Value::String(text)) => text,
        Some(other) => {
            // Numbers are refused on purpose: a binary double cannot carry
            // "5000.00" exactly, and the agent's own spelling is what is
            // hashed and shown to the reviewer.
            return Err(FieldError::new(
                "context.amount.value",
                format!(
                    "context.amount.value must be a string, not {}; send the amount as a \
                     decimal string such as \"5000.00\" so it is not rounded",
                    kind(&other)
                ),
            ));
        }
    };
    let currency = take_string(&mut map, "currency", "context.amount.currency")?
        .ok_or_else(|| required("context.amount.currency"))?;
    Amount::parse_at(&value_text, &currency, "context.amount")
}

fn validate_delegation(index: usize, entry: Value) -> Result<Delegation, FieldError> {
    let path = format!("context.delegation[{index}]");
    let mut map = expect_object(entry, &path)?;
    deny_unknown(&map, &path, &["actor", "on_behalf_of"])?;

    let actor_field = child(&path, "actor");
    let actor =
        take_string(&mut map, "actor", &actor_field)?.ok_or_else(|| required(&actor_field))?;
    check_line(&actor, &actor_field, ACTOR_MAX_CHARS)?;

    let on_behalf_of_field = child(&path, "on_behalf_of");
    let on_behalf_of = take_string(&mut map, "on_behalf_of", &on_behalf_of_field)?;
    if let Some(on_behalf_of) = &on_behalf_of {
        check_line(on_behalf_of, &on_behalf_of_field, ON_BEHALF_OF_MAX_CHARS)?;
    }
    Ok(Delegation {
        actor,
        on_behalf_of,
    })
}

fn validate_expires_in(value: &Value, limits: &Limits) -> Result<u32, FieldError> {
    let max = limits.max_expires_in;
    let invalid = |what: String| {
        FieldError::new(
            "expires_in",
            format!("expires_in must be a whole number of seconds from 1 to {max}; {what}"),
        )
    };
    let Value::Number(number) = value else {
        return Err(invalid(format!("got {}", kind(value))));
    };
    // Integral doubles such as 300.0 are accepted: some JSON encoders write
    // every number with a fraction, and the value is still exact.
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|double| double.fract() == 0.0 && *double >= 0.0 && *double <= f64::from(max))
            .map(|double| double as u64)
    });
    match whole.and_then(|secs| u32::try_from(secs).ok()) {
        Some(secs) if (1..=max).contains(&secs) => Ok(secs),
        _ => Err(invalid(format!("got {number}"))),
    }
}

/// Removes `key`, treating JSON `null` as absent.
fn take(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    map.remove(key).filter(|value| !value.is_null())
}

fn take_string(
    map: &mut Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, FieldError> {
    match take(map, key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(type_error(field, "a string", &other)),
    }
}

fn expect_object(value: Value, field: &str) -> Result<Map<String, Value>, FieldError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(type_error(field, "an object", &other)),
    }
}

/// Rejects the first member (in key order) not named in `allowed`.
fn deny_unknown(
    map: &Map<String, Value>,
    parent: &str,
    allowed: &[&str],
) -> Result<(), FieldError> {
    match map.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(FieldError::new(
            child(parent, key),
            format!("unknown field `{key}`"),
        )),
        None => Ok(()),
    }
}

/// Length check for free text: non-empty, at most `max` characters
/// (Unicode scalar values, not bytes).
fn check_length(text: &str, field: &str, max: usize) -> Result<(), FieldError> {
    if text.is_empty() {
        return Err(FieldError::new(field, format!("{field} must not be empty")));
    }
    let chars = text.chars().count();
    if chars > max {
        return Err(FieldError::new(
            field,
            format!("{field} must be at most {max} characters; got {chars}"),
        ));
    }
    Ok(())
}

/// Check for single-line identifiers and labels: [`check_length`] plus no
/// control characters, which could hide or fake text in a reviewer's UI or
/// a log line.
fn check_line(text: &str, field: &str, max: usize) -> Result<(), FieldError> {
    check_length(text, field, max)?;
    if text.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

fn required(field: &str) -> FieldError {
    FieldError::new(field, format!("{field} is required"))
}

fn type_error(field: &str, expected: &str, got: &Value) -> FieldError {
    FieldError::new(
        field,
        format!("{field} must be {expected}, not {}", kind(got)),
    )
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use rust_decimal::Decimal;
    use serde_json::json;

    // --- the happy path -------------------------------------------------

    #[test]
    fn full_example_parses() {
        let request = parse(EXAMPLE).expect("example is valid");
        assert_eq!(request.action.r#type, "payments.transfer");
        assert_eq!(request.action.target, "bank-api");
        assert_eq!(
            request.action.operation.as_deref(),
            Some("POST /v2/transfers")
        );
        let params = request.action.params.as_ref().expect("params");
        assert_eq!(params["to"], "DE89 3704 0044 0532 0130 00");
        assert_eq!(params["amount"], "5000.00");
        assert_eq!(
            request.intent.goal.as_deref(),
            Some("Pay supplier invoice INV-1042")
        );
        assert_eq!(
            request.intent.rationale.as_deref(),
            Some("Invoice approved in ticket FIN-77; due today")
        );
        assert_eq!(request.context.environment.as_deref(), Some("production"));
        assert_eq!(
            request.context.data_sensitivity,
            Some(DataSensitivity::Confidential)
        );
        let amount = request.context.amount.as_ref().expect("amount");
        assert_eq!(amount.value_text, "5000.00");
        assert_eq!(amount.value, Decimal::new(500_000, 2));
        assert_eq!(amount.value.scale(), 2);
        assert_eq!(amount.currency, "EUR");
        assert_eq!(request.context.task_id.as_deref(), Some("run-8812"));
        assert_eq!(
            request.context.delegation,
            vec![Delegation {
                actor: "planner-agent".into(),
                on_behalf_of: Some("alice@example.com".into()),
            }]
        );
        assert_eq!(request.expires_in, Some(300));
    }

    #[test]
    fn minimal_body_parses_with_empty_defaults() {
        let request = parse_value(&minimal()).expect("valid");
        assert_eq!(request.action.operation, None);
        assert_eq!(request.action.params, None);
        assert_eq!(request.intent, Intent::default());
        assert_eq!(request.context, Context::default());
        assert_eq!(request.expires_in, None);
    }

    #[test]
    fn null_means_absent_for_optional_fields() {
        let body = json!({
            "action": {"type": "a", "target": "t", "operation": null, "params": null},
            "intent": {"goal": null},
            "context": {"amount": null, "delegation": null, "data_sensitivity": null},
            "expires_in": null
        });
        let request = parse_value(&body).expect("valid");
        let plain = parse_value(&json!({"action": {"type": "a", "target": "t"}})).expect("valid");
        assert_eq!(request, plain);
        assert_eq!(request.action_hash("agent"), plain.action_hash("agent"));
        // ...but null for a required field is still "missing".
        rejected_at(
            &json!({"action": {"type": null, "target": "t"}}),
            "action.type",
        );
        rejected_at(&json!({"action": null}), "action");
    }

    #[test]
    fn top_level_must_be_an_object() {
        for body in [
            "[]",
            "\"action\"",
            "42",
            "null",
            "true",
            "[{\"action\":{}}]",
        ] {
            let detail = rejected_whole(body.as_bytes());
            assert!(
                detail.starts_with("request body must be a JSON object"),
                "{detail}"
            );
        }
    }

    // --- unknown fields ---------------------------------------------------

    #[test]
    fn unknown_fields_are_reported_with_their_path() {
        let cases = [
            (
                json!({"action": {"type": "a", "target": "t"}, "extra": 1}),
                "extra",
            ),
            (with("action.priority", json!(1)), "action.priority"),
            (with("intent.mood", json!("happy")), "intent.mood"),
            (with("context.region", json!("eu")), "context.region"),
            (
                with(
                    "context.amount",
                    json!({"value": "1", "currency": "EUR", "fx": 1}),
                ),
                "context.amount.fx",
            ),
            (
                with(
                    "context.delegation",
                    json!([{"actor": "a"}, {"actor": "b", "role": "x"}]),
                ),
                "context.delegation[1].role",
            ),
            (
                json!({"action": {"type": "a", "target": "t"}, "odd key": 1}),
                r#"["odd key"]"#,
            ),
        ];
        for (body, field) in cases {
            let detail = rejected_at(&body, field);
            let key = field.rsplit(['.', '[']).next().unwrap_or_default();
            let key = key.trim_end_matches(']').trim_matches('"');
            assert_eq!(detail, format!("unknown field `{key}`"));
        }
    }

    #[test]
    fn params_accept_any_keys() {
        let request = parse_value(&params(
            json!({"anything": {"goes": [1, "two", null, true]}, "": 0}),
        ))
        .expect("valid");
        assert_eq!(request.action.params.map(|p| p.len()), Some(2));
    }

    // --- types and required fields -------------------------------------

    #[test]
    fn wrong_types_name_the_field() {
        let cases = [
            (
                json!({"action": "delete"}),
                "action",
                "action must be an object, not a string",
            ),
            (
                with("action.type", json!(5)),
                "action.type",
                "action.type must be a string, not a number",
            ),
            (
                with("action.target", json!(["x"])),
                "action.target",
                "action.target must be a string, not an array",
            ),
            (
                with("action.operation", json!(true)),
                "action.operation",
                "action.operation must be a string, not a boolean",
            ),
            (
                with("action.params", json!([1])),
                "action.params",
                "action.params must be an object, not an array",
            ),
            (
                with("action.params", json!("{}")),
                "action.params",
                "action.params must be an object, not a string",
            ),
            (
                with("intent", json!("goal")),
                "intent",
                "intent must be an object, not a string",
            ),
            (
                with("intent.goal", json!({})),
                "intent.goal",
                "intent.goal must be a string, not an object",
            ),
            (
                with("context", json!([])),
                "context",
                "context must be an object, not an array",
            ),
            (
                with("context.environment", json!(1)),
                "context.environment",
                "context.environment must be a string, not a number",
            ),
            (
                with("context.amount", json!("5 EUR")),
                "context.amount",
                "context.amount must be an object, not a string",
            ),
            (
                with("context.amount", json!({"value": "1", "currency": 978})),
                "context.amount.currency",
                "context.amount.currency must be a string, not a number",
            ),
            (
                with("context.task_id", json!(8812)),
                "context.task_id",
                "context.task_id must be a string, not a number",
            ),
            (
                with("context.delegation", json!({"actor": "a"})),
                "context.delegation",
                "context.delegation must be an array, not an object",
            ),
            (
                with("context.delegation", json!(["a"])),
                "context.delegation[0]",
                "context.delegation[0] must be an object, not a string",
            ),
            (
                with("context.delegation", json!([{"actor": "a"}, {"actor": 1}])),
                "context.delegation[1].actor",
                "context.delegation[1].actor must be a string, not a number",
            ),
        ];
        for (body, field, detail) in cases {
            assert_eq!(rejected_at(&body, field), detail);
        }
    }

    #[test]
    fn amount_value_as_number_asks_for_a_string() {
        let body = with(
            "context.amount",
            json!({"value": 5000.00, "currency": "EUR"}),
        );
        let detail = rejected_at(&body, "context.amount.value");
        assert!(
            detail.starts_with("context.amount.value must be a string"),
            "{detail}"
        );
        assert!(detail.contains("decimal string"), "{detail}");
    }

    #[test]
    fn missing_required_fields() {
        let cases = [
            (json!({}), "action"),
            (json!({"intent": {"goal": "g"}}), "action"),
            (json!({"action": {"target": "t"}}), "action.type"),
            (json!({"action": {"type": "a"}}), "action.target"),
            (
                with("context.amount", json!({"currency": "EUR"})),
                "context.amount.value",
            ),
            (
                with("context.amount", json!({"value": "1"})),
                "context.amount.currency",
            ),
            (
                with(
                    "context.delegation",
                    json!([{"actor": "a"}, {"on_behalf_of": "b"}]),
                ),
                "context.delegation[1].actor",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(rejected_at(&body, field), format!("{field} is required"));
        }
    }

    // --- action ---------------------------------------------------------

    #[test]
    fn action_type_format() {
        for ok in [
            "a",
            "payments.transfer",
            "files_v2.delete-all",
            "0",
            &"x".repeat(128),
        ] {
            parse_value(&with("action.type", json!(ok))).expect(ok);
        }
        for bad in [
            "",
            "Payments.transfer",
            "payments transfer",
            "payments/transfer",
            "é",
            "a\n",
            &"x".repeat(129),
        ] {
            let detail = rejected_at(&with("action.type", json!(bad)), "action.type");
            assert_eq!(detail, "action.type must match ^[a-z0-9_.-]{1,128}$");
        }
    }

    #[test]
    fn action_target_and_operation_format() {
        for field in ["action.target", "action.operation"] {
            parse_value(&with(field, json!("x"))).expect("1 char");
            // The limit is in characters, not bytes.
            parse_value(&with(field, json!("é".repeat(256)))).expect("256 chars");
            parse_value(&with(field, json!("POST /v2/transfers?x=ü"))).expect("spaces and unicode");
            let long = rejected_at(&with(field, json!("a".repeat(257))), field);
            assert_eq!(
                long,
                format!("{field} must be at most 256 characters; got 257")
            );
            let empty = rejected_at(&with(field, json!("")), field);
            assert_eq!(empty, format!("{field} must not be empty"));
            for control in ["a\nb", "a\tb", "\u{7f}", "a\u{9b}b", "\u{1b}[31m"] {
                let detail = rejected_at(&with(field, json!(control)), field);
                assert_eq!(
                    detail,
                    format!("{field} must not contain control characters")
                );
            }
        }
    }

    #[test]
    fn params_size_limit() {
        let limits = Limits::default();
        // {"s":"..."} is 8 bytes of overhead in canonical form.
        let fits = params(json!({"s": "a".repeat(limits.max_params_bytes - 8)}));
        parse_value(&fits).expect("exactly at the limit");
        let over = params(json!({"s": "a".repeat(limits.max_params_bytes - 7)}));
        let detail = rejected_at(&over, "action.params");
        assert_eq!(
            detail,
            "action.params is 32769 bytes when serialised; at most 32768 are allowed"
        );
    }

    // --- intent -----------------------------------------------------------

    #[test]
    fn intent_lengths() {
        for (field, max) in [("intent.goal", 1000), ("intent.rationale", 4000)] {
            parse_value(&with(field, json!("ü".repeat(max)))).expect("at the limit");
            // Free text may span lines.
            parse_value(&with(field, json!("first line\nsecond line"))).expect("multi-line");
            let long = rejected_at(&with(field, json!("a".repeat(max + 1))), field);
            assert_eq!(
                long,
                format!("{field} must be at most {max} characters; got {}", max + 1)
            );
            assert_eq!(
                rejected_at(&with(field, json!("")), field),
                format!("{field} must not be empty")
            );
        }
    }

    // --- context ----------------------------------------------------------

    #[test]
    fn environment_format() {
        for ok in ["production", "staging-2", "dev_eu", "x", &"a".repeat(32)] {
            parse_value(&with("context.environment", json!(ok))).expect(ok);
        }
        for bad in ["", "Production", "prod.eu", "prod eu", &"a".repeat(33), "é"] {
            let detail = rejected_at(
                &with("context.environment", json!(bad)),
                "context.environment",
            );
            assert_eq!(detail, "context.environment must match ^[a-z0-9_-]{1,32}$");
        }
    }

    #[test]
    fn data_sensitivity_values() {
        for (text, level) in [
            ("public", DataSensitivity::Public),
            ("internal", DataSensitivity::Internal),
            ("confidential", DataSensitivity::Confidential),
            ("restricted", DataSensitivity::Restricted),
        ] {
            let request = parse_value(&with("context.data_sensitivity", json!(text))).expect(text);
            assert_eq!(request.context.data_sensitivity, Some(level));
        }
        for bad in [
            json!("secret"),
            json!("PUBLIC"),
            json!(""),
            json!(1),
            json!(["public"]),
        ] {
            let detail = rejected_at(
                &with("context.data_sensitivity", bad),
                "context.data_sensitivity",
            );
            assert_eq!(
                detail,
                "context.data_sensitivity must be one of public, internal, confidential, restricted"
            );
        }
    }

    #[test]
    fn amount_value_format() {
        for ok in [
            "0",
            "5000.00",
            "0.000001",
            "123456789012345",
            "123456789012345.123456",
            "007",
        ] {
            let body = with("context.amount", json!({"value": ok, "currency": "EUR"}));
            let request = parse_value(&body).expect(ok);
            assert_eq!(
                request.context.amount.map(|a| a.value_text).as_deref(),
                Some(ok)
            );
        }
        let forty_digits = "1".repeat(40);
        for bad in [
            "-1",
            "+1",
            "1e3",
            "1E3",
            "1.",
            ".5",
            "1.1234567",
            "",
            " 1",
            "1 ",
            "1,00",
            "1.2.3",
            "1234567890123456",
            "NaN",
            "Infinity",
            "0x10",
            "\u{661}",
            &forty_digits,
        ] {
            let body = with("context.amount", json!({"value": bad, "currency": "EUR"}));
            let detail = rejected_at(&body, "context.amount.value");
            assert!(
                detail.starts_with("context.amount.value must be a non-negative decimal string"),
                "{detail}"
            );
        }
    }

    #[test]
    fn amount_currency_format() {
        for bad in ["eur", "EURO", "EU", "", "E1R", "ÉUR"] {
            let body = with("context.amount", json!({"value": "1", "currency": bad}));
            let detail = rejected_at(&body, "context.amount.currency");
            assert!(
                detail.starts_with("context.amount.currency must be a three-letter"),
                "{detail}"
            );
        }
    }

    #[test]
    fn task_id_format() {
        parse_value(&with("context.task_id", json!("t".repeat(128)))).expect("128 chars");
        assert_eq!(
            rejected_at(
                &with("context.task_id", json!("t".repeat(129))),
                "context.task_id"
            ),
            "context.task_id must be at most 128 characters; got 129"
        );
        rejected_at(&with("context.task_id", json!("")), "context.task_id");
        rejected_at(
            &with("context.task_id", json!("run\r\n8812")),
            "context.task_id",
        );
    }

    #[test]
    fn delegation_rules() {
        let entries: Vec<Value> = (0..16)
            .map(|i| json!({"actor": format!("agent-{i}")}))
            .collect();
        let request = parse_value(&with("context.delegation", json!(entries))).expect("16 entries");
        assert_eq!(request.context.delegation.len(), 16);
        assert_eq!(request.context.delegation[3].on_behalf_of, None);

        let mut too_many = entries.clone();
        too_many.push(json!({"actor": "one-more"}));
        let detail = rejected_at(
            &with("context.delegation", json!(too_many)),
            "context.delegation",
        );
        assert_eq!(
            detail,
            "context.delegation has 17 entries; at most 16 are allowed"
        );

        let cases = [
            (
                json!([{"actor": "a"}, {"actor": ""}]),
                "context.delegation[1].actor",
            ),
            (
                json!([{"actor": "a".repeat(257)}]),
                "context.delegation[0].actor",
            ),
            (
                json!([{"actor": "a", "on_behalf_of": ""}]),
                "context.delegation[0].on_behalf_of",
            ),
            (
                json!([{"actor": "a", "on_behalf_of": "b".repeat(257)}]),
                "context.delegation[0].on_behalf_of",
            ),
            (
                json!([{"actor": "a", "on_behalf_of": 7}]),
                "context.delegation[0].on_behalf_of",
            ),
        ];
        for (delegation, field) in cases {
            rejected_at(&with("context.delegation", delegation), field);
        }
        parse_value(&with(
            "context.delegation",
            json!([{"actor": "a".repeat(256), "on_behalf_of": "b".repeat(256)}]),
        ))
        .expect("at the limits");
    }

    // --- expires_in -------------------------------------------------------

    #[test]
    fn expires_in_range() {
        for (text, secs) in [
            ("1", 1),
            ("300", 300),
            ("86400", 86_400),
            ("300.0", 300),
            ("3e2", 300),
        ] {
            let body = format!(r#"{{"action":{{"type":"a","target":"t"}},"expires_in":{text}}}"#);
            assert_eq!(parse(&body).expect(text).expires_in, Some(secs), "{text}");
        }
        for text in [
            "0",
            "-1",
            "1.5",
            "1e12",
            "86401",
            "\"300\"",
            "true",
            "[300]",
            "{}",
            "18446744073709551616",
            "-0",
            "4294967297",
        ] {
            let body = format!(r#"{{"action":{{"type":"a","target":"t"}},"expires_in":{text}}}"#);
            let err = parse(&body).expect_err(text);
            assert_eq!(
                err.field.as_deref(),
                Some("expires_in"),
                "{text}: {}",
                err.detail
            );
            assert!(
                err.detail
                    .starts_with("expires_in must be a whole number of seconds from 1 to 86400"),
                "{text}: {}",
                err.detail
            );
        }
    }
}
