//! What an approver is shown, as data, and its hash.
//!
//! The approval page renders exactly an [`ApprovalView`], which is built only from the stored
//! request (never from anything the browser sends). Its `display_hash` — SHA-256 of its RFC 8785
//! form — is recorded with every decision, so an auditor can later rebuild the view from the
//! stored request and check that the approver was shown what the agent asked for.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::canonical::{canonical_json, sha256_prefixed};

/// Version of the view's shape; part of the hash, so a change of layout changes every hash.
pub const VIEW_VERSION: u32 = 1;

/// Everything an approver sees about one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalView {
    /// [`VIEW_VERSION`].
    pub view_version: u32,
    /// The request id.
    pub request_id: String,
    /// The agent that asks.
    pub agent_id: String,
    /// Its human name.
    pub agent_name: String,
    /// The agent's owner (e-mail).
    pub owner: String,
    /// The request as the agent sent it: action, intent, context.
    pub request: Value,
    /// What the policy hashes and binds to.
    pub action_hash: String,
    /// The rule that asked for approval.
    pub rule_id: String,
    /// Why, in one line.
    pub explanation: String,
    /// Approvals needed.
    pub approvals_required: i64,
    /// When the request expires (RFC 3339).
    pub expires_at: String,
    /// What approving releases besides the grant, in a sentence ("a PostgreSQL login in role
    /// orders_rw on orders-db for 10 minutes"), when the rule names a credential provider.
    /// Left out of the hashed form when absent, so views recorded before it existed keep
    /// their hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub releases: Option<String>,
    /// The terms the approver narrowed their approval to, or the standing approval they give
    /// with it (see `terms`). Set only on the view a decision binds to, never on the page as
    /// first shown, so the hash of a plain decision is the hash of the page; left out of the
    /// hashed form when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<super::terms::Terms>,
    /// The agents the asking agent is registered under, outermost first (its parent last):
    /// the registered side of its delegation, shown next to the chain it claims. Left out of
    /// the hashed form when empty, so the views of agents that are no one's sub-agent (and
    /// every view recorded before sub-agents existed) keep their hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<Ancestor>,
}

/// One registered ancestor of the agent that asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ancestor {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

impl ApprovalView {
    /// `sha256:` of the canonical form of this view.
    pub fn display_hash(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        sha256_prefixed(canonical_json(&value).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view() -> ApprovalView {
        ApprovalView {
            view_version: VIEW_VERSION,
            request_id: "r".into(),
            agent_id: "a".into(),
            agent_name: "invoice-bot".into(),
            owner: "alice@example.com".into(),
            request: json!({"action": {"type": "payments.transfer", "target": "bank-api"}}),
            action_hash: "sha256:00".into(),
            rule_id: "default".into(),
            explanation: "x".into(),
            approvals_required: 1,
            expires_at: "2026-01-01T00:00:00.000Z".into(),
            releases: None,
            terms: None,
            lineage: Vec::new(),
        }
    }

    #[test]
    fn the_hash_changes_with_anything_shown() {
        let base = view().display_hash();
        assert_eq!(base, view().display_hash());
        let mut v = view();
        v.request = json!({"action": {"type": "payments.transfer", "target": "other-bank"}});
        assert_ne!(v.display_hash(), base);
        let mut v = view();
        v.agent_name = "invoice-b0t".into();
        assert_ne!(v.display_hash(), base);
        let mut v = view();
        v.lineage = vec![Ancestor {
            id: "p".into(),
            name: "planner-agent".into(),
        }];
        assert_ne!(v.display_hash(), base);
    }

    #[test]
    fn an_empty_lineage_is_left_out_of_the_hashed_form() {
        // So views of agents without parents hash as they did before `lineage` existed.
        let json = serde_json::to_value(view()).unwrap();
        assert!(json.get("lineage").is_none());
        assert!(json.get("releases").is_none());
    }

    #[test]
    fn narrowed_terms_change_the_hash_and_none_leave_it() {
        use crate::domain::terms::{Narrowing, Terms};
        let base = view().display_hash();
        let mut v = view();
        v.terms = Some(Terms {
            narrow: Some(Narrowing {
                amount_max: None,
                grant_ttl_seconds: Some(30),
            }),
            standing: None,
        });
        let narrowed = v.display_hash();
        assert_ne!(narrowed, base);
        v.terms
            .as_mut()
            .unwrap()
            .narrow
            .as_mut()
            .unwrap()
            .grant_ttl_seconds = Some(31);
        assert_ne!(v.display_hash(), narrowed);
        // The field is absent from the hashed form, not null: older hashes still verify.
        let json = serde_json::to_value(view()).unwrap();
        assert!(json.get("terms").is_none());
    }
}
