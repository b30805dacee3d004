//! What can happen to a grant: the one file that says so.
//!
//! A grant is created `issued` when its request is approved. It then ends exactly once: the
//! agent redeems it (once: that is what single-use means), it is revoked (by its owner, an
//! admin, or because its agent was suspended or its key changed), or its lifetime runs out.
//! [`crate::store::grants::change`] refuses any other move before it writes.

use super::{find, stored_as_text, Deadline, IllegalTransition, Transition};

/// Where a grant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum GrantStatus {
    /// Issued and not yet used: the only status in which it can be redeemed.
    Issued,
    /// Used. The agent may still report the outcome, once, which is a fact about the grant,
    /// not a change of status.
    Redeemed,
    /// Its lifetime ran out unused.
    Expired,
    /// Withdrawn before use.
    Revoked,
}

stored_as_text!(GrantStatus, "grant status");

/// The status a grant is created in.
pub const INITIAL: GrantStatus = GrantStatus::Issued;

/// Every transition a grant can make.
pub const TRANSITIONS: &[Transition<GrantStatus>] = &[
    Transition {
        from: GrantStatus::Issued,
        to: GrantStatus::Redeemed,
        deadline: Deadline::Before,
        why: "its agent redeemed it, while still active at the epoch it was issued under",
    },
    Transition {
        from: GrantStatus::Issued,
        to: GrantStatus::Revoked,
        deadline: Deadline::Any,
        why: "its owner or an admin revoked it, or its agent was suspended or its key changed",
    },
    Transition {
        from: GrantStatus::Issued,
        to: GrantStatus::Expired,
        deadline: Deadline::After,
        why: "its lifetime ran out unused (the sweeper notices)",
    },
];

impl GrantStatus {
    /// True once nothing more can happen to the grant's status.
    pub fn is_final(self) -> bool {
        self != Self::Issued
    }

    /// The transition from `self` to `to`, or why there is none.
    pub fn to(self, to: Self) -> Result<&'static Transition<Self>, IllegalTransition> {
        find("grant", TRANSITIONS, self, to)
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;

    #[test]
    fn only_an_issued_grant_changes_and_only_once() {
        for from in GrantStatus::VARIANTS {
            for to in GrantStatus::VARIANTS {
                let allowed = from.to(*to).is_ok();
                assert_eq!(allowed, !from.is_final() && to.is_final(), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn the_text_is_what_the_database_always_held() {
        let texts: Vec<&str> = GrantStatus::VARIANTS.iter().map(|s| s.as_str()).collect();
        assert_eq!(texts, ["issued", "redeemed", "expired", "revoked"]);
    }
}
