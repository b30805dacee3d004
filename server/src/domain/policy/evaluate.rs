//! Evaluation: which rule decides a request, and the one line that explains the decision
//! (and, for dry runs, why each earlier rule did not match).

use std::fmt::Write as _;

use super::glob::glob_match;
use super::model::{
    PassedOver, Policy, PolicyDecision, PolicyInput, PolicyRule, RuleOutcome, DEFAULT_EXPLANATION,
    DEFAULT_RULE_ID,
};

/// Agent-supplied text (action type, target, ...) is clipped to this many characters when it
/// is quoted in an explanation, so a hostile or buggy agent cannot blow up what approvers read.
const AGENT_TEXT_MAX_CHARS: usize = 200;

/// The first condition of a rule that failed. Borrow-free so the hot path never allocates;
/// turned into words only for dry runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mismatch {
    Action,
    Target,
    NoEnvironment,
    Environment,
    NoDataSensitivity,
    DataSensitivity,
    NoAmount,
    Currency,
    NotAtLeast,
    NotBelow,
    DepthNotAtLeast,
    DepthNotBelow,
}

impl PolicyRule {
    /// Whether every condition of this rule holds for `input`.
    pub fn matches(&self, input: &PolicyInput<'_>) -> bool {
        self.first_mismatch(input).is_none()
    }

    fn has_amount_condition(&self) -> bool {
        self.amount_below.is_some() || self.amount_at_least.is_some()
    }

    fn has_depth_condition(&self) -> bool {
        self.delegation_depth_at_least.is_some() || self.delegation_depth_below.is_some()
    }

    fn has_any_condition(&self) -> bool {
        self.action.is_some()
            || self.target.is_some()
            || self.environment.is_some()
            || self.data_sensitivity.is_some()
            || self.has_amount_condition()
            || self.has_depth_condition()
    }

    /// The hot path: checks conditions in file order and stops at the first that fails.
    fn first_mismatch(&self, input: &PolicyInput<'_>) -> Option<Mismatch> {
        // `is_some_and` rather than nested `if let`s keeps this edition-neutral (no let chains).
        if self
            .action
            .as_deref()
            .is_some_and(|pattern| !glob_match(pattern, input.action_type))
        {
            return Some(Mismatch::Action);
        }
        if self
            .target
            .as_deref()
            .is_some_and(|pattern| !glob_match(pattern, input.target))
        {
            return Some(Mismatch::Target);
        }
        if let Some(allowed) = &self.environment {
            match input.environment {
                None => return Some(Mismatch::NoEnvironment),
                Some(env) if !allowed.iter().any(|a| a == env) => {
                    return Some(Mismatch::Environment);
                }
                Some(_) => {}
            }
        }
        if let Some(allowed) = &self.data_sensitivity {
            match input.data_sensitivity {
                None => return Some(Mismatch::NoDataSensitivity),
                Some(level) if !allowed.iter().any(|a| a == level) => {
                    return Some(Mismatch::DataSensitivity);
                }
                Some(_) => {}
            }
        }
        if self.has_amount_condition() {
            let Some((value, currency)) = input.amount else {
                return Some(Mismatch::NoAmount);
            };
            // Validation makes both thresholds of a band share one currency, so checking the
            // currency of whichever comes first is enough.
            if let Some(floor) = &self.amount_at_least {
                if floor.currency != currency {
                    return Some(Mismatch::Currency);
                }
                // Decimal comparison ignores scale: 100 == 100.00.
                if *value < floor.value {
                    return Some(Mismatch::NotAtLeast);
                }
            }
            if let Some(ceiling) = &self.amount_below {
                if ceiling.currency != currency {
                    return Some(Mismatch::Currency);
                }
                if *value >= ceiling.value {
                    return Some(Mismatch::NotBelow);
                }
            }
        }
        // Every request has a depth (0 when not delegated), so unlike the amount there is no
        // "request has none" case.
        if self
            .delegation_depth_at_least
            .is_some_and(|floor| input.delegation_depth < floor)
        {
            return Some(Mismatch::DepthNotAtLeast);
        }
        if self
            .delegation_depth_below
            .is_some_and(|ceiling| input.delegation_depth >= ceiling)
        {
            return Some(Mismatch::DepthNotBelow);
        }
        None
    }

