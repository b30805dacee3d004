//! Approving several of one agent's pending requests of one action type with one passkey
//! ceremony.
//!
//! ```text
//!  inbox: select N rows ── POST batch/start {request_ids} ─► same agent, same action type?
//!                                                             each: may this person approve
//!                                                             it now? (else skipped, with why)
//!                                                             bind each: request, action_hash,
//!                                                             display_hash ─► one ceremony
//!         passkey prompt ◄── options (challenge) ──────────
//!         ── POST batch/finish {assertion} ─► consume the ceremony, verify the assertion once
//!                                             then each request in its own transaction, as a
//!                                             single approval would (step 3 of `decisions`):
//!                                             one `approval.recorded` each, naming the batch
//! ```
//!
//! The challenge record lists every bound `action_hash`, so the one signature covers exactly
//! those requests as they were shown. A request that stopped being pending meanwhile is
//! skipped (and said so) while the others are approved. Quorum counts people, not clicks:
//! a batch is one approval by one person on each request, like approving each on its page.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use webauthn_rs::prelude::PublicKeyCredential;

use super::decisions::{Bound, Decision, DecisionResult, Proof};
use super::people::{load_passkeys, CeremonyState, SignedIn, CEREMONY_TTL_MS};
use super::{Countersign, Error};
use crate::domain::client_data;
use crate::domain::lifecycle::RequestStatus;
use crate::domain::terms::Terms;
use crate::store::ceremonies::{self, CeremonyRow};
use crate::store::users;

/// The most requests one batch approves.
pub const MAX_BATCH: usize = 50;

/// One request a batch ceremony is bound to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchItem {
    /// The request.
    pub request_id: String,
    /// What approving it binds to.
    pub action_hash: String,
    /// The hash of its page as it would be shown now.
    pub display_hash: String,
}

/// A request left out of a batch, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The request.
    pub request_id: String,
    /// Why, in a sentence.
    pub reason: String,
}

/// The first half of a batch approval.
#[derive(Debug, Clone, Serialize)]
pub struct BatchStart {
    /// Send back with the assertion.
    pub ceremony_id: String,
    /// `PublicKeyCredentialRequestOptions` for `navigator.credentials.get`.
    pub options: Value,
    /// What the ceremony binds.
    pub requests: Vec<BatchItem>,
    /// What it left out.
    pub skipped: Vec<Skipped>,
}

