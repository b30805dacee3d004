//! The policy file: reading TOML (strictly: every problem names its rule and key) and writing
//! the normalised form back, whose SHA-256 is the policy's hash.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::ops::RangeInclusive;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::model::{
    ApproverSource, Money, Policy, PolicyError, PolicyRule, RuleOutcome, RuleRef, APPROVALS_RANGE,
    DELEGATION_DEPTH_RANGE, GRANT_TTL_SECONDS_RANGE, REQUEST_TTL_SECONDS_RANGE,
    STANDING_MAX_SECONDS_RANGE, STANDING_MAX_USES_RANGE,
};
use super::validate::{duplicate_id, parse_amount, range_reason, validate_rule};

// ---------------------------------------------------------------------------------------------
// TOML parsing
// ---------------------------------------------------------------------------------------------

/// One `[[rule]]` table as written. Everything optional so that missing keys get our own
/// messages; numbers as i64 so that out-of-range values get range messages rather than
/// serde's "expected u32"; `deny_unknown_fields` so a typo names the key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Option<String>,
    description: Option<String>,
    action: Option<String>,
    target: Option<String>,
    environment: Option<Vec<String>>,
    data_sensitivity: Option<Vec<String>>,
    // Taken as plain values and converted by hand: serde would also accept a struct written as
    // an array (`["100", "EUR"]`), which the file format does not allow.
    amount_below: Option<toml::Value>,
    amount_at_least: Option<toml::Value>,
    delegation_depth_at_least: Option<i64>,
    delegation_depth_below: Option<i64>,
    credential: Option<String>,
    credential_ttl_seconds: Option<i64>,
    standing_max_seconds: Option<i64>,
    standing_max_uses: Option<i64>,
    outcome: Option<String>,
    grant_ttl_seconds: Option<i64>,
    approvals: Option<i64>,
    approvers: Option<Vec<String>>,
    all_groups: Option<bool>,
    exclude_owner: Option<bool>,
    request_ttl_seconds: Option<i64>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMoney {
    value: Option<String>,
    currency: Option<String>,
}

impl Policy {
    /// Parses and validates a policy file. The whole file is refused on any error, and the
    /// first error is reported (syntax errors first, then rule by rule in file order).
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let mut document: toml::Table = text.parse().map_err(|e| syntax_error(text, &e))?;
        // Only [[rule]] lives at the top level; anything else is most likely a typo.
        if let Some(key) = document.keys().find(|k| k.as_str() != "rule") {
            return Err(PolicyError::new(
                None,
                None,
                Some(key),
                "unknown key (a policy file holds only [[rule]] tables)",
            ));
        }
        let raw_rules = match document.remove("rule") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items,
            Some(_) => {
                return Err(PolicyError::new(
                    None,
                    None,
                    Some("rule"),
                    "must be an array of tables, written [[rule]]",
                ));
            }
        };

        let mut rules = Vec::with_capacity(raw_rules.len());
        let mut seen: HashSet<String> = HashSet::with_capacity(raw_rules.len());
        for (index, value) in raw_rules.into_iter().enumerate() {
            let toml::Value::Table(table) = value else {
                return Err(PolicyError::new(
                    None,
                    Some(index),
                    None,
                    "a rule must be a table, written [[rule]]",
                ));
            };
            let id = table
                .get("id")
                .and_then(toml::Value::as_str)
                .map(str::to_owned);
            let at = RuleRef {
                id: id.as_deref(),
                index,
            };
            // The toml crate hands a bare date-time to a `String` field as its text; the file
            // format has no date-times, so refuse them (after serde has had its say, so that an
            // unknown key is still reported as such).
            let datetime = datetime_key(&table);
            let raw = RawRule::deserialize(toml::Value::Table(table))
                .map_err(|e| serde_error(at, None, &e))?;
            if let Some(key) = datetime {
                return Err(PolicyError::at(
                    at,
                    &key,
                    "date-times are not allowed; write a quoted string",
                ));
            }
            let rule = rule_from_raw(raw, at)?;
            validate_rule(&rule, index)?;
            if !seen.insert(rule.id.clone()) {
                return Err(duplicate_id(&rule.id, index));
            }
            rules.push(rule);
        }
        Ok(Policy { rules })
    }
}

