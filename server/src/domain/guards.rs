//! Guards against approval fatigue: the settings admins tune so that people keep reading what
//! they approve. A person asked fifty times an hour stops looking; these keep the asking sparse.
//!
//! - **Pending cap**: an agent may have at most this many requests waiting for people; the next
//!   one is refused (`429 rate_limited`, `Retry-After`).
//! - **Prompts per approver per minute**: past this many mails to one person in a minute, further
//!   requests wait in their inbox without a mail.
//! - **Collapsing**: a request identical to one of the same agent's pending requests (same
//!   `action_hash`) is the same request: its id is returned and nobody is asked twice.
//! - **Cooldown after a denial**: once a person denied an action, the same agent asking for the
//!   same action (same `action` object, whatever its intent says) is refused for this long.
//! - **Approve delay**: the approve button (and the server) accept an approval only this long
//!   after the person first opened the request's page.
//!
//! Stored as key/value settings, so a new guard needs no migration.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::canonical::{canonical_json, sha256_prefixed};

/// The guards' settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guards {
    /// Requests one agent may have waiting for people.
    pub max_pending_per_agent: u32,
    /// Mails one approver gets per minute at most.
    pub prompts_per_approver_per_minute: u32,
    /// Seconds a denied action stays refused for the agent that asked (0: off).
    pub deny_cooldown_seconds: u32,
    /// Milliseconds between first opening a request's page and being able to approve (0: off).
    pub approve_delay_ms: u32,
    /// Whether identical pending requests collapse into one.
    pub collapse_identical: bool,
}

/// A setting that is out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardError {
    /// The setting's name.
    pub field: &'static str,
    /// Why, in words.
    pub detail: String,
}

const LIMITS: [(&str, u32, u32); 4] = [
    ("max_pending_per_agent", 1, 100_000),
    ("prompts_per_approver_per_minute", 1, 1_000),
    ("deny_cooldown_seconds", 0, 86_400),
    ("approve_delay_ms", 0, 30_000),
];

impl Guards {
    /// Since when a person's denial holds back this agent's next requests: `Millis::MAX`
    /// (never) when there is no cooldown.
    pub fn denied_since(&self, now: crate::clock::Millis) -> crate::clock::Millis {
        match self.deny_cooldown_seconds {
            0 => crate::clock::Millis::MAX,
            s => now - i64::from(s) * 1000,
        }
    }

    /// The defaults, with the pending cap the server was configured with.
    pub fn defaults(max_pending_per_agent: u32) -> Self {
        Self {
            max_pending_per_agent,
            prompts_per_approver_per_minute: 10,
            deny_cooldown_seconds: 600,
            approve_delay_ms: 1_500,
            collapse_identical: true,
        }
    }

    fn numbers(&self) -> [u32; 4] {
        [
            self.max_pending_per_agent,
            self.prompts_per_approver_per_minute,
            self.deny_cooldown_seconds,
            self.approve_delay_ms,
        ]
    }

    /// Checks every setting is in its range.
    pub fn validate(&self) -> Result<(), GuardError> {
        for ((field, min, max), value) in LIMITS.iter().zip(self.numbers()) {
            if value < *min || value > *max {
                return Err(GuardError {
                    field,
                    detail: format!("{field} must be from {min} to {max}; got {value}"),
                });
            }
        }
        Ok(())
    }

    /// The stored settings over these defaults. A stored value that does not parse (written by
    /// a newer version, say) keeps the default rather than failing every request.
    pub fn with_stored(mut self, stored: &HashMap<String, String>) -> Self {
        let num = |key: &str, default: u32| {
            stored
                .get(key)
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(default)
        };
        self.max_pending_per_agent = num("max_pending_per_agent", self.max_pending_per_agent);
        self.prompts_per_approver_per_minute = num(
            "prompts_per_approver_per_minute",
            self.prompts_per_approver_per_minute,
        );
        self.deny_cooldown_seconds = num("deny_cooldown_seconds", self.deny_cooldown_seconds);
        self.approve_delay_ms = num("approve_delay_ms", self.approve_delay_ms);
        if let Some(v) = stored
            .get("collapse_identical")
            .and_then(|v| v.parse().ok())
        {
            self.collapse_identical = v;
        }
        self
    }

    /// The settings as key/value pairs for storage.
    pub fn to_stored(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = LIMITS
            .iter()
            .zip(self.numbers())
            .map(|((k, _, _), v)| (*k, v.to_string()))
            .collect();
        out.push(("collapse_identical", self.collapse_identical.to_string()));
        out
    }
}

/// What "the same action" means for the cooldown: the `action` object alone (type, target,
/// operation, parameters), canonicalised and hashed. Rewording the intent does not make a denied
/// action new.
pub fn action_key(action: &Value) -> String {
    sha256_prefixed(canonical_json(action).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_settings_override_defaults_and_round_trip() {
        let mine = Guards {
            max_pending_per_agent: 7,
            prompts_per_approver_per_minute: 3,
            deny_cooldown_seconds: 0,
            approve_delay_ms: 250,
            collapse_identical: false,
        };
        let stored: HashMap<String, String> = mine
            .to_stored()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(Guards::defaults(100).with_stored(&stored), mine);
        assert_eq!(
            Guards::defaults(100).with_stored(&HashMap::new()),
            Guards::defaults(100)
        );
    }

    #[test]
    fn unparsable_stored_values_keep_the_default() {
        let stored = HashMap::from([("approve_delay_ms".to_string(), "soon".to_string())]);
        assert_eq!(
            Guards::defaults(5).with_stored(&stored).approve_delay_ms,
            1_500
        );
    }

    #[test]
    fn out_of_range_settings_name_the_field() {
        let mut g = Guards::defaults(100);
        assert!(g.validate().is_ok());
        g.max_pending_per_agent = 0;
        assert_eq!(g.validate().unwrap_err().field, "max_pending_per_agent");
        let mut g = Guards::defaults(100);
        g.approve_delay_ms = 60_000;
        assert_eq!(g.validate().unwrap_err().field, "approve_delay_ms");
    }

    #[test]
    fn the_action_key_ignores_everything_but_the_action() {
        let a = json!({"type": "payments.transfer", "target": "bank-api", "params": {"amount": "5.00", "to": "X"}});
        let reordered = json!({"params": {"to": "X", "amount": "5.00"}, "target": "bank-api", "type": "payments.transfer"});
        let other = json!({"type": "payments.transfer", "target": "bank-api", "params": {"amount": "6.00", "to": "X"}});
        assert_eq!(action_key(&a), action_key(&reordered));
        assert_ne!(action_key(&a), action_key(&other));
    }
}
