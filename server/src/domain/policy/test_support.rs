//! Fixtures shared by the policy's unit tests: the example file, small builders and the
//! proptest strategies that generate valid policies.

use std::str::FromStr;

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;

pub(super) const EXAMPLE: &str = r#"
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

pub(super) const EXAMPLE_NORMALISED: &str = r#"[[rule]]
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

pub(super) fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

pub(super) fn parse(text: &str) -> Policy {
    Policy::from_toml(text).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

pub(super) fn parse_err(text: &str) -> PolicyError {
    match Policy::from_toml(text) {
        Ok(p) => panic!("expected an error, got {p:?}\n---\n{text}"),
        Err(e) => e,
    }
}

pub(super) fn money(value: &str, currency: &str) -> Money {
    Money {
        value: dec(value),
        currency: currency.into(),
    }
}

pub(super) fn rule(id: &str, outcome: RuleOutcome) -> PolicyRule {
    PolicyRule {
        id: id.into(),
        description: None,
        action: None,
        target: None,
        environment: None,
        data_sensitivity: None,
        amount_below: None,
        amount_at_least: None,
        delegation_depth_at_least: None,
        delegation_depth_below: None,
        credential: None,
        credential_ttl_seconds: None,
        standing_max_seconds: None,
        standing_max_uses: None,
        outcome,
    }
}

pub(super) fn allow() -> RuleOutcome {
    RuleOutcome::Allow {
        grant_ttl_seconds: None,
    }
}

pub(super) fn deny(reason: &str) -> RuleOutcome {
    RuleOutcome::Deny {
        reason: reason.into(),
    }
}

pub(super) fn single(rule: PolicyRule) -> Policy {
    let policy = Policy { rules: vec![rule] };
    policy.validate().unwrap();
    policy
}

/// A one-rule file whose body is `body` (keys after the id).
pub(super) fn one_rule(body: &str) -> String {
    format!("[[rule]]\nid = \"r1\"\n{body}\n")
}

#[track_caller]
pub(super) fn assert_rejected(text: &str, key: Option<&str>, reason_contains: &str) {
    let error = parse_err(text);
    assert_eq!(error.key.as_deref(), key, "{error}\n---\n{text}");
    assert!(
        error.reason.contains(reason_contains),
        "reason {:?} lacks {reason_contains:?}\n---\n{text}",
        error.reason
    );
    assert!(!error.to_string().contains('\n'), "{error}");
}

// --- property tests ---------------------------------------------------------------------

pub(super) fn money_strategy(currency: &'static str) -> impl Strategy<Value = Money> {
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
                |(mut approvals, mut approvers, all_groups, mut exclude_owner, request, grant)| {
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
        ("r\\PC{0,20}", any::<String>()).prop_map(|(a, b)| RuleOutcome::Deny { reason: a + &b }),
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
        credential in prop::option::of(("[a-z0-9][a-z0-9_-]{0,20}", prop::option::of(60u32..=3600))),
        standing in prop::option::of((60u32..=604_800, prop::option::of(1u32..=10_000))),
        depth in prop::option::of((1u32..=8, prop::option::of(1u32..=8))),
        depth_below_only in prop::option::of(1u32..=16),
    ) -> PolicyRule {
        // A depth band needs its floor below its ceiling.
        let (delegation_depth_at_least, delegation_depth_below) = match depth {
            Some((floor, extra)) => (Some(floor), extra.map(|e| floor + e)),
            None => (None, depth_below_only),
        };
        // A deny rule releases nothing.
        let credential = credential.filter(|_| !matches!(outcome, RuleOutcome::Deny { .. }));
        // Standing approvals only stand in for one person's approval.
        let standing =
            standing.filter(|_| matches!(outcome, RuleOutcome::Require { approvals: 1, .. }));
        PolicyRule {
            id: id_prefix,
            description,
            action,
            target,
            environment,
            data_sensitivity,
            amount_below,
            amount_at_least,
            delegation_depth_at_least,
            delegation_depth_below,
            credential_ttl_seconds: credential.as_ref().and_then(|(_, ttl)| *ttl),
            credential: credential.map(|(name, _)| name),
            standing_max_seconds: standing.map(|(seconds, _)| seconds),
            standing_max_uses: standing.and_then(|(_, uses)| uses),
            outcome,
        }
    }
}

pub(super) fn policy_strategy() -> impl Strategy<Value = Policy> {
    prop::collection::vec(rule_strategy(), 0..6).prop_map(|mut rules| {
        // Unique ids: a numeric suffix keeps them unique and never equal to "default".
        for (i, rule) in rules.iter_mut().enumerate() {
            rule.id = format!("{}{i}", rule.id);
        }
        Policy { rules }
    })
}
