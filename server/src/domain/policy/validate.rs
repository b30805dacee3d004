//! What makes a policy valid: every check on a rule, in key order, shared by the file format
//! and by policies built in code.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::str::FromStr;

use rust_decimal::Decimal;

use super::model::{
    ApproverSource, Money, Policy, PolicyError, PolicyRule, RuleOutcome, RuleRef, APPROVALS_RANGE,
    DATA_SENSITIVITY_LEVELS, DEFAULT_RULE_ID, DELEGATION_DEPTH_RANGE, GRANT_TTL_SECONDS_RANGE,
    REQUEST_TTL_SECONDS_RANGE, STANDING_MAX_SECONDS_RANGE, STANDING_MAX_USES_RANGE,
};

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `^[a-z0-9][a-z0-9_.-]{0,63}$`
fn is_valid_rule_id(id: &str) -> bool {
    match id.as_bytes().split_first() {
        Some((first, rest)) => {
            is_lower_alnum(*first)
                && rest.len() <= 63
                && rest
                    .iter()
                    .all(|&b| is_lower_alnum(b) || matches!(b, b'_' | b'.' | b'-'))
        }
        None => false,
    }
}

/// `^[a-z0-9][a-z0-9_-]{0,63}$`
pub(super) fn is_valid_group_name(name: &str) -> bool {
    match name.as_bytes().split_first() {
        Some((first, rest)) => {
            is_lower_alnum(*first)
                && rest.len() <= 63
                && rest
                    .iter()
                    .all(|&b| is_lower_alnum(b) || matches!(b, b'_' | b'-'))
        }
        None => false,
    }
}

fn is_valid_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

const AMOUNT_FORMAT: &str = "must be a non-negative decimal string with 1 to 15 digits, \
     optionally a point and 1 to 6 more digits, e.g. \"100.00\"";

/// Parses `^[0-9]{1,15}(\.[0-9]{1,6})?$` into a Decimal, keeping the written scale.
pub fn parse_amount(text: &str) -> Result<Decimal, &'static str> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits =
        |s: &str, max: usize| (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole, 15) || !fraction.is_none_or(|f| digits(f, 6)) {
        return Err(AMOUNT_FORMAT);
    }
    Decimal::from_str(text).map_err(|_| AMOUNT_FORMAT)
}

/// Checks a Money built in code against the same limits the file format imposes, so that
/// `to_toml` of any valid policy parses back.
fn check_money(rule: RuleRef<'_>, key: &str, money: &Money) -> Result<(), PolicyError> {
    let max = Decimal::from(1_000_000_000_000_000_i64); // 10^15: at most 15 integer digits
    if money.value.is_sign_negative() || money.value.scale() > 6 || money.value >= max {
        return Err(PolicyError::at(
            rule,
            &format!("{key}.value"),
            AMOUNT_FORMAT,
        ));
    }
    if !is_valid_currency(&money.currency) {
        return Err(PolicyError::at(
            rule,
            &format!("{key}.currency"),
            "must be three upper-case letters, e.g. \"EUR\"",
        ));
    }
    Ok(())
}

pub(super) fn range_reason(range: &RangeInclusive<u32>) -> String {
    format!("must be between {} and {}", range.start(), range.end())
}

fn check_range(
    rule: RuleRef<'_>,
    key: &str,
    value: u32,
    range: &RangeInclusive<u32>,
) -> Result<(), PolicyError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(PolicyError::at(rule, key, range_reason(range)))
    }
}

fn is_blank(text: &str) -> bool {
    text.chars().all(|c| c.is_whitespace() || c.is_control())
}

/// A list of strings: non-empty, no empty entries, no duplicates, each accepted by `valid`.
fn check_string_list(
    rule: RuleRef<'_>,
    key: &str,
    items: &[String],
    valid: impl Fn(&str) -> Result<(), String>,
) -> Result<(), PolicyError> {
    if items.is_empty() {
        return Err(PolicyError::at(rule, key, "must not be an empty list"));
    }
    for (i, item) in items.iter().enumerate() {
        if item.is_empty() {
            return Err(PolicyError::at(
                rule,
                key,
                "must not contain an empty string",
            ));
        }
        valid(item).map_err(|reason| PolicyError::at(rule, key, reason))?;
        if items[..i].contains(item) {
            return Err(PolicyError::at(rule, key, format!("lists {item:?} twice")));
        }
    }
    Ok(())
}

