//! What an approver may add to "yes": narrower terms for the request in front of them, and a
//! bounded standing approval for later requests of the same agent.
//!
//! Both only ever take away.
//!
//! - **Narrowing** lowers the amount the grant covers or shortens the grant's life. It is
//!   checked against what the request asked and can never go above it. The grant carries the
//!   narrowed terms (`authorization_details[0].amount_max`, a shorter `exp`) and redemption
//!   enforces them. When a rule needs several people, each may narrow, and the grant gets the
//!   tightest of all their terms.
//! - **A standing approval** is a [`Pattern`]:
//!   - the same action type, target and operation;
//!   - the parameters the approver pins, to this request's values;
//!   - an amount cap in this request's currency;
//!   - a number of uses and an end.
//!
//!   It is bounded by the rule (`standing_max_seconds`, `standing_max_uses`, and the rule's own
//!   amount band), and only a rule that one person approves allows one. A standing approval
//!   stands for one person's approval, so it can never stand in for a quorum.
//!
//! The approver sees and signs their terms. They go into the challenge record and into the
//! hashed view (`display::ApprovalView::terms`), so the passkey ceremony binds them like
//! everything else on the page.
//!
//! Errors name the field as the approver's form sends it (`narrow.amount_max`,
//! `standing.uses`, …).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::intake::{Amount, FieldError, NewRequest};
use super::policy::{Money, StandingLimits};

/// Terms as the approver's form sends them: amounts are decimal strings in the request's own
/// currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermsInput {
    /// Narrower terms for this request.
    #[serde(default)]
    pub narrow: Option<NarrowInput>,
    /// A standing approval for later requests.
    #[serde(default)]
    pub standing: Option<StandingInput>,
}

/// Narrowing as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NarrowInput {
    /// The most the grant covers, in the request's currency.
    #[serde(default)]
    pub amount_max: Option<String>,
    /// The grant's lifetime, in seconds.
    #[serde(default)]
    pub grant_ttl_seconds: Option<u32>,
}

/// A standing approval as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandingInput {
    /// Names of `action.params` members pinned to this request's values.
    #[serde(default)]
    pub pin: Vec<String>,
    /// The most any one later request may move, in this request's currency. Required when the
    /// request names an amount; refused when it does not.
    #[serde(default)]
    pub amount_max: Option<String>,
    /// How many later requests it may approve.
    pub uses: u32,
    /// How long it stands, in seconds from its creation.
    pub valid_for_seconds: u32,
}

/// Checked narrowing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Narrowing {
    /// The most the grant covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_max: Option<Amount>,
    /// The grant's lifetime, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_ttl_seconds: Option<u32>,
}

/// Which later requests a standing approval covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pattern {
    /// `action.type`, exactly.
    pub action_type: String,
    /// `action.target`, exactly.
    pub target: String,
    /// `action.operation`, exactly (absent only matches absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Pinned members of `action.params`, each equal to this value.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// The most one covered request may move. Absent: only requests that name no amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_max: Option<Amount>,
}

/// A checked standing approval, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    /// What it covers.
    pub pattern: Pattern,
    /// How many uses.
    pub uses: u32,
    /// How long it stands, in seconds.
    pub valid_for_seconds: u32,
}

/// Checked terms: what the ceremony binds and the view's hash covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// Narrower terms for this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub narrow: Option<Narrowing>,
    /// A standing approval for later requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing: Option<Standing>,
}

impl Terms {
    /// True when the approver added nothing.
    pub fn is_empty(&self) -> bool {
        self.narrow.is_none() && self.standing.is_none()
    }
}

/// What the rule that decided a request allows an approver.
#[derive(Debug, Clone)]
pub struct RuleBounds {
    /// The grant's lifetime the rule gives.
    pub grant_ttl_seconds: u32,
    /// Whether approving releases a credential (which cannot be held to an amount).
    pub releases_credential: bool,
    /// The standing approvals the rule allows, if any.
    pub standing: Option<StandingLimits>,
    /// The rule's `amount_below`: a standing cap must stay under it.
    pub amount_below: Option<Money>,
}

