//! The words the server and the pages share for where things stand: a request's status, an
//! agent's, a person's role, what an approver decided.
//!
//! They mirror the server's `domain::lifecycle` types (this crate cannot depend on the
//! server). The server's UI edge maps one onto the other with exhaustive matches, so a state
//! added there does not build until it is named here too. On the wire they are the same
//! lowercase words the server stores.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// Waiting for approvals.
    Pending,
    /// Approved: the agent has its grant.
    Approved,
    /// Denied by a person or by policy.
    Denied,
    /// Ran out of time.
    Expired,
    /// Withdrawn by the agent (or its suspension).
    Cancelled,
}

impl RequestStatus {
    /// The ways a request ends, in the order the history's filter lists them.
    pub const FINAL: [Self; 4] = [Self::Approved, Self::Denied, Self::Expired, Self::Cancelled];

    /// The stored word (also the CSS class a status badge carries).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    /// In plain words, for a page's heading.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pending => "Waiting for approval",
            Self::Approved => "Approved",
            Self::Denied => "Denied",
            Self::Expired => "Expired",
            Self::Cancelled => "Cancelled by the agent",
        }
    }
}

/// Whether an agent may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// It may ask.
    Active,
    /// Suspended: its requests are refused and its grants revoked.
    Suspended,
}

impl AgentStatus {
    /// The stored word (also the CSS class a status badge carries).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

/// What a person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs agents and approves.
    Owner,
    /// Also sets policy and manages people.
    Admin,
}

impl Role {
    /// The stored word (also the value of the role pickers' options).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
        }
    }
}

/// What one approver decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// They approved.
    Approved,
    /// They denied.
    Denied,
}

impl Verdict {
    /// The word shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Denied => "denied",
        }
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(RequestStatus, AgentStatus, Role, Verdict);

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire words are the stored ones: serde's and `as_str`'s must agree.
    #[test]
    fn serde_and_as_str_say_the_same_word() {
        let all = [
            RequestStatus::Pending,
            RequestStatus::Approved,
            RequestStatus::Denied,
            RequestStatus::Expired,
            RequestStatus::Cancelled,
        ];
        for s in all {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in [AgentStatus::Active, AgentStatus::Suspended] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for r in [Role::Owner, Role::Admin] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for v in [Verdict::Approved, Verdict::Denied] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
    }
}
