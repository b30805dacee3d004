//! RFC 8785 JSON Canonicalization Scheme (JCS) and SHA-256 helpers.
//!
//! This module owns the one byte-exact textual form of a JSON value that
//! Countersign hashes and signs, so that an agent, a reviewer and an auditor
//! who hold "the same" JSON always derive the same digest regardless of key
//! order, whitespace or number spelling.
//!
//! It is pure computation: it must never perform I/O, talk HTTP, touch the
//! database, read the clock or depend on any configuration. Its output for a
//! given input must never change between releases, because stored hashes
//! depend on it.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

/// Returns the RFC 8785 canonical serialisation of `value`.
///
/// No whitespace, object members sorted by the UTF-16 code units of their
/// names, minimal string escaping and ECMAScript number formatting.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

/// Appends the RFC 8785 canonical serialisation of `value` to `out`.
///
/// The traversal uses an explicit stack rather than recursion, so a value of
/// any depth (for example one built in code rather than parsed) cannot
/// overflow the thread's stack.
pub fn write_canonical(value: &Value, out: &mut String) {
    // Containers that have been opened but not yet closed, innermost last.
    let mut stack: Vec<Frame<'_>> = Vec::new();
    // The next value to emit; `None` means "resume the innermost container".
    let mut pending = Some(value);

    loop {
        if let Some(current) = pending.take() {
            match current {
                Value::Array(items) => {
                    out.push('[');
                    stack.push(Frame::Array {
                        items: items.iter(),
                        first: true,
                    });
                }
                Value::Object(map) => {
                    out.push('{');
                    stack.push(Frame::Object {
                        members: sorted_members(map).into_iter(),
                        first: true,
                    });
                }
                Value::Null => out.push_str("null"),
                Value::Bool(true) => out.push_str("true"),
                Value::Bool(false) => out.push_str("false"),
                Value::Number(number) => write_number(number, out),
                Value::String(text) => write_string(text, out),
            }
        }

        let Some(top) = stack.last_mut() else {
            // The root value (scalar or container) is complete.
            break;
        };
        match top {
            Frame::Array { items, first } => match items.next() {
                Some(item) => {
                    if !*first {
                        out.push(',');
                    }
                    *first = false;
                    pending = Some(item);
                }
                None => {
                    out.push(']');
                    stack.pop();
                }
            },
            Frame::Object { members, first } => match members.next() {
                Some((name, member)) => {
                    if !*first {
                        out.push(',');
                    }
                    *first = false;
                    write_string(name, out);
                    out.push(':');
                    pending = Some(member);
                }
                None => {
                    out.push('}');
                    stack.pop();
                }
            },
        }
    }
}

/// Lowercase hexadecimal SHA-256 digest of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 digest of `bytes` in the self-describing form `sha256:<hex>`.
///
/// The algorithm prefix lets stored hashes be migrated to another algorithm
/// later without ambiguity.
pub fn sha256_prefixed(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// An open container during the iterative traversal.
enum Frame<'a> {
    Array {
        items: std::slice::Iter<'a, Value>,
        first: bool,
    },
    Object {
        members: std::vec::IntoIter<(&'a String, &'a Value)>,
        first: bool,
    },
}

/// Object members in RFC 8785 order.
///
/// `serde_json::Map` (without `preserve_order`) iterates in Rust `str` order,
/// i.e. by UTF-8 bytes. RFC 8785 §3.2.3 requires ordering by UTF-16 code
/// units instead; the two disagree when a supplementary-plane character
/// (a surrogate pair, 0xD800..0xDFFF in UTF-16) meets one in U+E000..U+FFFF,
/// so the members are re-sorted here rather than trusting the map's order.
fn sorted_members(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    // Names in a map are unique, so an unstable sort is still deterministic.
    members.sort_unstable_by(|(a, _), (b, _)| compare_utf16(a, b));
    members
}

