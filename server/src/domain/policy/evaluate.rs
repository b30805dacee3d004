//! The approval policy: its data model, its TOML file format and its evaluation.
//!
//! This module owns three things:
//!
//! * the model ([`Policy`], [`PolicyRule`], [`RuleOutcome`], [`ApproverSource`], [`Money`]) and
//!   every rule about what makes a policy valid ([`Policy::validate`]);
//! * the policy file format: parsing ([`Policy::from_toml`]), the normalised form that is
//!   written back ([`Policy::to_toml`]) and the content hash of that form ([`Policy::hash`]);
//! * evaluation of a request against the policy ([`Policy::evaluate`],
//!   [`Policy::evaluate_explained`]): ordered rules, first match wins, with a built-in default
//!   when nothing matches, and a one-line human explanation of every decision.
//!
//! It must never do I/O of any kind: no files, no database, no HTTP, no clock, no environment
//! variables, no logging. Callers read the policy text from wherever it lives and hand it in;
//! evaluation is a pure function of the policy and the request, which is what makes decisions
//! reproducible from the stored policy hash.

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::ops::RangeInclusive;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

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

/// Allowed values of `approvals`.
pub const APPROVALS_RANGE: RangeInclusive<u32> = 1..=10;

/// The values `data_sensitivity` may list, from least to most sensitive.
pub const DATA_SENSITIVITY_LEVELS: [&str; 4] = ["public", "internal", "confidential", "restricted"];

/// Agent-supplied text (action type, target, ...) is clipped to this many characters when it
/// is quoted in an explanation, so a hostile or buggy agent cannot blow up what approvers read.
const AGENT_TEXT_MAX_CHARS: usize = 200;

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

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
    /// Glob on the action type (see [`glob_match`]); `None` matches any action.
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
    fn new(
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
    fn at(rule: RuleRef<'_>, key: &str, reason: impl Into<String>) -> Self {
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
struct RuleRef<'a> {
    id: Option<&'a str>,
    index: usize,
}

// ---------------------------------------------------------------------------------------------
// Glob matching
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

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
}

impl PolicyRule {
    /// Whether every condition of this rule holds for `input`.
    pub fn matches(&self, input: &PolicyInput<'_>) -> bool {
        self.first_mismatch(input).is_none()
    }

    fn has_amount_condition(&self) -> bool {
        self.amount_below.is_some() || self.amount_at_least.is_some()
    }