/// One request's outcome in a finished batch.
#[derive(Debug, Clone, Serialize)]
pub struct BatchOutcome {
    /// The request.
    pub request_id: String,
    /// Its status after the batch; absent when it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RequestStatus>,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// A finished batch.
#[derive(Debug, Clone, Serialize)]
pub struct BatchResult {
    /// Each bound request, in order.
    pub results: Vec<BatchOutcome>,
}

#[derive(Serialize, Deserialize)]
struct BatchContext {
    challenge: Value,
    items: Vec<BatchItem>,
}

const CEREMONY_KIND: &str = "approve_batch";

impl Countersign {
    /// Starts approving `request_ids` (one agent's, one action type) with one passkey prompt.
    /// Requests this person may not approve now are left out and named; if none is left, the
    /// batch is refused.
    pub async fn batch_start(
        &self,
        who: &SignedIn,
        request_ids: &[String],
    ) -> Result<BatchStart, Error> {
        const FIELD: &str = "request_ids";
        if request_ids.len() < 2 || request_ids.len() > MAX_BATCH {
            return Err(Error::invalid(
                FIELD,
                format!("a batch approves between 2 and {MAX_BATCH} requests"),
            ));
        }
        let mut ids: Vec<&str> = request_ids.iter().map(String::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != request_ids.len() {
            return Err(Error::invalid(FIELD, "a request is listed twice"));
        }
        let mut requests = Vec::new();
        let mut skipped = Vec::new();
        let mut kind: Option<(String, String)> = None;
        let mut expires_at = self.now() + CEREMONY_TTL_MS;
        for id in request_ids {
            // Someone who may not see a request learns nothing of it, here as on its page.
            let j = match self.judgement(id).await {
                Ok(j) => j,
                Err(Error::NotFound(_)) => {
                    skipped.push(skip(id, "no such request"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let may = match self.check_may_decide(who, &j, &Decision::Approve).await {
                Ok(()) => self.check_approve_delay(who, id).await,
                Err(e) => Err(e),
            };
            if let Err(Error::NotFound(_)) = may {
                skipped.push(skip(id, "no such request"));
                continue;
            }
            let this = (j.request.agent_id.clone(), j.request.action_type.clone());
            match &kind {
                Some(k) if *k != this => {
                    return Err(Error::invalid(
                        FIELD,
                        "a batch holds one agent's requests of one action type",
                    ))
                }
                Some(_) => {}
                None => kind = Some(this),
            }
            match may {
                Ok(()) => {}
                Err(Error::Internal(e)) => return Err(Error::Internal(e)),
                Err(e) => {
                    skipped.push(skip(id, &e.to_string()));
                    continue;
                }
            }
            let view = self.build_view(&j.request).await?;
            expires_at = expires_at.min(j.request.expires_at);
            requests.push(BatchItem {
                request_id: id.clone(),
                action_hash: j.request.action_hash.clone(),
                display_hash: view.display_hash(),
            });
        }
        if requests.is_empty() {
            let why: Vec<String> = skipped
                .iter()
                .map(|s| format!("{}: {}", s.request_id, s.reason))
                .collect();
            return Err(Error::Conflict(format!(
                "none of these requests can be approved now ({})",
                why.join("; ")
            )));
        }
        let passkeys = load_passkeys(&users::passkeys(self.db.reader(), &who.person.id).await?)?;
        if passkeys.is_empty() {
            return Err(Error::Forbidden(
                "you have no passkey to decide with".into(),
            ));
        }
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| Error::internal(format!("start batch: {e}")))?;
        let options = serde_json::to_value(options).map_err(Error::internal)?;
        let context = BatchContext {
            challenge: options["publicKey"]["challenge"].clone(),
            items: requests.clone(),
        };
        let context = serde_json::to_string(&context).map_err(Error::internal)?;
        let row = CeremonyRow {
            user_id: Some(who.person.id.clone()),
            session_binding: Some(who.session_binding.clone()),
            ..CeremonyState::Passkey(state).into_row(CEREMONY_KIND, context, expires_at)?
        };
        ceremonies::insert(self.db.writer(), &row).await?;
        Ok(BatchStart {
            ceremony_id: row.id,
            options,
            requests,
            skipped,
        })
    }

    /// Finishes a batch with the passkey's answer: verified once, then each bound request is
    /// approved in its own transaction; one that can no longer be approved is skipped.
    pub async fn batch_finish(
        &self,
        who: &SignedIn,
        ceremony_id: &str,
        credential: &PublicKeyCredential,
    ) -> Result<BatchResult, Error> {
        let ceremony = self.take_ceremony(ceremony_id, &[CEREMONY_KIND]).await?;
        if ceremony.user_id.as_deref() != Some(who.person.id.as_str())
            || ceremony.session_binding.as_deref() != Some(who.session_binding.as_str())
        {
            return Err(Error::AccessDenied(
                "this passkey prompt belongs to another session".into(),
            ));
        }
        client_data::refuse_cross_origin(credential.response.client_data_json.as_ref())
            .map_err(|e| Error::AccessDenied(format!("the passkey assertion was refused: {e}")))?;
        let CeremonyState::Passkey(state) =
            serde_json::from_str(&ceremony.state).map_err(Error::internal)?
        else {
            return Err(Error::internal("batch ceremony holds another state"));
        };
        let context: BatchContext =
            serde_json::from_str(&ceremony.context).map_err(Error::internal)?;
        let result = self
            .webauthn
            .finish_passkey_authentication(credential, &state)
            .map_err(|e| Error::AccessDenied(format!("the passkey assertion was refused: {e}")))?;
        if !result.user_verified() {
            return Err(Error::AccessDenied("user verification is required".into()));
        }
        let batch = json!({
            "ceremony_id": ceremony.id,
            "requests": context.items.iter().map(|i| &i.request_id).collect::<Vec<_>>(),
        });
        let proof = Proof {
            ceremony_id: &ceremony.id,
            challenge: &context.challenge,
            result: &result,
            credential,
        };
        let terms = Terms::default();
        let mut results = Vec::with_capacity(context.items.len());
        for item in &context.items {
            let bound = Bound {
                request_id: &item.request_id,
                action_hash: &item.action_hash,
                display_hash: &item.display_hash,
                decision: &Decision::Approve,
                terms: &terms,
                batch: Some(&batch),
            };
            let outcome = match self.record_decision(who, &bound, &proof).await {
                Ok(DecisionResult { status, .. }) => BatchOutcome {
                    request_id: item.request_id.clone(),
                    status: Some(status),
                    skipped: None,
                },
                Err(Error::Internal(e)) => return Err(Error::Internal(e)),
                Err(e) => BatchOutcome {
                    request_id: item.request_id.clone(),
                    status: None,
                    skipped: Some(e.to_string()),
                },
            };
            results.push(outcome);
        }
        Ok(BatchResult { results })
    }
}

fn skip(id: &str, reason: &str) -> Skipped {
    Skipped {
        request_id: id.to_string(),
        reason: reason.to_string(),
    }
}
