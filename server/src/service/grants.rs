//! Grants: minting them when a request is approved, handing them to the waiting agent,
//! redeeming them exactly once, revoking them, and closing the chain with the outcome.
//!
//! The database keeps a grant's claims, not its signed token. When the agent reads its approved
//! request we sign the stored claims again; Ed25519 signatures are deterministic, so the same
//! key yields the same token, and redemption is keyed on `jti`, so any copy is usable once.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::requests::{stored_body, GrantView};
use super::{Countersign, Error};
use crate::clock::{rfc3339, Millis};
use crate::domain::audit_kind::EventKind;
use crate::domain::canonical::{canonical_json, sha256_prefixed};
use crate::domain::intake::Amount;
use crate::domain::jose::{self, Jwks, PublicJwk, GRANT_TYP};
use crate::domain::lifecycle::GrantStatus;
use crate::domain::terms::Narrowing;
use crate::service::agents::AgentIdentity;
use crate::store::grants::{self as rows, GrantRow};
use crate::store::requests::RequestRow;
use crate::store::{self, audit, WriteTx};
use crate::telemetry::bump;

/// Who gives a grant up.
#[derive(Debug, Clone, Copy)]
pub enum Revoker<'a> {
    /// The agent it was issued to.
    Agent(&'a AgentIdentity),
    /// A signed-in person: the agent's owner or an admin.
    Person(&'a crate::service::people::SignedIn),
}

/// The answer to a successful redemption.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Redeemed {
    /// Always true.
    pub valid: bool,
    /// The grant's verified claims.
    #[schema(value_type = Object)]
    pub claims: Value,
}

/// What the agent reports after acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action was performed.
    Succeeded,
    /// The action failed.
    Failed,
}

/// Action parameters up to this many bytes of canonical JSON travel in the grant; larger ones
/// travel as their SHA-256 (the contract's "The grant").
pub const INLINE_PARAMS_MAX_BYTES: usize = 4 * 1024;

/// What a grant carries besides its request: the approvers' narrowed terms, and the standing
/// approval that approved it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GrantTerms<'a> {
    /// The people whose approvals made the quorum (user ids); empty when policy allowed it.
    pub approvers: &'a [String],
    /// The tightest terms the approvers narrowed to.
    pub narrowing: Option<&'a Narrowing>,
    /// The standing approval whose use approved the request.
    pub standing_id: Option<&'a str>,
}

/// A grant built for an approved request, not yet stored.
#[derive(Debug)]
pub(crate) struct BuiltGrant {
    /// The row to store.
    pub row: GrantRow,
    /// Its `grant.issued` audit event.
    pub event: audit::NewEvent,
    /// The signed token, for delivery.
    pub token: String,
}

/// A stored grant and its signed token, as the agent receives them.
pub(crate) fn delivered(g: &GrantRow, token: String) -> GrantView {
    GrantView {
        token,
        jti: g.jti.clone(),
        expires_at: rfc3339(g.expires_at),
    }
}

/// The amount cap an approver narrowed a grant to, from its verified claims.
pub(crate) fn amount_cap(claims: &Value) -> Result<Option<Amount>, Error> {
    claims
        .pointer("/authorization_details/0/amount_max")
        .map(|cap| serde_json::from_value(cap.clone()).map_err(Error::internal))
        .transpose()
}

/// Only reachable with a grant naming dozens of approvers next to a maximal target and
/// operation: refused before anything is stored, so no approved request is left without a
/// grant it can receive.
fn too_large() -> Error {
    Error::Conflict(
        "the grant for this request would not fit in 8 KiB (too many approvers to name)".into(),
    )
}

impl Countersign {
    /// Issues the grant for an approved request, inside the deciding transaction. `jkt` and
    /// `agent_epoch` are the agent's as that transaction holds them.
    pub(crate) async fn mint_grant(
        &self,
        tx: &mut WriteTx,
        request: &RequestRow,
        jkt: Option<&str>,
        agent_epoch: i64,
        terms: &GrantTerms<'_>,
        now: Millis,
    ) -> Result<GrantRow, Error> {
        let built = self.build_grant(request, jkt, agent_epoch, terms, now)?;
        rows::insert(tx, &built.row).await?;
        audit::append_many(tx, &[built.event]).await?;
        Ok(built.row)
    }

