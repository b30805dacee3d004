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

use std::fmt::{self, Write as _};

use rust_decimal::Decimal;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::domain::canonical;

// Until the split in the next commit this file is intake/validate.rs; schema.rs stays put.
#[path = "schema.rs"]
mod schema;

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
    fn params_depth(&self) -> usize {
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

    fn parse_at(value_text: &str, currency: &str, path: &str) -> Result<Self, FieldError> {
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

// ---------------------------------------------------------------------------
// Pass 1: strict structural parse.
// ---------------------------------------------------------------------------

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// State shared by the strict parse: where we are, and the first rejection.
///
/// A rejection is recorded here with its exact message, and the parse is
/// aborted with an opaque serde error; the serde error text (which would
/// carry serde's phrasing and a line/column suffix) is then discarded.
struct StrictParse<'a> {
    /// The create body's limits; `None` for other bodies, which have no `action.params`.
    limits: Option<&'a Limits>,
    path: Vec<Segment>,
    rejection: Option<FieldError>,
    numbers: NumberTokens<'a>,
}

impl StrictParse<'_> {
    fn field(&self) -> Option<String> {
        if self.path.is_empty() {
            None
        } else {
            Some(render_path(&self.path))
        }
    }

    /// How the current location is named in a sentence.
    fn subject(&self) -> String {
        self.field().unwrap_or_else(|| "request body".to_owned())
    }

    /// Whether the current location is `action.params` or inside it (of a create body).
    fn in_params(&self) -> bool {
        self.limits.is_some()
            && matches!(
                self.path.as_slice(),
                [Segment::Key(action), Segment::Key(params), ..]
                    if action == "action" && params == "params"
            )
    }

    fn reject<E: de::Error>(&mut self, field: Option<String>, detail: String) -> E {
        self.rejection = Some(FieldError { field, detail });
        E::custom("request rejected")
    }

    /// Called when an array or object starts at the current path.
    fn open_container<E: de::Error>(&mut self) -> Result<(), E> {
        let params_depth = self
            .limits
            .filter(|_| self.in_params())
            .map(Limits::params_depth);
        if let Some(max) = params_depth {
            // `action.params` itself has a path of length 2 and is level 1.
            let level = self.path.len().saturating_sub(1);
            if level > max {
                return Err(self.reject(
                    Some("action.params".to_owned()),
                    format!("action.params is nested deeper than {max} levels"),
                ));
            }
        } else if self.path.len() >= BODY_NESTING_CAP {
            // Named where the limit is crossed, so the agent can find the runaway value.
            let subject = self.subject();
            return Err(self.reject(
                self.field(),
                format!(
                    "{subject} is nested too deep: a request body may be nested at most \
                     {BODY_NESTING_CAP} levels"
                ),
            ));
        }
        Ok(())
    }

    fn check_text<E: de::Error>(&mut self, text: &str) -> Result<(), E> {
        if text.contains('\0') {
            let subject = self.subject();
            return Err(self.reject(
                self.field(),
                format!("{subject} must not contain the NUL character (\\u0000)"),
            ));
        }
        Ok(())
    }

    /// The double the next number token denotes, correctly rounded.
    ///
    /// serde_json (without its `float_roundtrip` feature) trades accuracy for
    /// speed and can land one ULP off for long or large-exponent decimals,
    /// e.g. 333333333.33333329. JCS hashes the exact IEEE-754 double the text
    /// denotes, so the token is re-parsed with Rust's correctly rounded
    /// parser. If the two are not within a few ULPs the token scan has lost
    /// step (it cannot for text serde_json accepts), and serde_json's value is
    /// kept: a rare one-ULP error beats the value of some other number.
    fn exact_double(&mut self, approximate: f64) -> f64 {
        self.numbers
            .next()
            .and_then(|token| token.parse::<f64>().ok())
            .filter(|exact| {
                exact.is_sign_negative() == approximate.is_sign_negative()
                    && exact.to_bits().abs_diff(approximate.to_bits()) <= 8
            })
            .unwrap_or(approximate)
    }

    fn check_number<E: de::Error>(&mut self, number: &Number) -> Result<(), E> {
        if self.in_params() && !is_interoperable(number) {
            return Err(self.out_of_range());
        }
        Ok(())
    }

    fn out_of_range<E: de::Error>(&mut self) -> E {
        let subject = self.subject();
        self.reject(
            self.field(),
            format!(
                "{subject} is outside the interoperable number range: numbers must be \
                 finite and integers must lie within ±9007199254740991 (2^53 − 1); \
                 send larger values as strings"
            ),
        )
    }
}

