//! The policy's data model: rules, outcomes, approver sources, money, the input a request
//! gives evaluation and the decision it gets back, and the error a refused policy reports.

use std::fmt::{self, Write as _};
use std::ops::RangeInclusive;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::validate::{is_valid_group_name, parse_amount};

/// Rule id reported when no rule of the policy matched and the built-in default decided.
pub const DEFAULT_RULE_ID: &str = "default";

/// Explanation carried by a decision of the built-in default.
pub const DEFAULT_EXPLANATION: &str =
    "No rule matched; the default requires one approval from the agent's owner.";

/// Lifetime of a grant, in seconds, when a rule does not set `grant_ttl_seconds`.
pub const DEFAULT_GRANT_TTL_SECONDS: u32 = 60;

/// Allowed values of `grant_ttl_seconds`.
pub const GRANT_TTL_SECONDS_RANGE: RangeInclusive<u32> = 1..=300;

/// Allowed values of `request_ttl_seconds`.
pub const REQUEST_TTL_SECONDS_RANGE: RangeInclusive<u32> = 30..=86_400;

/// Allowed values of `standing_max_seconds`: up to a week.
pub const STANDING_MAX_SECONDS_RANGE: RangeInclusive<u32> = 60..=604_800;

/// Allowed values of `standing_max_uses`.
pub const STANDING_MAX_USES_RANGE: RangeInclusive<u32> = 1..=10_000;

/// The most uses of a standing approval when its rule does not set `standing_max_uses`.
pub const DEFAULT_STANDING_MAX_USES: u32 = 100;

/// Allowed values of `delegation_depth_at_least` and `delegation_depth_below`: a request's depth
/// is at most 16 (the longest `context.delegation` intake accepts; a registered lineage is
/// shorter), so a threshold outside this range would match always or never.
pub const DELEGATION_DEPTH_RANGE: RangeInclusive<u32> = 1..=16;

/// Allowed values of `approvals`.
pub const APPROVALS_RANGE: RangeInclusive<u32> = 1..=10;

/// The values `data_sensitivity` may list, from least to most sensitive.
pub const DATA_SENSITIVITY_LEVELS: [&str; 4] = ["public", "internal", "confidential", "restricted"];

/// An ordered list of rules; the first rule whose conditions all hold decides.
///
/// A value built in code (or deserialised from JSON) is not checked: call [`Policy::validate`]
/// before storing or evaluating it. [`Policy::from_toml`] validates on its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Policy {
    /// The rules, in evaluation order.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

/// One rule: optional conditions (all present ones must hold) and the outcome when they do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRule {
    /// Unique id, shown to agents and approvers; `^[a-z0-9][a-z0-9_.-]{0,63}$`, not `default`.
    pub id: String,
    /// Human description, quoted in explanations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Glob on the action type (see [`glob_match`](super::glob_match)); `None` matches any action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Glob on the action target; `None` matches any target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The request's environment must be one of these; `None` matches any (or no) environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Vec<String>>,
    /// The request's data sensitivity must be one of these (values from
    /// [`DATA_SENSITIVITY_LEVELS`]); `None` matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sensitivity: Option<Vec<String>>,
    /// The request's amount must be strictly below this, in the same currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_below: Option<Money>,
    /// The request's amount must be at or above this, in the same currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_at_least: Option<Money>,
    /// The request's delegation depth must be at least this (see [`PolicyInput::delegation_depth`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_depth_at_least: Option<u32>,
    /// The request's delegation depth must be strictly below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_depth_below: Option<u32>,
    /// The credential provider an approved request of this rule releases a credential from
    /// (allow and require only); the provider must exist when the policy is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// How long that credential lives (60..=3600 s); `None` means
    /// [`DEFAULT_CREDENTIAL_TTL_SECONDS`](crate::domain::credential::DEFAULT_CREDENTIAL_TTL_SECONDS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_ttl_seconds: Option<u32>,
    /// When set, an approver of this rule's requests may also approve a bounded pattern of
    /// later requests (a standing approval) for at most this many seconds. Only on require
    /// rules that one person approves: a standing approval stands for one person's approval,
    /// so it can never stand in for a quorum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing_max_seconds: Option<u32>,
    /// The most uses a standing approval of this rule may allow; `None` means
    /// [`DEFAULT_STANDING_MAX_USES`]. Needs `standing_max_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing_max_uses: Option<u32>,
    /// What happens when the rule matches. Flattened so the JSON form reads like the TOML form
    /// (`"outcome": "require", "approvals": 2, ...`).
    #[serde(flatten)]
    pub outcome: RuleOutcome,
}