    /// The grant for an approved request, its `grant.issued` audit event and its signed token,
    /// not yet stored.
    ///
    /// The token is signed here, before anything is stored, so that a grant that could not be
    /// delivered is never recorded: the contract promises every grant fits in 8 KiB. Parameters
    /// whose canonical JSON is over 4 KiB travel as their digest (`params_sha256`), as the
    /// contract says; smaller ones travel as they are unless the rest of the grant (a long
    /// target and operation in four-byte characters, many approvers) leaves no room for them,
    /// in which case they travel as the digest too, which a downstream system must accept
    /// anyway.
    pub(crate) fn build_grant(
        &self,
        request: &RequestRow,
        jkt: Option<&str>,
        agent_epoch: i64,
        terms: &GrantTerms<'_>,
        now: Millis,
    ) -> Result<BuiltGrant, Error> {
        let approvers = terms.approvers;
        // Time-ordered, like request ids: a new grant's key lands at the end of the grants'
        // index instead of on a random page of it (one page fewer written per grant). Its 74
        // random bits still make it unguessable, and its time is in `iat` anyway.
        let jti = uuid::Uuid::now_v7().to_string();
        let iat = now.div_euclid(1000);
        let narrowing = terms.narrowing;
        let ttl = narrowing
            .and_then(|n| n.grant_ttl_seconds)
            .map_or(request.grant_ttl_seconds, |t| {
                i64::from(t).min(request.grant_ttl_seconds)
            });
        let exp = iat + ttl;
        let body = stored_body(request);
        let action = body.get("action").cloned().unwrap_or(Value::Null);
        let params = action.get("params");
        let inline = params.is_some_and(|p| canonical_json(p).len() <= INLINE_PARAMS_MAX_BYTES);
        let claims_with = |inline_params: bool| {
            let mut detail = json!({ "type": request.action_type });
            if let Some(op) = action.get("operation") {
                detail["operation"] = op.clone();
            }
            match params {
                Some(p) if inline_params => detail["params"] = p.clone(),
                Some(p) => {
                    detail["params_sha256"] = json!(sha256_prefixed(canonical_json(p).as_bytes()))
                }
                None => {}
            }
            if let Some(cap) = narrowing.and_then(|n| n.amount_max.as_ref()) {
                detail["amount_max"] = json!(cap);
            }
            let mut claims = json!({
                "iss": self.issuer(),
                "sub": request.agent_id,
                "aud": request.target,
                "jti": jti,
                "iat": iat,
                "exp": exp,
                "action_hash": request.action_hash,
                "request_id": request.id,
                "authorization_details": [detail],
                "approvers": approvers,
            });
            if let Some(jkt) = jkt {
                claims["cnf"] = json!({ "jkt": jkt });
            }
            if let Some(id) = terms.standing_id {
                claims["standing_approval"] = json!(id);
            }
            claims
        };
        let sign = |claims: &Value| self.signer.sign_compact(GRANT_TYP, claims);
        let mut claims = claims_with(inline);
        let token = match sign(&claims) {
            Ok(token) => token,
            Err(_) if inline => {
                claims = claims_with(false);
                sign(&claims).map_err(|_| too_large())?
            }
            Err(_) => return Err(too_large()),
        };
        let row = GrantRow {
            jti: jti.clone(),
            request_id: request.id.clone(),
            agent_id: request.agent_id.clone(),
            status: GrantStatus::Issued,
            claims: claims.to_string(),
            issued_at: now,
            expires_at: exp * 1000,
            redeemed_at: None,
            revoked_at: None,
            outcome: None,
            reported_at: None,
            agent_epoch,
        };
        let event = audit::NewEvent {
            at: now,
            actor: "system".into(),
            kind: EventKind::GrantIssued,
            request_id: Some(request.id.clone()),
            data: json!({ "jti": jti, "kid": self.signer.kid(), "claims": claims }),
        };
        Ok(BuiltGrant { row, event, token })
    }

    /// The grant of an approved request, signed for delivery. It is returned whatever its state
    /// (the agent needs its `jti` to report the outcome); a used or revoked copy redeems nothing.
    pub(crate) async fn grant_for_request(
        &self,
        request_id: &str,
    ) -> Result<Option<GrantView>, Error> {
        let Some(g) = rows::for_request(self.db.reader(), request_id).await? else {
            return Ok(None);
        };
        Ok(Some(self.grant_view(&g)?))
    }

    /// Signs a stored grant's claims for delivery.
    pub(crate) fn grant_view(&self, g: &GrantRow) -> Result<GrantView, Error> {
        let claims: Value = serde_json::from_str(&g.claims).map_err(Error::internal)?;
        let token = self
            .signer
            .sign_compact(GRANT_TYP, &claims)
            .map_err(Error::internal)?;
        Ok(delivered(g, token))
    }

