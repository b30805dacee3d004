//! The secret-injecting gateway: the agent sends the one approved call to
//! `/gw/{provider}/{path}` with its grant instead of the provider's secret; Countersign checks
//! that the call is exactly what was approved, uses the grant up, forwards the call with the
//! secret added and hands back the upstream's answer. The agent never sees the secret.
//!
//! "Exactly what was approved" is checked against the grant's own claims, before anything is
//! sent: the method and path (with its query) must equal `authorization_details[0].operation`,
//! and the SHA-256 of the body's canonical JSON (RFC 8785) must equal that of the approved
//! `params` (or `params_sha256`, for large ones). A call that differs is refused and the grant
//! stays unused; one that matches uses the grant up before it is sent, so a replay is refused
//! even if the upstream never answered.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::super::agents::AgentIdentity;
use super::super::{Countersign, Error};
use crate::domain::audit_kind::EventKind;
use crate::domain::canonical::{canonical_json, sha256_prefixed};
use crate::domain::credential::{covers, ProviderSettings};
use crate::store::{self, audit};

/// The largest upstream answer passed back to the agent.
pub const MAX_ANSWER_BYTES: usize = 10 * 1024 * 1024;

/// A call to forward, as the agent made it.
#[derive(Debug)]
pub struct GatewayCall<'a> {
    /// The provider's name (`/gw/{provider}/…`).
    pub provider: &'a str,
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path after `/gw/{provider}`, with its query, e.g. `/v2/transfers?dry=0`.
    pub path_and_query: &'a str,
    /// The call's `Content-Type`, passed on.
    pub content_type: Option<&'a str>,
    /// The call's body.
    pub body: &'a [u8],
    /// The grant (`Countersign-Grant` header).
    pub grant: &'a str,
}

/// The upstream's answer.
#[derive(Debug)]
pub struct Forwarded {
    /// Its status code.
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
    /// Its body.
    pub body: Vec<u8>,
}

fn refuse(detail: impl Into<String>) -> Error {
    Error::Forbidden(detail.into())
}

/// The SHA-256 of a value's canonical JSON, as grants carry it.
fn params_hash(params: &Value) -> String {
    sha256_prefixed(canonical_json(params).as_bytes())
}

