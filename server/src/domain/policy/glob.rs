//! Glob matching on action types and targets: `*` and `?`, nothing else.

/// Whole-string, case-sensitive glob match: `*` matches any run of characters (including `.`
/// and the empty run), `?` exactly one character, everything else itself.
///
/// Iterative two-pointer algorithm: on a mismatch it only ever backtracks to the most recent
/// `*`, so the cost is O(pattern × text) in the worst case and never exponential. It works on
/// bytes but steps over whole UTF-8 characters for `?` and `*`, so `?` matches one character,
/// not one byte. It does not allocate.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    // (pattern position just after the last `*`, text position that `*` currently extends to)
    let mut star: Option<(usize, usize)> = None;

    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                pi += 1;
                star = Some((pi, ti));
                continue;
            }
            Some(b'?') => {
                pi += 1;
                ti += utf8_len(t[ti]);
                continue;
            }
            // Byte-wise literal comparison is sound: both strings are valid UTF-8, so a run of
            // equal bytes starting on a character boundary covers whole characters, and the
            // ASCII `*`/`?` never occur inside a multi-byte character.
            Some(&c) if c == t[ti] => {
                pi += 1;
                ti += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((star_pi, star_ti)) => {
                // Let the last `*` swallow one more character and retry from there.
                let next = star_ti + utf8_len(t[star_ti]);
                star = Some((star_pi, next));
                pi = star_pi;
                ti = next;
            }
            None => return false,
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == b'*')
}

/// Length of the UTF-8 character whose first byte is `first`.
fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        // 0xF0.. are 4-byte leaders; continuation bytes never reach here (see glob_match).
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn glob_basics() {
        assert!(glob_match("payments.*", "payments.transfer"));
        assert!(glob_match("payments.*", "payments."));
        assert!(glob_match("payments.*", "payments.a.b.c"));
        assert!(!glob_match("payments.*", "payments"));
        assert!(
            !glob_match("payments.*", "paymentsXtransfer"),
            "the dot is literal"
        );
        assert!(
            !glob_match("payments.*", "xpayments.transfer"),
            "whole-string match"
        );
        assert!(
            !glob_match("payments.*", "Payments.transfer"),
            "case-sensitive"
        );
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything.at.all"));
        assert!(glob_match("db.drop_*", "db.drop_table"));
        assert!(glob_match("db.drop_*", "db.drop_"));
        assert!(!glob_match("db.drop_*", "db.dropped"));
        assert!(!glob_match("db.drop_*", "db.create_table"));
        assert!(glob_match("db.???", "db.foo"));
        assert!(!glob_match("db.???", "db.fo"));
        assert!(!glob_match("db.???", "db.fooo"));
        assert!(glob_match("?", "é"), "? is one character, not one byte");
        assert!(!glob_match("??", "é"));
        assert!(glob_match("*é?", "xxé漢"));
        assert!(glob_match("bank-api", "bank-api"));
        assert!(!glob_match("bank-api", "bank-api2"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("**", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(glob_match("*.*", "."));
        assert!(!glob_match("[a]", "a"), "no other glob syntax");
        assert!(glob_match("[a]", "[a]"));
    }

    #[test]
    fn glob_is_not_exponential_on_long_inputs() {
        let long_b = format!("a{}", "b".repeat(20_000));
        assert!(!glob_match("a*b*c", &long_b));
        assert!(glob_match("a*b*c", &format!("{long_b}c")));
        let long_a = "a".repeat(20_000);
        assert!(!glob_match("*a*a*a*a*a*a*a*a*b", &long_a));
        assert!(glob_match("*a*a*a*a*a*a*a*a*", &long_a));
        assert!(!glob_match(&"*?".repeat(50), &"x".repeat(49)));
    }

    /// The obvious recursive matcher, as the reference for the property test.
    fn reference_glob(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len()).any(|skip| reference_glob(rest, &text[skip..])),
            Some(('?', rest)) => !text.is_empty() && reference_glob(rest, &text[1..]),
            Some((c, rest)) => text.first() == Some(c) && reference_glob(rest, &text[1..]),
        }
    }

    proptest! {
        #[test]
        fn prop_glob_agrees_with_reference(
            pattern in "[ab\u{e9}.*?]{0,8}",
            text in "[ab\u{e9}.]{0,10}",
        ) {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(glob_match(&pattern, &text), reference_glob(&p, &t));
        }
    }
}
