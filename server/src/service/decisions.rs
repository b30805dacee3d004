//! Approving and denying a request with a passkey.
//!
//! Plain WebAuthn signs a random challenge, not what the person saw, and webauthn-rs rightly
//! won't let us choose the challenge. So the server keeps the binding:
//!
//! ```text
//!  approver's browser                    countersign
//!    | POST decision/start {approve} -->  request pending & unexpired? person eligible?
//!    |                                    view := ApprovalView(stored request); display_hash
//!    |                                    start_passkey_authentication(person's passkeys)
//!    |                                    store ceremony {request, action_hash, decision,
//!    |                                                    person, session, display_hash} 5 min
//!    | <-- request options (challenge) --
//!    | navigator.credentials.get (user verification required)
//!    | POST decision/finish {assertion} -> DELETE ceremony … RETURNING (consumed first: a
//!    |                                    failed or replayed answer can never be retried)
//!    |                                    same person? same session? not expired?
//!    |                                    verify assertion (signature, UV, counter)
//!    |                                    one tx: lock request row WHERE pending AND same
//!    |                                      action_hash AND unexpired; record approval with
//!    |                                      challenge, hashes and raw assertion; quorum? ->
//!    |                                      approved + grant | denied; audit; NOTIFY
//!    | <-- outcome ----------------------  wake waiting agents
//! ```
//!
//! The audit event keeps the challenge, `action_hash`, `display_hash` and the raw assertion
//! (client data, authenticator data, signature, credential id): since the signed client data
//! contains the challenge and the chain ties the challenge to the action, an auditor can later
//! re-verify that this person, with this passkey, approved exactly this action.
//!
//! An approval may carry the approver's terms: narrower than asked, or a standing approval
//! within the rule's limits (see `domain::terms` and `standing`). They are checked at the
//! start, kept in the ceremony's record and hashed into the `display_hash`, so the passkey
//! binds them like the rest of the page. `batches` approves several requests with one
//! ceremony: it verifies the assertion once and decides each request with
//! `record_decision`, step 3 above.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use webauthn_rs::prelude::{AuthenticationResult, PublicKeyCredential};

use super::grants::GrantTerms;
use super::people::{load_passkeys, used_passkey, CeremonyState, SignedIn, CEREMONY_TTL_MS};
use super::requests::{announce, policy_input, stored_body, stored_request, ApprovalCount};
use super::{Countersign, Error};
use crate::clock::rfc3339;
use crate::domain::audit_kind::EventKind;
use crate::domain::client_data;
use crate::domain::display::{ApprovalView, VIEW_VERSION};
use crate::domain::lifecycle::{AgentStatus, RequestStatus, UserStatus};
use crate::domain::quorum::{ApproverRule, Candidate};
use crate::domain::terms::{Narrowing, RuleBounds, Terms, TermsInput};
use crate::store::ceremonies::{self, CeremonyRow};
use crate::store::requests::{self as rows, Change, RequestRow};
use crate::store::{self, agents, audit, users};
use crate::telemetry::bump;

/// Reason codes an approver picks from when denying; the agent receives the code and the text.
pub const DENY_REASONS: &[(&str, &str)] = &[
    ("too_risky", "Too risky right now"),
    ("unexpected", "Not something this agent should be doing"),
    ("wrong_details", "Wrong target, amount or parameters"),
    ("needs_context", "Needs more context or a ticket"),
    ("other", "Other"),
];

/// What the approver chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Decision {
    /// Approve.
    Approve,
    /// Deny, with a reason for the agent.
    Deny {
        /// One of [`DENY_REASONS`].
        reason_code: String,
        /// Optional free text.
        #[serde(default)]
        reason: Option<String>,
    },
}

/// The first half of a decision ceremony.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionStart {
    /// Send back with the assertion.
    pub ceremony_id: String,
    /// `PublicKeyCredentialRequestOptions` for `navigator.credentials.get`.
    pub options: Value,
    /// What is being approved.
    pub action_hash: String,
    /// The hash of what the decision binds to: the page as shown, with the approver's terms
    /// when they gave any.
    pub display_hash: String,
    /// The approver's terms, as checked (absent when none).
    #[serde(skip_serializing_if = "Terms::is_empty")]
    pub terms: Terms,
}

