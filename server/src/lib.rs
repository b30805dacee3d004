//! Countersign: a human-in-the-loop approval service for AI agents.
//!
//! The crate is layered so that each layer knows only the one below it:
//!
//! - [`domain`]: pure rules — canonical JSON and action hashes, request intake validation, the
//!   policy language, JOSE (grants and agent assertions), quorum counting, the audit chain's
//!   hashing. No I/O, no HTTP, no database, no clock of its own.
//! - [`store`]: every SQL statement, for SQLite and PostgreSQL through one seam.
//! - [`service`]: the use cases (an agent asks, an owner approves, a grant is redeemed…), each a
//!   transaction that changes state and appends its audit event together.
//! - [`http`]: thin edges — the agent API (problem+json), the owner endpoints behind a session,
//!   discovery and operations endpoints.
//! - [`cli`]: the `countersign` command line, which drives the same services.
//! - [`mail`]: outgoing mail — a queue drained in the background, SMTP or the log; it never
//!   blocks or fails the use case that sends.

pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod mail;
pub mod service;
pub mod store;
pub mod telemetry;