/// An amount of money: a non-negative decimal and an ISO-4217-style currency code.
///
/// Serialised as `{"value": "100.00", "currency": "EUR"}`: the value stays a string so no
/// precision or scale is lost through JSON or TOML floats.
#[derive(Debug, Clone, PartialEq)]
pub struct Money {
    /// The amount; at most 15 integer digits and 6 decimal places, never negative.
    pub value: Decimal,
    /// Three upper-case ASCII letters, compared exactly.
    pub currency: String,
}

/// What a matching rule decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum RuleOutcome {
    /// The action runs without a human.
    Allow {
        /// Lifetime of the grant (1..=300 s); `None` means [`DEFAULT_GRANT_TTL_SECONDS`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant_ttl_seconds: Option<u32>,
    },
    /// The action needs approvals from people.
    Require {
        /// Number of distinct people who must approve (1..=10).
        approvals: u32,
        /// Where approvers may come from; non-empty, no duplicates.
        approvers: Vec<ApproverSource>,
        /// When true, at least one approval must come from each listed source.
        #[serde(default)]
        all_groups: bool,
        /// Four eyes: when true, the approval of the agent's own owner does not count.
        #[serde(default)]
        exclude_owner: bool,
        /// How long the request waits for approvals (30..=86400 s); `None` = service default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_ttl_seconds: Option<u32>,
        /// Lifetime of the grant once approved (1..=300 s); `None` = [`DEFAULT_GRANT_TTL_SECONDS`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant_ttl_seconds: Option<u32>,
    },
    /// The action is refused.
    Deny {
        /// Why, in words the agent can act on; non-empty.
        reason: String,
    },
}

/// How far a standing approval under one rule may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandingLimits {
    /// The longest it may last, in seconds.
    pub max_seconds: u32,
    /// The most uses it may allow.
    pub max_uses: u32,
}

/// Who may approve a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ApproverSource {
    /// The person who owns the agent that asks (`owner`).
    Owner,
    /// Any service administrator (`admins`).
    Admins,
    /// Any member of the named group (`group:<name>`, name `^[a-z0-9][a-z0-9_-]{0,63}$`).
    Group(String),
}

/// A string that is not a valid [`ApproverSource`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid approver {input:?}: {reason}")]
pub struct ApproverSourceError {
    /// The text that was refused.
    pub input: String,
    /// Why it was refused.
    pub reason: &'static str,
}

/// Why a policy was refused. Only the first problem found is reported.
///
/// Displayed as `rule "large-payments" (#2), key "approvals": must be between 1 and 10`; parts
/// that are unknown are left out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct PolicyError {
    /// Id of the offending rule, when the rule has a string id (even an invalid one).
    pub rule_id: Option<String>,
    /// Zero-based position of the offending rule in [`Policy::rules`] (displayed one-based).
    pub rule_index: Option<usize>,
    /// The offending key, dotted for nested keys (`amount_below.currency`); `None` for TOML
    /// syntax errors and problems with a rule as a whole.
    pub key: Option<String>,
    /// What is wrong, in one line.
    pub reason: String,
}

/// The facts about an agent's request that rules look at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyInput<'a> {
    /// The action type, e.g. `payments.transfer`.
    pub action_type: &'a str,
    /// The action target, e.g. `bank-api`.
    pub target: &'a str,
    /// The environment the action runs in, if the agent said.
    pub environment: Option<&'a str>,
    /// The sensitivity of the data touched, if the agent said.
    pub data_sensitivity: Option<&'a str>,
    /// The amount and its currency code, for actions that move money.
    pub amount: Option<(&'a Decimal, &'a str)>,
    /// How many hops of delegation stand between the agent and the person it ultimately acts
    /// for: 0 when it acts directly for its owner. The caller makes this the larger of the
    /// claimed chain's length (`context.delegation`) and the agent's registered ancestors, so
    /// an agent cannot evade a rule by leaving its chain out (see `service::delegation`).
    pub delegation_depth: u32,
}

/// The result of evaluating a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDecision {
    /// Id of the rule that decided, or [`DEFAULT_RULE_ID`].
    pub rule_id: String,
    /// The deciding rule's outcome (for the default: one approval from `owner`).
    #[serde(flatten)]
    pub outcome: RuleOutcome,
    /// One line, shown to both the agent and the approvers.
    pub explanation: String,
    /// Rules checked before the deciding one, in order, with why each did not match. Filled only
    /// by [`Policy::evaluate_explained`]; always empty from [`Policy::evaluate`].
    #[serde(default)]
    pub passed_over: Vec<PassedOver>,
}

/// A rule that did not match during a dry run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassedOver {
    /// The rule's id.
    pub rule_id: String,
    /// The first condition that failed, e.g. `request has no amount`.
    pub why: String,
}

