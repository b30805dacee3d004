//! A person's role and whether their account is active.

use super::{find, stored_as_text, Deadline, IllegalTransition, Transition};

/// What a person may do beyond deciding on their own agents' requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Role {
    /// Owns agents and decides on their requests (and on those policy routes to them).
    Owner,
    /// Also runs the service: people, agents, policy, guards, the audit log.
    Admin,
}

stored_as_text!(Role, "role");

impl Role {
    /// True for admins.
    pub fn is_admin(self) -> bool {
        self == Self::Admin
    }
}

/// Whether a person's account works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum UserStatus {
    /// They can sign in and decide.
    Active,
    /// An admin deactivated them: no sign-in, no decisions, sessions ended.
    Deactivated,
}

stored_as_text!(UserStatus, "user status");

/// Every transition a person's account can make.
pub const TRANSITIONS: &[Transition<UserStatus>] = &[
    Transition {
        from: UserStatus::Active,
        to: UserStatus::Deactivated,
        deadline: Deadline::Any,
        why: "an admin deactivated them (never the last active admin)",
    },
    Transition {
        from: UserStatus::Deactivated,
        to: UserStatus::Active,
        deadline: Deadline::Any,
        why: "an admin reactivated them",
    },
];

impl UserStatus {
    /// The transition from `self` to `to`, or why there is none.
    pub fn to(self, to: Self) -> Result<&'static Transition<Self>, IllegalTransition> {
        find("person", TRANSITIONS, self, to)
    }
}
