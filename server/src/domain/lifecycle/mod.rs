//! What can happen to the things Countersign keeps: requests, grants, agents and people.
//!
//! Each lifecycle is one enum whose values are stored as the same text they always were
//! (`pending`, `issued`, `active`…, so no data migration), plus, for the two that matter to an
//! agent's safety, one table of the transitions that exist:
//!
//! - [`request`]: an approval request, from `pending` to one final status;
//! - [`grant`]: a single-use grant, from `issued` to `redeemed`, `revoked` or `expired`;
//! - [`agent`]: an agent, `active` or `suspended`;
//! - [`person`]: a person's role and whether their account is active.
//!
//! The store's conditional writes take these types and ask the table first, so a transition
//! that is not in it is refused before any SQL runs (see [`IllegalTransition`]); the
//! conditional `WHERE status = …` then makes concurrent transitions have exactly one winner.

pub mod agent;
pub mod grant;
pub mod person;
pub mod request;

pub use agent::AgentStatus;
pub use grant::GrantStatus;
pub use person::{Role, UserStatus};
pub use request::RequestStatus;

/// A change of status that its lifecycle's table does not have: always a bug in the caller,
/// never something a user or an agent can cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {machine} cannot go from {from} to {to}")]
pub struct IllegalTransition {
    /// Which lifecycle: `request`, `grant`, `agent`, `person`.
    pub machine: &'static str,
    /// The status it was asked to leave.
    pub from: &'static str,
    /// The status it was asked to enter.
    pub to: &'static str,
}

/// Stored text that names no value of a lifecycle enum (a row edited by hand, or written by a
/// newer version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {text:?}")]
pub struct UnknownText {
    /// What the text should have named, e.g. `request status`.
    pub what: &'static str,
    /// The text.
    pub text: String,
}

/// When a transition may happen relative to the deadline of the thing that changes (a
/// request's `expires_at`, a grant's `exp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Only while the deadline has not passed.
    Before,
    /// Only once it has passed.
    After,
    /// Whenever.
    Any,
}

/// The text form shared by every lifecycle enum: `as_str`, `FromStr` (with an [`UnknownText`]
/// that says what was expected), `Display`, and serde as the same text. strum derives the
/// mapping; this names it once.
macro_rules! stored_as_text {
    ($ty:ident, $what:literal) => {
        impl $ty {
            /// The text stored in the database and shown in the API.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::domain::lifecycle::UnknownText;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                <$ty as strum::VariantArray>::VARIANTS
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == text)
                    .ok_or_else(|| $crate::domain::lifecycle::UnknownText {
                        what: $what,
                        text: text.to_string(),
                    })
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use stored_as_text;

/// One row of a transition table: from, to, when, and why it happens (for people reading it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition<S: 'static> {
    /// The status left.
    pub from: S,
    /// The status entered.
    pub to: S,
    /// When, relative to the deadline.
    pub deadline: Deadline,
    /// What makes it happen.
    pub why: &'static str,
}

/// Finds `from -> to` in a table, or says it does not exist.
pub(crate) fn find<S>(
    machine: &'static str,
    table: &'static [Transition<S>],
    from: S,
    to: S,
) -> Result<&'static Transition<S>, IllegalTransition>
where
    S: Copy + PartialEq + Into<&'static str>,
{
    table
        .iter()
        .find(|t| t.from == from && t.to == to)
        .ok_or(IllegalTransition {
            machine,
            from: from.into(),
            to: to.into(),
        })
}