/// The request after a decision.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionResult {
    /// Its status now.
    pub status: RequestStatus,
    /// Approvals so far.
    pub approvals: ApprovalCount,
}

#[derive(Serialize, Deserialize)]
struct DecisionContext {
    decision: Decision,
    display_hash: String,
    challenge: Value,
    /// The approver's terms, bound to the ceremony with everything else.
    #[serde(default)]
    terms: Terms,
}

/// A verified passkey answer: what each request its ceremony bound is decided with.
pub(super) struct Proof<'a> {
    pub ceremony_id: &'a str,
    pub challenge: &'a Value,
    pub result: &'a AuthenticationResult,
    pub credential: &'a PublicKeyCredential,
}

/// One request as a ceremony bound it.
pub(super) struct Bound<'a> {
    pub request_id: &'a str,
    pub action_hash: &'a str,
    pub display_hash: &'a str,
    pub decision: &'a Decision,
    pub terms: &'a Terms,
    /// For a batch: its ceremony and every request it bound.
    pub batch: Option<&'a Value>,
}

/// Everything needed to judge one person against one request.
pub(super) struct Judgement {
    pub request: RequestRow,
    pub rule: ApproverRule,
    pub owner_id: String,
}

impl Countersign {
    pub(super) async fn judgement(&self, request_id: &str) -> Result<Judgement, Error> {
        let request = self
            .read_fresh(request_id)
            .await?
            .ok_or_else(|| Error::NotFound("no such request".into()))?;
        let agent = agents::get(self.db.reader(), &request.agent_id)
            .await?
            .ok_or_else(|| Error::internal("request without agent"))?;
        let rule: ApproverRule =
            serde_json::from_str(&request.approver_rule).map_err(Error::internal)?;
        Ok(Judgement {
            request,
            rule,
            owner_id: agent.owner_id,
        })
    }

    /// What an approver is shown for a request. Visible to its eligible approvers, the agent's
    /// owner and admins; to anyone else it does not exist.
    pub async fn approval_view(
        &self,
        who: &SignedIn,
        request_id: &str,
    ) -> Result<ApprovalView, Error> {
        let j = self.judgement(request_id).await?;
        let me = candidate(&who.person);
        let may_see = who.person.role.is_admin()
            || who.person.id == j.owner_id
            || j.rule.is_eligible(&me, &j.owner_id);
        if !may_see {
            return Err(Error::NotFound("no such request".into()));
        }
        self.build_view(&j.request).await
    }

    pub(super) async fn build_view(&self, request: &RequestRow) -> Result<ApprovalView, Error> {
        let agent = agents::get(self.db.reader(), &request.agent_id)
            .await?
            .ok_or_else(|| Error::internal("request without agent"))?;
        let mut conn = self.db.read_conn().await?;
        let owner = users::get(&mut conn, &agent.owner_id)
            .await?
            .map(|u| u.email)
            .unwrap_or_default();
        let mut body = stored_body(request);
        if let Some(obj) = body.as_object_mut() {
            obj.remove("expires_in");
        }
        let releases = match &request.credential {
            Some(provider) => {
                let settings = crate::store::credentials::provider(self.db.reader(), provider)
                    .await?
                    .and_then(|row| serde_json::from_str(&row.settings).ok());
                let ttl = request
                    .credential_ttl_seconds
                    .and_then(|t| u32::try_from(t).ok())
                    .unwrap_or(crate::domain::credential::DEFAULT_CREDENTIAL_TTL_SECONDS);
                let operation = body.pointer("/action/operation").and_then(|v| v.as_str());
                Some(crate::domain::credential::describe(
                    provider,
                    settings.as_ref(),
                    ttl,
                    operation,
                ))
            }
            None => None,
        };
        // The registered side of the agent's delegation, named (at most `MAX_LINEAGE` reads,
        // and none for an agent that is no one's sub-agent).
        let mut lineage = Vec::new();
        for id in self
            .lineage_of(&agent.id, agent.parent_id.as_deref())
            .await?
        {
            let name = agents::get(self.db.reader(), &id)
                .await?
                .map(|a| a.name)
                .unwrap_or_default();
            lineage.push(crate::domain::display::Ancestor { id, name });
        }
        Ok(ApprovalView {
            view_version: VIEW_VERSION,
            request_id: request.id.clone(),
            agent_id: agent.id,
            agent_name: agent.name,
            owner,
            request: body,
            action_hash: request.action_hash.clone(),
            rule_id: request.rule_id.clone(),
            explanation: request.explanation.clone(),
            approvals_required: request.approvals_required,
            expires_at: rfc3339(request.expires_at),
            releases,
            terms: None,
            lineage,
        })
    }