/// The request's amount, if it names one.
fn amount_of(request: &NewRequest) -> Option<&Amount> {
    request.context.amount.as_ref()
}

/// Parses `value` as an amount in `currency`, naming `field` when it is not one.
fn amount_at(field: &str, value: &str, currency: &str) -> Result<Amount, FieldError> {
    let amount = Amount::parse_at(value.trim(), currency, field).map_err(|e| FieldError {
        // The form sends the value alone, so the error names the field it typed in.
        field: Some(field.to_string()),
        detail: e.detail.replace(&format!("{field}.value"), field),
    })?;
    if amount.value <= Decimal::ZERO {
        return Err(FieldError::new(
            field,
            format!("{field} must be above zero"),
        ));
    }
    Ok(amount)
}

impl TermsInput {
    /// Checks the terms against the request they are given on and its rule's bounds.
    pub fn check(&self, request: &NewRequest, rule: &RuleBounds) -> Result<Terms, FieldError> {
        let narrow = match &self.narrow {
            Some(n) => Some(n.check(request, rule)?),
            None => None,
        };
        let standing = match &self.standing {
            Some(s) => Some(s.check(request, rule)?),
            None => None,
        };
        Ok(Terms {
            narrow: narrow.filter(|n| n.amount_max.is_some() || n.grant_ttl_seconds.is_some()),
            standing,
        })
    }
}

impl NarrowInput {
    fn check(&self, request: &NewRequest, rule: &RuleBounds) -> Result<Narrowing, FieldError> {
        let amount_max = match &self.amount_max {
            None => None,
            Some(text) => {
                const FIELD: &str = "narrow.amount_max";
                let Some(asked) = amount_of(request) else {
                    return Err(FieldError::new(
                        FIELD,
                        "this request names no amount to cap",
                    ));
                };
                if rule.releases_credential {
                    return Err(FieldError::new(
                        FIELD,
                        "approving releases a credential, which cannot be held to an amount",
                    ));
                }
                let cap = amount_at(FIELD, text, &asked.currency)?;
                if cap.value > asked.value {
                    return Err(FieldError::new(
                        FIELD,
                        format!(
                            "narrowing can only lower the amount: the request asks for {} {}",
                            asked.value_text, asked.currency
                        ),
                    ));
                }
                Some(cap)
            }
        };
        if let Some(ttl) = self.grant_ttl_seconds {
            if ttl == 0 || ttl > rule.grant_ttl_seconds {
                return Err(FieldError::new(
                    "narrow.grant_ttl_seconds",
                    format!(
                        "narrowing can only shorten the grant: between 1 and {} seconds",
                        rule.grant_ttl_seconds
                    ),
                ));
            }
        }
        Ok(Narrowing {
            amount_max,
            grant_ttl_seconds: self.grant_ttl_seconds,
        })
    }
}

