//! The approval policy: its data model, its TOML file format and its evaluation.
//!
//! This module owns three things:
//!
//! * the model ([`Policy`], [`PolicyRule`], [`RuleOutcome`], [`ApproverSource`], [`Money`]) and
//!   every rule about what makes a policy valid ([`Policy::validate`]);
//! * the policy file format: parsing ([`Policy::from_toml`]), the normalised form that is
//!   written back ([`Policy::to_toml`]) and the content hash of that form ([`Policy::hash`]);
//! * evaluation of a request against the policy ([`Policy::evaluate`],
//!   [`Policy::evaluate_explained`]): ordered rules, first match wins, with a built-in default
//!   when nothing matches, and a one-line human explanation of every decision.
//!
//! It must never do I/O of any kind: no files, no database, no HTTP, no clock, no environment
//! variables, no logging. Callers read the policy text from wherever it lives and hand it in;
//! evaluation is a pure function of the policy and the request, which is what makes decisions
//! reproducible from the stored policy hash.
//!
//! The files follow those seams: `model` (the types), `glob` (pattern matching), `evaluate`
//! (decisions and their explanations), `validate` (what makes a policy valid), `toml` (reading
//! and writing the file, and the hash) and [`form`] (the same model as the browser's rule editor
//! holds it). Everything callers use is re-exported here.

mod evaluate;
pub mod form;
mod glob;
mod model;
#[cfg(test)]
mod test_support;
mod toml;
mod validate;

pub use glob::glob_match;
pub use model::{
    ApproverSource, ApproverSourceError, Money, PassedOver, Policy, PolicyDecision, PolicyError,
    PolicyInput, PolicyRule, RuleOutcome, StandingLimits, APPROVALS_RANGE, DATA_SENSITIVITY_LEVELS,
    DEFAULT_EXPLANATION, DEFAULT_GRANT_TTL_SECONDS, DEFAULT_RULE_ID, DEFAULT_STANDING_MAX_USES,
    DELEGATION_DEPTH_RANGE, GRANT_TTL_SECONDS_RANGE, REQUEST_TTL_SECONDS_RANGE,
    STANDING_MAX_SECONDS_RANGE, STANDING_MAX_USES_RANGE,
};
pub use validate::parse_amount;
