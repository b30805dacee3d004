//! Risk highlights: what an approver in a hurry must not miss. Pure functions of the stored
//! request (and one fact from its history), so the inbox and the request page agree.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

/// Amounts from this value up (in any currency) are called out as large.
pub const LARGE_AMOUNT: i64 = 10_000;

/// How serious a highlight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Changes what is at stake: production, sensitive data, money.
    High,
    /// Worth a second look.
    Notice,
}

/// One highlight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Risk {
    /// How serious.
    pub level: Level,
    /// In plain words.
    pub text: String,
}

fn high(text: impl Into<String>) -> Risk {
    Risk {
        level: Level::High,
        text: text.into(),
    }
}

/// The highlights for a request body (`{action, intent, context}`), most serious first.
/// `first_of_its_kind` says the agent never asked for this action type before.
pub fn assess(body: &Value, first_of_its_kind: bool) -> Vec<Risk> {
    let mut risks = Vec::new();
    let context = body.get("context").unwrap_or(&Value::Null);
    let text = |key: &str| {
        context
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_lowercase)
    };
    if let Some(env) = text("environment") {
        if env == "production" || env == "prod" || env.starts_with("prod-") {
            risks.push(high("Production environment"));
        }
    }
    match text("data_sensitivity").as_deref() {
        Some("restricted") => risks.push(high("Restricted data")),
        Some("confidential") => risks.push(high("Confidential data")),
        _ => {}
    }
    if let Some(amount) = context.get("amount") {
        let value = amount.get("value").and_then(|v| match v {
            Value::String(s) => Decimal::from_str(s).ok(),
            Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
            _ => None,
        });
        let currency = amount.get("currency").and_then(Value::as_str).unwrap_or("");
        if let Some(v) = value {
            if v.abs() >= Decimal::from(LARGE_AMOUNT) {
                risks.push(high(
                    format!("Large amount: {v} {currency}")
                        .trim_end()
                        .to_string(),
                ));
            }
        }
    }
    if first_of_its_kind {
        let kind = body
            .pointer("/action/type")
            .and_then(Value::as_str)
            .unwrap_or("this action");
        risks.push(Risk {
            level: Level::Notice,
            text: format!("First time this agent asks to {kind}"),
        });
    }
    if context
        .get("delegation")
        .and_then(Value::as_array)
        .is_some_and(|d| !d.is_empty())
    {
        risks.push(Risk {
            level: Level::Notice,
            text: "Acting on behalf of others (see the delegation chain)".into(),
        });
    }
    risks
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts(r: &[Risk]) -> Vec<&str> {
        r.iter().map(|r| r.text.as_str()).collect()
    }

    #[test]
    fn production_sensitive_data_and_large_amounts_are_high() {
        let body = json!({"action": {"type": "payments.transfer"}, "context": {
            "environment": "Production", "data_sensitivity": "restricted",
            "amount": {"value": "25000.00", "currency": "EUR"}}});
        let r = assess(&body, false);
        assert_eq!(
            texts(&r),
            [
                "Production environment",
                "Restricted data",
                "Large amount: 25000.00 EUR"
            ]
        );
        assert!(r.iter().all(|r| r.level == Level::High));
    }

    #[test]
    fn the_large_amount_boundary_is_inclusive() {
        let at = json!({"context": {"amount": {"value": "10000", "currency": "USD"}}});
        let below = json!({"context": {"amount": {"value": "9999.99", "currency": "USD"}}});
        assert_eq!(assess(&at, false).len(), 1);
        assert!(assess(&below, false).is_empty());
    }

    #[test]
    fn a_first_request_and_delegation_are_notices() {
        let body = json!({"action": {"type": "db.drop"}, "context": {
            "environment": "staging", "data_sensitivity": "internal",
            "delegation": [{"actor": "planner"}]}});
        let r = assess(&body, true);
        assert_eq!(
            texts(&r),
            [
                "First time this agent asks to db.drop",
                "Acting on behalf of others (see the delegation chain)"
            ]
        );
        assert!(r.iter().all(|r| r.level == Level::Notice));
    }

    #[test]
    fn a_plain_request_has_no_highlights() {
        assert!(assess(&json!({"action": {"type": "x"}}), false).is_empty());
    }
}