/// Whether every JSON implementation (in particular IEEE-754 doubles, which
/// JCS hashing assumes) reads `number` as the same value.
fn is_interoperable(number: &Number) -> bool {
    if let Some(unsigned) = number.as_u64() {
        unsigned <= MAX_SAFE_INTEGER
    } else if let Some(signed) = number.as_i64() {
        signed.unsigned_abs() <= MAX_SAFE_INTEGER
    } else if let Some(double) = number.as_f64() {
        // A fractional double is approximate by nature and fine; an integral
        // one beyond 2^53 − 1 no longer identifies a unique integer.
        double.is_finite() && (double.fract() != 0.0 || double.abs() <= MAX_SAFE_INTEGER as f64)
    } else {
        false
    }
}

/// Seed/visitor that builds a `Value` while applying the structural checks.
struct StrictValue<'s, 'l> {
    state: &'s mut StrictParse<'l>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_, '_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        // Integers are exact already; just keep the token scan in step.
        self.state.numbers.next();
        let number = Number::from(v);
        self.state.check_number(&number)?;
        Ok(Value::Number(number))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.state.numbers.next();
        let number = Number::from(v);
        self.state.check_number(&number)?;
        Ok(Value::Number(number))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        let exact = self.state.exact_double(v);
        let Some(number) = Number::from_f64(exact) else {
            return Err(self.state.out_of_range());
        };
        self.state.check_number(&number)?;
        Ok(Value::Number(number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.state.check_text(v)?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.state.check_text(&v)?;
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let state = self.state;
        state.open_container()?;
        let mut items = Vec::new();
        loop {
            // The segment is pushed before parsing the element so that any
            // error inside it is reported at its path; on error it is left
            // in place deliberately.
            state.path.push(Segment::Index(items.len()));
            let item = seq.next_element_seed(StrictValue { state: &mut *state })?;
            state.path.pop();
            match item {
                Some(item) => items.push(item),
                None => break,
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let state = self.state;
        state.open_container()?;
        let mut members = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            state.path.push(Segment::Key(key.clone()));
            state.check_text(&key)?;
            if members.contains_key(&key) {
                let subject = state.subject();
                return Err(state.reject(
                    state.field(),
                    format!(
                        "{subject} appears more than once; duplicate keys are ambiguous \
                         and not accepted"
                    ),
                ));
            }
            let value = access.next_value_seed(StrictValue { state: &mut *state })?;
            state.path.pop();
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

/// The text of each number token of a JSON document, in document order.
///
/// serde_json hands numbers to the visitor in the same order, which is what
/// lets [`StrictParse::exact_double`] pair each value with its text. Only
/// valid JSON needs to be scanned correctly: outside strings, a token
/// starting with `-` or a digit can only be a number.
struct NumberTokens<'t> {
    text: &'t str,
    pos: usize,
}

impl<'t> Iterator for NumberTokens<'t> {
    type Item = &'t str;

    fn next(&mut self) -> Option<&'t str> {
        let bytes = self.text.as_bytes();
        while let Some(&byte) = bytes.get(self.pos) {
            match byte {
                b'"' => {
                    // Skip the string, honouring backslash escapes.
                    self.pos += 1;
                    while let Some(&inner) = bytes.get(self.pos) {
                        self.pos += 1;
                        match inner {
                            b'\\' => self.pos += 1,
                            b'"' => break,
                            _ => {}
                        }
                    }
                }
                b'-' | b'0'..=b'9' => {
                    let start = self.pos;
                    while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') =
                        bytes.get(self.pos)
                    {
                        self.pos += 1;
                    }
                    return self.text.get(start..self.pos);
                }
                _ => self.pos += 1,
            }
        }
        None
    }
}

fn parse_strict(text: &str, limits: Option<&Limits>) -> Result<Value, FieldError> {
    let mut state = StrictParse {
        limits,
        path: Vec::new(),
        rejection: None,
        numbers: NumberTokens { text, pos: 0 },
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = StrictValue { state: &mut state }
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(value),
        Err(err) => Err(match state.rejection.take() {
            Some(rejection) => rejection,
            None => json_error(&err, &state),
        }),
    }
}

/// Maps an error raised by serde_json itself (not by our checks).
fn json_error(err: &serde_json::Error, state: &StrictParse<'_>) -> FieldError {
    // serde_json refuses numbers like 1e400 that overflow a double with
    // "number out of range". That is the non-finite case of the
    // interoperability rule, so it is reported at the number's path like the
    // other out-of-range numbers rather than as malformed JSON.
    if err.to_string().starts_with("number out of range") && !state.path.is_empty() {
        let subject = state.subject();
        return FieldError {
            field: state.field(),
            detail: format!(
                "{subject} is outside the interoperable number range: numbers must be \
                 finite and integers must lie within ±9007199254740991 (2^53 − 1); \
                 send larger values as strings"
            ),
        };
    }
    // A string that is not valid JSON text (a lone surrogate escape such as \ud800, an unknown
    // escape, a raw control character) spoils that one value: name it. A key that is broken
    // this way is named by the object that holds it.
    let message = err.to_string();
    if BROKEN_STRING.iter().any(|m| message.starts_with(m)) && !state.path.is_empty() {
        let subject = state.subject();
        return FieldError {
            field: state.field(),
            detail: format!("{subject} is not a valid JSON string: {message}"),
        };
    }
    // serde_json's message already ends in "at line L column C".
    FieldError::body(format!("request body is not valid JSON: {err}"))
}

/// serde_json's messages for a string whose content is not valid JSON text.
const BROKEN_STRING: [&str; 5] = [
    "lone leading surrogate in hex escape",
    "unexpected end of hex escape",
    "invalid unicode code point",
    "invalid escape",
    "control character (\\u0000-\\u001F) found while parsing a string",
];

/// Renders a path as `action.params.items[3].name`. Keys that are not plain
/// identifiers are written as JSON strings in brackets (`params["a.b"]`) so
/// the path stays unambiguous.
fn render_path(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => push_key(&mut out, key),
            Segment::Index(index) => {
                // Writing into a String cannot fail.
                let _ = write!(out, "[{index}]");
            }
        }
    }
    out
}

fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push('[');
        canonical::write_canonical(&Value::String(key.to_owned()), path);
        path.push(']');
    }
}