    /// The one-line explanation of why this rule decided `input`.
    fn explain_match(&self, input: &PolicyInput<'_>) -> String {
        let mut out = String::with_capacity(160);
        out.push_str("Rule \"");
        out.push_str(&self.id);
        out.push('"');
        if let Some(description) = &self.description {
            out.push_str(" (");
            push_one_line(&mut out, description, usize::MAX);
            out.push(')');
        }
        out.push_str(": ");

        push_one_line(&mut out, input.action_type, AGENT_TEXT_MAX_CHARS);
        if !self.has_any_condition() {
            out.push_str(" (the rule applies to every request)");
        } else if let Some(pattern) = &self.action {
            let only_action = self.target.is_none()
                && self.environment.is_none()
                && self.data_sensitivity.is_none()
                && !self.has_amount_condition()
                && !self.has_depth_condition();
            if only_action {
                out.push_str(" matches ");
                push_quoted(&mut out, pattern, usize::MAX);
            }
        }
        if self.target.is_some() {
            out.push_str(" on ");
            push_one_line(&mut out, input.target, AGENT_TEXT_MAX_CHARS);
        }
        if let (Some(_), Some(env)) = (&self.environment, input.environment) {
            out.push_str(" in ");
            push_one_line(&mut out, env, AGENT_TEXT_MAX_CHARS);
        }
        if let (Some(_), Some(level)) = (&self.data_sensitivity, input.data_sensitivity) {
            out.push_str(" with ");
            push_one_line(&mut out, level, AGENT_TEXT_MAX_CHARS);
            out.push_str(" data");
        }
        if let Some((value, _)) = input.amount {
            // The currency printed is the threshold's: it equals the request's once matched,
            // and it is policy text rather than agent text.
            match (&self.amount_at_least, &self.amount_below) {
                (Some(floor), Some(ceiling)) => {
                    let _ = write!(
                        out,
                        " of {value} {} is at or above {floor} and below {ceiling}",
                        floor.currency
                    );
                }
                (Some(floor), None) => {
                    let _ = write!(out, " of {value} {} is at or above {floor}", floor.currency);
                }
                (None, Some(ceiling)) => {
                    let _ = write!(out, " of {value} {} is below {ceiling}", ceiling.currency);
                }
                (None, None) => {}
            }
        }
        if self.has_depth_condition() {
            let hops = if input.delegation_depth == 1 {
                "hop"
            } else {
                "hops"
            };
            let _ = write!(out, " delegated {} {hops} deep", input.delegation_depth);
        }
        out.push_str("; ");
        push_outcome_phrase(&mut out, &self.outcome);
        if !out.ends_with(['.', '!', '?']) {
            out.push('.');
        }
        out
    }