impl StandingInput {
    fn check(&self, request: &NewRequest, rule: &RuleBounds) -> Result<Standing, FieldError> {
        let Some(limits) = rule.standing else {
            return Err(FieldError::new(
                "standing",
                "the rule that decided this request does not allow standing approvals",
            ));
        };
        if self.valid_for_seconds < 60 || self.valid_for_seconds > limits.max_seconds {
            return Err(FieldError::new(
                "standing.valid_for_seconds",
                format!(
                    "a standing approval of this rule lasts between 60 and {} seconds",
                    limits.max_seconds
                ),
            ));
        }
        if self.uses == 0 || self.uses > limits.max_uses {
            return Err(FieldError::new(
                "standing.uses",
                format!(
                    "a standing approval of this rule allows between 1 and {} uses",
                    limits.max_uses
                ),
            ));
        }
        let params = request.action.params.clone().unwrap_or_default();
        let mut pinned = Map::new();
        for (i, name) in self.pin.iter().enumerate() {
            let field = format!("standing.pin[{i}]");
            let Some(value) = params.get(name) else {
                return Err(FieldError::new(
                    field,
                    format!("the request has no parameter {name:?} to pin"),
                ));
            };
            if pinned.insert(name.clone(), value.clone()).is_some() {
                return Err(FieldError::new(field, format!("{name:?} is pinned twice")));
            }
        }
        const FIELD: &str = "standing.amount_max";
        let amount_max = match (amount_of(request), &self.amount_max) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(FieldError::new(
                    FIELD,
                    "this request names no amount, so the standing approval covers only requests that name none",
                ))
            }
            (Some(_), None) => {
                return Err(FieldError::new(
                    FIELD,
                    "required: this request moves an amount; say up to how much each later request may move",
                ))
            }
            (Some(asked), Some(text)) => {
                let cap = amount_at(FIELD, text, &asked.currency)?;
                if let Some(below) = &rule.amount_below {
                    if below.currency == cap.currency && cap.value >= below.value {
                        return Err(FieldError::new(
                            FIELD,
                            format!(
                                "the rule covers amounts below {} {}; the cap must be below that",
                                below.value, below.currency
                            ),
                        ));
                    }
                }
                Some(cap)
            }
        };
        Ok(Standing {
            pattern: Pattern {
                action_type: request.action.r#type.clone(),
                target: request.action.target.clone(),
                operation: request.action.operation.clone(),
                params: pinned,
                amount_max,
            },
            uses: self.uses,
            valid_for_seconds: self.valid_for_seconds,
        })
    }
}

impl Pattern {
    /// Whether `request` falls inside this pattern: never wider, in any respect.
    pub fn covers(&self, request: &NewRequest) -> bool {
        let action = &request.action;
        if action.r#type != self.action_type
            || action.target != self.target
            || action.operation != self.operation
        {
            return false;
        }
        let params = action.params.as_ref();
        let pins_hold = self
            .params
            .iter()
            .all(|(name, value)| params.and_then(|p| p.get(name)) == Some(value));
        if !pins_hold {
            return false;
        }
        match (&self.amount_max, amount_of(request)) {
            (None, None) => true,
            (Some(cap), Some(asked)) => cap.currency == asked.currency && asked.value <= cap.value,
            _ => false,
        }
    }

