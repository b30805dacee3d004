//! Endpoints for people in a browser (`/api/ui`): enrolment, sign-in, and the approval
//! ceremony. They authenticate with the session cookie, so every state-changing call is also
//! checked to come from our own origin (see [`same_origin_only`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand_core::OsRng;
use serde::Deserialize;
use tower_sessions::Session;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::body::{parse_json, read_json_body, Path, Query};
use super::problem::ApiError;
use crate::domain::lifecycle::UserStatus;
use crate::domain::secrets::random_hex;
use crate::domain::terms::{NarrowInput, StandingInput, TermsInput};
use crate::service::decisions::Decision;
use crate::service::people::SignedIn;
use crate::service::{Countersign, Error};

const UID: &str = "uid";
const BINDING: &str = "sb";
const SINCE: &str = "since";
/// A session lasts at most this long, however active (idle expiry is the cookie layer's).
pub const ABSOLUTE_SESSION_MS: i64 = 12 * 3600 * 1000;

/// A signed-in person; taking it as an argument is how a handler requires one.
#[derive(Debug, Clone)]
pub struct OwnerSession(pub SignedIn);

impl FromRequestParts<Arc<Countersign>> for OwnerSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        core: &Arc<Countersign>,
    ) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, core)
            .await
            .map_err(|_| Error::internal("session layer missing"))?;
        Ok(Self(signed_in(core, &session).await?))
    }
}

/// The person signed in to this session: present, within the absolute lifetime, and still
/// active (a deactivated person's sessions stop working at once).
pub async fn signed_in(core: &Countersign, session: &Session) -> Result<SignedIn, Error> {
    let get = |key: &'static str| async move {
        session.get::<serde_json::Value>(key).await.ok().flatten()
    };
    let uid = get(UID)
        .await
        .and_then(|v| v.as_str().map(str::to_string))
        .ok_or(Error::SignInRequired)?;
    let binding = get(BINDING)
        .await
        .and_then(|v| v.as_str().map(str::to_string))
        .ok_or(Error::SignInRequired)?;
    let since = get(SINCE)
        .await
        .and_then(|v| v.as_i64())
        .ok_or(Error::SignInRequired)?;
    if core.now() - since > ABSOLUTE_SESSION_MS {
        let _ = session.flush().await;
        return Err(Error::SignInRequired);
    }
    let person = core
        .person(&uid)
        .await?
        .filter(|p| p.status == UserStatus::Active)
        .ok_or(Error::SignInRequired)?;
    Ok(SignedIn {
        person,
        session_binding: binding,
    })
}

/// Refuses state-changing requests that a browser marks as cross-site. Browsers send
/// `Sec-Fetch-Site` (and `Origin`) on every POST from a page. A state-changing request with
/// neither is not one our pages send, so it is refused when it carries the session cookie (an
/// old or unusual browser, a browser extension, a plugin could otherwise act with the person's
/// session); without the cookie it can act for no one, and agents calling with their bearer key
/// alone (revoking a grant) are unaffected.
pub async fn same_origin_only(
    State(core): State<Arc<Countersign>>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let headers = req.headers();
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let ours = core.issuer();
        let allowed = match (site, origin) {
            (Some(s), _) => s == "same-origin" || s == "none",
            (None, Some(o)) => o == ours,
            (None, None) => !carries_session_cookie(headers),
        };
        if !allowed {
            return ApiError(Error::Forbidden("cross-site requests are refused".into()))
                .into_response();
        }
    }
    next.run(req).await
}

/// Whether any `Cookie` header names our session cookie.
fn carries_session_cookie(headers: &HeaderMap) -> bool {
    let prefix = format!("{}=", super::SESSION_COOKIE);
    headers
        .get_all(header::COOKIE)
        .iter()
        .any(|v| match v.to_str() {
            Ok(v) => v
                .split(';')
                .any(|pair| pair.trim_start().starts_with(&prefix)),
            // A cookie header we cannot read might still be read as a session: assume it is one.
            Err(_) => true,
        })
}

