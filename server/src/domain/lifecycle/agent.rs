//! An agent's status: `active` (it may ask and redeem) or `suspended` (the kill switch).
//!
//! Both moves also advance the agent's epoch (see [`crate::store::agents::set_status`]), which
//! is what makes a suspension final the moment it commits.

use super::{find, stored_as_text, Deadline, IllegalTransition, Transition};

/// Whether an agent may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum AgentStatus {
    /// It may ask for approval and redeem its grants.
    Active,
    /// Refused everywhere; its pending requests were cancelled and its grants revoked.
    Suspended,
}

stored_as_text!(AgentStatus, "agent status");

/// Every transition an agent can make.
pub const TRANSITIONS: &[Transition<AgentStatus>] = &[
    Transition {
        from: AgentStatus::Active,
        to: AgentStatus::Suspended,
        deadline: Deadline::Any,
        why: "its owner or an admin pulled the kill switch",
    },
    Transition {
        from: AgentStatus::Suspended,
        to: AgentStatus::Active,
        deadline: Deadline::Any,
        why: "its owner or an admin resumed it",
    },
];

impl AgentStatus {
    /// The transition from `self` to `to`, or why there is none.
    pub fn to(self, to: Self) -> Result<&'static Transition<Self>, IllegalTransition> {
        find("agent", TRANSITIONS, self, to)
    }
}
