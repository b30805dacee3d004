//! The policy as the browser's rule editor holds it: one [`RuleForm`] per rule, every field as
//! typed, so a half-finished rule can be kept, checked and shown with its problems.
//!
//! It is the same model as the policy file, seen through a form: [`to_forms`] turns a
//! [`Policy`] into forms and [`from_forms`] turns forms back into a [`Policy`] (validated with
//! the same rules as `countersign policy apply`), so a file applied on the command line shows
//! up in the editor and a policy saved from the editor reads back from `policy show`. The
//! round trip `from_forms(to_forms(p)) == p` holds for every valid policy (property-tested).
//!
//! Unlike [`Policy::validate`], which stops at the first problem, [`from_forms`] reports every
//! field it cannot read and the first problem of every rule, so the form can mark them all.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{parse_amount, ApproverSource, Money, Policy, PolicyRule, RuleOutcome};

/// One rule in the editor. Empty text means "not set"; lists are comma-separated.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RuleForm {
    /// The rule's id.
    pub id: String,
    /// What it is for.
    pub description: String,
    /// Glob on the action type.
    pub action: String,
    /// Glob on the target.
    pub target: String,
    /// Environments, comma-separated.
    pub environment: String,
    /// Data sensitivity levels (any of public, internal, confidential, restricted).
    pub data_sensitivity: Vec<String>,
    /// Currency of the amount band, e.g. `EUR`.
    pub amount_currency: String,
    /// The amount must be at least this.
    pub amount_at_least: String,
    /// The amount must be below this.
    pub amount_below: String,
    /// The request's delegation depth must be at least this.
    pub delegation_depth_at_least: String,
    /// The request's delegation depth must be below this.
    pub delegation_depth_below: String,
    /// `allow`, `require` or `deny`.
    pub outcome: String,
    /// Distinct approvals needed (require).
    pub approvals: String,
    /// Approver sources, comma-separated: `owner`, `admins`, `group:<name>` (require).
    pub approvers: String,
    /// At least one approval from each source (require).
    pub all_groups: bool,
    /// The agent's owner's approval does not count (require).
    pub exclude_owner: bool,
    /// Seconds the request waits for people (require).
    pub request_ttl_seconds: String,
    /// Seconds the grant lives (allow, require).
    pub grant_ttl_seconds: String,
    /// Why the action is refused (deny).
    pub reason: String,
    /// The credential provider an approval releases from (allow, require).
    pub credential: String,
    /// Seconds that credential lives.
    pub credential_ttl_seconds: String,
    /// The longest standing approval an approver may give (require, one approval).
    pub standing_max_seconds: String,
    /// The most uses such a standing approval may allow.
    pub standing_max_uses: String,
}

/// A problem with one field of one rule (`rule` is its zero-based position; `None` for the
/// policy as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldProblem {
    /// Which rule.
    pub rule: Option<usize>,
    /// Which field of [`RuleForm`].
    pub field: String,
    /// What is wrong, in one line.
    pub message: String,
}

/// The forms for a policy, in rule order.
pub fn to_forms(policy: &Policy) -> Vec<RuleForm> {
    policy.rules.iter().map(to_form).collect()
}

fn to_form(rule: &PolicyRule) -> RuleForm {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let number = |v: &Option<u32>| v.map(|n| n.to_string()).unwrap_or_default();
    let band = rule.amount_at_least.as_ref().or(rule.amount_below.as_ref());
    let mut form = RuleForm {
        id: rule.id.clone(),
        description: text(&rule.description),
        action: text(&rule.action),
        target: text(&rule.target),
        environment: rule.environment.as_deref().unwrap_or_default().join(", "),
        data_sensitivity: rule.data_sensitivity.clone().unwrap_or_default(),
        amount_currency: band.map(|m| m.currency.clone()).unwrap_or_default(),
        amount_at_least: rule
            .amount_at_least
            .as_ref()
            .map(|m| m.value.to_string())
            .unwrap_or_default(),
        amount_below: rule
            .amount_below
            .as_ref()
            .map(|m| m.value.to_string())
            .unwrap_or_default(),
        delegation_depth_at_least: number(&rule.delegation_depth_at_least),
        delegation_depth_below: number(&rule.delegation_depth_below),
        outcome: rule.outcome.kind().into(),
        credential: text(&rule.credential),
        credential_ttl_seconds: number(&rule.credential_ttl_seconds),
        standing_max_seconds: number(&rule.standing_max_seconds),
        standing_max_uses: number(&rule.standing_max_uses),
        ..RuleForm::default()
    };
    match &rule.outcome {
        RuleOutcome::Allow { grant_ttl_seconds } => {
            form.grant_ttl_seconds = number(grant_ttl_seconds);
        }
        RuleOutcome::Require {
            approvals,
            approvers,
            all_groups,
            exclude_owner,
            request_ttl_seconds,
            grant_ttl_seconds,
        } => {
            form.approvals = approvals.to_string();
            form.approvers = approvers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            form.all_groups = *all_groups;
            form.exclude_owner = *exclude_owner;
            form.request_ttl_seconds = number(request_ttl_seconds);
            form.grant_ttl_seconds = number(grant_ttl_seconds);
        }
        RuleOutcome::Deny { reason } => form.reason = reason.clone(),
    }
    form
}