async fn start_session(session: &Session, core: &Countersign, user_id: &str) -> Result<(), Error> {
    // A new id at sign-in, so a session id planted before sign-in is worthless after it.
    session.cycle_id().await.map_err(Error::internal)?;
    session
        .insert(UID, user_id)
        .await
        .map_err(Error::internal)?;
    session
        .insert(BINDING, random_hex(&mut OsRng, 16))
        .await
        .map_err(Error::internal)?;
    session
        .insert(SINCE, core.now())
        .await
        .map_err(Error::internal)?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolStart {
    token: String,
    #[serde(default)]
    email: Option<String>,
    display_name: String,
    passkey_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterFinish {
    ceremony_id: String,
    credential: RegisterPublicKeyCredential,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssertionFinish {
    ceremony_id: String,
    credential: PublicKeyCredential,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SignInStart {
    #[serde(default)]
    email: Option<String>,
}

/// `POST /api/ui/enrol/start`
pub async fn enrol_start(
    State(core): State<Arc<Countersign>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: EnrolStart = parse_json(&read_json_body(&headers, body).await?)?;
    let start = core
        .enrol_start(
            &req.token,
            req.email.as_deref(),
            &req.display_name,
            &req.passkey_name,
        )
        .await?;
    Ok(Json(start).into_response())
}

/// `POST /api/ui/enrol/finish`
pub async fn enrol_finish(
    State(core): State<Arc<Countersign>>,
    session: Session,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: RegisterFinish = parse_json(&read_json_body(&headers, body).await?)?;
    let person = core.enrol_finish(&req.ceremony_id, &req.credential).await?;
    start_session(&session, &core, &person.id).await?;
    Ok(Json(person).into_response())
}

/// `POST /api/ui/sign-in/start`
pub async fn sign_in_start(
    State(core): State<Arc<Countersign>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_json_body(&headers, body).await?;
    let req: SignInStart = if bytes.is_empty() {
        SignInStart::default()
    } else {
        parse_json(&bytes)?
    };
    Ok(Json(core.sign_in_start(req.email.as_deref()).await?).into_response())
}

/// `POST /api/ui/sign-in/finish`
pub async fn sign_in_finish(
    State(core): State<Arc<Countersign>>,
    session: Session,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: AssertionFinish = parse_json(&read_json_body(&headers, body).await?)?;
    let person = core
        .sign_in_finish(&req.ceremony_id, &req.credential)
        .await?;
    start_session(&session, &core, &person.id).await?;
    Ok(Json(person).into_response())
}

/// `POST /api/ui/sign-out`
pub async fn sign_out(session: Session) -> Result<Response, ApiError> {
    session.flush().await.map_err(Error::internal)?;
    Ok(Json(serde_json::json!({ "signed_out": true })).into_response())
}

/// `GET /api/ui/me`
pub async fn me(OwnerSession(who): OwnerSession) -> Json<crate::service::people::Person> {
    Json(who.person)
}

/// `GET /api/ui/requests/{id}`: what the approver is shown.
pub async fn approval_view(
    State(core): State<Arc<Countersign>>,
    OwnerSession(who): OwnerSession,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = core.approval_view(&who, &id).await?;
    let hash = view.display_hash();
    Ok(Json(serde_json::json!({ "view": view, "display_hash": hash })).into_response())
}

#[derive(Deserialize)]
struct DecisionStartBody {
    #[serde(flatten)]
    decision: Decision,
    /// The `display_hash` of the page the person decided on.
    #[serde(default)]
    display_hash: Option<String>,
    /// Narrower terms for this approval (approve only).
    #[serde(default)]
    narrow: Option<NarrowInput>,
    /// A standing approval given with this approval (approve only).
    #[serde(default)]
    standing: Option<StandingInput>,
}

/// `POST /api/ui/requests/{id}/decision/start` with `{"decision": "approve"}` or
/// `{"decision": "deny", "reason_code": "...", "reason": "..."}`, and optionally the
/// `display_hash` of the page it was made on. An approval may add `narrow` (`amount_max`,
/// `grant_ttl_seconds`) and `standing` (`pin`, `amount_max`, `uses`, `valid_for_seconds`);
/// see `domain::terms`.
pub async fn decision_start(
    State(core): State<Arc<Countersign>>,
    OwnerSession(who): OwnerSession,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: DecisionStartBody = parse_json(&read_json_body(&headers, body).await?)?;
    let terms = TermsInput {
        narrow: req.narrow,
        standing: req.standing,
    };
    Ok(Json(
        core.decision_start(&who, &id, req.decision, &terms, req.display_hash.as_deref())
            .await?,
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPasskey {
    passkey_name: String,
}

/// `POST /api/ui/passkeys/start`: register another passkey for the signed-in person.
pub async fn add_passkey_start(
    State(core): State<Arc<Countersign>>,
    OwnerSession(who): OwnerSession,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: AddPasskey = parse_json(&read_json_body(&headers, body).await?)?;
    Ok(Json(core.add_passkey_start(&who, &req.passkey_name).await?).into_response())
}

/// `POST /api/ui/passkeys/finish`
pub async fn add_passkey_finish(
    State(core): State<Arc<Countersign>>,
    OwnerSession(who): OwnerSession,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: RegisterFinish = parse_json(&read_json_body(&headers, body).await?)?;
    Ok(Json(
        core.add_passkey_finish(&who, &req.ceremony_id, &req.credential)
            .await?,
    )
    .into_response())
}

/// `GET /api/ui/events`: a server-sent event whenever a request appears or changes, for live
/// inboxes. Events carry no data about the request (not even its id): the page re-reads its
/// own inbox, which is authorised like any other read. A comment every 15 s keeps proxies
/// from closing the stream.
///
/// The session is checked when the stream opens, again whenever people change on this replica
/// (a deactivation wakes every stream with an empty id) and every 15 s (for changes made on
/// another replica): a stream whose session ended closes.
pub async fn events(
    State(core): State<Arc<Countersign>>,
    session: Session,
    OwnerSession(_who): OwnerSession,
) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>> {
    use tokio::sync::broadcast::error::RecvError;
    const RECHECK: std::time::Duration = std::time::Duration::from_secs(15);
    let changes = core.waiters.subscribe();
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = (core, session, changes, recheck);
    let stream = futures::stream::unfold(
        state,
        |(core, session, mut changes, mut recheck)| async move {
            loop {
                let people_changed = tokio::select! {
                    got = changes.recv() => match got {
                        Ok(id) if !id.is_empty() => break,
                        Ok(_) => true,
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return None,
                    },
                    _ = recheck.tick() => true,
                };
                if people_changed && signed_in(&core, &session).await.is_err() {
                    return None;
                }
            }
            Some((
                Ok(Event::default().event("message").data("changed")),
                (core, session, changes, recheck),
            ))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(RECHECK))
}

/// `POST /api/ui/requests/{id}/decision/finish`
pub async fn decision_finish(
    State(core): State<Arc<Countersign>>,
    OwnerSession(who): OwnerSession,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: AssertionFinish = parse_json(&read_json_body(&headers, body).await?)?;
    Ok(Json(
        core.decision_finish(&who, &id, &req.ceremony_id, &req.credential)
            .await?,
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchStartBody {
    request_ids: Vec<String>,
}

/// `POST /api/ui/batch/start` with `{"request_ids": [...]}`: one passkey prompt for several of
/// one agent's pending requests of one action type (see `service::batches`).
pub async fn batch_start(
    State(core): State<Arc<Countersign>>,
    OwnerSession(who): OwnerSession,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: BatchStartBody = parse_json(&read_json_body(&headers, body).await?)?;
    Ok(Json(core.batch_start(&who, &req.request_ids).await?).into_response())
}

/// `POST /api/ui/batch/finish`
pub async fn batch_finish(
    State(core): State<Arc<Countersign>>,
    OwnerSession(who): OwnerSession,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: AssertionFinish = parse_json(&read_json_body(&headers, body).await?)?;
    Ok(Json(
        core.batch_finish(&who, &req.ceremony_id, &req.credential)
            .await?,
    )
    .into_response())
}

// --- audit ---

/// `?request=` of the audit export.
#[derive(Deserialize, Default)]
pub struct AuditExportQuery {
    /// Only this request's events.
    #[serde(default)]
    request: Option<String>,
}

/// `GET /api/ui/audit/export[?request=ID]` (admins): the audit chain, or one request's
/// evidence, as JSON lines, exactly what `countersign audit export [--request ID]` writes, as
/// a download. A GET with no side effects, so the cross-site check has nothing to refuse; the
/// session cookie is `SameSite=Strict`, so another site's link arrives signed out (401).
pub async fn audit_export(
    State(core): State<Arc<Countersign>>,
    OwnerSession(who): OwnerSession,
    Query(q): Query<AuditExportQuery>,
) -> Result<Response, ApiError> {
    let request = q
        .request
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let body = core.export_audit_as(&who, request).await?;
    let filename = crate::service::audit::export_filename(request);
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}