/// The dotted key of the first date-time value in `table`, looking into nested tables and
/// arrays (an array element is reported by its array's key).
fn datetime_key(table: &toml::Table) -> Option<String> {
    fn contains_datetime(value: &toml::Value) -> Option<String> {
        match value {
            toml::Value::Datetime(_) => Some(String::new()),
            toml::Value::Array(items) => items.iter().find_map(contains_datetime),
            toml::Value::Table(table) => datetime_key(table),
            _ => None,
        }
    }
    table.iter().find_map(|(key, value)| {
        contains_datetime(value).map(|rest| {
            if rest.is_empty() || matches!(value, toml::Value::Array(_)) {
                key.clone()
            } else {
                format!("{key}.{rest}")
            }
        })
    })
}

/// A TOML syntax error as one line with its position.
fn syntax_error(text: &str, error: &toml::de::Error) -> PolicyError {
    let message = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let reason = match error.span() {
        Some(span) => {
            let offset = span.start.min(text.len());
            let before = text.as_bytes().get(..offset).unwrap_or_default();
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            let column = text
                .get(line_start..offset)
                .map_or(offset - line_start, |s| s.chars().count())
                + 1;
            format!("TOML syntax error at line {line}, column {column}: {message}")
        }
        None => format!("TOML syntax error: {message}"),
    };
    PolicyError::new(None, None, None, reason)
}

/// Turns a serde error from deserialising one rule into a PolicyError naming the key.
///
/// The toml crate reports the path of a type error as a trailing "in `a.b`" line (it has no
/// source span once the document is a Value), while serde reports unknown and missing fields
/// in the message itself ("unknown field `x`, expected ...").
fn serde_error(rule: RuleRef<'_>, prefix: Option<&str>, error: &toml::de::Error) -> PolicyError {
    let message = error.message().trim();
    let full = error.to_string();
    let mut path: Vec<&str> = prefix.into_iter().collect();
    if let Some(inner) = full
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .and_then(|l| l.strip_prefix("in `"))
        .and_then(|l| l.strip_suffix('`'))
    {
        path.push(inner);
    }
    let backticked = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
    };
    let reason = if let Some(field) = backticked("unknown field `") {
        path.push(field);
        "unknown key".to_owned()
    } else if let Some(field) = backticked("missing field `") {
        path.push(field);
        "is required".to_owned()
    } else {
        let one_line = message
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; ");
        if path.last().is_some_and(|k| k.ends_with("value")) && one_line.starts_with("invalid type")
        {
            format!("{one_line}; amounts are strings, e.g. \"100.00\"")
        } else {
            one_line
        }
    };
    let key = (!path.is_empty()).then(|| path.join("."));
    PolicyError::new(rule.id, Some(rule.index), key.as_deref(), reason)
}