fn child(parent: &str, key: &str) -> String {
    let mut path = parent.to_owned();
    push_key(&mut path, key);
    path
}

// ---------------------------------------------------------------------------
// Pass 2: schema validation.
// ---------------------------------------------------------------------------

fn validate_request(value: Value, limits: &Limits) -> Result<NewRequest, FieldError> {
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
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const EXAMPLE: &str = r#"{
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

    fn parse(body: &str) -> Result<NewRequest, FieldError> {
        parse_new_request(body.as_bytes(), &Limits::default())
    }

    fn parse_value(body: &Value) -> Result<NewRequest, FieldError> {
        parse(&body.to_string())
    }

    /// Asserts that `body` is rejected at `field`, returning the detail.
    #[track_caller]
    fn rejected_at(body: &Value, field: &str) -> String {
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
    fn rejected_whole(body: &[u8]) -> String {
        match parse_new_request(body, &Limits::default()) {
            Ok(request) => panic!("expected rejection, got {request:?}"),
            Err(err) => {
                assert_eq!(err.field, None, "detail: {}", err.detail);
                err.detail
            }
        }
    }

    fn minimal() -> Value {
        json!({"action": {"type": "files.delete", "target": "fs"}})
    }

    /// `minimal()` with one field set at a dotted path of object keys.
    fn with(path: &str, value: Value) -> Value {
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

    fn params(value: Value) -> Value {
        with("action.params", value)
    }

    /// `depth` nested single-member objects, the innermost holding 1.
    fn nested_objects(depth: usize) -> Value {
        let mut value = json!(1);
        for _ in 0..depth {
            value = json!({ "n": value });
        }
        value
    }

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

    // --- whole-body problems --------------------------------------------

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
    fn malformed_json_reports_line_and_column() {
        let detail = rejected_whole(b"{\n  \"action\": {\"type\": \"a\",, }\n}");
        assert!(
            detail.starts_with("request body is not valid JSON"),
            "{detail}"
        );
        assert!(detail.contains("line 2 column"), "{detail}");

        for body in [
            &b""[..],
            b"   ",
            b"{",
            b"{\"action\":",
            b"nul",
            b"{}x",
            b"{} {}",
            b"'a'",
        ] {
            let detail = rejected_whole(body);
            assert!(detail.contains("line"), "{body:?}: {detail}");
        }
    }

    #[test]
    fn broken_strings_are_named_where_they_are() {
        // Lone surrogate escapes are not Unicode text; an unknown escape or a raw control
        // character is not a JSON string. Each spoils one value: that value is named.
        for (body, field) in [
            (
                r#"{"action":{"type":"a","target":"\ud800"}}"#,
                "action.target",
            ),
            (
                r#"{"action":{"type":"a","target":"t","params":{"k":"x\udc00"}}}"#,
                "action.params.k",
            ),
            (
                r#"{"action":{"type":"a","target":"t","params":{"k":["ok","\ud83d\u0041"]}}}"#,
                "action.params.k[1]",
            ),
            (r#"{"intent":{"goal":"\q"}}"#, "intent.goal"),
            ("{\"intent\":{\"goal\":\"a\tb\"}}", "intent.goal"),
            // A broken key is named by the object holding it.
            (
                r#"{"action":{"type":"a","target":"t","params":{"\ud800":1}}}"#,
                "action.params",
            ),
        ] {
            let err = parse(body).expect_err(body);
            assert_eq!(err.field.as_deref(), Some(field), "{body}: {}", err.detail);
            assert!(
                err.detail
                    .starts_with(&format!("{field} is not a valid JSON string: ")),
                "{}",
                err.detail
            );
        }
        // At the top level there is nothing smaller to name.
        rejected_whole(br#""\ud800""#);
    }

    #[test]
    fn other_bodies_get_the_structural_rules() {
        let value = parse_strict_json(br#"{"token":"a","n":[1,{"x":null}]}"#).expect("valid");
        assert_eq!(value, json!({"token": "a", "n": [1, {"x": null}]}));
        // No create-body rules: big integers are fine outside a create body's params.
        parse_strict_json(br#"{"action":{"params":{"n":9007199254740993}}}"#).expect("valid");
        for (body, field) in [
            (&br#"{"token":"a","token":"b"}"#[..], Some("token")),
            (br#"{"a":{"b":1,"b":2}}"#, Some("a.b")),
            (br#"{"token":"\ud800"}"#, Some("token")),
            (br#"{"token":"a\u0000"}"#, Some("token")),
            (b"{\"token\":\"\xff\"}", None),
            (b"{", None),
        ] {
            let err = parse_strict_json(body).expect_err("refused");
            assert_eq!(err.field.as_deref(), field, "{}", err.detail);
        }
        let deep = format!("{}{}", "[".repeat(70), "]".repeat(70));
        let err = parse_strict_json(deep.as_bytes()).expect_err("too deep");
        assert_eq!(err.field, Some("[0]".repeat(64)));
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

    #[test]
    fn oversized_body_is_rejected_before_parsing() {
        let limits = Limits::default();
        let body = vec![b' '; limits.max_body_bytes + 1];
        let err = parse_new_request(&body, &limits).expect_err("too big");
        assert_eq!(err.field, None);
        assert_eq!(err.detail, "request body is larger than 65536 bytes");
    }

    #[test]
    fn field_error_display_is_the_detail() {
        let err = FieldError::new("action.type", "action.type is required");
        assert_eq!(err.to_string(), "action.type is required");
        assert_eq!(FieldError::body("x").field, None);
    }

    // --- nesting --------------------------------------------------------

    #[test]
    fn hundred_thousand_brackets_do_not_overflow() {
        // The body limit would refuse these first; lift it to reach the parser.
        let limits = Limits {
            max_body_bytes: usize::MAX,
            ..Limits::default()
        };
        let parse = |body: &str| parse_new_request(body.as_bytes(), &limits);
        // Refused where the 65th level opens (the body is level 1), and named there.
        let rejected_at = |body: &str, field: &str| {
            let err = parse(body).expect_err("rejected");
            assert_eq!(err.field.as_deref(), Some(field), "{}", err.detail);
            assert!(err.detail.contains("nested too deep"), "{}", err.detail);
            err.detail
        };
        let deep = "[".repeat(100_000);
        let detail = rejected_at(&deep, &"[0]".repeat(64));
        assert!(
            detail.ends_with("a request body may be nested at most 64 levels"),
            "{detail}"
        );

        let closed = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        rejected_at(&closed, &"[0]".repeat(64));

        let in_params = format!(r#"{{"action":{{"type":"a","target":"t","params":{{"x":{deep}"#);
        let err = parse(&in_params).expect_err("too deep");
        assert_eq!(err.field.as_deref(), Some("action.params"));
        assert_eq!(err.detail, "action.params is nested deeper than 16 levels");

        let in_goal = format!(r#"{{"intent":{{"goal":{deep}"#);
        rejected_at(&in_goal, &format!("intent.goal{}", "[0]".repeat(62)));

        let objects = r#"{"a":"#.repeat(100_000);
        rejected_at(&objects, &vec!["a"; 64].join("."));

        // With the default limits the same bodies are refused by size.
        assert_eq!(
            parse_new_request(deep.as_bytes(), &Limits::default())
                .expect_err("too big")
                .field,
            None
        );
    }

    #[test]
    fn worst_case_nesting_fits_a_small_stack() {
        // Even with max_depth far above the cap, the parser recurses at most
        // ~100 levels, so a thread with a quarter of the usual 2 MiB stack
        // copes (debug builds use about 2 KiB per level).
        let result = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(|| {
                let limits = Limits {
                    max_body_bytes: usize::MAX,
                    max_depth: 1_000_000,
                    ..Limits::default()
                };
                let deep = "[".repeat(100_000);
                let body = format!(r#"{{"action":{{"type":"a","target":"t","params":{deep}"#);
                parse_new_request(body.as_bytes(), &limits)
            })
            .expect("spawn test thread")
            .join()
            .expect("no stack overflow");
        let err = result.expect_err("too deep");
        assert_eq!(err.field.as_deref(), Some("action.params"));
        assert_eq!(err.detail, "action.params is nested deeper than 100 levels");
    }

    #[test]
    fn params_depth_limit_counts_params_as_level_one() {
        // params itself plus 15 nested objects = 16 levels: accepted.
        parse_value(&params(nested_objects(16))).expect("16 levels are fine");
        let detail = rejected_at(&params(nested_objects(17)), "action.params");
        assert_eq!(detail, "action.params is nested deeper than 16 levels");

        // Arrays count as levels too.
        let mut array = json!(1);
        for _ in 0..15 {
            array = json!([array]);
        }
        parse_value(&params(json!({ "a": array.clone() }))).expect("16 levels");
        rejected_at(&params(json!({ "a": [array] })), "action.params");

        // A custom limit is honoured and named.
        let limits = Limits {
            max_depth: 2,
            ..Limits::default()
        };
        let err = parse_new_request(params(nested_objects(3)).to_string().as_bytes(), &limits)
            .expect_err("too deep");
        assert_eq!(err.detail, "action.params is nested deeper than 2 levels");
        parse_new_request(params(nested_objects(2)).to_string().as_bytes(), &limits).expect("ok");
    }

    #[test]
    fn params_depth_applies_even_when_params_is_not_an_object() {
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!([deep]);
        }
        rejected_at(&params(deep), "action.params");
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

    #[test]
    fn duplicate_keys_are_rejected() {
        let err =
            parse(r#"{"action":{"type":"a","target":"t"},"action":{"type":"b","target":"t"}}"#)
                .expect_err("duplicate");
        assert_eq!(err.field.as_deref(), Some("action"));
        assert!(err.detail.contains("more than once"), "{}", err.detail);

        let err = parse(r#"{"action":{"type":"a","target":"t","params":{"to":"x","to":"y"}}}"#)
            .expect_err("duplicate");
        assert_eq!(err.field.as_deref(), Some("action.params.to"));
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

    #[test]
    fn params_numbers_must_be_interoperable() {
        for ok in [
            json!(9_007_199_254_740_991_u64),
            json!(-9_007_199_254_740_991_i64),
            json!(0),
            json!(1.5),
            json!(-0.0),
            json!(1e15),
            json!(1e-300),
            json!(123_456_789.123_456_79),
        ] {
            parse_value(&params(json!({ "n": ok }))).expect("interoperable");
        }
        for bad in [
            json!(9_007_199_254_740_992_u64),
            json!(-9_007_199_254_740_992_i64),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1e300),
            json!(9_007_199_254_740_992.0),
            json!(-1e20),
        ] {
            let detail = rejected_at(&params(json!({ "n": bad })), "action.params.n");
            assert!(
                detail.starts_with("action.params.n is outside the interoperable number range"),
                "{detail}"
            );
        }
        let nested = params(json!({"items": [{}, {}, {}, {"name": "x", "qty": 1e17}]}));
        rejected_at(&nested, "action.params.items[3].qty");

        // Numbers that overflow a double are the non-finite case.
        let err = parse(r#"{"action":{"type":"a","target":"t","params":{"list":[1,-1e400]}}}"#)
            .expect_err("infinite");
        assert_eq!(err.field.as_deref(), Some("action.params.list[1]"));
        assert!(
            err.detail.contains("interoperable number range"),
            "{}",
            err.detail
        );
    }

    #[test]
    fn params_floats_are_parsed_exactly() {
        // serde_json's default float parser lands one ULP low on this RFC 8785
        // example; the hash must use the double the text really denotes.
        let request = parse(
            r#"{"action":{"type":"a","target":"t","params":{"x":333333333.33333329,"y":[1,"2.5e-7",-0,1.5E-7]}}}"#,
        )
        .expect("valid");
        let params = request.action.params.as_ref().expect("params");
        #[allow(clippy::excessive_precision)]
        let expected = 333_333_333.333_333_29_f64;
        assert_eq!(
            params["x"].as_f64().map(f64::to_bits),
            Some(expected.to_bits())
        );
        let view = canonical::canonical_json(&request.hashed_view("a"));
        assert!(
            view.contains(r#""params":{"x":333333333.3333333,"y":[1,"2.5e-7",0,1.5e-7]}"#),
            "{view}"
        );
    }

    #[test]
    fn number_tokens_skip_strings_and_keys() {
        let text = r#"{"a-1":[-1.5e3,"x\"9",2],"\"":{"b":-0,"c":"-7"},"d":1E+2}"#;
        let tokens: Vec<&str> = NumberTokens { text, pos: 0 }.collect();
        assert_eq!(tokens, ["-1.5e3", "2", "-0", "1E+2"]);
    }

    #[test]
    fn nul_characters_are_rejected_everywhere() {
        let body = params(json!({"items": [0, 1, 2, {"name": "a\u{0}b"}]}));
        let detail = rejected_at(&body, "action.params.items[3].name");
        assert_eq!(
            detail,
            "action.params.items[3].name must not contain the NUL character (\\u0000)"
        );

        rejected_at(&params(json!({"k\u{0}": 1})), "action.params[\"k\\u0000\"]");
        rejected_at(
            &with("intent.rationale", json!("line\u{0}")),
            "intent.rationale",
        );
        rejected_at(
            &with(
                "context.amount",
                json!({"value": "1\u{0}", "currency": "EUR"}),
            ),
            "context.amount.value",
        );
        rejected_at(
            &with(
                "context.delegation",
                json!([{"actor": "a"}, {"actor": "\u{0}"}]),
            ),
            "context.delegation[1].actor",
        );
        assert!(rejected_whole(b"\"\\u0000\"").contains("NUL"));
    }

    #[test]
    fn odd_params_keys_render_unambiguously() {
        let body = params(json!({"a.b": {"": [{"x y": "\u{0}"}]}}));
        rejected_at(&body, r#"action.params["a.b"][""][0]["x y"]"#);
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
        fn params_doubles_survive_exactly(
            double in any::<f64>().prop_filter("interoperable", |d| {
                d.is_finite() && (d.fract() != 0.0 || d.abs() < 9e15)
            })
        ) {
            // Debug formatting of f64 is the shortest text that round-trips.
            let body = format!(r#"{{"action":{{"type":"a","target":"t","params":{{"x":{double:?}}}}}}}"#);
            let request = parse(&body).expect("valid");
            let parsed = request.action.params.as_ref().and_then(|p| p["x"].as_f64());
            prop_assert_eq!(parsed, Some(double), "{}", body);
        }

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
