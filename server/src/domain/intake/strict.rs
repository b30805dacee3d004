//! Pass 1: the strict structural parse of a JSON body, shared by every body the API reads.

use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::{FieldError, Limits, BODY_NESTING_CAP, MAX_SAFE_INTEGER};
use crate::domain::canonical;

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

pub(super) fn parse_strict(text: &str, limits: Option<&Limits>) -> Result<Value, FieldError> {
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

pub(super) fn child(parent: &str, key: &str) -> String {
    let mut path = parent.to_owned();
    push_key(&mut path, key);
    path
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{parse_new_request, parse_strict_json};
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

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
    }
}
