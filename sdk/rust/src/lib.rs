//! Countersign for Rust: an AI agent asks a human before a high-impact action and receives a
//! single-use grant bound to that exact action; the downstream system verifies the grant and
//! redeems it once.
//!
//! ```text
//!  agent (Client)                 Countersign                 owner        downstream (Downstream)
//!    | create_request ------------> | policy: ask the owner     |                  |
//!    | <---------- 202 pending ---- | ---- approval_url ------> |                  |
//!    | get_request(wait=55) ------> |        (held)             |                  |
//!    |                              | <---- passkey approve --- |                  |
//!    | <---- approved + grant ----- |                           |                  |
//!    | grant.token ------------------------------------------------------------>  |
//!    |                              | <------------------------------ JWKS ------- | verify_grant
//!    |                              | <------------------------------ redeem ----- | (once)
//!    | report_outcome ------------> |                           |                  |
//! ```
//!
//! [`Client::request_approval`] does the first four steps: it posts the request and long-waits
//! until the owner decides, returning the [`Grant`] or an [`Error`] saying how the request
//! ended ([`Error::Denied`] with the person's reason, [`Error::DeniedByPolicy`],
//! [`Error::Expired`], [`Error::Cancelled`]).
//!
//! ```no_run
//! use countersign_client::{ApprovalRequest, Client, Credentials, Downstream, Error, Outcome};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), Error> {
//! let agent = Client::new("http://localhost:3000", Credentials::ApiKey("cs_agent_…".into()))?
//!     .on_pending(|state| println!("Approve at {}", state.approval_url));
//! let request = ApprovalRequest::new("payments.transfer", "bank-api")
//!     .params(json!({ "to": "DE89 3704 0044 0532 0130 00", "amount": "5000.00" }))
//!     .goal("Pay invoice INV-1042");
//! match agent.request_approval(&request).await {
//!     Ok(grant) => {
//!         // The bank's side: verify, then redeem once, then act.
//!         let bank = Downstream::new("http://localhost:3000")?;
//!         bank.verify_grant_for_action(&grant.token, "bank-api", grant.action_hash()).await?;
//!         bank.redeem(&grant.token).await?;
//!         agent.report_outcome(&grant.jti, Outcome::Succeeded, None).await?;
//!     }
//!     Err(Error::Denied { reason_code, reason, .. }) => eprintln!("denied ({reason_code}): {reason}"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
//!
//! Every failure is one [`Error`]: the server's problem+json answers typed by their `error`
//! code (with the code string, the HTTP status and the offending `field` kept:
//! [`Error::code`], [`Error::status`], [`Error::field`]), the request's ends, grant
//! verification failures, transport errors. Nothing a server answers makes this crate panic.
//!
//! HTTP is `reqwest` on rustls (no OpenSSL); signatures are Ed25519 (`ed25519-dalek`), and the
//! compact JWS around them is written here (see the `jws` module for why).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod credentials;
mod downstream;
mod error;
mod jws;
mod model;
mod transport;

pub use client::{Client, MAX_WAIT};
pub use credentials::{Credentials, ASSERTION_LIFETIME_SECS};
pub use downstream::{Downstream, JWKS_MAX_AGE, JWKS_REFETCH_MIN_INTERVAL};
pub use error::{Error, Problem};
pub use jws::{public_jwk, GRANT_TYP};
pub use model::{
    Action, Amount, ApprovalRequest, Approvals, AuthorizationDetail, Confirmation, Context,
    DataSensitivity, Decision, Delegation, Grant, GrantClaims, Intent, Outcome, PolicyDecision,
    RequestState, Status, TaskCredential,
};

/// The Ed25519 crate this client signs with, for [`Credentials::Ed25519`]'s key
/// (`ed25519::SigningKey::from_bytes(&seed)`, or `generate` with its `rand_core` feature).
pub use ed25519_dalek as ed25519;
