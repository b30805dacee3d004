//! The domain: Countersign's rules as plain Rust. Nothing here performs I/O, knows about HTTP,
//! SQL or Leptos, or reads the clock; callers pass the current time in.

pub mod audit;
pub mod audit_kind;
pub mod callback;
pub mod canonical;
pub mod checkpoint;
pub mod client_data;
pub mod credential;
pub mod diff;
pub mod display;
pub mod guards;
pub mod intake;
pub mod jose;
pub mod lifecycle;
pub mod policy;
pub mod quorum;
pub mod risk;
pub mod secrets;
pub mod terms;
pub mod timeline;