    /// The bounds the rule that decided `request` puts on an approver's terms, under the
    /// policy in force now. A standing approval is offered only when the policy in force still
    /// decides this request by the same rule, and that rule allows one for a request that one
    /// person approves.
    pub(crate) async fn rule_bounds(&self, request: &RequestRow) -> Result<RuleBounds, Error> {
        let new = stored_request(request)?;
        let active = self.active_policy().await?;
        let lineage = crate::store::agents::lineage(self.db.reader(), &request.agent_id).await?;
        let decided = active.policy.evaluate(&policy_input(&new, &lineage));
        let rule = (decided.rule_id == request.rule_id)
            .then(|| active.policy.rule(&request.rule_id))
            .flatten();
        let standing = rule
            .and_then(|r| r.standing_limits())
            .filter(|_| request.approvals_required == 1);
        Ok(RuleBounds {
            grant_ttl_seconds: u32::try_from(request.grant_ttl_seconds).unwrap_or(u32::MAX),
            releases_credential: request.credential.is_some(),
            standing,
            amount_below: rule.and_then(|r| r.amount_below.clone()),
        })
    }

    /// Checks an approver's terms against `request` and its rule.
    async fn check_terms(&self, request: &RequestRow, input: &TermsInput) -> Result<Terms, Error> {
        if input == &TermsInput::default() {
            return Ok(Terms::default());
        }
        let bounds = self.rule_bounds(request).await?;
        input
            .check(&stored_request(request)?, &bounds)
            .map_err(|e| Error::InvalidRequest {
                field: e.field,
                detail: e.detail,
            })
    }