/// Builds the typed rule, checking what the typed form cannot express: required keys, keys
/// that do not belong to the outcome, number ranges and the textual form of amounts and
/// approvers. Everything else is left to `validate_rule`.
fn rule_from_raw(raw: RawRule, at: RuleRef<'_>) -> Result<PolicyRule, PolicyError> {
    let Some(id) = raw.id else {
        return Err(PolicyError::at(at, "id", "is required"));
    };
    let Some(kind) = raw.outcome.as_deref() else {
        return Err(PolicyError::at(
            at,
            "outcome",
            "is required (\"allow\", \"require\" or \"deny\")",
        ));
    };
    if !matches!(kind, "allow" | "require" | "deny") {
        return Err(PolicyError::at(
            at,
            "outcome",
            "must be \"allow\", \"require\" or \"deny\"",
        ));
    }

    // Which outcome each outcome-specific key belongs to, in file order.
    let specific: [(&str, bool, &[&str]); 7] = [
        (
            "grant_ttl_seconds",
            raw.grant_ttl_seconds.is_some(),
            &["allow", "require"],
        ),
        ("approvals", raw.approvals.is_some(), &["require"]),
        ("approvers", raw.approvers.is_some(), &["require"]),
        ("all_groups", raw.all_groups.is_some(), &["require"]),
        ("exclude_owner", raw.exclude_owner.is_some(), &["require"]),
        (
            "request_ttl_seconds",
            raw.request_ttl_seconds.is_some(),
            &["require"],
        ),
        ("reason", raw.reason.is_some(), &["deny"]),
    ];
    for (key, present, outcomes) in specific {
        if present && !outcomes.contains(&kind) {
            let allowed = outcomes
                .iter()
                .map(|o| format!("\"{o}\""))
                .collect::<Vec<_>>()
                .join(" or ");
            return Err(PolicyError::at(
                at,
                key,
                format!("not allowed when outcome = \"{kind}\" (only with outcome = {allowed})"),
            ));
        }
    }

    let number = |key: &str, value: Option<i64>, range: &RangeInclusive<u32>| {
        value
            .map(|v| {
                u32::try_from(v)
                    .ok()
                    .filter(|v| range.contains(v))
                    .ok_or_else(|| PolicyError::at(at, key, range_reason(range)))
            })
            .transpose()
    };
    let grant_ttl_seconds = number(
        "grant_ttl_seconds",
        raw.grant_ttl_seconds,
        &GRANT_TTL_SECONDS_RANGE,
    )?;

    let outcome = match kind {
        "allow" => RuleOutcome::Allow { grant_ttl_seconds },
        "require" => {
            let approvers = match raw.approvers {
                None => vec![ApproverSource::Owner],
                Some(items) => items
                    .iter()
                    .map(|s| {
                        s.parse::<ApproverSource>()
                            .map_err(|e| PolicyError::at(at, "approvers", e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            RuleOutcome::Require {
                approvals: number("approvals", raw.approvals, &APPROVALS_RANGE)?.unwrap_or(1),
                approvers,
                all_groups: raw.all_groups.unwrap_or(false),
                exclude_owner: raw.exclude_owner.unwrap_or(false),
                request_ttl_seconds: number(
                    "request_ttl_seconds",
                    raw.request_ttl_seconds,
                    &REQUEST_TTL_SECONDS_RANGE,
                )?,
                grant_ttl_seconds,
            }
        }
        _ => match raw.reason {
            Some(reason) => RuleOutcome::Deny { reason },
            None => {
                return Err(PolicyError::at(
                    at,
                    "reason",
                    "is required when outcome = \"deny\"",
                ));
            }
        },
    };

    let money = |key: &str, raw: Option<toml::Value>| -> Result<Option<Money>, PolicyError> {
        let table = match raw {
            None => return Ok(None),
            Some(table @ toml::Value::Table(_)) => table,
            Some(_) => {
                return Err(PolicyError::at(
                    at,
                    key,
                    "must be a table such as { value = \"100.00\", currency = \"EUR\" }",
                ));
            }
        };
        let raw = RawMoney::deserialize(table).map_err(|e| serde_error(at, Some(key), &e))?;
        let Some(value) = raw.value else {
            return Err(PolicyError::at(at, &format!("{key}.value"), "is required"));
        };
        let Some(currency) = raw.currency else {
            return Err(PolicyError::at(
                at,
                &format!("{key}.currency"),
                "is required",
            ));
        };
        let value =
            parse_amount(&value).map_err(|r| PolicyError::at(at, &format!("{key}.value"), r))?;
        Ok(Some(Money { value, currency }))
    };

    Ok(PolicyRule {
        id,
        description: raw.description,
        action: raw.action,
        target: raw.target,
        environment: raw.environment,
        data_sensitivity: raw.data_sensitivity,
        amount_below: money("amount_below", raw.amount_below)?,
        amount_at_least: money("amount_at_least", raw.amount_at_least)?,
        delegation_depth_at_least: number(
            "delegation_depth_at_least",
            raw.delegation_depth_at_least,
            &DELEGATION_DEPTH_RANGE,
        )?,
        delegation_depth_below: number(
            "delegation_depth_below",
            raw.delegation_depth_below,
            &DELEGATION_DEPTH_RANGE,
        )?,
        credential: raw.credential,
        credential_ttl_seconds: number(
            "credential_ttl_seconds",
            raw.credential_ttl_seconds,
            &crate::domain::credential::CREDENTIAL_TTL_SECONDS_RANGE,
        )?,
        standing_max_seconds: number(
            "standing_max_seconds",
            raw.standing_max_seconds,
            &STANDING_MAX_SECONDS_RANGE,
        )?,
        standing_max_uses: number(
            "standing_max_uses",
            raw.standing_max_uses,
            &STANDING_MAX_USES_RANGE,
        )?,
        outcome,
    })
}

// ---------------------------------------------------------------------------------------------
// TOML writing and hashing
// ---------------------------------------------------------------------------------------------

/// Appends `text` as a TOML basic string. Quotes, backslashes and control characters are
/// escaped; all other Unicode is written as is (TOML files are UTF-8).
fn push_toml_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_toml_key_string(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str(" = ");
    push_toml_string(out, value);
    out.push('\n');
}

fn push_toml_key_list<T: AsRef<str>>(out: &mut String, key: &str, items: &[T]) {
    out.push_str(key);
    out.push_str(" = [");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_toml_string(out, item.as_ref());
    }
    out.push_str("]\n");
}

fn push_toml_key_money(out: &mut String, key: &str, money: &Money) {
    out.push_str(key);
    out.push_str(" = { value = ");
    push_toml_string(out, &money.value.to_string());
    out.push_str(", currency = ");
    push_toml_string(out, &money.currency);
    out.push_str(" }\n");
}

impl Policy {
    /// The normalised policy file: rules in order, separated by a blank line; keys in a fixed
    /// order (id, description, action, target, environment, data_sensitivity, amount_below,
    /// amount_at_least, delegation_depth_at_least, delegation_depth_below, outcome, then the
    /// outcome's keys, then credential, credential_ttl_seconds, standing_max_seconds and
    /// standing_max_uses); require rules always spell out
    /// approvals, approvers, all_groups and exclude_owner; absent options are left out.
    ///
    /// For a valid policy, `Policy::from_toml(&p.to_toml()) == Ok(p)` and writing the parsed
    /// result again gives the same text. An empty policy is the empty string.
    pub fn to_toml(&self) -> String {
        let mut out = String::with_capacity(self.rules.len() * 256);
        for (i, rule) in self.rules.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str("[[rule]]\n");
            push_toml_key_string(&mut out, "id", &rule.id);
            if let Some(description) = &rule.description {
                push_toml_key_string(&mut out, "description", description);
            }
            if let Some(action) = &rule.action {
                push_toml_key_string(&mut out, "action", action);
            }
            if let Some(target) = &rule.target {
                push_toml_key_string(&mut out, "target", target);
            }
            if let Some(envs) = &rule.environment {
                push_toml_key_list(&mut out, "environment", envs);
            }
            if let Some(levels) = &rule.data_sensitivity {
                push_toml_key_list(&mut out, "data_sensitivity", levels);
            }
            if let Some(ceiling) = &rule.amount_below {
                push_toml_key_money(&mut out, "amount_below", ceiling);
            }
            if let Some(floor) = &rule.amount_at_least {
                push_toml_key_money(&mut out, "amount_at_least", floor);
            }
            if let Some(depth) = rule.delegation_depth_at_least {
                let _ = writeln!(out, "delegation_depth_at_least = {depth}");
            }
            if let Some(depth) = rule.delegation_depth_below {
                let _ = writeln!(out, "delegation_depth_below = {depth}");
            }
            push_toml_key_string(&mut out, "outcome", rule.outcome.kind());
            match &rule.outcome {
                RuleOutcome::Allow { grant_ttl_seconds } => {
                    if let Some(ttl) = grant_ttl_seconds {
                        let _ = writeln!(out, "grant_ttl_seconds = {ttl}");
                    }
                }
                RuleOutcome::Require {
                    approvals,
                    approvers,
                    all_groups,
                    exclude_owner,
                    request_ttl_seconds,
                    grant_ttl_seconds,
                } => {
                    let _ = writeln!(out, "approvals = {approvals}");
                    let sources: Vec<String> = approvers.iter().map(|s| s.to_string()).collect();
                    push_toml_key_list(&mut out, "approvers", &sources);
                    let _ = writeln!(out, "all_groups = {all_groups}");
                    let _ = writeln!(out, "exclude_owner = {exclude_owner}");
                    if let Some(ttl) = request_ttl_seconds {
                        let _ = writeln!(out, "request_ttl_seconds = {ttl}");
                    }
                    if let Some(ttl) = grant_ttl_seconds {
                        let _ = writeln!(out, "grant_ttl_seconds = {ttl}");
                    }
                }
                RuleOutcome::Deny { reason } => push_toml_key_string(&mut out, "reason", reason),
            }
            if let Some(provider) = &rule.credential {
                push_toml_key_string(&mut out, "credential", provider);
            }
            if let Some(ttl) = rule.credential_ttl_seconds {
                let _ = writeln!(out, "credential_ttl_seconds = {ttl}");
            }
            if let Some(seconds) = rule.standing_max_seconds {
                let _ = writeln!(out, "standing_max_seconds = {seconds}");
            }
            if let Some(uses) = rule.standing_max_uses {
                let _ = writeln!(out, "standing_max_uses = {uses}");
            }
        }
        out
    }

    /// `sha256:<lowercase hex>` of [`Policy::to_toml`]: equal for policies that mean the same,
    /// whatever their original formatting, comments or key order.
    pub fn hash(&self) -> String {
        let digest = Sha256::digest(self.to_toml().as_bytes());
        format!("sha256:{}", hex::encode(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::test_support::*;
    use crate::domain::policy::{PolicyInput, DEFAULT_RULE_ID};
    use proptest::prelude::*;

    // --- example file -----------------------------------------------------------------------

    #[test]
    fn example_parses_into_the_expected_model() {
        let policy = parse(EXAMPLE);
        assert_eq!(policy.rules.len(), 3);
        let small = &policy.rules[0];
        assert_eq!(small.id, "small-payments");
        assert_eq!(
            small.description.as_deref(),
            Some("Small payments run without a human")
        );
        assert_eq!(small.action.as_deref(), Some("payments.*"));
        assert_eq!(small.target.as_deref(), Some("bank-api"));
        assert_eq!(small.environment, Some(vec!["production".to_owned()]));
        assert_eq!(
            small.data_sensitivity,
            Some(vec!["public".to_owned(), "internal".to_owned()])
        );
        assert_eq!(small.amount_below, Some(money("100.00", "EUR")));
        assert_eq!(
            small.outcome,
            RuleOutcome::Allow {
                grant_ttl_seconds: Some(60)
            }
        );
        assert_eq!(
            policy.rules[1].outcome,
            RuleOutcome::Require {
                approvals: 2,
                approvers: vec![
                    ApproverSource::Owner,
                    ApproverSource::Group("finance".into())
                ],
                all_groups: true,
                exclude_owner: false,
                request_ttl_seconds: Some(900),
                grant_ttl_seconds: None,
            }
        );
        assert_eq!(
            policy.rules[2].outcome,
            deny("Agents never drop production tables; open a change ticket instead.")
        );
    }

    #[test]
    fn example_round_trips_to_the_normalised_text() {
        let policy = parse(EXAMPLE);
        let text = policy.to_toml();
        assert_eq!(text, EXAMPLE_NORMALISED);
        assert_eq!(parse(&text), policy);
        assert_eq!(parse(&text).to_toml(), text);
        assert_eq!(policy.hash(), parse(EXAMPLE_NORMALISED).hash());
    }

    #[test]
    fn require_defaults_are_written_out() {
        let policy = parse("[[rule]]\nid = \"r\"\noutcome = \"require\"\n");
        assert_eq!(policy.rules[0].outcome, RuleOutcome::default_require());
        assert_eq!(
            policy.to_toml(),
            "[[rule]]\nid = \"r\"\noutcome = \"require\"\napprovals = 1\napprovers = [\"owner\"]\n\
             all_groups = false\nexclude_owner = false\n"
        );
    }

    #[test]
    fn empty_policy_is_valid_and_uses_the_default() {
        for text in ["", "# nothing here\n", "rule = []\n"] {
            let policy = parse(text);
            assert_eq!(policy, Policy::default());
            assert_eq!(policy.to_toml(), "");
        }
        let decision = Policy::default().evaluate(&PolicyInput::new("x", "y"));
        assert_eq!(decision.rule_id, DEFAULT_RULE_ID);
        assert_eq!(decision.outcome, RuleOutcome::default_require());
        assert_eq!(
            decision.explanation,
            "No rule matched; the default requires one approval from the agent's owner."
        );
        assert_eq!(decision.approvals_required(), 1);
        assert!(decision.passed_over.is_empty());
    }

    #[test]
    fn hash_is_sha256_of_the_normalised_text_and_tracks_changes() {
        let policy = parse(EXAMPLE);
        let hash = policy.hash();
        assert!(hash.starts_with("sha256:"));
        let hex_part = &hash["sha256:".len()..];
        assert_eq!(hex_part.len(), 64);
        assert!(hex_part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(
            hex_part,
            hex::encode(Sha256::digest(EXAMPLE_NORMALISED.as_bytes()))
        );
        let mut changed = policy.clone();
        changed.rules.swap(0, 1);
        assert_ne!(changed.hash(), hash);
        assert_eq!(
            Policy::default().hash(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn awkward_strings_survive_the_round_trip() {
        let nasty =
            "He said \"no\" \\ then\nleft\ttab\r\u{0}\u{1b}\u{7f}\u{85} é 漢字 😀 '''\"\"\" #";
        let policy = single(PolicyRule {
            description: Some(nasty.into()),
            action: Some("a\"b\\c*".into()),
            target: Some("ünï*".into()),
            environment: Some(vec!["prod \"eu\"".into(), "x\\y".into()]),
            ..rule("nasty", deny(nasty))
        });
        let text = policy.to_toml();
        assert_eq!(parse(&text), policy);
        assert_eq!(parse(&text).to_toml(), text);
    }

    #[test]
    fn unknown_keys_are_named() {
        assert_rejected(
            &one_rule("outcome = \"allow\"\napprovels = 2"),
            Some("approvels"),
            "unknown key",
        );
        assert_rejected(
            &one_rule(
                "outcome = \"allow\"\namount_below = { value = \"1\", currency = \"EUR\", cents = 5 }",
            ),
            Some("amount_below.cents"),
            "unknown key",
        );
        assert_rejected("version = 2\n", Some("version"), "unknown key");
        let error = parse_err(&one_rule("outcome = \"allow\"\ncolour = \"red\""));
        assert_eq!(error.rule_id.as_deref(), Some("r1"));
        assert_eq!(error.rule_index, Some(0));
        assert_eq!(
            error.to_string(),
            "rule \"r1\" (#1), key \"colour\": unknown key"
        );
    }

    #[test]
    fn toml_syntax_errors_have_a_line_and_no_key() {
        let error = parse_err("[[rule]]\nid = \"a\"\noutcome = allow\n");
        assert_eq!(error.key, None);
        assert_eq!(error.rule_id, None);
        assert!(
            error
                .reason
                .starts_with("TOML syntax error at line 3, column"),
            "{}",
            error.reason
        );
        let error = parse_err("[[rule]\n");
        assert!(error.reason.contains("line 1"), "{}", error.reason);
        let error = parse_err("[[rule]]\nid = \"a\"\nid = \"b\"\n");
        assert!(error.reason.contains("line 3"), "{}", error.reason);
    }

    #[test]
    fn structural_errors() {
        assert_rejected("rule = 5\n", Some("rule"), "array of tables");
        assert_rejected("[rule]\nid = \"a\"\n", Some("rule"), "array of tables");
        assert_rejected("rule = [1]\n", None, "must be a table");
        assert_rejected("[[rule]]\noutcome = \"allow\"\n", Some("id"), "is required");
        assert_rejected(&one_rule(""), Some("outcome"), "is required");
        assert_rejected(&one_rule("outcome = \"maybe\""), Some("outcome"), "must be");
        assert_rejected(&one_rule("outcome = \"\""), Some("outcome"), "must be");
        assert_rejected(&one_rule("outcome = 1"), Some("outcome"), "invalid type");
        assert_rejected(
            &one_rule("outcome = \"allow\"\nenvironment = [1]"),
            Some("environment"),
            "invalid type",
        );
        assert_rejected(
            &one_rule("outcome = \"allow\"\nenvironment = \"production\""),
            Some("environment"),
            "invalid type",
        );
        assert_rejected(
            &one_rule("outcome = \"allow\"\namount_below = { value = 100.0, currency = \"EUR\" }"),
            Some("amount_below.value"),
            "amounts are strings",
        );
        assert_rejected(
            &one_rule("outcome = \"allow\"\namount_below = { currency = \"EUR\" }"),
            Some("amount_below.value"),
            "is required",
        );
        assert_rejected(
            &one_rule("outcome = \"allow\"\namount_at_least = { value = \"1\" }"),
            Some("amount_at_least.currency"),
            "is required",
        );
    }

    #[test]
    fn only_plain_toml_shapes_are_accepted() {
        assert_rejected(
            &one_rule("outcome = \"allow\"\namount_below = [\"100\", \"EUR\"]"),
            Some("amount_below"),
            "must be a table",
        );
        assert_rejected(
            &one_rule("outcome = \"allow\"\namount_at_least = \"100 EUR\""),
            Some("amount_at_least"),
            "must be a table",
        );
        assert_rejected(
            &one_rule("outcome = \"allow\"\ndescription = 1979-05-27"),
            Some("description"),
            "date-times are not allowed",
        );
        assert_rejected(
            &one_rule("outcome = \"allow\"\nenvironment = [\"a\", 1979-05-27]"),
            Some("environment"),
            "date-times are not allowed",
        );
        assert_rejected(
            &one_rule(
                "outcome = \"allow\"\namount_below = { value = 1979-05-27T07:32:00Z, currency = \"EUR\" }",
            ),
            Some("amount_below.value"),
            "date-times are not allowed",
        );
        assert_rejected(
            &one_rule("outcome = \"allow\"\nwhen = 1979-05-27"),
            Some("when"),
            "unknown key",
        );
        assert_rejected(
            &one_rule("outcome = \"allow\"\n[rule.extra]\nx = 1"),
            Some("extra"),
            "unknown key",
        );
    }

    #[test]
    fn outcome_specific_keys_are_errors_elsewhere() {
        for (body, key) in [
            ("outcome = \"allow\"\napprovals = 1", "approvals"),
            ("outcome = \"allow\"\napprovers = [\"owner\"]", "approvers"),
            ("outcome = \"allow\"\nall_groups = false", "all_groups"),
            (
                "outcome = \"allow\"\nexclude_owner = false",
                "exclude_owner",
            ),
            (
                "outcome = \"allow\"\nrequest_ttl_seconds = 60",
                "request_ttl_seconds",
            ),
            ("outcome = \"allow\"\nreason = \"x\"", "reason"),
            ("outcome = \"require\"\nreason = \"x\"", "reason"),
            (
                "outcome = \"deny\"\nreason = \"x\"\napprovals = 1",
                "approvals",
            ),
            (
                "outcome = \"deny\"\nreason = \"x\"\ngrant_ttl_seconds = 60",
                "grant_ttl_seconds",
            ),
        ] {
            assert_rejected(&one_rule(body), Some(key), "not allowed when outcome");
        }
        assert_rejected(
            &one_rule("outcome = \"deny\""),
            Some("reason"),
            "is required",
        );
    }

    proptest! {
        #[test]
        fn prop_to_toml_round_trips(policy in policy_strategy()) {
            prop_assert_eq!(policy.validate(), Ok(()));
            let text = policy.to_toml();
            let parsed = Policy::from_toml(&text);
            prop_assert_eq!(parsed.as_ref(), Ok(&policy), "text:\n{}", text);
            let again = parsed.map(|p| p.to_toml()).unwrap_or_default();
            prop_assert_eq!(&again, &text);
            prop_assert_eq!(Policy::from_toml(&again).map(|p| p.hash()), Ok(policy.hash()));
        }
    }
}