impl Countersign {
    /// Forwards one approved call (see the module docs).
    pub async fn forward_through_gateway(
        &self,
        agent: &AgentIdentity,
        call: GatewayCall<'_>,
    ) -> Result<Forwarded, Error> {
        // No such provider is the caller's mistake (404), not an outage (503).
        if store::credentials::provider(self.db.reader(), call.provider)
            .await?
            .is_none()
        {
            return Err(Error::NotFound(format!(
                "no gateway named {}",
                call.provider
            )));
        }
        let (provider, secret) = self.provider_for_use(call.provider).await?;
        let ProviderSettings::Http(settings) = &provider.settings else {
            return Err(Error::NotFound(format!(
                "no gateway named {}",
                call.provider
            )));
        };
        let (jti, claims) = self.verify_grant(call.grant).await.map_err(|e| match e {
            Error::InvalidRequest { detail, .. } => Error::invalid("Countersign-Grant", detail),
            other => other,
        })?;
        if claims.get("sub").and_then(Value::as_str) != Some(agent.id.as_str()) {
            return Err(refuse("this grant was issued to another agent"));
        }
        if let Some(jkt) = claims.pointer("/cnf/jkt").and_then(Value::as_str) {
            if agent.jkt.as_deref() != Some(jkt) {
                return Err(refuse("this grant is bound to another key (cnf.jkt)"));
            }
        }
        let request_id = claims
            .get("request_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let request = store::requests::get(self.db.reader(), request_id)
            .await?
            .ok_or_else(|| Error::internal("a grant without its request"))?;
        if request.credential.as_deref() != Some(call.provider) {
            return Err(refuse(format!(
                "this grant's request releases nothing through {}: its policy rule names no such credential",
                call.provider
            )));
        }
        let detail = claims.pointer("/authorization_details/0");
        let approved = detail
            .and_then(|d| d.get("operation"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let operation = format!("{} {}", call.method, call.path_and_query);
        if approved != operation {
            return Err(refuse(format!(
                "this call is not the approved one: approved {approved:?}, called {operation:?}"
            )));
        }
        let approved_params = match detail {
            Some(d) => match (d.get("params"), d.get("params_sha256")) {
                (Some(p), _) => Some(params_hash(p)),
                (None, Some(h)) => h.as_str().map(str::to_string),
                (None, None) => None,
            },
            None => None,
        };
        let sent_params = if call.body.is_empty() {
            None
        } else {
            let body: Value = serde_json::from_slice(call.body).map_err(|_| {
                Error::invalid(
                    "body",
                    "the body of a gateway call must be JSON (the approved params)",
                )
            })?;
            Some(params_hash(&body))
        };
        if approved_params != sent_params {
            return Err(refuse(
                "this call's body is not the approved params (their canonical SHA-256 differs)",
            ));
        }
        // Approvers cannot cap the amount of a credential release (see `domain::terms`), so a
        // capped grant here was issued for something else: the gateway cannot see amounts.
        if crate::service::grants::amount_cap(&claims)?.is_some() {
            return Err(refuse(
                "this grant caps the amount, which a gateway call cannot be held to",
            ));
        }
        if !covers(&settings.operations, &operation) {
            return Err(refuse(format!(
                "the gateway {} does not cover {operation}",
                call.provider
            )));
        }

        // Used up before it is sent: whatever happens next, it is not sent twice.
        let now = self.now();
        let mut tx = self.db.begin().await?;
        if !store::grants::redeem(&mut tx, &jti, now).await? {
            drop(tx);
            return Err(self.why_not_redeemed(&jti, now).await?);
        }
        audit::append(
            &mut tx,
            now,
            &format!("agent:{}", agent.id),
            EventKind::GrantRedeemed,
            Some(&request.id),
            &json!({ "jti": jti, "for": "gateway" }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        crate::telemetry::bump(&self.metrics.grants_redeemed);

        let base = settings.base_url.trim_end_matches('/');
        let url = format!("{base}{}", call.path_and_query);
        let timeout = Duration::from_secs(u64::from(settings.timeout_seconds));
        let started = Instant::now();
        let sent = self
            .send_upstream(&url, &call, &settings.header, secret.expose(), timeout)
            .await;
        let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut evidence = json!({
            "jti": jti, "provider": call.provider, "secret_fingerprint": provider.fingerprint,
            "operation": operation, "bytes_sent": call.body.len(), "took_ms": took_ms,
        });
        match &sent {
            Ok(answer) => {
                evidence["status"] = json!(answer.status);
                evidence["bytes_received"] = json!(answer.body.len());
            }
            Err(e) => evidence["error"] = json!(e.to_string()),
        }
        let mut tx = self.db.begin().await?;
        audit::append(
            &mut tx,
            self.now(),
            "system",
            EventKind::GatewayForwarded,
            Some(&request.id),
            &evidence,
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        sent
    }

    async fn send_upstream(
        &self,
        url: &str,
        call: &GatewayCall<'_>,
        header: &str,
        secret: &str,
        timeout: Duration,
    ) -> Result<Forwarded, Error> {
        let method = reqwest::Method::from_bytes(call.method.as_bytes())
            .map_err(|_| Error::invalid("method", "not an HTTP method"))?;
        let mut request = self
            .credentials
            .http
            .request(method, url)
            .timeout(timeout)
            .header(header, secret)
            .body(call.body.to_vec());
        if let Some(ct) = call.content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, ct);
        }
        let upstream = |what: &str| Error::UpstreamFailed(format!("{}: {what}", call.provider));
        let mut answer = request.send().await.map_err(|e| {
            if e.is_timeout() {
                Error::UpstreamTimeout(format!(
                    "{} did not answer within {} s",
                    call.provider,
                    timeout.as_secs()
                ))
            } else {
                upstream("the upstream cannot be reached")
            }
        })?;
        let status = answer.status().as_u16();
        let content_type = answer
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        loop {
            match answer.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                        return Err(upstream("the upstream's answer is larger than 10 MiB"));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(Error::UpstreamTimeout(format!(
                        "{} did not finish its answer within {} s",
                        call.provider,
                        timeout.as_secs()
                    )))
                }
                Err(_) => return Err(upstream("the upstream's answer broke off")),
            }
        }
        Ok(Forwarded {
            status,
            content_type,
            body,
        })
    }
}