// ---------------------------------------------------------------------------------------------
// Small impls on the model
// ---------------------------------------------------------------------------------------------

impl<'a> PolicyInput<'a> {
    /// An input with only action type and target; the optional facts are absent.
    pub fn new(action_type: &'a str, target: &'a str) -> Self {
        PolicyInput {
            action_type,
            target,
            environment: None,
            data_sensitivity: None,
            amount: None,
            delegation_depth: 0,
        }
    }
}

impl RuleOutcome {
    /// The outcome of the built-in default: one approval from the agent's owner.
    pub fn default_require() -> Self {
        RuleOutcome::Require {
            approvals: 1,
            approvers: vec![ApproverSource::Owner],
            all_groups: false,
            exclude_owner: false,
            request_ttl_seconds: None,
            grant_ttl_seconds: None,
        }
    }

    /// `"allow"`, `"require"` or `"deny"`, as written in the policy file.
    pub fn kind(&self) -> &'static str {
        match self {
            RuleOutcome::Allow { .. } => "allow",
            RuleOutcome::Require { .. } => "require",
            RuleOutcome::Deny { .. } => "deny",
        }
    }

    /// Approvals needed: `approvals` for require, 0 for allow and deny.
    pub fn approvals_required(&self) -> u32 {
        match self {
            RuleOutcome::Require { approvals, .. } => *approvals,
            RuleOutcome::Allow { .. } | RuleOutcome::Deny { .. } => 0,
        }
    }

    /// Lifetime of the grant this outcome can lead to, with the default applied; `None` for
    /// deny, which never grants.
    pub fn effective_grant_ttl_seconds(&self) -> Option<u32> {
        match self {
            RuleOutcome::Allow { grant_ttl_seconds }
            | RuleOutcome::Require {
                grant_ttl_seconds, ..
            } => Some(grant_ttl_seconds.unwrap_or(DEFAULT_GRANT_TTL_SECONDS)),
            RuleOutcome::Deny { .. } => None,
        }
    }
}

impl PolicyRule {
    /// The bounds of the standing approvals this rule allows, if it allows any.
    pub fn standing_limits(&self) -> Option<StandingLimits> {
        let max_seconds = self.standing_max_seconds?;
        match self.outcome {
            RuleOutcome::Require { approvals: 1, .. } => Some(StandingLimits {
                max_seconds,
                max_uses: self.standing_max_uses.unwrap_or(DEFAULT_STANDING_MAX_USES),
            }),
            _ => None,
        }
    }

    /// The credential this rule releases, with its lifetime, if it names a provider.
    pub fn release(&self) -> Option<crate::domain::credential::Release> {
        self.credential
            .as_ref()
            .map(|provider| crate::domain::credential::Release {
                provider: provider.clone(),
                ttl_seconds: self
                    .credential_ttl_seconds
                    .unwrap_or(crate::domain::credential::DEFAULT_CREDENTIAL_TTL_SECONDS),
            })
    }
}

impl Policy {
    /// The rule with this id, if the policy has one.
    pub fn rule(&self, id: &str) -> Option<&PolicyRule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// The credential providers the rules name, each once, in rule order, with the first rule
    /// naming each.
    pub fn credential_providers(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for rule in &self.rules {
            if let Some(p) = rule.credential.as_deref() {
                if !out.iter().any(|(q, _)| *q == p) {
                    out.push((p, rule.id.as_str()));
                }
            }
        }
        out
    }
}

impl PolicyDecision {
    /// Approvals needed before the action may run: 0 for allow and deny.
    pub fn approvals_required(&self) -> u32 {
        self.outcome.approvals_required()
    }
}

impl fmt::Display for ApproverSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApproverSource::Owner => f.write_str("owner"),
            ApproverSource::Admins => f.write_str("admins"),
            ApproverSource::Group(name) => write!(f, "group:{name}"),
        }
    }
}

impl FromStr for ApproverSource {
    type Err = ApproverSourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(ApproverSource::Owner),
            "admins" => Ok(ApproverSource::Admins),
            _ => match s.strip_prefix("group:") {
                Some(name) if is_valid_group_name(name) => Ok(ApproverSource::Group(name.into())),
                Some(_) => Err(ApproverSourceError {
                    input: s.into(),
                    reason: "group name must match ^[a-z0-9][a-z0-9_-]{0,63}$",
                }),
                None => Err(ApproverSourceError {
                    input: s.into(),
                    reason: "expected \"owner\", \"admins\" or \"group:<name>\"",
                }),
            },
        }
    }
}

impl Serialize for ApproverSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ApproverSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.value, self.currency)
    }
}