/// Every check on one rule that does not depend on other rules, in key order.
pub(super) fn validate_rule(rule: &PolicyRule, index: usize) -> Result<(), PolicyError> {
    let at = RuleRef {
        id: Some(&rule.id),
        index,
    };
    if !is_valid_rule_id(&rule.id) {
        return Err(PolicyError::at(
            at,
            "id",
            "must match ^[a-z0-9][a-z0-9_.-]{0,63}$",
        ));
    }
    if rule.id == DEFAULT_RULE_ID {
        return Err(PolicyError::at(
            at,
            "id",
            "\"default\" is reserved for the built-in default rule",
        ));
    }
    if rule.description.as_deref().is_some_and(is_blank) {
        return Err(PolicyError::at(at, "description", "must not be empty"));
    }
    for (key, pattern) in [("action", &rule.action), ("target", &rule.target)] {
        if pattern.as_deref().is_some_and(str::is_empty) {
            return Err(PolicyError::at(at, key, "must not be empty"));
        }
    }
    if let Some(envs) = &rule.environment {
        check_string_list(at, "environment", envs, |_| Ok(()))?;
    }
    if let Some(levels) = &rule.data_sensitivity {
        check_string_list(at, "data_sensitivity", levels, |level| {
            if DATA_SENSITIVITY_LEVELS.contains(&level) {
                Ok(())
            } else {
                Err(format!(
                    "{level:?} is not one of public, internal, confidential, restricted"
                ))
            }
        })?;
    }
    if let Some(ceiling) = &rule.amount_below {
        check_money(at, "amount_below", ceiling)?;
    }
    if let Some(floor) = &rule.amount_at_least {
        check_money(at, "amount_at_least", floor)?;
    }
    if let (Some(ceiling), Some(floor)) = (&rule.amount_below, &rule.amount_at_least) {
        if ceiling.currency != floor.currency {
            return Err(PolicyError::at(
                at,
                "amount_at_least.currency",
                format!(
                    "{} differs from amount_below currency {}; a band needs one currency",
                    floor.currency, ceiling.currency
                ),
            ));
        }
        if floor.value >= ceiling.value {
            return Err(PolicyError::at(
                at,
                "amount_at_least",
                format!("{floor} must be below amount_below {ceiling}, else nothing matches"),
            ));
        }
    }
    for (key, depth) in [
        ("delegation_depth_at_least", rule.delegation_depth_at_least),
        ("delegation_depth_below", rule.delegation_depth_below),
    ] {
        if let Some(depth) = depth {
            check_range(at, key, depth, &DELEGATION_DEPTH_RANGE)?;
        }
    }
    if let (Some(floor), Some(ceiling)) =
        (rule.delegation_depth_at_least, rule.delegation_depth_below)
    {
        if floor >= ceiling {
            return Err(PolicyError::at(
                at,
                "delegation_depth_at_least",
                format!(
                    "{floor} must be below delegation_depth_below {ceiling}, else nothing matches"
                ),
            ));
        }
    }
    if let Some(provider) = &rule.credential {
        if let RuleOutcome::Deny { .. } = rule.outcome {
            return Err(PolicyError::at(
                at,
                "credential",
                "not allowed when outcome = \"deny\" (only with outcome = \"allow\" or \"require\")",
            ));
        }
        crate::domain::credential::check_provider_name(provider).map_err(|_| {
            PolicyError::at(
                at,
                "credential",
                "must name a provider: ^[a-z0-9][a-z0-9_-]{0,63}$",
            )
        })?;
    }
    if let Some(ttl) = rule.credential_ttl_seconds {
        if rule.credential.is_none() {
            return Err(PolicyError::at(
                at,
                "credential_ttl_seconds",
                "needs credential: it is the lifetime of the credential the rule releases",
            ));
        }
        check_range(
            at,
            "credential_ttl_seconds",
            ttl,
            &crate::domain::credential::CREDENTIAL_TTL_SECONDS_RANGE,
        )?;
    }
    if let Some(seconds) = rule.standing_max_seconds {
        if !matches!(rule.outcome, RuleOutcome::Require { approvals: 1, .. }) {
            return Err(PolicyError::at(
                at,
                "standing_max_seconds",
                "only with outcome = \"require\" and approvals = 1: a standing approval stands for one person's approval",
            ));
        }
        check_range(
            at,
            "standing_max_seconds",
            seconds,
            &STANDING_MAX_SECONDS_RANGE,
        )?;
    }
    if let Some(uses) = rule.standing_max_uses {
        if rule.standing_max_seconds.is_none() {
            return Err(PolicyError::at(
                at,
                "standing_max_uses",
                "needs standing_max_seconds: it bounds the standing approvals the rule allows",
            ));
        }
        check_range(at, "standing_max_uses", uses, &STANDING_MAX_USES_RANGE)?;
    }
    match &rule.outcome {
        RuleOutcome::Allow { grant_ttl_seconds } => {
            if let Some(ttl) = grant_ttl_seconds {
                check_range(at, "grant_ttl_seconds", *ttl, &GRANT_TTL_SECONDS_RANGE)?;
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
            check_range(at, "approvals", *approvals, &APPROVALS_RANGE)?;
            if approvers.is_empty() {
                return Err(PolicyError::at(
                    at,
                    "approvers",
                    "must not be an empty list",
                ));
            }
            for (i, source) in approvers.iter().enumerate() {
                let bad_group = match source {
                    ApproverSource::Group(name) if !is_valid_group_name(name) => Some(name),
                    _ => None,
                };
                if let Some(name) = bad_group {
                    return Err(PolicyError::at(
                        at,
                        "approvers",
                        format!("group name {name:?} must match ^[a-z0-9][a-z0-9_-]{{0,63}}$"),
                    ));
                }
                if approvers[..i].contains(source) {
                    return Err(PolicyError::at(
                        at,
                        "approvers",
                        format!("lists \"{source}\" twice"),
                    ));
                }
            }
            let only_owner = approvers.iter().all(|s| *s == ApproverSource::Owner);
            if only_owner && *approvals > 1 {
                // The owner is one person and approvals count distinct people.
                return Err(PolicyError::at(
                    at,
                    "approvals",
                    "must be 1 when the only approver source is owner (a single person)",
                ));
            }
            if *all_groups && (*approvals as usize) < approvers.len() {
                return Err(PolicyError::at(
                    at,
                    "approvals",
                    format!(
                        "must be at least {} (one per approver source) when all_groups = true",
                        approvers.len()
                    ),
                ));
            }
            if *exclude_owner && only_owner {
                return Err(PolicyError::at(
                    at,
                    "exclude_owner",
                    "needs an approver source other than owner",
                ));
            }
            if *exclude_owner && *all_groups && approvers.contains(&ApproverSource::Owner) {
                // all_groups would demand an approval from the owner that exclude_owner voids.
                return Err(PolicyError::at(
                    at,
                    "approvers",
                    "cannot list owner when all_groups and exclude_owner are both true",
                ));
            }
            if let Some(ttl) = request_ttl_seconds {
                check_range(at, "request_ttl_seconds", *ttl, &REQUEST_TTL_SECONDS_RANGE)?;
            }
            if let Some(ttl) = grant_ttl_seconds {
                check_range(at, "grant_ttl_seconds", *ttl, &GRANT_TTL_SECONDS_RANGE)?;
            }
        }
        RuleOutcome::Deny { reason } => {
            if is_blank(reason) {
                return Err(PolicyError::at(at, "reason", "must not be empty"));
            }
        }
    }
    Ok(())
}

impl Policy {
    /// Checks a policy built in code with the same rules [`Policy::from_toml`] applies, and
    /// reports the first problem in rule order.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut seen: HashSet<&str> = HashSet::with_capacity(self.rules.len());
        for (index, rule) in self.rules.iter().enumerate() {
            validate_rule(rule, index)?;
            if !seen.insert(rule.id.as_str()) {
                return Err(duplicate_id(&rule.id, index));
            }
        }
        Ok(())
    }
}