/// Reads the forms back into a validated policy, or every problem found.
pub fn from_forms(forms: &[RuleForm]) -> Result<Policy, Vec<FieldProblem>> {
    let mut problems = Vec::new();
    let mut rules = Vec::with_capacity(forms.len());
    for (index, form) in forms.iter().enumerate() {
        let mut reader = Reader {
            index,
            problems: &mut problems,
        };
        if let Some(rule) = reader.rule(form) {
            rules.push((index, rule));
        }
    }
    // Each readable rule on its own, so every rule reports its first problem...
    for (index, rule) in &rules {
        let single = Policy {
            rules: vec![rule.clone()],
        };
        if let Err(e) = single.validate() {
            problems.push(FieldProblem {
                rule: Some(*index),
                field: form_field(e.key.as_deref()),
                message: e.reason,
            });
        }
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.rule);
        return Err(problems);
    }
    // ...then the whole policy, which adds what only shows across rules (duplicate ids).
    let policy = Policy {
        rules: rules.into_iter().map(|(_, r)| r).collect(),
    };
    policy.validate().map_err(|e| {
        vec![FieldProblem {
            rule: e.rule_index,
            field: form_field(e.key.as_deref()),
            message: e.reason,
        }]
    })?;
    Ok(policy)
}

/// The form field a policy-file key is shown next to.
fn form_field(key: Option<&str>) -> String {
    match key {
        Some(k) if k.ends_with(".currency") => "amount_currency".into(),
        Some(k) => k.split('.').next().unwrap_or(k).into(),
        None => "id".into(),
    }
}

/// Reads one form, noting every field it cannot read.
struct Reader<'a> {
    index: usize,
    problems: &'a mut Vec<FieldProblem>,
}