    /// Starts an approval or denial: checks the person may decide this request now, and
    /// returns a passkey challenge bound to it.
    ///
    /// `seen_display_hash` is the `display_hash` of the page the person decided on, when the
    /// caller knows it: if the request's view no longer hashes to it, the person saw something
    /// else than what they would be approving, and the decision is refused.
    pub async fn decision_start(
        &self,
        who: &SignedIn,
        request_id: &str,
        decision: Decision,
        terms: &TermsInput,
        seen_display_hash: Option<&str>,
    ) -> Result<DecisionStart, Error> {
        if let Decision::Deny {
            reason_code,
            reason,
        } = &decision
        {
            if !DENY_REASONS.iter().any(|(c, _)| c == reason_code) {
                let codes: Vec<&str> = DENY_REASONS.iter().map(|(c, _)| *c).collect();
                return Err(Error::invalid(
                    "reason_code",
                    format!("reason_code must be one of {}", codes.join(", ")),
                ));
            }
            if reason.as_deref().is_some_and(|r| r.chars().count() > 1000) {
                return Err(Error::invalid(
                    "reason",
                    "reason is at most 1000 characters",
                ));
            }
        }
        let j = self.judgement(request_id).await?;
        self.check_may_decide(who, &j, &decision).await?;
        if decision == Decision::Approve {
            self.check_approve_delay(who, request_id).await?;
        }
        let mut view = self.build_view(&j.request).await?;
        if seen_display_hash.is_some_and(|seen| seen != view.display_hash()) {
            return Err(Error::Conflict(
                "the page you decided on no longer matches this request; reload it and look again"
                    .into(),
            ));
        }
        let terms = match decision {
            Decision::Approve => self.check_terms(&j.request, terms).await?,
            Decision::Deny { .. } if terms != &TermsInput::default() => {
                return Err(Error::invalid(
                    if terms.narrow.is_some() {
                        "narrow"
                    } else {
                        "standing"
                    },
                    "only an approval can be narrowed or made standing",
                ))
            }
            Decision::Deny { .. } => Terms::default(),
        };
        // What the passkey binds to: the page as shown, plus the terms the approver set.
        view.terms = (!terms.is_empty()).then(|| terms.clone());
        let display_hash = view.display_hash();
        let passkeys = load_passkeys(&users::passkeys(self.db.reader(), &who.person.id).await?)?;
        if passkeys.is_empty() {
            return Err(Error::Forbidden(
                "you have no passkey to decide with".into(),
            ));
        }
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| Error::internal(format!("start decision: {e}")))?;
        let options = serde_json::to_value(options).map_err(Error::internal)?;
        let challenge = options["publicKey"]["challenge"].clone();
        let kind = match decision {
            Decision::Approve => "approve",
            Decision::Deny { .. } => "deny",
        };
        let context = DecisionContext {
            decision,
            display_hash: display_hash.clone(),
            challenge,
            terms: terms.clone(),
        };
        let context = serde_json::to_string(&context).map_err(Error::internal)?;
        // Never outlive the request itself.
        let expires_at = (self.now() + CEREMONY_TTL_MS).min(j.request.expires_at);
        let row = CeremonyRow {
            user_id: Some(who.person.id.clone()),
            session_binding: Some(who.session_binding.clone()),
            request_id: Some(j.request.id.clone()),
            action_hash: Some(j.request.action_hash.clone()),
            ..CeremonyState::Passkey(state).into_row(kind, context, expires_at)?
        };
        ceremonies::insert(self.db.writer(), &row).await?;
        let ceremony_id = row.id;
        Ok(DecisionStart {
            ceremony_id,
            options,
            action_hash: j.request.action_hash,
            display_hash,
            terms,
        })
    }

    /// Whether this person may make this decision on this request now (the same checks
    /// [`Self::decision_start`] makes).
    pub(crate) async fn may_decide(
        &self,
        who: &SignedIn,
        request_id: &str,
        decision: &Decision,
    ) -> Result<(), Error> {
        let j = self.judgement(request_id).await?;
        self.check_may_decide(who, &j, decision).await
    }

    pub(super) async fn check_may_decide(
        &self,
        who: &SignedIn,
        j: &Judgement,
        decision: &Decision,
    ) -> Result<(), Error> {
        let me = candidate(&who.person);
        if !j.rule.is_eligible(&me, &j.owner_id) {
            // An owner or admin who may see the request but not decide gets a clear 403; anyone
            // else learns nothing.
            if who.person.role.is_admin() || who.person.id == j.owner_id {
                return Err(Error::Forbidden(
                    "you are not one of the approvers this request needs".into(),
                ));
            }
            return Err(Error::NotFound("no such request".into()));
        }
        match j.request.status {
            RequestStatus::Pending => {}
            RequestStatus::Expired => {
                return Err(Error::ExpiredToken("this request has expired".into()))
            }
            other => return Err(Error::Conflict(format!("this request was already {other}"))),
        }
        if *decision == Decision::Approve
            && rows::approvers(self.db.reader(), &j.request.id)
                .await?
                .contains(&who.person.id)
        {
            return Err(Error::Conflict(
                "you have already approved this request".into(),
            ));
        }
        Ok(())
    }

    /// Finishes an approval or denial of `request_id` with the passkey's answer.
    pub async fn decision_finish(
        &self,
        who: &SignedIn,
        request_id: &str,
        ceremony_id: &str,
        credential: &PublicKeyCredential,
    ) -> Result<DecisionResult, Error> {
        // 1. Consume the ceremony before looking at the assertion.
        let ceremony = self
            .take_ceremony(ceremony_id, &["approve", "deny"])
            .await?;
        if ceremony.user_id.as_deref() != Some(who.person.id.as_str())
            || ceremony.session_binding.as_deref() != Some(who.session_binding.as_str())
        {
            return Err(Error::AccessDenied(
                "this passkey prompt belongs to another session".into(),
            ));
        }
        // The request the caller says it decides is the one the prompt was started for: a page
        // that posts one request's ceremony to another's address decides neither (and the
        // ceremony, consumed above, cannot be tried again).
        if ceremony.request_id.as_deref() != Some(request_id) {
            return Err(Error::invalid(
                "ceremony_id",
                "this passkey prompt was started for another request",
            ));
        }
        let request_id = request_id.to_string();
        client_data::refuse_cross_origin(credential.response.client_data_json.as_ref())
            .map_err(|e| Error::AccessDenied(format!("the passkey assertion was refused: {e}")))?;
        let bound_hash = ceremony
            .action_hash
            .clone()
            .ok_or_else(|| Error::internal("decision ceremony without hash"))?;
        let CeremonyState::Passkey(state) =
            serde_json::from_str(&ceremony.state).map_err(Error::internal)?
        else {
            return Err(Error::internal("decision ceremony holds another state"));
        };
        let context: DecisionContext =
            serde_json::from_str(&ceremony.context).map_err(Error::internal)?;

        // 2. Verify the assertion: signature over our challenge, user verification, counter.
        let result = self
            .webauthn
            .finish_passkey_authentication(credential, &state)
            .map_err(|e| Error::AccessDenied(format!("the passkey assertion was refused: {e}")))?;
        if !result.user_verified() {
            return Err(Error::AccessDenied("user verification is required".into()));
        }

        self.record_decision(
            who,
            &Bound {
                request_id: &request_id,
                action_hash: &bound_hash,
                display_hash: &context.display_hash,
                decision: &context.decision,
                terms: &context.terms,
                batch: None,
            },
            &Proof {
                ceremony_id: &ceremony.id,
                challenge: &context.challenge,
                result: &result,
                credential,
            },
        )
        .await
    }

    /// Records one decision a verified passkey answer made on one request the ceremony bound
    /// (step 3 of the module docs).
    pub(super) async fn record_decision(
        &self,
        who: &SignedIn,
        bound: &Bound<'_>,
        proof: &Proof<'_>,
    ) -> Result<DecisionResult, Error> {
        let request_id = bound.request_id.to_string();
        let bound_hash = bound.action_hash.to_string();
        let result = proof.result;
        let credential = proof.credential;
        // 3. Decide, in one transaction that first holds the agent (a suspension or key change
        //    then either committed before us, and the request is no longer pending, or waits
        //    for us and revokes the grant we mint; see `agents`), then locks the request row,
        //    and only if it is still pending, unexpired and unchanged.
        let now = self.now();
        let j = self.judgement(&request_id).await?;
        if let Some(standing) = &bound.terms.standing {
            // The policy may have changed during the ceremony: the standing approval must
            // still be within what the rule allows now.
            let bounds = self.rule_bounds(&j.request).await?;
            let fits = bounds.standing.is_some_and(|l| {
                standing.valid_for_seconds <= l.max_seconds && standing.uses <= l.max_uses
            });
            if !fits {
                return Err(Error::Conflict(
                    "the policy changed during your decision and no longer allows this standing approval; nothing was approved".into(),
                ));
            }
        }
        // Read before the transaction (it is a fact about the agents, not about this request's
        // state): every decision event carries it, so the export shows the chain per decision.
        let delegation = self.stored_delegation(&j.request).await?;
        let with_delegation = |mut data: Value| {
            if let Some(d) = &delegation {
                data["delegation"] = d.clone();
            }
            data
        };
        let mut tx = self.db.begin().await?;
        let agent_id = j.request.agent_id.as_str();
        let agent_now =
            agents::current_for_write(&mut tx, self.db.backend(), &[agent_id], agents::Hold::Read)
                .await?
                .remove(agent_id)
                .ok_or_else(|| Error::internal("request without agent"))?;
        let still_open = agent_now.status == AgentStatus::Active
            && rows::lock_pending(&mut tx, &request_id, &bound_hash, now).await?;
        if !still_open {
            drop(tx);
            let now_row = self.read_fresh(&request_id).await?;
            return Err(match now_row.map(|r| r.status) {
                Some(RequestStatus::Expired) => {
                    Error::ExpiredToken("this request expired before your decision arrived".into())
                }
                Some(RequestStatus::Pending) => {
                    Error::Conflict("the request changed since you opened it".into())
                }
                Some(s) => Error::Conflict(format!("this request was already {s} by someone else")),
                None => Error::NotFound("no such request".into()),
            });
        }
        // Eligibility again, inside the transaction: the person may have been deactivated or
        // removed from a group since the prompt started.
        let me_row = users::get(&mut tx, &who.person.id)
            .await?
            .ok_or_else(|| Error::AccessDenied("unknown person".into()))?;
        let me = Candidate {
            user_id: &me_row.id,
            is_admin: me_row.role.is_admin(),
            groups: &me_row.groups,
            active: me_row.status == UserStatus::Active,
        };
        if !j.rule.is_eligible(&me, &j.owner_id) {
            return Err(Error::Forbidden(
                "you are no longer one of this request's approvers".into(),
            ));
        }
        let passkey_rows = users::passkeys(&mut *tx, &who.person.id).await?;
        let used = used_passkey(&passkey_rows, result)?
            .ok_or_else(|| Error::AccessDenied("that passkey is not registered to you".into()))?;
        if let Some(json) = &used.updated {
            users::update_passkey(&mut tx, &used.credential_id, json, now).await?;
        }
        let actor = format!("user:{}", who.person.id);
        let mut evidence = with_delegation(json!({
            "user_id": who.person.id,
            "passkey_id": used.id,
            "credential_id": used.credential_id,
            "ceremony_id": proof.ceremony_id,
            "challenge": proof.challenge,
            "action_hash": bound_hash,
            "display_hash": bound.display_hash,
            "user_verified": result.user_verified(),
            "assertion": serde_json::to_value(credential).map_err(Error::internal)?,
        }));
        if !bound.terms.is_empty() {
            evidence["terms"] = json!(bound.terms);
        }
        if let Some(batch) = bound.batch {
            evidence["batch"] = batch.clone();
        }

        let status = match bound.decision {
            Decision::Approve => {
                let narrowed = bound
                    .terms
                    .narrow
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(Error::internal)?;
                let added = rows::add_approval(
                    &mut tx,
                    &request_id,
                    &who.person.id,
                    &used.id,
                    now,
                    narrowed.as_deref(),
                )
                .await?;
                if !added {
                    return Err(Error::Conflict(
                        "you have already approved this request".into(),
                    ));
                }
                audit::append(
                    &mut tx,
                    now,
                    &actor,
                    EventKind::ApprovalRecorded,
                    Some(&request_id),
                    &evidence,
                )
                .await?;
                // Counted on people as they are now: an approval from someone deactivated or
                // moved out of the rule's groups since gives no sources and does not count, and
                // so is not named as an approver in the grant or the approved event either (its
                // `approval.recorded` event stays in the log).
                let mut approvers = Vec::new();
                let mut sources = Vec::new();
                for uid in rows::approvers(&mut *tx, &request_id).await? {
                    if let Some(u) = users::get(&mut tx, &uid).await? {
                        let c = Candidate {
                            user_id: &u.id,
                            is_admin: u.role.is_admin(),
                            groups: &u.groups,
                            active: u.status == UserStatus::Active,
                        };
                        let of = j.rule.sources_of(&c, &j.owner_id);
                        if !of.is_empty() {
                            sources.push(of);
                            approvers.push(uid);
                        }
                    }
                }
                if j.rule.is_met(&sources) {
                    let change = Change {
                        expected_hash: Some(&bound_hash),
                        ..Change::from_pending(RequestStatus::Approved, now, &actor)
                    };
                    if !rows::change(&mut tx, &request_id, &change).await? {
                        return Err(Error::Conflict(
                            "the request changed during the decision".into(),
                        ));
                    }
                    // The grant gets the tightest terms any counted approver narrowed to.
                    let mut narrowings = Vec::new();
                    for (uid, terms) in rows::approval_terms(&mut *tx, &request_id).await? {
                        if approvers.contains(&uid) {
                            let n: Narrowing =
                                serde_json::from_str(&terms).map_err(Error::internal)?;
                            narrowings.push(n);
                        }
                    }
                    let narrowing = Narrowing::tightest(&narrowings);
                    let mut approved = json!({ "approvers": approvers });
                    if let Some(n) = &narrowing {
                        approved["narrowed"] = json!(n);
                    }
                    audit::append(
                        &mut tx,
                        now,
                        &actor,
                        EventKind::RequestApproved,
                        Some(&request_id),
                        &with_delegation(approved),
                    )
                    .await?;
                    // The key and epoch as this transaction holds them (step 3).
                    let agent = agents::get(&mut *tx, agent_id)
                        .await?
                        .ok_or_else(|| Error::internal("request without agent"))?;
                    self.mint_grant(
                        &mut tx,
                        &j.request,
                        agent.jwk_thumbprint.as_deref(),
                        agent_now.epoch,
                        &GrantTerms {
                            approvers: &approvers,
                            narrowing: narrowing.as_ref(),
                            standing_id: None,
                        },
                        now,
                    )
                    .await?;
                    if let Some(standing) = &bound.terms.standing {
                        self.create_standing(
                            &mut tx,
                            &j.request,
                            standing,
                            &who.person.id,
                            proof.ceremony_id,
                            now,
                        )
                        .await?;
                    }
                    announce(&mut tx, self.db.backend(), &request_id).await?;
                    RequestStatus::Approved
                } else {
                    announce(&mut tx, self.db.backend(), &request_id).await?;
                    RequestStatus::Pending
                }
            }
            Decision::Deny {
                reason_code,
                reason,
            } => {
                let text = reason
                    .clone()
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| {
                        DENY_REASONS
                            .iter()
                            .find(|(c, _)| c == reason_code)
                            .map(|(_, t)| t.to_string())
                            .unwrap_or_default()
                    });
                let change = Change {
                    reason_code: Some(reason_code),
                    reason: Some(&text),
                    expected_hash: Some(&bound_hash),
                    ..Change::from_pending(RequestStatus::Denied, now, &actor)
                };
                if !rows::change(&mut tx, &request_id, &change).await? {
                    return Err(Error::Conflict(
                        "the request changed during the decision".into(),
                    ));
                }
                let mut evidence = evidence;
                evidence["reason_code"] = json!(reason_code);
                evidence["reason"] = json!(text);
                audit::append(
                    &mut tx,
                    now,
                    &actor,
                    EventKind::RequestDenied,
                    Some(&request_id),
                    &evidence,
                )
                .await?;
                announce(&mut tx, self.db.backend(), &request_id).await?;
                RequestStatus::Denied
            }
        };
        tx.commit().await.map_err(store::StoreError::from)?;
        match status {
            RequestStatus::Approved => bump(&self.metrics.requests_approved),
            RequestStatus::Denied => bump(&self.metrics.requests_denied),
            _ => {}
        }
        self.waiters.wake(&request_id);
        self.callbacks.kick();
        let received = rows::approvers(self.db.reader(), &request_id).await?.len() as i64;
        Ok(DecisionResult {
            status,
            approvals: ApprovalCount {
                required: j.request.approvals_required,
                received,
            },
        })
    }
}

/// What the quorum rule needs to know about a person.
pub(crate) fn candidate(p: &super::people::Person) -> Candidate<'_> {
    Candidate {
        user_id: &p.id,
        is_admin: p.role.is_admin(),
        groups: &p.groups,
        active: p.status == UserStatus::Active,
    }
}