/// Compares two strings as sequences of UTF-16 code units (RFC 8785 §3.2.3).
fn compare_utf16(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Writes a number the way ECMAScript `Number.prototype.toString` would.
///
/// JCS defines every JSON number as an IEEE-754 double, so integers that
/// serde_json keeps exactly as `u64`/`i64` are deliberately converted to
/// `f64` first (rounding to nearest, ties to even, exactly as a JavaScript
/// parser would): 9007199254740993 is emitted as 9007199254740992. The
/// conversion is the point, not an accident.
fn write_number(number: &Number, out: &mut String) {
    let double = if let Some(unsigned) = number.as_u64() {
        unsigned as f64
    } else if let Some(signed) = number.as_i64() {
        signed as f64
    } else {
        number.as_f64().unwrap_or(f64::NAN)
    };

    if double.is_finite() {
        // ryu-js implements the ECMAScript algorithm, including "-0" -> "0",
        // exponent form from 1e21 upwards and below 1e-6.
        out.push_str(ryu_js::Buffer::new().format_finite(double));
    } else {
        // Unreachable with serde_json's default features (its `Number` cannot
        // hold NaN or infinity). RFC 8785 says such values must not be
        // serialised at all; emitting `null`, as `JSON.stringify` does, keeps
        // this function total instead of panicking.
        out.push_str("null");
    }
}

/// Writes a JSON string with the minimal escaping RFC 8785 §3.2.2.2 requires.
///
/// Only `"`, `\` and the C0 controls are escaped; everything else, including
/// `/`, DEL, U+2028/U+2029 and all non-ASCII text, is written as raw UTF-8.
pub(crate) fn write_string(text: &str, out: &mut String) {
    out.reserve(text.len() + 2);
    out.push('"');
    // Copy the runs between characters that need escaping whole: most strings have none, and
    // a character at a time was 3% of intake's CPU. Every escaped character is ASCII, and no
    // byte of a multi-byte UTF-8 sequence is, so cutting at their bytes keeps whole characters.
    let mut run = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            control if control < 0x20 => "",
            _ => continue,
        };
        out.push_str(&text[run..i]);
        run = i + 1;
        if escape.is_empty() {
            // Writing into a String cannot fail, so the fmt::Result carries no information.
            let _ = write!(out, "\\u{:04x}", byte);
        } else {
            out.push_str(escape);
        }
    }
    out.push_str(&text[run..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn canon_text(text: &str) -> String {
        let value: Value = serde_json::from_str(text).expect("test JSON parses");
        canonical_json(&value)
    }

    fn canon_f64(number: f64) -> String {
        canonical_json(&json!(number))
    }

    #[test]
    fn rfc8785_section_3_2_2_example() {
        let input = r#"{
            "numbers": [],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let mut value: Value = serde_json::from_str(input).expect("test JSON parses");
        // The numbers come from Rust literals, which rustc rounds correctly;
        // serde_json's default float parser is one ULP off on the first one
        // (intake.rs compensates for that when parsing request bodies).
        #[allow(clippy::excessive_precision)]
        let numbers = json!([
            333333333.33333329_f64,
            1E30,
            4.50,
            2e-3,
            0.000000000000000000000000001
        ]);
        value["numbers"] = numbers;
        let expected = concat!(
            r#"{"literals":[null,true,false],"#,
            r#""numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"#,
            r#""string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        assert_eq!(canonical_json(&value), expected);
    }

    #[test]
    fn rfc8785_appendix_b_number_table() {
        // (IEEE-754 bit pattern, expected ECMAScript text) from RFC 8785
        // Appendix B. NaN and Infinity are excluded: a serde_json `Value`
        // cannot hold them.
        let table: &[(u64, &str)] = &[
            (0x0000_0000_0000_0000, "0"),
            (0x8000_0000_0000_0000, "0"),
            (0x0000_0000_0000_0001, "5e-324"),
            (0x8000_0000_0000_0001, "-5e-324"),
            (0x7fef_ffff_ffff_ffff, "1.7976931348623157e+308"),
            (0xffef_ffff_ffff_ffff, "-1.7976931348623157e+308"),
            (0x4340_0000_0000_0000, "9007199254740992"),
            (0xc340_0000_0000_0000, "-9007199254740992"),
            (0x4430_0000_0000_0000, "295147905179352830000"),
            (0x44b5_2d02_c7e1_4af5, "9.999999999999997e+22"),
            (0x44b5_2d02_c7e1_4af6, "1e+23"),
            (0x44b5_2d02_c7e1_4af7, "1.0000000000000001e+23"),
            (0x444b_1ae4_d6e2_ef4e, "999999999999999700000"),
            (0x444b_1ae4_d6e2_ef4f, "999999999999999900000"),
            (0x444b_1ae4_d6e2_ef50, "1e+21"),
            (0x3eb0_c6f7_a0b5_ed8c, "9.999999999999997e-7"),
            (0x3eb0_c6f7_a0b5_ed8d, "0.000001"),
            (0x41b3_de43_5555_5553, "333333333.3333332"),
            (0x41b3_de43_5555_5554, "333333333.33333325"),
            (0x41b3_de43_5555_5555, "333333333.3333333"),
            (0x41b3_de43_5555_5556, "333333333.3333334"),
            (0x41b3_de43_5555_5557, "333333333.33333343"),
            (0xbecb_f647_612f_3696, "-0.0000033333333333333333"),
            (0x4314_3ff3_c1cb_0959, "1424953923781206.2"),
        ];
        for &(bits, expected) in table {
            assert_eq!(
                canon_f64(f64::from_bits(bits)),
                expected,
                "bits {bits:#018x}"
            );
        }
    }

    #[test]
    fn brief_number_examples() {
        assert_eq!(canon_f64(1e21), "1e+21");
        assert_eq!(canon_f64(1e20), "100000000000000000000");
        assert_eq!(canon_f64(0.000001), "0.000001");
        assert_eq!(canon_f64(1e-7), "1e-7");
        #[allow(clippy::excessive_precision)]
        let thirds = 333333333.33333329_f64;
        assert_eq!(canon_f64(thirds), "333333333.3333333");
        assert_eq!(canon_f64(4.50), "4.5");
        assert_eq!(canon_f64(2e-3), "0.002");
        assert_eq!(canon_f64(-0.0), "0");
        assert_eq!(canon_text("-0"), "0");
        assert_eq!(canon_text("-0.0"), "0");
        assert_eq!(canon_text("1E+21"), "1e+21");
        assert_eq!(canon_text("4.50"), "4.5");
        assert_eq!(canon_text("100"), "100");
    }

    #[test]
    fn integers_are_emitted_as_doubles() {
        assert_eq!(
            canonical_json(&json!(9_007_199_254_740_993_u64)),
            "9007199254740992"
        );
        assert_eq!(
            canonical_json(&json!(-9_007_199_254_740_993_i64)),
            "-9007199254740992"
        );
        assert_eq!(canonical_json(&json!(u64::MAX)), "18446744073709552000");
        assert_eq!(canonical_json(&json!(i64::MIN)), "-9223372036854776000");
        assert_eq!(canonical_json(&json!(0_u64)), "0");
        assert_eq!(canonical_json(&json!(-1_i64)), "-1");
        // Beyond u64 serde_json stores a double; 1e21 and above switch to
        // exponent form exactly like ECMAScript.
        assert_eq!(canon_text("100000000000000000000"), "100000000000000000000");
        assert_eq!(canon_text("1000000000000000000000"), "1e+21");
    }

    #[test]
    fn rfc8785_section_3_2_3_sorting_example() {
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let expected = concat!(
            "{",
            r#""\r":"Carriage Return","#,
            r#""1":"One","#,
            "\"\u{80}\":\"Control\",",
            "\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",",
            "\"\u{20ac}\":\"Euro Sign\",",
            "\"\u{1f600}\":\"Emoji: Grinning Face\",",
            "\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"",
            "}"
        );
        assert_eq!(canon_text(input), expected);
    }

    #[test]
    fn utf16_order_differs_from_utf8_order() {
        // U+1F600 is a surrogate pair (0xD83D...) in UTF-16 and so sorts
        // before U+FB33, although its UTF-8 bytes sort after.
        assert!("\u{1f600}" > "\u{fb33}");
        assert_eq!(compare_utf16("\u{1f600}", "\u{fb33}"), Ordering::Less);
        let value = json!({"\u{fb33}": 1, "\u{1f600}": 2, "": 0, "a": 3, "ab": 4});
        assert_eq!(
            canonical_json(&value),
            "{\"\":0,\"a\":3,\"ab\":4,\"\u{1f600}\":2,\"\u{fb33}\":1}"
        );
    }

    #[test]
    fn strings_are_escaped_minimally() {
        let value =
            json!("\u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f} \"\\/\u{7f}\u{2028}\u{2029}é😀");
        assert_eq!(
            canonical_json(&value),
            "\"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f \\\"\\\\/\u{7f}\u{2028}\u{2029}é😀\""
        );
        assert_eq!(canonical_json(&json!("\u{1a}")), "\"\\u001a\"");
    }

    #[test]
    fn structure_without_whitespace() {
        let value = json!({"b": [1, {"d": null, "c": true}, []], "a": {}, "e": false});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{},"b":[1,{"c":true,"d":null},[]],"e":false}"#
        );
        assert_eq!(canonical_json(&json!(null)), "null");
        assert_eq!(canonical_json(&json!([])), "[]");
        assert_eq!(canonical_json(&json!("")), "\"\"");
    }

    #[test]
    fn write_canonical_appends() {
        let mut out = String::from("prefix:");
        write_canonical(&json!({"z": 1, "a": [true]}), &mut out);
        assert_eq!(out, r#"prefix:{"a":[true],"z":1}"#);
    }

    /// Drops a deeply nested array without recursing (serde_json's own drop
    /// glue is recursive and would overflow on the value built below).
    fn drop_deep(mut value: Value) {
        while let Value::Array(mut items) = value {
            value = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn deep_values_do_not_overflow_the_stack() {
        const DEPTH: usize = 200_000;
        let handle = std::thread::Builder::new()
            // Far too small for a recursive serialiser at this depth.
            .stack_size(128 * 1024)
            .spawn(|| {
                let mut value = Value::Null;
                for _ in 0..DEPTH {
                    value = Value::Array(vec![value]);
                }
                let text = canonical_json(&value);
                drop_deep(value);
                text
            })
            .expect("spawn test thread");
        let text = handle.join().expect("no stack overflow");
        assert_eq!(text.len(), DEPTH * 2 + 4);
        assert!(text.starts_with("[[[") && text.ends_with("]]]"));
        assert_eq!(text.get(DEPTH..DEPTH + 4), Some("null"));
    }

    #[test]
    fn sha256_known_answers() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_prefixed(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// Arbitrary text, biased towards the awkward cases: C0 controls, quotes,
    /// backslashes, astral and private-use characters.
    fn arb_text() -> impl Strategy<Value = String> {
        let awkward = prop_oneof![
            any::<char>(),
            (0u32..0x20).prop_filter_map("valid char", char::from_u32),
            Just('"'),
            Just('\\'),
            Just('\u{e000}'),
            Just('\u{ffff}'),
            Just('\u{10000}'),
            Just('\u{2028}'),
        ];
        prop::collection::vec(awkward, 0..10).prop_map(String::from_iter)
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter_map("finite", Number::from_f64)
                // The round-trip properties re-parse with serde_json, whose
                // default float parser is not correctly rounded; keep to
                // doubles it reads back exactly so a failure means a bug here.
                .prop_filter("serde_json reads it back exactly", |number| {
                    let text = canonical_json(&Value::Number(number.clone()));
                    serde_json::from_str::<f64>(&text).ok() == number.as_f64()
                })
                .prop_map(Value::Number),
            arb_text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(arb_text(), inner, 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// Equality under JCS semantics: every number is a double.
    fn same_json(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let as_double = |n: &Number| {
                    n.as_u64()
                        .map(|u| u as f64)
                        .or_else(|| n.as_i64().map(|i| i as f64))
                        .or_else(|| n.as_f64())
                };
                as_double(x) == as_double(y)
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
            }
            _ => a == b,
        }
    }

    proptest! {
        #[test]
        fn canonical_output_parses_back_to_an_equal_value(value in arb_json()) {
            let text = canonical_json(&value);
            let parsed: Value = serde_json::from_str(&text).expect("canonical output is JSON");
            prop_assert!(same_json(&value, &parsed), "{text}");
        }

        #[test]
        fn canonicalisation_is_a_fixed_point(value in arb_json()) {
            let once = canonical_json(&value);
            let parsed: Value = serde_json::from_str(&once).expect("canonical output is JSON");
            prop_assert_eq!(canonical_json(&parsed), once);
        }

        #[test]
        fn canonical_output_has_no_insignificant_whitespace(value in arb_json()) {
            // Whitespace may only appear inside strings; strip them and check.
            let text = canonical_json(&value);
            let mut in_string = false;
            let mut escaped = false;
            for ch in text.chars() {
                if in_string {
                    if escaped { escaped = false; }
                    else if ch == '\\' { escaped = true; }
                    else if ch == '"' { in_string = false; }
                    else { prop_assert!(u32::from(ch) >= 0x20, "raw control char in {text:?}"); }
                } else if ch == '"' {
                    in_string = true;
                } else {
                    prop_assert!(!ch.is_whitespace(), "whitespace in {text:?}");
                }
            }
        }
    }
}