pub(super) fn duplicate_id(id: &str, index: usize) -> PolicyError {
    PolicyError::new(
        Some(id),
        Some(index),
        Some("id"),
        "duplicate id; rule ids must be unique",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::test_support::*;

    #[test]
    fn id_errors() {
        assert_rejected(
            "[[rule]]\nid = \"\"\noutcome = \"allow\"\n",
            Some("id"),
            "must match",
        );
        assert_rejected(
            "[[rule]]\nid = \"Big\"\noutcome = \"allow\"\n",
            Some("id"),
            "must match",
        );
        assert_rejected(
            "[[rule]]\nid = \"-x\"\noutcome = \"allow\"\n",
            Some("id"),
            "must match",
        );
        assert_rejected(
            "[[rule]]\nid = \"a b\"\noutcome = \"allow\"\n",
            Some("id"),
            "must match",
        );
        let long = format!(
            "[[rule]]\nid = \"{}\"\noutcome = \"allow\"\n",
            "a".repeat(65)
        );
        assert_rejected(&long, Some("id"), "must match");
        let ok = format!(
            "[[rule]]\nid = \"{}\"\noutcome = \"allow\"\n",
            "a".repeat(64)
        );
        parse(&ok);
        parse("[[rule]]\nid = \"0a_b.c-d\"\noutcome = \"allow\"\n");
        assert_rejected(
            "[[rule]]\nid = \"default\"\noutcome = \"allow\"\n",
            Some("id"),
            "reserved",
        );

        let text = format!(
            "{}\n{}",
            one_rule("outcome = \"allow\""),
            one_rule("outcome = \"allow\"")
        );
        let error = parse_err(&text);
        assert_eq!(error.key.as_deref(), Some("id"));
        assert_eq!(error.rule_index, Some(1));
        assert!(error.reason.contains("duplicate"));
        let policy = Policy {
            rules: vec![rule("r1", allow()), rule("r1", allow())],
        };
        assert_eq!(policy.validate(), Err(error));
    }

    #[test]
    fn empty_values_are_errors() {
        for (body, key) in [
            ("description = \"\"\noutcome = \"allow\"", "description"),
            (
                "description = \" \\n \"\noutcome = \"allow\"",
                "description",
            ),
            ("action = \"\"\noutcome = \"allow\"", "action"),
            ("target = \"\"\noutcome = \"allow\"", "target"),
            ("environment = []\noutcome = \"allow\"", "environment"),
            ("environment = [\"\"]\noutcome = \"allow\"", "environment"),
            (
                "data_sensitivity = []\noutcome = \"allow\"",
                "data_sensitivity",
            ),
            ("outcome = \"require\"\napprovers = []", "approvers"),
            ("outcome = \"deny\"\nreason = \"\"", "reason"),
            ("outcome = \"deny\"\nreason = \"   \"", "reason"),
        ] {
            assert_rejected(&one_rule(body), Some(key), "empty");
        }
    }

    #[test]
    fn list_errors() {
        assert_rejected(
            &one_rule("environment = [\"prod\", \"prod\"]\noutcome = \"allow\""),
            Some("environment"),
            "twice",
        );
        assert_rejected(
            &one_rule("data_sensitivity = [\"secret\"]\noutcome = \"allow\""),
            Some("data_sensitivity"),
            "not one of",
        );
        assert_rejected(
            &one_rule("data_sensitivity = [\"public\", \"public\"]\noutcome = \"allow\""),
            Some("data_sensitivity"),
            "twice",
        );
    }

    #[test]
    fn approver_errors() {
        for bad in [
            "boss",
            "group:",
            "group:Finance",
            "group:a.b",
            "Owner",
            "group:-x",
            "",
        ] {
            assert_rejected(
                &one_rule(&format!("outcome = \"require\"\napprovers = [\"{bad}\"]")),
                Some("approvers"),
                "invalid approver",
            );
        }
        assert_rejected(
            &one_rule("outcome = \"require\"\napprovers = [\"admins\", \"admins\"]"),
            Some("approvers"),
            "twice",
        );
        assert_rejected(
            &one_rule("outcome = \"require\"\napprovals = 2\napprovers = [\"owner\"]"),
            Some("approvals"),
            "single person",
        );
        assert_rejected(
            &one_rule(
                "outcome = \"require\"\napprovals = 1\napprovers = [\"owner\", \"admins\"]\nall_groups = true",
            ),
            Some("approvals"),
            "at least 2",
        );
        assert_rejected(
            &one_rule("outcome = \"require\"\nexclude_owner = true"),
            Some("exclude_owner"),
            "other than owner",
        );
        assert_rejected(
            &one_rule(
                "outcome = \"require\"\napprovals = 2\napprovers = [\"owner\", \"admins\"]\n\
                 all_groups = true\nexclude_owner = true",
            ),
            Some("approvers"),
            "cannot list owner",
        );
        parse(&one_rule(
            "outcome = \"require\"\napprovals = 2\napprovers = [\"owner\", \"group:a_b-1\"]\n\
             exclude_owner = true",
        ));
    }

    #[test]
    fn delegation_depth_errors_name_the_key() {
        for (body, key, reason) in [
            (
                "delegation_depth_at_least = 0\noutcome = \"allow\"",
                "delegation_depth_at_least",
                "1 and 16",
            ),
            (
                "delegation_depth_below = 17\noutcome = \"allow\"",
                "delegation_depth_below",
                "1 and 16",
            ),
            (
                "delegation_depth_below = -1\noutcome = \"allow\"",
                "delegation_depth_below",
                "1 and 16",
            ),
            (
                "delegation_depth_at_least = \"two\"\noutcome = \"allow\"",
                "delegation_depth_at_least",
                "",
            ),
            (
                "delegation_depth_at_least = 3\ndelegation_depth_below = 3\noutcome = \"allow\"",
                "delegation_depth_at_least",
                "else nothing matches",
            ),
        ] {
            assert_rejected(&one_rule(body), Some(key), reason);
        }
        let ok = parse(&one_rule(
            "delegation_depth_at_least = 2\ndelegation_depth_below = 5\noutcome = \"allow\"",
        ));
        assert_eq!(ok.rules[0].delegation_depth_at_least, Some(2));
        assert_eq!(ok.rules[0].delegation_depth_below, Some(5));
        // The round trip `policy show` -> `policy apply` keeps them.
        assert_eq!(Policy::from_toml(&ok.to_toml()).unwrap(), ok);
        assert!(ok
            .to_toml()
            .contains("delegation_depth_at_least = 2\ndelegation_depth_below = 5\n"));
    }

    #[test]
    fn range_errors() {
        for (body, key, range) in [
            (
                "outcome = \"allow\"\ngrant_ttl_seconds = 0",
                "grant_ttl_seconds",
                "1 and 300",
            ),
            (
                "outcome = \"allow\"\ngrant_ttl_seconds = 301",
                "grant_ttl_seconds",
                "1 and 300",
            ),
            (
                "outcome = \"allow\"\ngrant_ttl_seconds = -5",
                "grant_ttl_seconds",
                "1 and 300",
            ),
            (
                "outcome = \"require\"\ngrant_ttl_seconds = 301",
                "grant_ttl_seconds",
                "1 and 300",
            ),
            (
                "outcome = \"require\"\napprovals = 0",
                "approvals",
                "1 and 10",
            ),
            (
                "outcome = \"require\"\napprovals = 11\napprovers = [\"admins\"]",
                "approvals",
                "1 and 10",
            ),
            (
                "outcome = \"require\"\napprovals = 99999999999",
                "approvals",
                "1 and 10",
            ),
            (
                "outcome = \"require\"\nrequest_ttl_seconds = 29",
                "request_ttl_seconds",
                "30 and 86400",
            ),
            (
                "outcome = \"require\"\nrequest_ttl_seconds = 86401",
                "request_ttl_seconds",
                "30 and 86400",
            ),
        ] {
            assert_rejected(&one_rule(body), Some(key), range);
        }
        parse(&one_rule("outcome = \"allow\"\ngrant_ttl_seconds = 300"));
        parse(&one_rule("outcome = \"allow\"\ngrant_ttl_seconds = 1"));
        parse(&one_rule(
            "outcome = \"require\"\napprovals = 10\napprovers = [\"admins\"]\nrequest_ttl_seconds = 86400",
        ));
        parse(&one_rule("outcome = \"require\"\nrequest_ttl_seconds = 30"));
    }

    #[test]
    fn amount_errors() {
        for bad in [
            "",
            "-1",
            "+1",
            "1.",
            ".5",
            "1.1234567",
            "1e3",
            "1,00",
            " 1",
            "0x10",
            "1234567890123456",
            "1.2.3",
        ] {
            assert_rejected(
                &one_rule(&format!(
                    "outcome = \"allow\"\namount_below = {{ value = \"{bad}\", currency = \"EUR\" }}"
                )),
                Some("amount_below.value"),
                "decimal string",
            );
        }
        for good in ["0", "123456789012345", "123456789012345.123456", "007.5"] {
            parse(&one_rule(&format!(
                "outcome = \"allow\"\namount_below = {{ value = \"{good}\", currency = \"EUR\" }}"
            )));
        }
        for bad in ["eur", "EU", "EURO", "", "E1R"] {
            assert_rejected(
                &one_rule(&format!(
                    "outcome = \"allow\"\namount_at_least = {{ value = \"1\", currency = \"{bad}\" }}"
                )),
                Some("amount_at_least.currency"),
                "three upper-case letters",
            );
        }
        assert_rejected(
            &one_rule(
                "outcome = \"allow\"\namount_below = { value = \"100\", currency = \"EUR\" }\n\
                 amount_at_least = { value = \"10\", currency = \"USD\" }",
            ),
            Some("amount_at_least.currency"),
            "one currency",
        );
        assert_rejected(
            &one_rule(
                "outcome = \"allow\"\namount_below = { value = \"100\", currency = \"EUR\" }\n\
                 amount_at_least = { value = \"100.00\", currency = \"EUR\" }",
            ),
            Some("amount_at_least"),
            "must be below",
        );
    }

    #[test]
    fn validate_checks_policies_built_in_code() {
        let bad_cases: Vec<(PolicyRule, &str)> = vec![
            (
                PolicyRule {
                    amount_below: Some(money("-1", "EUR")),
                    ..rule("r", allow())
                },
                "amount_below.value",
            ),
            (
                PolicyRule {
                    amount_below: Some(money("1.1234567", "EUR")),
                    ..rule("r", allow())
                },
                "amount_below.value",
            ),
            (
                PolicyRule {
                    amount_at_least: Some(money("1000000000000000", "EUR")),
                    ..rule("r", allow())
                },
                "amount_at_least.value",
            ),
            (
                PolicyRule {
                    amount_at_least: Some(money("1", "usd")),
                    ..rule("r", allow())
                },
                "amount_at_least.currency",
            ),
            (
                rule(
                    "r",
                    RuleOutcome::Require {
                        approvals: 1,
                        approvers: vec![ApproverSource::Group("Bad Name".into())],
                        all_groups: false,
                        exclude_owner: false,
                        request_ttl_seconds: None,
                        grant_ttl_seconds: None,
                    },
                ),
                "approvers",
            ),
            (
                rule(
                    "r",
                    RuleOutcome::Require {
                        approvals: 1,
                        approvers: vec![],
                        all_groups: false,
                        exclude_owner: false,
                        request_ttl_seconds: None,
                        grant_ttl_seconds: None,
                    },
                ),
                "approvers",
            ),
            (
                rule(
                    "r",
                    RuleOutcome::Allow {
                        grant_ttl_seconds: Some(0),
                    },
                ),
                "grant_ttl_seconds",
            ),
            (rule("r", deny("")), "reason"),
            (rule("R", allow()), "id"),
            (
                PolicyRule {
                    environment: Some(vec![]),
                    ..rule("r", allow())
                },
                "environment",
            ),
        ];
        for (bad, key) in bad_cases {
            let policy = Policy {
                rules: vec![rule("fine", allow()), bad],
            };
            let error = policy.validate().unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{error}");
            assert_eq!(error.rule_index, Some(1));
            // What validate refuses, the file format refuses too.
            assert!(Policy::from_toml(&policy.to_toml()).is_err());
        }
    }
}