    /// In words, for owners' lists and the audit timeline.
    pub fn describe(&self) -> String {
        let mut out = format!("{} on {}", self.action_type, self.target);
        if let Some(op) = &self.operation {
            out.push_str(&format!(" ({op})"));
        }
        if let Some(cap) = &self.amount_max {
            out.push_str(&format!(", up to {} {} each", cap.value_text, cap.currency));
        }
        if !self.params.is_empty() {
            let pins: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| format!("{k} = {}", compact(v)))
                .collect();
            out.push_str(&format!(", with {}", pins.join(", ")));
        }
        out
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

impl Narrowing {
    /// The tightest of several approvers' terms: the lowest cap and the shortest life. Caps are
    /// all in the request's currency (each was checked against it).
    pub fn tightest<'a>(all: impl IntoIterator<Item = &'a Narrowing>) -> Option<Narrowing> {
        let mut out: Option<Narrowing> = None;
        for n in all {
            let acc = out.get_or_insert_with(Narrowing::default);
            if let Some(cap) = &n.amount_max {
                if acc.amount_max.as_ref().is_none_or(|a| cap.value < a.value) {
                    acc.amount_max = Some(cap.clone());
                }
            }
            if let Some(ttl) = n.grant_ttl_seconds {
                acc.grant_ttl_seconds = Some(acc.grant_ttl_seconds.map_or(ttl, |t| t.min(ttl)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> NewRequest {
        crate::domain::intake::parse_new_request(
            body.to_string().as_bytes(),
            &crate::domain::intake::Limits::default(),
        )
        .unwrap()
    }

    fn payment(amount: &str, to: &str) -> NewRequest {
        request(json!({
            "action": {"type": "payments.transfer", "target": "bank-api",
                       "operation": "POST /v2/transfers", "params": {"to": to, "memo": "x"}},
            "context": {"amount": {"value": amount, "currency": "EUR"}}
        }))
    }

    fn bounds(standing: Option<StandingLimits>) -> RuleBounds {
        RuleBounds {
            grant_ttl_seconds: 60,
            releases_credential: false,
            standing,
            amount_below: None,
        }
    }

    const LIMITS: StandingLimits = StandingLimits {
        max_seconds: 3600,
        max_uses: 10,
    };

    fn narrow(amount: Option<&str>, ttl: Option<u32>) -> TermsInput {
        TermsInput {
            narrow: Some(NarrowInput {
                amount_max: amount.map(str::to_string),
                grant_ttl_seconds: ttl,
            }),
            standing: None,
        }
    }

    fn field(e: FieldError) -> String {
        e.field.unwrap_or_default()
    }

    #[test]
    fn narrowing_lowers_and_never_widens() {
        let req = payment("5000.00", "DE89");
        let t = narrow(Some("3000"), Some(30))
            .check(&req, &bounds(None))
            .unwrap();
        let n = t.narrow.unwrap();
        assert_eq!(n.amount_max.unwrap().value_text, "3000");
        assert_eq!(n.grant_ttl_seconds, Some(30));
        // Equal is allowed (it takes nothing away, and widens nothing).
        assert!(narrow(Some("5000.00"), Some(60))
            .check(&req, &bounds(None))
            .is_ok());
        let wider = narrow(Some("5000.01"), None).check(&req, &bounds(None));
        assert_eq!(field(wider.unwrap_err()), "narrow.amount_max");
        let longer = narrow(None, Some(61)).check(&req, &bounds(None));
        assert_eq!(field(longer.unwrap_err()), "narrow.grant_ttl_seconds");
        for bad in ["0", "-1", "1e3", "abc", ""] {
            let e = narrow(Some(bad), None)
                .check(&req, &bounds(None))
                .unwrap_err();
            assert_eq!(field(e), "narrow.amount_max", "{bad}");
        }
        assert!(narrow(None, Some(0)).check(&req, &bounds(None)).is_err());
        // Nothing typed is no narrowing at all.
        assert!(narrow(None, None)
            .check(&req, &bounds(None))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn an_amount_cap_needs_an_amount_and_no_credential() {
        let no_amount = request(json!({"action": {"type": "db.read", "target": "orders"}}));
        let e = narrow(Some("10"), None)
            .check(&no_amount, &bounds(None))
            .unwrap_err();
        assert!(e.detail.contains("no amount"), "{}", e.detail);
        let credential = RuleBounds {
            releases_credential: true,
            ..bounds(None)
        };
        let e = narrow(Some("10"), None)
            .check(&payment("50", "x"), &credential)
            .unwrap_err();
        assert!(e.detail.contains("credential"), "{}", e.detail);
    }

    fn standing(pin: &[&str], amount: Option<&str>, uses: u32, secs: u32) -> TermsInput {
        TermsInput {
            narrow: None,
            standing: Some(StandingInput {
                pin: pin.iter().map(|s| s.to_string()).collect(),
                amount_max: amount.map(str::to_string),
                uses,
                valid_for_seconds: secs,
            }),
        }
    }

    #[test]
    fn standing_terms_stay_inside_the_rule() {
        let req = payment("50.00", "DE89");
        let ok = standing(&["to"], Some("100"), 5, 600)
            .check(&req, &bounds(Some(LIMITS)))
            .unwrap();
        let s = ok.standing.unwrap();
        assert_eq!(
            s.pattern.params,
            json!({"to": "DE89"}).as_object().cloned().unwrap()
        );
        assert_eq!(s.pattern.operation.as_deref(), Some("POST /v2/transfers"));
        let cases = [
            (standing(&["to"], Some("100"), 5, 600), None, "standing"),
            (
                standing(&["to"], Some("100"), 11, 600),
                Some(LIMITS),
                "standing.uses",
            ),
            (
                standing(&["to"], Some("100"), 0, 600),
                Some(LIMITS),
                "standing.uses",
            ),
            (
                standing(&["to"], Some("100"), 5, 3601),
                Some(LIMITS),
                "standing.valid_for_seconds",
            ),
            (
                standing(&["to"], Some("100"), 5, 59),
                Some(LIMITS),
                "standing.valid_for_seconds",
            ),
            (
                standing(&["iban"], Some("100"), 5, 600),
                Some(LIMITS),
                "standing.pin[0]",
            ),
            (
                standing(&["to", "to"], Some("100"), 5, 600),
                Some(LIMITS),
                "standing.pin[1]",
            ),
            (
                standing(&["to"], None, 5, 600),
                Some(LIMITS),
                "standing.amount_max",
            ),
            (
                standing(&["to"], Some("0"), 5, 600),
                Some(LIMITS),
                "standing.amount_max",
            ),
        ];
        for (input, limits, want) in cases {
            let e = input.check(&req, &bounds(limits)).unwrap_err();
            assert_eq!(field(e), want);
        }
        let below = Money {
            value: Decimal::from(100),
            currency: "EUR".into(),
        };
        let rule = RuleBounds {
            amount_below: Some(below),
            ..bounds(Some(LIMITS))
        };
        let e = standing(&[], Some("100"), 5, 600)
            .check(&req, &rule)
            .unwrap_err();
        assert_eq!(field(e), "standing.amount_max");
        assert!(standing(&[], Some("99.99"), 5, 600)
            .check(&req, &rule)
            .is_ok());
    }

    #[test]
    fn a_pattern_covers_only_what_it_names() {
        let origin = payment("50.00", "DE89");
        let pattern = standing(&["to"], Some("100"), 5, 600)
            .check(&origin, &bounds(Some(LIMITS)))
            .unwrap()
            .standing
            .unwrap()
            .pattern;
        assert!(pattern.covers(&origin));
        assert!(pattern.covers(&payment("100", "DE89")));
        assert!(pattern.covers(&payment("0.01", "DE89")));
        assert!(!pattern.covers(&payment("100.01", "DE89")), "over the cap");
        assert!(
            !pattern.covers(&payment("10", "FR76")),
            "another pinned value"
        );
        let other_currency = request(json!({
            "action": {"type": "payments.transfer", "target": "bank-api",
                       "operation": "POST /v2/transfers", "params": {"to": "DE89"}},
            "context": {"amount": {"value": "10", "currency": "USD"}}
        }));
        assert!(!pattern.covers(&other_currency));
        let no_amount = request(json!({
            "action": {"type": "payments.transfer", "target": "bank-api",
                       "operation": "POST /v2/transfers", "params": {"to": "DE89"}}
        }));
        assert!(!pattern.covers(&no_amount), "an amount cap needs an amount");
        let other_target = request(json!({
            "action": {"type": "payments.transfer", "target": "other-bank",
                       "operation": "POST /v2/transfers", "params": {"to": "DE89"}},
            "context": {"amount": {"value": "10", "currency": "EUR"}}
        }));
        assert!(!pattern.covers(&other_target));
        let other_operation = request(json!({
            "action": {"type": "payments.transfer", "target": "bank-api",
                       "operation": "DELETE /v2/transfers", "params": {"to": "DE89"}},
            "context": {"amount": {"value": "10", "currency": "EUR"}}
        }));
        assert!(!pattern.covers(&other_operation));
        assert_eq!(
            pattern.describe(),
            "payments.transfer on bank-api (POST /v2/transfers), up to 100 EUR each, with to = \"DE89\""
        );
    }

    #[test]
    fn the_tightest_terms_win() {
        let a = Narrowing {
            amount_max: Some(Amount::parse("300", "EUR").unwrap()),
            grant_ttl_seconds: None,
        };
        let b = Narrowing {
            amount_max: Some(Amount::parse("200.5", "EUR").unwrap()),
            grant_ttl_seconds: Some(20),
        };
        let c = Narrowing {
            amount_max: None,
            grant_ttl_seconds: Some(40),
        };
        let t = Narrowing::tightest([&a, &b, &c]).unwrap();
        assert_eq!(t.amount_max.unwrap().value_text, "200.5");
        assert_eq!(t.grant_ttl_seconds, Some(20));
        assert_eq!(Narrowing::tightest([]), None);
    }
}