    /// The downstream system redeems a grant, just before acting. The first valid call wins.
    ///
    /// `amount` is what the downstream system is about to act on; a grant whose approver capped
    /// the amount (`authorization_details[0].amount_max`) is redeemed only with an amount
    /// within the cap, and is left unused otherwise.
    pub async fn redeem_grant(
        &self,
        token: &str,
        action_hash: Option<&str>,
        amount: Option<&Amount>,
    ) -> Result<Redeemed, Error> {
        let result = self.redeem_inner(token, action_hash, amount).await;
        match &result {
            Ok(_) => bump(&self.metrics.grants_redeemed),
            Err(_) => bump(&self.metrics.grants_refused),
        }
        result
    }

    async fn redeem_inner(
        &self,
        token: &str,
        action_hash: Option<&str>,
        amount: Option<&Amount>,
    ) -> Result<Redeemed, Error> {
        let (jti, claims) = self.verify_grant(token).await?;
        if let Some(expected) = action_hash {
            if claims.get("action_hash").and_then(Value::as_str) != Some(expected) {
                return Err(Error::invalid(
                    "action_hash",
                    "the grant was issued for a different action (action_hash differs)",
                ));
            }
        }
        if let Some(cap) = amount_cap(&claims)? {
            let within = amount.is_some_and(|a| a.currency == cap.currency && a.value <= cap.value);
            if !within {
                return Err(Error::invalid(
                    "amount",
                    format!(
                        "the approver capped this grant at {} {}: send the amount you are about to act on, within the cap",
                        cap.value_text, cap.currency
                    ),
                ));
            }
        }
        let now = self.now();
        let mut tx = self.db.begin().await?;
        if rows::redeem(&mut tx, &jti, now).await? {
            let g = rows::get(&mut *tx, &jti).await?;
            audit::append(
                &mut tx,
                now,
                "downstream",
                EventKind::GrantRedeemed,
                g.as_ref().map(|g| g.request_id.as_str()),
                &json!({ "jti": jti }),
            )
            .await?;
            tx.commit().await.map_err(store::StoreError::from)?;
            return Ok(Redeemed {
                valid: true,
                claims,
            });
        }
        drop(tx);
        Err(self.why_not_redeemed(&jti, now).await?)
    }