    /// Why this rule did not match `input`, for dry runs.
    fn explain_mismatch(&self, input: &PolicyInput<'_>, mismatch: Mismatch) -> String {
        let mut out = String::with_capacity(80);
        match mismatch {
            Mismatch::Action => {
                out.push_str("action ");
                push_quoted(&mut out, input.action_type, AGENT_TEXT_MAX_CHARS);
                out.push_str(" does not match ");
                push_quoted(
                    &mut out,
                    self.action.as_deref().unwrap_or_default(),
                    usize::MAX,
                );
            }
            Mismatch::Target => {
                out.push_str("target ");
                push_quoted(&mut out, input.target, AGENT_TEXT_MAX_CHARS);
                out.push_str(" does not match ");
                push_quoted(
                    &mut out,
                    self.target.as_deref().unwrap_or_default(),
                    usize::MAX,
                );
            }
            Mismatch::NoEnvironment => out.push_str("request has no environment"),
            Mismatch::Environment => {
                out.push_str("environment ");
                push_quoted(
                    &mut out,
                    input.environment.unwrap_or_default(),
                    AGENT_TEXT_MAX_CHARS,
                );
                out.push_str(" is not in ");
                push_list(&mut out, self.environment.as_deref().unwrap_or_default());
            }
            Mismatch::NoDataSensitivity => out.push_str("request has no data sensitivity"),
            Mismatch::DataSensitivity => {
                out.push_str("data sensitivity ");
                push_quoted(
                    &mut out,
                    input.data_sensitivity.unwrap_or_default(),
                    AGENT_TEXT_MAX_CHARS,
                );
                out.push_str(" is not in ");
                push_list(
                    &mut out,
                    self.data_sensitivity.as_deref().unwrap_or_default(),
                );
            }
            Mismatch::NoAmount => out.push_str("request has no amount"),
            Mismatch::Currency => {
                let threshold = self.amount_at_least.as_ref().or(self.amount_below.as_ref());
                out.push_str("amount currency ");
                push_one_line(&mut out, input.amount.map_or("", |a| a.1), 16);
                out.push_str(" differs from threshold currency ");
                out.push_str(threshold.map_or("", |m| m.currency.as_str()));
            }
            Mismatch::NotAtLeast | Mismatch::NotBelow => {
                let (threshold, relation) = if mismatch == Mismatch::NotAtLeast {
                    (self.amount_at_least.as_ref(), "is not at or above")
                } else {
                    (self.amount_below.as_ref(), "is not below")
                };
                if let (Some(threshold), Some((value, _))) = (threshold, input.amount) {
                    let _ = write!(
                        out,
                        "amount {value} {} {relation} {threshold}",
                        threshold.currency
                    );
                }
            }
            Mismatch::DepthNotAtLeast => {
                let _ = write!(
                    out,
                    "delegation depth {} is not at or above {}",
                    input.delegation_depth,
                    self.delegation_depth_at_least.unwrap_or_default()
                );
            }
            Mismatch::DepthNotBelow => {
                let _ = write!(
                    out,
                    "delegation depth {} is not below {}",
                    input.delegation_depth,
                    self.delegation_depth_below.unwrap_or_default()
                );
            }
        }
        out
    }
}

/// Appends what an outcome means for the requester, e.g. `needs 2 approvals from owner`.
fn push_outcome_phrase(out: &mut String, outcome: &RuleOutcome) {
    match outcome {
        RuleOutcome::Allow { .. } => out.push_str("allowed without approval"),
        RuleOutcome::Require {
            approvals,
            approvers,
            all_groups,
            exclude_owner,
            ..
        } => {
            let noun = if *approvals == 1 {
                "approval"
            } else {
                "approvals"
            };
            let _ = write!(out, "needs {approvals} {noun} from ");
            if approvers.len() > 1 && !*all_groups {
                out.push_str("any of ");
            }
            for (i, source) in approvers.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{source}");
            }
            let each = *all_groups && approvers.len() > 1;
            match (each, *exclude_owner) {
                (true, true) => {
                    out.push_str(" (one from each; the agent's owner's approval does not count)")
                }
                (true, false) => out.push_str(" (one from each)"),
                (false, true) => out.push_str(" (the agent's owner's approval does not count)"),
                (false, false) => {}
            }
        }
        RuleOutcome::Deny { reason } => {
            out.push_str("denied: ");
            let start = out.len();
            push_one_line(out, reason, usize::MAX);
            // The caller ends the sentence; avoid "instead.." when the reason has its own stop.
            while out.len() > start && out.ends_with('.') {
                out.pop();
            }
        }
    }
}

/// Appends `text` as one line: whitespace and control-character runs become one space, ends
/// trimmed, and at most `max_chars` characters kept (then `…`).
fn push_one_line(out: &mut String, text: &str, max_chars: usize) {
    let mut written = 0usize;
    let words = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty());
    for (i, word) in words.enumerate() {
        if i > 0 {
            if written >= max_chars {
                out.push('…');
                return;
            }
            out.push(' ');
            written += 1;
        }
        for c in word.chars() {
            if written >= max_chars {
                out.push('…');
                return;
            }
            out.push(c);
            written += 1;
        }
    }
}

