//! The request as the agent sent it, once validated, and the part of it that is hashed
//! ([`NewRequest::hashed_view`]).

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::strict::child;
use super::{
    AMOUNT_MAX_FRACTION_DIGITS, AMOUNT_MAX_INTEGER_DIGITS, CURRENCY_LETTERS, PARAMS_NESTING_CAP,
};
use crate::domain::canonical;

/// A validation failure: which field, and what is wrong with it in plain
/// words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct FieldError {
    /// Path of the offending field, e.g. `context.delegation[1].actor`;
    /// `None` when the body as a whole is at fault (not UTF-8, not JSON, too
    /// large, not an object).
    pub field: Option<String>,
    /// A complete sentence describing the problem, safe to show the agent.
    pub detail: String,
}

impl FieldError {
    /// An error about one field.
    pub fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            detail: detail.into(),
        }
    }

    /// An error about the body as a whole.
    pub fn body(detail: impl Into<String>) -> Self {
        Self {
            field: None,
            detail: detail.into(),
        }
    }
}

/// Size and shape limits applied by [`parse_new_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted body in bytes (64 KiB). The HTTP layer enforces this
    /// too; it is re-checked here so this module is safe on its own.
    pub max_body_bytes: usize,
    /// Deepest nesting inside `action.params`, counting the params object
    /// itself as level 1 (16). Values above 100 are treated as 100.
    pub max_depth: usize,
    /// Largest `action.params` in bytes of its canonical (RFC 8785) form
    /// (32 KiB).
    pub max_params_bytes: usize,
    /// Most entries accepted in `context.delegation` (16).
    pub max_delegation: usize,
    /// Largest accepted `expires_in`, in seconds (86 400 = one day).
    pub max_expires_in: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_depth: 16,
            max_params_bytes: 32 * 1024,
            max_delegation: 16,
            max_expires_in: 86_400,
        }
    }
}

impl Limits {
    /// The params depth actually enforced (see [`PARAMS_NESTING_CAP`]).
    pub(super) fn params_depth(&self) -> usize {
        self.max_depth.min(PARAMS_NESTING_CAP)
    }
}

/// A validated request from an agent, exactly as the agent sent it.
///
/// Only [`parse_new_request`] validates; the `Deserialize` impl exists to
/// read back values this service stored itself and performs no checks beyond
/// re-parsing the amount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRequest {
    /// What the agent wants to do.
    pub action: Action,
    /// Why the agent wants to do it.
    #[serde(default)]
    pub intent: Intent,
    /// Circumstances a reviewer and the policy engine may take into account.
    #[serde(default)]
    pub context: Context,
    /// Seconds the request may wait for a decision; not part of the hash
    /// because it does not change what is being approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u32>,
}

/// The operation the agent asks permission for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Dotted action kind such as `payments.transfer`
    /// (`^[a-z0-9_.-]{1,128}$`).
    #[serde(rename = "type")]
    pub r#type: String,
    /// The system acted upon, such as `bank-api`.
    pub target: String,
    /// Free-form operation such as `POST /v2/transfers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Arbitrary JSON parameters of the operation, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Map<String, Value>>,
}

/// The agent's own explanation of the action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// One-line goal, at most 1000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    /// Longer justification, at most 4000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
}

/// Facts about the circumstances of the action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// Deployment environment such as `production` (`^[a-z0-9_-]{1,32}$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Classification of the data the action touches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sensitivity: Option<DataSensitivity>,
    /// Monetary amount at stake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    /// The agent's own task or run identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Chain of actors on whose behalf the agent acts, outermost first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegation: Vec<Delegation>,
}

/// Data classification levels, lowercase on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSensitivity {
    /// Public data.
    Public,
    /// Internal-only data.
    Internal,
    /// Confidential data.
    Confidential,
    /// Restricted data, the most sensitive level.
    Restricted,
}

impl DataSensitivity {
    /// All levels, least sensitive first.
    pub const ALL: [DataSensitivity; 4] = [
        DataSensitivity::Public,
        DataSensitivity::Internal,
        DataSensitivity::Confidential,
        DataSensitivity::Restricted,
    ];

    /// The wire name, e.g. `"confidential"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DataSensitivity::Public => "public",
            DataSensitivity::Internal => "internal",
            DataSensitivity::Confidential => "confidential",
            DataSensitivity::Restricted => "restricted",
        }
    }

    /// Parses an exact (lowercase) wire name.
    pub fn from_wire(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.as_str() == text)
    }
}