    /// Checks a grant token's type, key, signature and issuer, and returns its `jti` and
    /// claims. Says nothing about whether it is still usable.
    pub(crate) async fn verify_grant(&self, token: &str) -> Result<(String, Value), Error> {
        let invalid = |detail: &str| Error::invalid("token", detail.to_string());
        let (header, _) = jose::peek_unverified(token)
            .map_err(|e| invalid(&format!("not a valid grant: {e}")))?;
        if header.typ.as_deref() != Some(GRANT_TYP) {
            return Err(invalid("not a Countersign grant (typ)"));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("the grant names no key (kid)"))?;
        let key = self
            .verification_key(&kid)
            .await?
            .ok_or_else(|| invalid("the grant was signed by an unknown key"))?;
        let (_, claims) = jose::verify_compact(token, &key)
            .map_err(|_| invalid("the grant's signature is invalid"))?;
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer().as_str()) {
            return Err(invalid("the grant was issued by another server"));
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("the grant has no jti"))?
            .to_string();
        Ok((jti, claims))
    }

    /// Why a redemption's conditional write changed nothing, as the error to answer with.
    pub(crate) async fn why_not_redeemed(&self, jti: &str, now: Millis) -> Result<Error, Error> {
        let g = rows::get(self.db.reader(), jti)
            .await?
            .ok_or_else(|| Error::invalid("token", "unknown grant"))?;
        Ok(match g.status {
            GrantStatus::Redeemed => Error::GrantAlreadyRedeemed,
            GrantStatus::Revoked => Error::GrantRevoked,
            // Still issued and in time, yet refused: the agent was suspended or its key
            // changed after the grant was issued (see `store::grants::redeem`).
            GrantStatus::Issued if g.expires_at > now => Error::GrantRevoked,
            GrantStatus::Issued | GrantStatus::Expired => Error::GrantExpired,
        })
    }

    async fn verification_key(
        &self,
        kid: &str,
    ) -> Result<Option<ed25519_dalek::VerifyingKey>, Error> {
        if kid == self.signer.kid() {
            return Ok(Some(self.signer.verifying_key()));
        }
        for (k, jwk) in rows::signing_keys(self.db.reader()).await? {
            if k == kid {
                let jwk = PublicJwk::parse(&jwk).map_err(Error::internal)?;
                return Ok(Some(jwk.verifying_key().map_err(Error::internal)?));
            }
        }
        Ok(None)
    }

    /// A grant is given up, by its agent or by a person responsible for that agent (its owner,
    /// or an admin). Anyone else is told the grant does not exist.
    pub async fn revoke_grant(&self, by: Revoker<'_>, jti: &str) -> Result<(), Error> {
        let not_found = || Error::NotFound("no such grant".into());
        let g = rows::get(self.db.reader(), jti)
            .await?
            .ok_or_else(not_found)?;
        let actor = match by {
            Revoker::Agent(agent) if agent.id == g.agent_id => format!("agent:{}", agent.id),
            Revoker::Person(who) => {
                let agent = crate::store::agents::get(self.db.reader(), &g.agent_id)
                    .await?
                    .ok_or_else(not_found)?;
                if !who.person.role.is_admin() && who.person.id != agent.owner_id {
                    return Err(not_found());
                }
                format!("user:{}", who.person.id)
            }
            Revoker::Agent(_) => return Err(not_found()),
        };
        let now = self.now();
        let mut tx = self.db.begin().await?;
        if !rows::revoke(&mut tx, jti, now).await? {
            // A grant already redeemed for a credential: revoking it ends the credential.
            if let Some(lease) = store::credentials::lease_of_grant(&mut *tx, jti).await? {
                if crate::service::credentials::request_revoke(
                    &mut tx,
                    &lease.id,
                    "grant_revoked",
                    &actor,
                    now,
                )
                .await?
                {
                    tx.commit().await.map_err(store::StoreError::from)?;
                    self.credentials.kick();
                    return Ok(());
                }
            }
            return Err(Error::Conflict(format!(
                "the grant is already {}",
                g.status
            )));
        }
        audit::append(
            &mut tx,
            now,
            &actor,
            EventKind::GrantRevoked,
            Some(&g.request_id),
            &json!({ "jti": jti, "by": actor }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(())
    }

    /// The agent reports what happened after the grant was redeemed: the last link of the chain.
    pub async fn report_outcome(
        &self,
        agent: &AgentIdentity,
        jti: &str,
        outcome: Outcome,
        detail: Option<&str>,
    ) -> Result<(), Error> {
        if let Some(d) = detail {
            if d.chars().count() > 2000 {
                return Err(Error::invalid(
                    "detail",
                    "detail is at most 2000 characters",
                ));
            }
        }
        let g = rows::get(self.db.reader(), jti)
            .await?
            .filter(|g| g.agent_id == agent.id)
            .ok_or_else(|| Error::NotFound("no such grant".into()))?;
        let outcome_text = match outcome {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
        };
        let now = self.now();
        let mut tx = self.db.begin().await?;
        if !rows::report(&mut tx, jti, outcome_text, now).await? {
            let why = if g.outcome.is_some() {
                "an outcome was already reported".to_string()
            } else {
                format!("the grant is {}, not redeemed", g.status)
            };
            return Err(Error::Conflict(why));
        }
        audit::append(
            &mut tx,
            now,
            &format!("agent:{}", agent.id),
            EventKind::GrantOutcome,
            Some(&g.request_id),
            &json!({ "jti": jti, "outcome": outcome_text, "detail": detail }),
        )
        .await?;
        // The task is over: a credential released for it goes now.
        let lease = store::credentials::lease_of_grant(&mut *tx, jti).await?;
        if let Some(lease) = &lease {
            crate::service::credentials::request_revoke(
                &mut tx,
                &lease.id,
                "outcome_reported",
                &format!("agent:{}", agent.id),
                now,
            )
            .await?;
        }
        tx.commit().await.map_err(store::StoreError::from)?;
        if lease.is_some() {
            self.credentials.kick();
        }
        Ok(())
    }

    /// The published verification keys: every key ever registered (a superset of those whose
    /// grants may still be live, which is what verifiers need).
    pub async fn jwks(&self) -> Result<Jwks, Error> {
        let mut keys = Vec::new();
        for (kid, jwk) in rows::signing_keys(self.db.reader()).await? {
            let mut jwk = PublicJwk::parse(&jwk).map_err(Error::internal)?;
            jwk.kid = Some(kid);
            jwk.alg = Some("EdDSA".into());
            jwk.r#use = Some("sig".into());
            keys.push(jwk);
        }
        Ok(Jwks { keys })
    }
}
