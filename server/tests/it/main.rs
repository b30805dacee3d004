//! Countersign's integration tests: one binary, one module per area, all on a real server
//! (a real SQLite file or a database of its own on the local PostgreSQL, real HTTP on
//! loopback, real passkey ceremonies with a software authenticator).
//!
//! One binary rather than one per file (as zero2prod does): each file used to link the whole
//! server on its own, which cost most of the test build's time and disk. Run one area with
//! `cargo test -p countersign --test it hardening::`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

mod admin;
mod agents_admin;
mod approval_flow;
mod audit_admin;
mod audit_checkpoints;
mod batch_tx;
mod batches;
mod browser_edge;
mod callbacks;
mod cli;
mod client;
mod concurrent_pages;
mod contract_errors;
mod credentials;
mod delegation;
mod guards;
mod hardening;
mod intake_cache;
mod lifecycle;
mod limits;
mod mail;
mod mcp;
mod openapi;
mod owner_app;
mod people;
mod people_admin;
mod policy_editor;
mod races_and_evidence;
mod replicas;
mod standing;
mod statement_group;
mod stored_passkeys;