/// Appends `text` in double quotes with Rust-style escapes (one line, unambiguous), clipped to
/// `max_chars` characters.
fn push_quoted(out: &mut String, text: &str, max_chars: usize) {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => {
            let _ = write!(out, "{:?}…", &text[..cut]);
        }
        None => {
            let _ = write!(out, "{text:?}");
        }
    }
}

/// Appends `["a", "b"]`.
fn push_list(out: &mut String, items: &[String]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_quoted(out, item, usize::MAX);
    }
    out.push(']');
}

impl Policy {
    /// Decides `input`: the first matching rule wins, else the built-in default (one approval
    /// from the owner). `passed_over` stays empty; use [`Policy::evaluate_explained`] for dry
    /// runs. Matching allocates nothing; only the winning decision is built.
    pub fn evaluate(&self, input: &PolicyInput<'_>) -> PolicyDecision {
        self.decide(input, false)
    }

    /// Like [`Policy::evaluate`], and also lists every rule passed over with the reason.
    pub fn evaluate_explained(&self, input: &PolicyInput<'_>) -> PolicyDecision {
        self.decide(input, true)
    }

    fn decide(&self, input: &PolicyInput<'_>, explain: bool) -> PolicyDecision {
        // Vec::new does not allocate, so the plain evaluate path stays allocation-free until a
        // decision is built.
        let mut passed_over = Vec::new();
        for rule in &self.rules {
            match rule.first_mismatch(input) {
                None => {
                    return PolicyDecision {
                        rule_id: rule.id.clone(),
                        outcome: rule.outcome.clone(),
                        explanation: rule.explain_match(input),
                        passed_over,
                    };
                }
                Some(mismatch) if explain => passed_over.push(PassedOver {
                    rule_id: rule.id.clone(),
                    why: rule.explain_mismatch(input, mismatch),
                }),
                Some(_) => {}
            }
        }
        PolicyDecision {
            rule_id: DEFAULT_RULE_ID.to_owned(),
            outcome: RuleOutcome::default_require(),
            explanation: DEFAULT_EXPLANATION.to_owned(),
            passed_over,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::test_support::*;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    /// Decides a payment of `value currency` against `policy`; returns the winning rule id.
    fn pay(policy: &Policy, value: &str, currency: &str) -> String {
        let value = dec(value);
        let input = PolicyInput {
            amount: Some((&value, currency)),
            ..PolicyInput::new("payments.transfer", "bank-api")
        };
        policy.evaluate(&input).rule_id
    }

    fn below(value: &str, currency: &str) -> Policy {
        single(PolicyRule {
            amount_below: Some(money(value, currency)),
            ..rule("below", allow())
        })
    }

    fn at_least(value: &str, currency: &str) -> Policy {
        single(PolicyRule {
            amount_at_least: Some(money(value, currency)),
            ..rule("at-least", allow())
        })
    }

    // --- amounts ----------------------------------------------------------------------------

    #[test]
    fn amount_below_excludes_the_threshold_itself() {
        let policy = below("100.00", "EUR");
        assert_eq!(pay(&policy, "99.99", "EUR"), "below");
        assert_eq!(pay(&policy, "100.00", "EUR"), DEFAULT_RULE_ID);
        assert_eq!(pay(&policy, "100.01", "EUR"), DEFAULT_RULE_ID);
        assert_eq!(pay(&policy, "0", "EUR"), "below");
    }

    #[test]
    fn amount_at_least_includes_the_threshold_itself() {
        let policy = at_least("10000.00", "EUR");
        assert_eq!(pay(&policy, "10000.00", "EUR"), "at-least");
        assert_eq!(pay(&policy, "10000.01", "EUR"), "at-least");
        assert_eq!(pay(&policy, "9999.999999", "EUR"), DEFAULT_RULE_ID);
    }

    #[test]
    fn amount_scale_does_not_matter() {
        assert_eq!(pay(&below("100.00", "EUR"), "100", "EUR"), DEFAULT_RULE_ID);
        assert_eq!(
            pay(&below("100", "EUR"), "100.000000", "EUR"),
            DEFAULT_RULE_ID
        );
        assert_eq!(pay(&at_least("100", "EUR"), "100.00", "EUR"), "at-least");
        assert_eq!(pay(&at_least("100.00", "EUR"), "100", "EUR"), "at-least");
        assert_eq!(pay(&below("100", "EUR"), "99.9", "EUR"), "below");
        // Scale written in the file is kept, so the normalised text shows what was written.
        assert!(below("100.00", "EUR")
            .to_toml()
            .contains("value = \"100.00\""));
        assert!(below("100", "EUR").to_toml().contains("value = \"100\""));
    }

    #[test]
    fn other_currency_and_missing_amount_never_match_amount_rules() {
        for policy in [below("100", "EUR"), at_least("100", "EUR")] {
            assert_eq!(pay(&policy, "50", "USD"), DEFAULT_RULE_ID);
            assert_eq!(pay(&policy, "500", "USD"), DEFAULT_RULE_ID);
            assert_eq!(
                pay(&policy, "50", "eur"),
                DEFAULT_RULE_ID,
                "exact, case-sensitive"
            );
            let no_amount = PolicyInput::new("payments.transfer", "bank-api");
            assert_eq!(policy.evaluate(&no_amount).rule_id, DEFAULT_RULE_ID);
        }
    }

    #[test]
    fn band_matches_between_its_thresholds() {
        let policy = parse(
            "[[rule]]\nid = \"band\"\namount_below = { value = \"1000\", currency = \"EUR\" }\n\
             amount_at_least = { value = \"100\", currency = \"EUR\" }\noutcome = \"allow\"\n",
        );
        assert_eq!(pay(&policy, "99.99", "EUR"), DEFAULT_RULE_ID);
        assert_eq!(pay(&policy, "100", "EUR"), "band");
        assert_eq!(pay(&policy, "999.99", "EUR"), "band");
        assert_eq!(pay(&policy, "1000.00", "EUR"), DEFAULT_RULE_ID);
        assert_eq!(pay(&policy, "500", "USD"), DEFAULT_RULE_ID);
        let value = dec("500");
        let input = PolicyInput {
            amount: Some((&value, "EUR")),
            ..PolicyInput::new("payments.transfer", "bank-api")
        };
        assert_eq!(
            policy.evaluate(&input).explanation,
            "Rule \"band\": payments.transfer of 500 EUR is at or above 100 EUR and below \
             1000 EUR; allowed without approval."
        );
    }

    // --- evaluation -------------------------------------------------------------------------

    #[test]
    fn first_matching_rule_wins() {
        let policy = Policy {
            rules: vec![
                PolicyRule {
                    action: Some("payments.*".into()),
                    ..rule("first", allow())
                },
                PolicyRule {
                    action: Some("payments.transfer".into()),
                    ..rule("second", deny("never"))
                },
                rule("catch-all", deny("nothing else")),
            ],
        };
        policy.validate().unwrap();
        let input = PolicyInput::new("payments.transfer", "bank-api");
        assert_eq!(policy.evaluate(&input).rule_id, "first");
        let mut reordered = policy.clone();
        reordered.rules.swap(0, 1);
        assert_eq!(reordered.evaluate(&input).rule_id, "second");
        let other = PolicyInput::new("db.query", "x");
        let decision = policy.evaluate(&other);
        assert_eq!(decision.rule_id, "catch-all");
        assert_eq!(
            decision.explanation,
            "Rule \"catch-all\": db.query (the rule applies to every request); denied: \
             nothing else."
        );
    }

    #[test]
    fn example_decisions_and_explanations() {
        let policy = parse(EXAMPLE);
        let big = dec("15000.00");
        let input = PolicyInput {
            environment: Some("production"),
            amount: Some((&big, "EUR")),
            ..PolicyInput::new("payments.transfer", "bank-api")
        };
        let decision = policy.evaluate(&input);
        assert_eq!(decision.rule_id, "large-payments");
        assert_eq!(decision.approvals_required(), 2);
        assert_eq!(
            decision.explanation,
            "Rule \"large-payments\": payments.transfer of 15000.00 EUR is at or above 10000.00 \
             EUR; needs 2 approvals from owner, group:finance (one from each)."
        );
        assert!(
            decision.passed_over.is_empty(),
            "evaluate leaves passed_over empty"
        );

        let small = dec("50");
        let input = PolicyInput {
            environment: Some("production"),
            data_sensitivity: Some("internal"),
            amount: Some((&small, "EUR")),
            ..PolicyInput::new("payments.transfer", "bank-api")
        };
        let decision = policy.evaluate(&input);
        assert_eq!(decision.rule_id, "small-payments");
        assert_eq!(decision.approvals_required(), 0);
        assert_eq!(decision.outcome.effective_grant_ttl_seconds(), Some(60));
        assert_eq!(
            decision.explanation,
            "Rule \"small-payments\" (Small payments run without a human): payments.transfer on \
             bank-api in production with internal data of 50 EUR is below 100.00 EUR; allowed \
             without approval."
        );

        let input = PolicyInput {
            environment: Some("production"),
            ..PolicyInput::new("db.drop_table", "orders")
        };
        let decision = policy.evaluate_explained(&input);
        assert_eq!(decision.rule_id, "no-production-drops");
        assert_eq!(decision.approvals_required(), 0);
        assert_eq!(
            decision.outcome,
            deny("Agents never drop production tables; open a change ticket instead.")
        );
        assert_eq!(
            decision.explanation,
            "Rule \"no-production-drops\": db.drop_table in production; denied: Agents never \
             drop production tables; open a change ticket instead."
        );
        assert_eq!(
            decision.passed_over,
            vec![
                PassedOver {
                    rule_id: "small-payments".into(),
                    why: "action \"db.drop_table\" does not match \"payments.*\"".into()
                },
                PassedOver {
                    rule_id: "large-payments".into(),
                    why: "action \"db.drop_table\" does not match \"payments.*\"".into()
                },
            ]
        );
    }

    #[test]
    fn passed_over_reasons_name_the_failing_condition() {
        let policy = parse(EXAMPLE);
        let why = |input: &PolicyInput<'_>| -> Vec<String> {
            policy
                .evaluate_explained(input)
                .passed_over
                .into_iter()
                .map(|p| format!("{}: {}", p.rule_id, p.why))
                .collect()
        };
        let usd = dec("50.00");
        let eur_big = dec("20000");
        let eur_mid = dec("500");
        let eur_small = dec("100.00");
        let base = PolicyInput::new("payments.transfer", "bank-api");
        assert_eq!(
            why(&base),
            [
                "small-payments: request has no environment",
                "large-payments: request has no amount",
                "no-production-drops: action \"payments.transfer\" does not match \"db.drop_*\"",
            ]
        );
        let input = PolicyInput {
            target: "other-api",
            ..base
        };
        assert_eq!(
            why(&input)[0],
            "small-payments: target \"other-api\" does not match \"bank-api\""
        );
        let input = PolicyInput {
            environment: Some("staging"),
            ..base
        };
        assert_eq!(
            why(&input)[0],
            "small-payments: environment \"staging\" is not in [\"production\"]"
        );
        let input = PolicyInput {
            environment: Some("production"),
            ..base
        };
        assert_eq!(
            why(&input)[0],
            "small-payments: request has no data sensitivity"
        );
        let input = PolicyInput {
            environment: Some("production"),
            data_sensitivity: Some("restricted"),
            ..base
        };
        assert_eq!(
            why(&input)[0],
            "small-payments: data sensitivity \"restricted\" is not in [\"public\", \"internal\"]"
        );
        let prod_internal = PolicyInput {
            environment: Some("production"),
            data_sensitivity: Some("internal"),
            ..base
        };
        let input = PolicyInput {
            amount: Some((&usd, "USD")),
            ..prod_internal
        };
        assert_eq!(
            why(&input)[..2],
            [
                "small-payments: amount currency USD differs from threshold currency EUR",
                "large-payments: amount currency USD differs from threshold currency EUR",
            ]
        );
        let input = PolicyInput {
            amount: Some((&eur_big, "EUR")),
            ..prod_internal
        };
        assert_eq!(
            why(&input),
            ["small-payments: amount 20000 EUR is not below 100.00 EUR"]
        );
        let input = PolicyInput {
            amount: Some((&eur_small, "EUR")),
            ..prod_internal
        };
        assert_eq!(
            why(&input)[..2],
            [
                "small-payments: amount 100.00 EUR is not below 100.00 EUR",
                "large-payments: amount 100.00 EUR is not at or above 10000.00 EUR",
            ]
        );
        let input = PolicyInput {
            amount: Some((&eur_mid, "EUR")),
            ..prod_internal
        };
        let decision = policy.evaluate_explained(&input);
        assert_eq!(decision.rule_id, DEFAULT_RULE_ID);
        assert_eq!(decision.passed_over.len(), 3);
        assert!(policy.evaluate(&input).passed_over.is_empty());
    }

    #[test]
    fn explanations_stay_on_one_line() {
        let policy = single(PolicyRule {
            description: Some("two\nlines  and\ttabs".into()),
            target: Some("*".into()),
            ..rule("r", deny("No.\nReally..."))
        });
        let hostile = format!("evil\n{}", "x".repeat(1000));
        let decision = policy.evaluate(&PolicyInput::new("a.b", &hostile));
        assert!(!decision.explanation.contains('\n'));
        assert!(decision
            .explanation
            .starts_with("Rule \"r\" (two lines and tabs): a.b on evil xxx"));
        assert!(decision.explanation.ends_with("…; denied: No. Really."));
        assert!(decision.explanation.chars().count() < 300);

        let other = single(PolicyRule {
            action: Some("a.*".into()),
            ..rule("r", allow())
        });
        let decision = other.evaluate_explained(&PolicyInput::new("b\n\"q\"", "t"));
        assert_eq!(
            decision.passed_over[0].why,
            "action \"b\\n\\\"q\\\"\" does not match \"a.*\""
        );
    }

    #[test]
    fn require_explanations() {
        let outcome =
            |approvals, approvers: &[&str], all_groups, exclude_owner| RuleOutcome::Require {
                approvals,
                approvers: approvers.iter().map(|s| s.parse().unwrap()).collect(),
                all_groups,
                exclude_owner,
                request_ttl_seconds: None,
                grant_ttl_seconds: None,
            };
        let cases = [
            (
                outcome(1, &["owner"], false, false),
                "needs 1 approval from owner.",
            ),
            (
                outcome(2, &["admins", "group:ops"], false, false),
                "needs 2 approvals from any of admins, group:ops.",
            ),
            (
                outcome(2, &["owner", "admins"], false, true),
                "needs 2 approvals from any of owner, admins (the agent's owner's approval \
                 does not count).",
            ),
            (
                outcome(2, &["admins", "group:ops"], true, true),
                "needs 2 approvals from admins, group:ops (one from each; the agent's owner's \
                 approval does not count).",
            ),
        ];
        for (outcome, expected) in cases {
            let policy = single(PolicyRule {
                action: Some("x.*".into()),
                ..rule("r", outcome)
            });
            let decision = policy.evaluate(&PolicyInput::new("x.y", "t"));
            assert_eq!(
                decision.explanation,
                format!("Rule \"r\": x.y matches \"x.*\"; {expected}")
            );
        }
    }

    #[test]
    fn environment_and_sensitivity_conditions() {
        let policy = parse(
            "[[rule]]\nid = \"r\"\nenvironment = [\"production\", \"eu-prod\"]\n\
             data_sensitivity = [\"restricted\"]\noutcome = \"deny\"\nreason = \"no\"\n",
        );
        let input = |env, level| PolicyInput {
            environment: env,
            data_sensitivity: level,
            ..PolicyInput::new("a", "b")
        };
        assert_eq!(
            policy
                .evaluate(&input(Some("eu-prod"), Some("restricted")))
                .rule_id,
            "r"
        );
        assert_eq!(
            policy
                .evaluate(&input(Some("staging"), Some("restricted")))
                .rule_id,
            DEFAULT_RULE_ID
        );
        assert_eq!(
            policy.evaluate(&input(None, Some("restricted"))).rule_id,
            DEFAULT_RULE_ID
        );
        assert_eq!(
            policy
                .evaluate(&input(Some("production"), Some("public")))
                .rule_id,
            DEFAULT_RULE_ID
        );
        assert_eq!(
            policy.evaluate(&input(Some("production"), None)).rule_id,
            DEFAULT_RULE_ID
        );
    }

    // --- delegation depth -------------------------------------------------------------------

    fn at_depth(policy: &Policy, depth: u32) -> PolicyDecision {
        let input = PolicyInput {
            delegation_depth: depth,
            ..PolicyInput::new("payments.transfer", "bank-api")
        };
        policy.evaluate_explained(&input)
    }

    #[test]
    fn delegation_depth_at_least_includes_the_threshold_and_below_excludes_it() {
        let policy = parse(
            "[[rule]]\nid = \"delegated-twice\"\ndelegation_depth_at_least = 2\n\
             outcome = \"require\"\n\n[[rule]]\nid = \"direct\"\ndelegation_depth_below = 1\n\
             outcome = \"allow\"\n\n[[rule]]\nid = \"band\"\ndelegation_depth_at_least = 1\n\
             delegation_depth_below = 2\noutcome = \"deny\"\nreason = \"no\"\n",
        );
        assert_eq!(at_depth(&policy, 0).rule_id, "direct");
        assert_eq!(at_depth(&policy, 1).rule_id, "band");
        assert_eq!(at_depth(&policy, 2).rule_id, "delegated-twice");
        assert_eq!(at_depth(&policy, 16).rule_id, "delegated-twice");
        let decision = at_depth(&policy, 2);
        assert_eq!(
            decision.explanation,
            "Rule \"delegated-twice\": payments.transfer delegated 2 hops deep; needs 1 \
             approval from owner."
        );
        let decision = at_depth(&policy, 1);
        assert_eq!(
            decision
                .passed_over
                .iter()
                .map(|p| p.why.as_str())
                .collect::<Vec<_>>(),
            [
                "delegation depth 1 is not at or above 2",
                "delegation depth 1 is not below 1"
            ]
        );
        assert!(decision.explanation.contains("delegated 1 hop deep"));
    }

    proptest! {
        #[test]
        fn prop_depth_thresholds_partition_depths(threshold in 1u32..=16, depth in 0u32..=20) {
            let at_least = PolicyRule { delegation_depth_at_least: Some(threshold), ..rule("a", allow()) };
            let below = PolicyRule { delegation_depth_below: Some(threshold), ..rule("b", allow()) };
            let input = PolicyInput { delegation_depth: depth, ..PolicyInput::new("x", "y") };
            prop_assert!(at_least.matches(&input) != below.matches(&input));
            prop_assert_eq!(at_least.matches(&input), depth >= threshold);
        }

        #[test]
        fn prop_thresholds_partition_amounts(
            threshold in money_strategy("EUR"),
            mantissa in any::<i64>(),
            scale in 0u32..=10,
        ) {
            let amount = Decimal::new(mantissa, scale);
            let below_rule = PolicyRule {
                amount_below: Some(threshold.clone()),
                ..rule("below", allow())
            };
            let at_least_rule = PolicyRule {
                amount_at_least: Some(threshold.clone()),
                ..rule("at-least", allow())
            };
            let eur = PolicyInput {
                amount: Some((&amount, "EUR")),
                ..PolicyInput::new("payments.transfer", "bank-api")
            };
            prop_assert!(below_rule.matches(&eur) != at_least_rule.matches(&eur));
            prop_assert_eq!(below_rule.matches(&eur), amount < threshold.value);
            let usd = PolicyInput { amount: Some((&amount, "USD")), ..eur };
            prop_assert!(!below_rule.matches(&usd) && !at_least_rule.matches(&usd));
        }
    }
}