    fn has_any_condition(&self) -> bool {
        self.action.is_some()
            || self.target.is_some()
            || self.environment.is_some()
            || self.data_sensitivity.is_some()
            || self.has_amount_condition()
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
                && !self.has_amount_condition();
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

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

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
fn is_valid_group_name(name: &str) -> bool {
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

fn range_reason(range: &RangeInclusive<u32>) -> String {
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
fn validate_rule(rule: &PolicyRule, index: usize) -> Result<(), PolicyError> {
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

fn duplicate_id(id: &str, index: usize) -> PolicyError {
    PolicyError::new(
        Some(id),
        Some(index),
        Some("id"),
        "duplicate id; rule ids must be unique",
    )
}

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
    /// amount_at_least, outcome, then the outcome's keys); require rules always spell out
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
    use proptest::prelude::*;

    const EXAMPLE: &str = r#"
[[rule]]
id = "small-payments"                 # unique, shown to agents and approvers
description = "Small payments run without a human"
action = "payments.*"                  # glob on action.type; omitted = any
target = "bank-api"                    # exact or glob on action.target; omitted = any
environment = ["production"]           # any of; omitted = any
data_sensitivity = ["public", "internal"]   # any of; omitted = any
amount_below = { value = "100.00", currency = "EUR" }     # strictly below
outcome = "allow"
grant_ttl_seconds = 60

[[rule]]
id = "large-payments"
action = "payments.*"
amount_at_least = { value = "10000.00", currency = "EUR" }  # at or above
outcome = "require"
approvals = 2                          # distinct people, >= 1
approvers = ["owner", "group:finance"] # owner | group:<name> | admins
all_groups = true                      # at least one approval from each listed source
exclude_owner = false                  # (ours) four eyes
request_ttl_seconds = 900

[[rule]]
id = "no-production-drops"
action = "db.drop_*"
environment = ["production"]
outcome = "deny"
reason = "Agents never drop production tables; open a change ticket instead."
"#;

    const EXAMPLE_NORMALISED: &str = r#"[[rule]]
id = "small-payments"
description = "Small payments run without a human"
action = "payments.*"
target = "bank-api"
environment = ["production"]
data_sensitivity = ["public", "internal"]
amount_below = { value = "100.00", currency = "EUR" }
outcome = "allow"
grant_ttl_seconds = 60

[[rule]]
id = "large-payments"
action = "payments.*"
amount_at_least = { value = "10000.00", currency = "EUR" }
outcome = "require"
approvals = 2
approvers = ["owner", "group:finance"]
all_groups = true
exclude_owner = false
request_ttl_seconds = 900

[[rule]]
id = "no-production-drops"
action = "db.drop_*"
environment = ["production"]
outcome = "deny"
reason = "Agents never drop production tables; open a change ticket instead."
"#;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn parse(text: &str) -> Policy {
        Policy::from_toml(text).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
    }

    fn parse_err(text: &str) -> PolicyError {
        match Policy::from_toml(text) {
            Ok(p) => panic!("expected an error, got {p:?}\n---\n{text}"),
            Err(e) => e,
        }
    }

    fn money(value: &str, currency: &str) -> Money {
        Money {
            value: dec(value),
            currency: currency.into(),
        }
    }

    fn rule(id: &str, outcome: RuleOutcome) -> PolicyRule {
        PolicyRule {
            id: id.into(),
            description: None,
            action: None,
            target: None,
            environment: None,
            data_sensitivity: None,
            amount_below: None,
            amount_at_least: None,
            outcome,
        }
    }

    fn allow() -> RuleOutcome {
        RuleOutcome::Allow {
            grant_ttl_seconds: None,
        }
    }

    fn deny(reason: &str) -> RuleOutcome {
        RuleOutcome::Deny {
            reason: reason.into(),
        }
    }

    /// Decides a payment of `value currency` against `policy`; returns the winning rule id.
    fn pay(policy: &Policy, value: &str, currency: &str) -> String {
        let value = dec(value);
        let input = PolicyInput {
            amount: Some((&value, currency)),
            ..PolicyInput::new("payments.transfer", "bank-api")
        };
        policy.evaluate(&input).rule_id
    }

    fn single(rule: PolicyRule) -> Policy {
        let policy = Policy { rules: vec![rule] };
        policy.validate().unwrap();
        policy
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

    // --- globs ------------------------------------------------------------------------------

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

    // --- validation -------------------------------------------------------------------------

    /// A one-rule file whose body is `body` (keys after the id).
    fn one_rule(body: &str) -> String {
        format!("[[rule]]\nid = \"r1\"\n{body}\n")
    }

    #[track_caller]
    fn assert_rejected(text: &str, key: Option<&str>, reason_contains: &str) {
        let error = parse_err(text);
        assert_eq!(error.key.as_deref(), key, "{error}\n---\n{text}");
        assert!(
            error.reason.contains(reason_contains),
            "reason {:?} lacks {reason_contains:?}\n---\n{text}",
            error.reason
        );
        assert!(!error.to_string().contains('\n'), "{error}");
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

    // --- property tests ---------------------------------------------------------------------

    fn money_strategy(currency: &'static str) -> impl Strategy<Value = Money> {
        (0u64..1_000_000_000_000_000, 0u32..=6, any::<u64>()).prop_map(
            move |(whole, scale, frac_seed)| {
                let unit = 10u64.pow(scale);
                let mantissa = i128::from(whole) * i128::from(unit) + i128::from(frac_seed % unit);
                Money {
                    value: Decimal::from_i128_with_scale(mantissa, scale),
                    currency: currency.into(),
                }
            },
        )
    }

    fn amounts_strategy() -> impl Strategy<Value = (Option<Money>, Option<Money>)> {
        let currency = prop::sample::select(vec!["EUR", "USD", "JPY"]);
        currency.prop_flat_map(|c| {
            prop_oneof![
                Just((None, None)),
                money_strategy(c).prop_map(|m| (Some(m), None)),
                money_strategy(c).prop_map(|m| (None, Some(m))),
                (money_strategy(c), money_strategy(c))
                    .prop_filter("a band needs floor < ceiling", |(a, b)| a.value != b.value)
                    // (at_least, below): the smaller value is the floor.
                    .prop_map(|(a, b)| if a.value < b.value {
                        (Some(a), Some(b))
                    } else {
                        (Some(b), Some(a))
                    }),
            ]
        })
    }

    fn outcome_strategy() -> impl Strategy<Value = RuleOutcome> {
        let grant = prop::option::of(1u32..=300);
        let sources = prop::sample::subsequence(
            vec![
                ApproverSource::Owner,
                ApproverSource::Admins,
                ApproverSource::Group("finance".into()),
                ApproverSource::Group("ops-1".into()),
                ApproverSource::Group("a_b".into()),
            ],
            1..=5,
        )
        .prop_shuffle();
        prop_oneof![
            grant
                .clone()
                .prop_map(|grant_ttl_seconds| RuleOutcome::Allow { grant_ttl_seconds }),
            (
                1u32..=10,
                sources,
                any::<bool>(),
                any::<bool>(),
                prop::option::of(30u32..=86_400),
                grant,
            )
                .prop_map(
                    |(
                        mut approvals,
                        mut approvers,
                        all_groups,
                        mut exclude_owner,
                        request,
                        grant,
                    )| {
                        // Repair the combinations validate refuses rather than filtering them.
                        let only_owner = approvers == [ApproverSource::Owner];
                        if only_owner {
                            exclude_owner = false;
                            approvals = 1;
                        }
                        if exclude_owner && all_groups {
                            approvers.retain(|s| *s != ApproverSource::Owner);
                        }
                        if all_groups {
                            approvals = approvals.max(approvers.len() as u32);
                        }
                        RuleOutcome::Require {
                            approvals,
                            approvers,
                            all_groups,
                            exclude_owner,
                            request_ttl_seconds: request,
                            grant_ttl_seconds: grant,
                        }
                    }
                ),
            ("r\\PC{0,20}", any::<String>())
                .prop_map(|(a, b)| RuleOutcome::Deny { reason: a + &b }),
        ]
    }

    prop_compose! {
        fn rule_strategy()(
            id_prefix in "[a-z0-9][a-z0-9_.-]{0,20}",
            description in prop::option::of(any::<String>().prop_map(|s| format!("d{s}"))),
            action in prop::option::of("[a-z.*?_\"\\\\]{1,12}"),
            target in prop::option::of(any::<String>().prop_map(|s| format!("t{s}"))),
            environment in prop::option::of(
                prop::collection::btree_set("[a-z\u{e9} \"-]{1,8}", 1..4)
                    .prop_map(|s| s.into_iter().collect::<Vec<_>>())
                    .prop_shuffle(),
            ),
            data_sensitivity in prop::option::of(
                prop::sample::subsequence(DATA_SENSITIVITY_LEVELS.to_vec(), 1..=4)
                    .prop_map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>())
                    .prop_shuffle(),
            ),
            (amount_at_least, amount_below) in amounts_strategy(),
            outcome in outcome_strategy(),
        ) -> PolicyRule {
            PolicyRule {
                id: id_prefix,
                description,
                action,
                target,
                environment,
                data_sensitivity,
                amount_below,
                amount_at_least,
                outcome,
            }
        }
    }

    fn policy_strategy() -> impl Strategy<Value = Policy> {
        prop::collection::vec(rule_strategy(), 0..6).prop_map(|mut rules| {
            // Unique ids: a numeric suffix keeps them unique and never equal to "default".
            for (i, rule) in rules.iter_mut().enumerate() {
                rule.id = format!("{}{i}", rule.id);
            }
            Policy { rules }
        })
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

        #[test]
        fn prop_glob_agrees_with_reference(
            pattern in "[ab\u{e9}.*?]{0,8}",
            text in "[ab\u{e9}.]{0,10}",
        ) {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(glob_match(&pattern, &text), reference_glob(&p, &t));
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