impl fmt::Display for DataSensitivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A monetary amount.
///
/// The agent's decimal string is kept verbatim in `value_text` because that
/// is what the agent signed off on and what is hashed and shown: `"5000.00"`
/// must not turn into `"5000"` or `5000.0`. `value` is the same number for
/// arithmetic and comparisons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "AmountWire", into = "AmountWire")]
pub struct Amount {
    /// The numeric value, with the scale the agent wrote (`5000.00` has
    /// scale 2).
    pub value: Decimal,
    /// The exact string the agent sent; serialised as `"value"`.
    pub value_text: String,
    /// ISO 4217 alphabetic code such as `EUR`.
    pub currency: String,
}

impl Amount {
    /// Validates an amount as sent on the wire (`value` a decimal string
    /// matching `^[0-9]{1,15}(\.[0-9]{1,6})?$`, `currency` matching
    /// `^[A-Z]{3}$`). Errors name `context.amount.value` or
    /// `context.amount.currency`.
    pub fn parse(value_text: &str, currency: &str) -> Result<Self, FieldError> {
        Self::parse_at(value_text, currency, "context.amount")
    }

    pub fn parse_at(value_text: &str, currency: &str, path: &str) -> Result<Self, FieldError> {
        let value_field = child(path, "value");
        if !is_decimal_amount(value_text) {
            return Err(FieldError::new(
                &value_field,
                format!(
                    "{value_field} must be a non-negative decimal string matching \
                     ^[0-9]{{1,15}}(\\.[0-9]{{1,6}})?$, such as \"5000.00\""
                ),
            ));
        }
        // The pattern caps the value at 21 significant digits, well inside
        // Decimal's 28, so this cannot fail; the error arm is kept so the
        // function stays total rather than relying on that reasoning.
        let value = Decimal::from_str_exact(value_text).map_err(|err| {
            FieldError::new(
                &value_field,
                format!("{value_field} is not a representable decimal: {err}"),
            )
        })?;

        let currency_field = child(path, "currency");
        if !(currency.len() == CURRENCY_LETTERS && currency.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(FieldError::new(
                &currency_field,
                format!(
                    "{currency_field} must be a three-letter uppercase ISO 4217 code \
                     matching ^[A-Z]{{3}}$, such as \"EUR\""
                ),
            ));
        }

        Ok(Self {
            value,
            value_text: value_text.to_owned(),
            currency: currency.to_owned(),
        })
    }
}

/// The wire form of [`Amount`]: both members are strings.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmountWire {
    value: String,
    currency: String,
}

impl TryFrom<AmountWire> for Amount {
    type Error = FieldError;

    fn try_from(wire: AmountWire) -> Result<Self, Self::Error> {
        Amount::parse(&wire.value, &wire.currency)
    }
}

impl From<Amount> for AmountWire {
    fn from(amount: Amount) -> Self {
        AmountWire {
            value: amount.value_text,
            currency: amount.currency,
        }
    }
}

/// One link in the delegation chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The acting party, e.g. `planner-agent`.
    pub actor: String,
    /// The party the actor acts for, e.g. `alice@example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

impl NewRequest {
    /// The JSON value that is hashed:
    /// `{"agent_id", "action", "intent", "context"}`.
    ///
    /// It contains only what the agent sent: absent or `null` optional
    /// fields are omitted, an empty `delegation` is omitted, `intent` and
    /// `context` are always present (as `{}` when empty), `params` and
    /// `amount.value` are verbatim. `expires_in` is excluded because it
    /// bounds how long approval may take, not what is approved.
    pub fn hashed_view(&self, agent_id: &str) -> Value {
        let mut root = Map::new();
        root.insert("agent_id".into(), Value::String(agent_id.to_owned()));
        root.insert("action".into(), self.action.to_json());
        root.insert("intent".into(), self.intent.to_json());
        root.insert("context".into(), self.context.to_json());
        Value::Object(root)
    }

    /// `sha256:<hex>` of the RFC 8785 canonical form of
    /// [`hashed_view`](Self::hashed_view).
    pub fn action_hash(&self, agent_id: &str) -> String {
        let canonical = canonical::canonical_json(&self.hashed_view(agent_id));
        canonical::sha256_prefixed(canonical.as_bytes())
    }
}

// The hashed view is built by hand rather than with `serde_json::to_value`
// so that it is infallible and cannot change shape because someone adds a
// serde attribute; a test checks it still matches the serde form.

