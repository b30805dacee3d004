//! What can happen to an approval request: the one file that says so.
//!
//! A request is created `pending` (people must approve), or already final when policy decided
//! on its own (`approved` by an `allow` rule, `denied` by a `deny` rule). A pending request
//! then ends exactly once, in one of the four final statuses of [`TRANSITIONS`]; nothing leaves
//! a final status. [`crate::store::requests::change`] refuses any other move before it writes.

use super::{find, stored_as_text, Deadline, IllegalTransition, Transition};

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for people.
    Pending,
    /// Approved, by policy or by its quorum: a grant was issued.
    Approved,
    /// Denied, by policy or by an approver.
    Denied,
    /// Nobody decided before its deadline.
    Expired,
    /// Withdrawn by its agent, or cancelled when the agent was suspended or its key changed.
    Cancelled,
}

stored_as_text!(RequestStatus, "request status");

/// The statuses a request can be created in, and when.
pub const INITIAL: &[(RequestStatus, &str)] = &[
    (RequestStatus::Pending, "policy requires approvals"),
    (
        RequestStatus::Approved,
        "policy allows it outright (a grant is issued at once)",
    ),
    (RequestStatus::Denied, "policy denies it outright"),
];

/// Every transition a request can make.
pub const TRANSITIONS: &[Transition<RequestStatus>] = &[
    Transition {
        from: RequestStatus::Pending,
        to: RequestStatus::Approved,
        deadline: Deadline::Before,
        why: "the last approval its quorum needs was recorded",
    },
    Transition {
        from: RequestStatus::Pending,
        to: RequestStatus::Denied,
        deadline: Deadline::Before,
        why: "an approver denied it",
    },
    Transition {
        from: RequestStatus::Pending,
        to: RequestStatus::Cancelled,
        deadline: Deadline::Before,
        why: "its agent withdrew it, or the agent was suspended or its key changed",
    },
    Transition {
        from: RequestStatus::Pending,
        to: RequestStatus::Expired,
        deadline: Deadline::After,
        why: "its deadline passed with no decision (the sweeper, or the next read, notices)",
    },
];

impl RequestStatus {
    /// True once nothing more can happen to the request.
    pub fn is_final(self) -> bool {
        self != Self::Pending
    }

    /// The transition from `self` to `to`, or why there is none.
    pub fn to(self, to: Self) -> Result<&'static Transition<Self>, IllegalTransition> {
        find("request", TRANSITIONS, self, to)
    }

    /// True when a request may be created in this status.
    pub fn is_initial(self) -> bool {
        INITIAL.iter().any(|(s, _)| *s == self)
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;

    #[test]
    fn only_a_pending_request_changes_and_only_once() {
        for from in RequestStatus::VARIANTS {
            for to in RequestStatus::VARIANTS {
                let allowed = from.to(*to).is_ok();
                assert_eq!(allowed, !from.is_final() && to.is_final(), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn the_text_is_what_the_database_always_held() {
        let texts: Vec<&str> = RequestStatus::VARIANTS.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            texts,
            ["pending", "approved", "denied", "expired", "cancelled"]
        );
        for s in RequestStatus::VARIANTS {
            assert_eq!(s.as_str().parse::<RequestStatus>(), Ok(*s));
        }
        let err = "Pending".parse::<RequestStatus>().unwrap_err();
        assert_eq!(err.to_string(), "unknown request status \"Pending\"");
    }
}