impl Reader<'_> {
    fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(FieldProblem {
            rule: Some(self.index),
            field: field.into(),
            message: message.into(),
        });
    }

    fn rule(&mut self, f: &RuleForm) -> Option<PolicyRule> {
        let before = self.problems.len();
        let optional = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let list = |s: &str| {
            let items: Vec<String> = s
                .split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(str::to_string)
                .collect();
            Some(items).filter(|i| !i.is_empty())
        };
        let currency = f.amount_currency.trim().to_ascii_uppercase();
        let amount_at_least = self.money("amount_at_least", &f.amount_at_least, &currency);
        let amount_below = self.money("amount_below", &f.amount_below, &currency);
        let depth_at_least = self.number("delegation_depth_at_least", &f.delegation_depth_at_least);
        let depth_below = self.number("delegation_depth_below", &f.delegation_depth_below);
        let outcome = self.outcome(f);
        let credential_ttl_seconds =
            self.number("credential_ttl_seconds", &f.credential_ttl_seconds);
        let standing_max_seconds = self.number("standing_max_seconds", &f.standing_max_seconds);
        let standing_max_uses = self.number("standing_max_uses", &f.standing_max_uses);
        if self.problems.len() > before {
            return None;
        }
        Some(PolicyRule {
            id: f.id.trim().to_string(),
            description: optional(&f.description),
            action: optional(&f.action),
            target: optional(&f.target),
            environment: list(&f.environment),
            data_sensitivity: Some(f.data_sensitivity.clone()).filter(|l| !l.is_empty()),
            amount_below,
            amount_at_least,
            delegation_depth_at_least: depth_at_least?,
            delegation_depth_below: depth_below?,
            credential: optional(&f.credential),
            credential_ttl_seconds: credential_ttl_seconds?,
            standing_max_seconds: standing_max_seconds?,
            standing_max_uses: standing_max_uses?,
            outcome: outcome?,
        })
    }

    fn money(&mut self, field: &str, value: &str, currency: &str) -> Option<Money> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        let parsed = match parse_amount(value) {
            Ok(v) => v,
            Err(why) => {
                self.problem(field, why);
                return None;
            }
        };
        if currency.is_empty() {
            self.problem("amount_currency", "an amount needs its currency, e.g. EUR");
            return None;
        }
        Some(Money {
            value: parsed,
            currency: currency.into(),
        })
    }

    fn number(&mut self, field: &str, text: &str) -> Option<Option<u32>> {
        let text = text.trim();
        if text.is_empty() {
            return Some(None);
        }
        match text.parse::<u32>() {
            Ok(n) => Some(Some(n)),
            Err(_) => {
                self.problem(field, "must be a whole number");
                None
            }
        }
    }

    fn outcome(&mut self, f: &RuleForm) -> Option<RuleOutcome> {
        match f.outcome.as_str() {
            "allow" => Some(RuleOutcome::Allow {
                grant_ttl_seconds: self.number("grant_ttl_seconds", &f.grant_ttl_seconds)?,
            }),
            "deny" => Some(RuleOutcome::Deny {
                reason: f.reason.trim().to_string(),
            }),
            "require" => {
                let approvals = self.number("approvals", &f.approvals);
                let mut approvers = Vec::new();
                for source in f
                    .approvers
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    match ApproverSource::from_str(source) {
                        Ok(s) => approvers.push(s),
                        Err(e) => self.problem("approvers", e.to_string()),
                    }
                }
                let request_ttl = self.number("request_ttl_seconds", &f.request_ttl_seconds);
                let grant_ttl = self.number("grant_ttl_seconds", &f.grant_ttl_seconds);
                let approvals = match approvals? {
                    Some(n) => n,
                    None => {
                        self.problem("approvals", "how many distinct people must approve");
                        return None;
                    }
                };
                Some(RuleOutcome::Require {
                    approvals,
                    approvers,
                    all_groups: f.all_groups,
                    exclude_owner: f.exclude_owner,
                    request_ttl_seconds: request_ttl?,
                    grant_ttl_seconds: grant_ttl?,
                })
            }
            _ => {
                self.problem("outcome", "choose allow, require or deny");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FILE: &str = r#"
[[rule]]
id = "small-payments"
description = "Small transfers run on their own"
action = "payments.*"
amount_below = { value = "100.00", currency = "EUR" }
outcome = "allow"
grant_ttl_seconds = 30

[[rule]]
id = "big-payments"
action = "payments.*"
amount_at_least = { value = "100.00", currency = "EUR" }
amount_below = { value = "10000", currency = "EUR" }
environment = ["production", "staging"]
outcome = "require"
approvals = 2
approvers = ["group:finance", "group:sre"]
all_groups = true
exclude_owner = true
request_ttl_seconds = 600

[[rule]]
id = "no-restricted"
data_sensitivity = ["restricted"]
outcome = "deny"
reason = "Restricted data never leaves"
"#;

    #[test]
    fn a_file_round_trips_through_the_editor() {
        let policy = Policy::from_toml(FILE).unwrap();
        let forms = to_forms(&policy);
        assert_eq!(forms[1].approvers, "group:finance, group:sre");
        assert_eq!(forms[1].environment, "production, staging");
        assert_eq!(forms[1].amount_currency, "EUR");
        assert_eq!(forms[0].amount_below, "100.00");
        let back = from_forms(&forms).unwrap();
        assert_eq!(back, policy);
        assert_eq!(back.to_toml(), policy.to_toml());
        assert_eq!(back.hash(), policy.hash());
    }

    #[test]
    fn an_edited_threshold_is_the_file_with_that_threshold() {
        let policy = Policy::from_toml(FILE).unwrap();
        let mut forms = to_forms(&policy);
        forms[0].amount_below = "250".into();
        forms[1].amount_at_least = "250".into();
        let text = from_forms(&forms).unwrap().to_toml();
        let expected = FILE.replacen("\"100.00\"", "\"250\"", 2);
        assert_eq!(text, Policy::from_toml(&expected).unwrap().to_toml());
    }

    #[test]
    fn every_unreadable_field_is_named() {
        let forms = vec![
            RuleForm {
                id: "a".into(),
                outcome: "require".into(),
                approvals: "two".into(),
                approvers: "owner, bosses".into(),
                amount_below: "12,5".into(),
                ..RuleForm::default()
            },
            RuleForm {
                id: "b".into(),
                outcome: "maybe".into(),
                amount_at_least: "10".into(),
                ..RuleForm::default()
            },
        ];
        let problems = from_forms(&forms).unwrap_err();
        let named: Vec<(Option<usize>, &str)> = problems
            .iter()
            .map(|p| (p.rule, p.field.as_str()))
            .collect();
        assert!(named.contains(&(Some(0), "approvals")), "{problems:?}");
        assert!(named.contains(&(Some(0), "approvers")), "{problems:?}");
        assert!(named.contains(&(Some(0), "amount_below")), "{problems:?}");
        assert!(named.contains(&(Some(1), "outcome")), "{problems:?}");
        assert!(
            named.contains(&(Some(1), "amount_currency")),
            "{problems:?}"
        );
    }

    #[test]
    fn model_rules_are_reported_per_rule_next_to_their_field() {
        let ok = RuleForm {
            id: "fine".into(),
            outcome: "allow".into(),
            ..RuleForm::default()
        };
        let forms = vec![
            RuleForm {
                id: "Bad Id".into(),
                ..ok.clone()
            },
            RuleForm {
                id: "band".into(),
                amount_currency: "usd".into(),
                amount_at_least: "500".into(),
                amount_below: "100".into(),
                ..ok.clone()
            },
            RuleForm {
                id: "only-owner".into(),
                outcome: "require".into(),
                approvals: "2".into(),
                approvers: "owner".into(),
                ..RuleForm::default()
            },
            ok.clone(),
        ];
        let problems = from_forms(&forms).unwrap_err();
        let named: Vec<(Option<usize>, &str)> = problems
            .iter()
            .map(|p| (p.rule, p.field.as_str()))
            .collect();
        assert_eq!(
            named,
            vec![
                (Some(0), "id"),
                (Some(1), "amount_at_least"),
                (Some(2), "approvals")
            ]
        );
        // Once each rule is fine on its own, what spans rules is reported.
        let dupes = from_forms(&[ok.clone(), ok]).unwrap_err();
        assert_eq!(dupes[0].rule, Some(1));
        assert_eq!(dupes[0].field, "id");
    }

    #[test]
    fn blank_text_means_not_set() {
        let policy = from_forms(&[RuleForm {
            id: " catch-all ".into(),
            description: "  ".into(),
            environment: " , ".into(),
            outcome: "deny".into(),
            reason: "No".into(),
            ..RuleForm::default()
        }])
        .unwrap();
        let rule = &policy.rules[0];
        assert_eq!(rule.id, "catch-all");
        assert_eq!(rule.description, None);
        assert_eq!(rule.environment, None);
    }

    fn arb_rule(index: usize) -> impl Strategy<Value = PolicyRule> {
        let outcome = prop_oneof![
            proptest::option::of(1u32..=300)
                .prop_map(|grant_ttl_seconds| RuleOutcome::Allow { grant_ttl_seconds }),
            (
                1u32..=10,
                proptest::sample::subsequence(vec!["admins", "group:finance", "group:sre"], 1..=3),
                any::<bool>(),
                proptest::option::of(30u32..=86_400),
            )
                .prop_map(|(approvals, sources, exclude_owner, ttl)| {
                    let approvers: Vec<ApproverSource> =
                        sources.iter().map(|s| s.parse().unwrap()).collect();
                    RuleOutcome::Require {
                        approvals: approvals.max(approvers.len() as u32),
                        all_groups: approvals >= approvers.len() as u32,
                        approvers,
                        exclude_owner,
                        request_ttl_seconds: ttl,
                        grant_ttl_seconds: None,
                    }
                }),
            "[A-Za-z]([A-Za-z .]{0,30}[A-Za-z])?".prop_map(|reason| RuleOutcome::Deny { reason }),
        ];
        let money = |lo: u64, hi: u64| {
            (lo..hi, 0u32..=2)
                .prop_map(|(cents, scale)| rust_decimal::Decimal::new(cents as i64, scale))
        };
        (
            proptest::option::of("[a-z]{1,8}(\\.[a-z*]{1,8})?"),
            proptest::option::of(proptest::sample::subsequence(
                vec!["prod", "staging", "dev"],
                1..=3,
            )),
            proptest::option::of(proptest::sample::subsequence(
                vec!["public", "internal", "confidential", "restricted"],
                1..=4,
            )),
            proptest::option::of((money(0, 1_000), money(1_000, 1_000_000))),
            outcome,
        )
            .prop_map(move |(action, envs, levels, band, outcome)| PolicyRule {
                id: format!("rule-{index}"),
                description: None,
                action,
                target: None,
                environment: envs.map(|e| e.into_iter().map(String::from).collect()),
                data_sensitivity: levels.map(|l| l.into_iter().map(String::from).collect()),
                amount_at_least: band.map(|(lo, _)| Money {
                    value: lo,
                    currency: "EUR".into(),
                }),
                amount_below: band.map(|(_, hi)| Money {
                    value: hi,
                    currency: "EUR".into(),
                }),
                delegation_depth_at_least: None,
                delegation_depth_below: None,
                credential: None,
                credential_ttl_seconds: None,
                standing_max_seconds: None,
                standing_max_uses: None,
                outcome,
            })
    }

    proptest! {
        #[test]
        fn every_valid_policy_round_trips(rules in (0usize..5).prop_flat_map(|n| {
            (0..n).map(arb_rule).collect::<Vec<_>>()
        })) {
            let policy = Policy { rules };
            prop_assume!(policy.validate().is_ok());
            let back = from_forms(&to_forms(&policy)).unwrap();
            prop_assert_eq!(&back, &policy);
            // And through the file: what the editor saves is what `policy show` prints.
            prop_assert_eq!(Policy::from_toml(&back.to_toml()).unwrap(), policy);
        }
    }
}