impl Action {
    fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("type".into(), Value::String(self.r#type.clone()));
        map.insert("target".into(), Value::String(self.target.clone()));
        insert_opt_string(&mut map, "operation", &self.operation);
        if let Some(params) = &self.params {
            map.insert("params".into(), Value::Object(params.clone()));
        }
        Value::Object(map)
    }
}

impl Intent {
    fn to_json(&self) -> Value {
        let mut map = Map::new();
        insert_opt_string(&mut map, "goal", &self.goal);
        insert_opt_string(&mut map, "rationale", &self.rationale);
        Value::Object(map)
    }
}

impl Context {
    fn to_json(&self) -> Value {
        let mut map = Map::new();
        insert_opt_string(&mut map, "environment", &self.environment);
        if let Some(level) = self.data_sensitivity {
            map.insert("data_sensitivity".into(), level.as_str().into());
        }
        if let Some(amount) = &self.amount {
            let mut inner = Map::new();
            inner.insert("value".into(), amount.value_text.as_str().into());
            inner.insert("currency".into(), amount.currency.as_str().into());
            map.insert("amount".into(), Value::Object(inner));
        }
        insert_opt_string(&mut map, "task_id", &self.task_id);
        if !self.delegation.is_empty() {
            let entries = self
                .delegation
                .iter()
                .map(|entry| {
                    let mut inner = Map::new();
                    inner.insert("actor".into(), entry.actor.as_str().into());
                    insert_opt_string(&mut inner, "on_behalf_of", &entry.on_behalf_of);
                    Value::Object(inner)
                })
                .collect();
            map.insert("delegation".into(), Value::Array(entries));
        }
        Value::Object(map)
    }
}

fn insert_opt_string(map: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(text) = value {
        map.insert(key.into(), Value::String(text.clone()));
    }
}

/// `^[0-9]{1,15}(\.[0-9]{1,6})?$`, written out by hand.
fn is_decimal_amount(text: &str) -> bool {
    let (integer, fraction) = match text.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (text, None),
    };
    let digits = |part: &str, max: usize| {
        (1..=max).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit())
    };
    digits(integer, AMOUNT_MAX_INTEGER_DIGITS)
        && fraction.is_none_or(|fraction| digits(fraction, AMOUNT_MAX_FRACTION_DIGITS))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    // --- hashing --------------------------------------------------------

    #[test]
    fn hashed_view_of_example() {
        let request = parse(EXAMPLE).expect("valid");
        let view = request.hashed_view("agent-7");
        let expected = json!({
            "agent_id": "agent-7",
            "action": {"type": "payments.transfer", "target": "bank-api",
                       "operation": "POST /v2/transfers",
                       "params": {"to": "DE89 3704 0044 0532 0130 00", "amount": "5000.00"}},
            "intent": {"goal": "Pay supplier invoice INV-1042",
                       "rationale": "Invoice approved in ticket FIN-77; due today"},
            "context": {"environment": "production", "data_sensitivity": "confidential",
                        "amount": {"value": "5000.00", "currency": "EUR"},
                        "task_id": "run-8812",
                        "delegation": [{"actor": "planner-agent", "on_behalf_of": "alice@example.com"}]}
        });
        assert_eq!(view, expected);
        let hash = request.action_hash("agent-7");
        assert_eq!(
            hash,
            canonical::sha256_prefixed(canonical::canonical_json(&expected).as_bytes())
        );
        assert!(hash.starts_with("sha256:"));
        let hex = &hash["sha256:".len()..];
        assert_eq!(hex.len(), 64);
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        assert!(hex.bytes().all(lower_hex));
    }

    #[test]
    fn hashed_view_omits_what_was_not_sent() {
        let request = parse_value(&minimal()).expect("valid");
        assert_eq!(
            request.hashed_view("a"),
            json!({"agent_id": "a", "action": {"type": "files.delete", "target": "fs"},
                   "intent": {}, "context": {}})
        );
        let with_empty_delegation =
            parse_value(&with("context.delegation", json!([]))).expect("valid");
        assert_eq!(
            with_empty_delegation.action_hash("a"),
            request.action_hash("a")
        );
    }

    #[test]
    fn hashed_view_matches_serde_form() {
        let request = parse(EXAMPLE).expect("valid");
        let view = request.hashed_view("x");
        assert_eq!(
            view["action"],
            serde_json::to_value(&request.action).expect("serialise")
        );
        assert_eq!(
            view["intent"],
            serde_json::to_value(&request.intent).expect("serialise")
        );
        assert_eq!(
            view["context"],
            serde_json::to_value(&request.context).expect("serialise")
        );
        let minimal = parse_value(&minimal()).expect("valid");
        let view = minimal.hashed_view("x");
        assert_eq!(
            view["context"],
            serde_json::to_value(&minimal.context).expect("serialise")
        );
        assert_eq!(
            view["intent"],
            serde_json::to_value(&minimal.intent).expect("serialise")
        );
    }

    #[test]
    fn hash_ignores_key_order_and_whitespace() {
        let reordered = r#"{"expires_in":300,"context":{"delegation":[{"on_behalf_of":"alice@example.com","actor":"planner-agent"}],"task_id":"run-8812","amount":{"currency":"EUR","value":"5000.00"},"data_sensitivity":"confidential","environment":"production"},"intent":{"rationale":"Invoice approved in ticket FIN-77; due today","goal":"Pay supplier invoice INV-1042"},"action":{"params":{"amount":"5000.00","to":"DE89 3704 0044 0532 0130 00"},"operation":"POST /v2/transfers","target":"bank-api","type":"payments.transfer"}}"#;
        let a = parse(EXAMPLE).expect("valid");
        let b = parse(reordered).expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.action_hash("agent-1"), b.action_hash("agent-1"));
        // Same body, same hash, every time.
        assert_eq!(
            a.action_hash("agent-1"),
            parse(EXAMPLE).expect("valid").action_hash("agent-1")
        );
    }

    #[test]
    fn hash_treats_numbers_in_params_as_jcs_does() {
        let a = parse_value(&params(json!({"n": 1.50, "m": 100}))).expect("valid");
        let b =
            parse(r#"{"action":{"type":"files.delete","target":"fs","params":{"m":1e2,"n":1.5}}}"#)
                .expect("valid");
        assert_eq!(a.action_hash("x"), b.action_hash("x"));
    }

    #[test]
    fn hash_depends_on_agent_and_content_but_not_expiry() {
        let request = parse(EXAMPLE).expect("valid");
        assert_ne!(
            request.action_hash("agent-1"),
            request.action_hash("agent-2")
        );

        let mut body: Value = serde_json::from_str(EXAMPLE).expect("json");
        body["expires_in"] = json!(60);
        let other_expiry = parse_value(&body).expect("valid");
        assert_eq!(
            other_expiry.action_hash("agent-1"),
            request.action_hash("agent-1")
        );

        body["context"]["amount"]["value"] = json!("5000.0");
        let other_amount = parse_value(&body).expect("valid");
        assert_eq!(
            other_amount.context.amount.as_ref().map(|a| a.value),
            request.context.amount.as_ref().map(|a| a.value)
        );
        // Numerically equal, but not what the agent sent: a different hash.
        assert_ne!(
            other_amount.action_hash("agent-1"),
            request.action_hash("agent-1")
        );
    }

    #[test]
    fn serde_round_trip_keeps_amount_text() {
        let request = parse(EXAMPLE).expect("valid");
        let stored = serde_json::to_string(&request).expect("serialise");
        let stored_value: Value = serde_json::from_str(&stored).expect("json");
        assert_eq!(
            stored_value["context"]["amount"],
            json!({"value": "5000.00", "currency": "EUR"})
        );
        assert_eq!(stored_value["expires_in"], json!(300));
        let back: NewRequest = serde_json::from_str(&stored).expect("deserialise");
        assert_eq!(back, request);
        assert_eq!(back.action_hash("a"), request.action_hash("a"));

        let bad: Result<Amount, _> =
            serde_json::from_value(json!({"value": "-1", "currency": "EUR"}));
        assert!(bad.is_err());
        let bad: Result<Amount, _> = serde_json::from_value(json!({"value": 1, "currency": "EUR"}));
        assert!(bad.is_err());
    }

    #[test]
    fn amount_parse_api() {
        let amount = Amount::parse("0.5", "USD").expect("valid");
        assert_eq!(amount.value, Decimal::new(5, 1));
        assert_eq!(amount.value_text, "0.5");
        assert_eq!(
            Amount::parse("1", "usd")
                .expect_err("lowercase")
                .field
                .as_deref(),
            Some("context.amount.currency")
        );
    }

    #[test]
    fn data_sensitivity_names() {
        for level in DataSensitivity::ALL {
            assert_eq!(DataSensitivity::from_wire(level.as_str()), Some(level));
            assert_eq!(
                serde_json::to_value(level).expect("serialise"),
                json!(level.as_str())
            );
            assert_eq!(level.to_string(), level.as_str());
        }
        assert_eq!(DataSensitivity::from_wire("Public"), None);
    }

    #[test]
    fn field_error_display_is_the_detail() {
        let err = FieldError::new("action.type", "action.type is required");
        assert_eq!(err.to_string(), "action.type is required");
        assert_eq!(FieldError::body("x").field, None);
    }
}