/// The serialised shape of [`Money`]; the value travels as a string.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoneyRepr {
    value: String,
    currency: String,
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MoneyRepr {
            value: self.value.to_string(),
            currency: self.currency.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = MoneyRepr::deserialize(deserializer)?;
        let value = parse_amount(&repr.value).map_err(serde::de::Error::custom)?;
        Ok(Money {
            value,
            currency: repr.currency,
        })
    }
}

impl PolicyError {
    pub(super) fn new(
        rule_id: Option<&str>,
        rule_index: Option<usize>,
        key: Option<&str>,
        reason: impl Into<String>,
    ) -> Self {
        PolicyError {
            rule_id: rule_id.map(str::to_owned),
            rule_index,
            key: key.map(str::to_owned),
            reason: reason.into(),
        }
    }

    /// An error about `key` of the rule at `index`.
    pub(super) fn at(rule: RuleRef<'_>, key: &str, reason: impl Into<String>) -> Self {
        PolicyError::new(rule.id, Some(rule.index), Some(key), reason)
    }

    fn render(&self) -> String {
        let mut out = String::new();
        match (&self.rule_id, self.rule_index) {
            (Some(id), Some(index)) => {
                let _ = write!(out, "rule {id:?} (#{})", index + 1);
            }
            (Some(id), None) => {
                let _ = write!(out, "rule {id:?}");
            }
            (None, Some(index)) => {
                let _ = write!(out, "rule #{}", index + 1);
            }
            (None, None) => {}
        }
        if let Some(key) = &self.key {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "key {key:?}");
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&self.reason);
        out
    }
}

/// Which rule an error is about, for building [`PolicyError`]s.
#[derive(Clone, Copy)]
pub(super) struct RuleRef<'a> {
    pub(super) id: Option<&'a str>,
    pub(super) index: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::test_support::*;

    #[test]
    fn error_display_format() {
        let text = format!(
            "{}\n[[rule]]\nid = \"large-payments\"\noutcome = \"require\"\napprovals = 11\n\
             approvers = [\"admins\"]\n",
            one_rule("outcome = \"allow\"")
        );
        let error = parse_err(&text);
        assert_eq!(
            error.to_string(),
            "rule \"large-payments\" (#2), key \"approvals\": must be between 1 and 10"
        );
        assert_eq!(error.rule_index, Some(1));
        let bare = PolicyError::new(None, None, None, "boom");
        assert_eq!(bare.to_string(), "boom");
        let no_id = PolicyError::new(None, Some(2), Some("id"), "is required");
        assert_eq!(no_id.to_string(), "rule #3, key \"id\": is required");
    }

    #[test]
    fn approver_source_text_form() {
        for (text, source) in [
            ("owner", ApproverSource::Owner),
            ("admins", ApproverSource::Admins),
            ("group:finance", ApproverSource::Group("finance".into())),
            ("group:0_a-b", ApproverSource::Group("0_a-b".into())),
        ] {
            assert_eq!(text.parse::<ApproverSource>(), Ok(source.clone()));
            assert_eq!(source.to_string(), text);
        }
        let long = format!("group:{}", "a".repeat(65));
        assert!(long.parse::<ApproverSource>().is_err());
        assert!(format!("group:{}", "a".repeat(64))
            .parse::<ApproverSource>()
            .is_ok());
    }

    #[test]
    fn json_shapes() {
        let policy = parse(EXAMPLE);
        let json = serde_json::to_value(&policy).unwrap();
        assert_eq!(json["rules"][0]["amount_below"]["value"], "100.00");
        assert_eq!(json["rules"][0]["outcome"], "allow");
        assert_eq!(json["rules"][1]["approvers"][1], "group:finance");
        assert_eq!(json["rules"][1]["approvals"], 2);
        assert!(json["rules"][1].get("description").is_none());
        let back: Policy = serde_json::from_value(json).unwrap();
        assert_eq!(back, policy);
        assert_eq!(back.to_toml(), policy.to_toml());

        let big = dec("15000.00");
        let input = PolicyInput {
            amount: Some((&big, "EUR")),
            ..PolicyInput::new("payments.transfer", "bank-api")
        };
        let decision = policy.evaluate(&input);
        let json = serde_json::to_value(&decision).unwrap();
        assert_eq!(json["rule_id"], "large-payments");
        assert_eq!(json["outcome"], "require");
        assert_eq!(json["approvals"], 2);
        assert_eq!(json["all_groups"], true);
        assert_eq!(json["explanation"], decision.explanation.as_str());
        let back: PolicyDecision = serde_json::from_value(json).unwrap();
        assert_eq!(back, decision);

        let bad: Result<Money, _> = serde_json::from_str(r#"{"value": "1e3", "currency": "EUR"}"#);
        assert!(bad.is_err());
    }
}
