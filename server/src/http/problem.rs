//! Errors on the wire: RFC 9457 problem+json with the agent contract's machine codes.
//!
//! This is the only place a service error becomes a status code. Internal causes are logged
//! here, once, and the caller sees only "internal error". What the router answers by itself
//! under `/api/` (a method a path does not take, a path that is no endpoint, an error from a
//! layer below the handlers) is made problem+json here too.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::to_bytes;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde::Serialize;
use tower::{Layer, Service};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::ToSchema;

use crate::service::Error;

/// The machine codes an answer can carry, with their titles: the agent contract's codes, and
/// `internal_error` for a failure on our side.
pub const CODES: [(&str, &str); 19] = [
    ("invalid_request", "Invalid request"),
    ("invalid_token", "Invalid credentials"),
    ("forbidden", "Forbidden"),
    ("not_found", "Not found"),
    ("denied_by_policy", "Denied by policy"),
    ("authorization_pending", "Authorization pending"),
    ("slow_down", "Slow down"),
    ("expired_token", "Expired"),
    ("access_denied", "Access denied"),
    ("grant_already_redeemed", "Grant already redeemed"),
    ("grant_expired", "Grant expired"),
    ("grant_revoked", "Grant revoked"),
    ("rate_limited", "Rate limited"),
    ("payload_too_large", "Payload too large"),
    ("conflict", "Conflict"),
    ("provider_unavailable", "Credential provider unavailable"),
    ("upstream_failed", "Upstream failed"),
    ("upstream_timeout", "Upstream timed out"),
    ("internal_error", "Internal error"),
];

/// The schema of [`Problem::error`]: one of [`CODES`].
fn error_code_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(CODES.map(|(code, _)| code)))
        .description(Some("The stable machine code (see the agent contract)."))
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `/errors/<code>`.
    #[serde(rename = "type")]
    #[schema(pattern = "^/errors/[a-z_]+$")]
    pub kind: String,
    /// A short title for the code.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// The stable machine code (see the agent contract).
    #[schema(schema_with = error_code_schema)]
    pub error: String,
    /// A human sentence.
    pub detail: String,
    /// The offending field's path, for validation failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `denied_by_policy`: the rule that denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For `denied_by_policy`: the rule's explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// For `denied_by_policy`: the request as recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// For `slow_down`: the poll interval in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u32>,
}

/// A service error on its way to an HTTP client.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::InvalidRequest { field, .. } if field.as_deref() == Some("Content-Type") => {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        }
        Error::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
        Error::InvalidToken(_) | Error::SignInRequired => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) | Error::DeniedByPolicy { .. } | Error::AccessDenied(_) => {
            StatusCode::FORBIDDEN
        }
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::SlowDown { .. } | Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::ExpiredToken(_) | Error::GrantExpired | Error::GrantRevoked => StatusCode::GONE,
        Error::GrantAlreadyRedeemed | Error::Conflict(_) => StatusCode::CONFLICT,
        Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::ProviderUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::UpstreamFailed(_) => StatusCode::BAD_GATEWAY,
        Error::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn title_of(code: &str) -> &'static str {
    CODES
        .iter()
        .find(|(known, _)| *known == code)
        .map_or("Internal error", |(_, title)| title)
}

impl Problem {
    /// A problem with this status, code and sentence, naming no field.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("/errors/{code}"),
            title: title_of(code).into(),
            status: status.as_u16(),
            error: code.into(),
            detail: detail.into(),
            field: None,
            rule: None,
            explanation: None,
            request_id: None,
            interval: None,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        if let Some(cause) = e.internal_cause() {
            tracing::error!(%cause, "internal error");
        }
        let status = status_of(&e);
        let mut problem = Problem::new(status, e.code(), e.to_string());
        match &e {
            Error::InvalidRequest { field, .. } => problem.field = field.clone(),
            Error::DeniedByPolicy {
                request_id,
                rule,
                explanation,
            } => {
                problem.rule = Some(rule.clone());
                problem.explanation = Some(explanation.clone());
                problem.request_id = Some(request_id.clone());
            }
            Error::SlowDown { interval } => problem.interval = Some(*interval),
            _ => {}
        }
        let mut response = problem.into_response();
        let headers = response.headers_mut();
        match &e {
            Error::InvalidToken(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Error::RateLimited { retry_after } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                    headers.insert(header::RETRY_AFTER, v);
                }
            }
            Error::SlowDown { interval } => {
                if let Ok(v) = HeaderValue::from_str(&interval.to_string()) {
                    headers.insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        response
    }
}

/// The answer for a method a path does not take (every router's method-not-allowed fallback).
/// axum adds the `Allow` header listing the methods the path does take.
pub async fn method_not_allowed(method: Method) -> Response {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        format!("{method} is not allowed here; the Allow header lists what is"),
    )
    .into_response()
}

/// The answer for a path under `/api/` that is no endpoint (instead of the app's page).
pub async fn no_such_endpoint(uri: Uri) -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("there is no endpoint at {}", uri.path()),
    )
    .into_response()
}

/// Makes sure an error answer under `/api` is problem+json even when no handler wrote it: a
/// layer below the handlers (the session store failing, say) answers with an empty or plain
/// text body. The status and headers stay; the body becomes a problem with the code the
/// status means. Answers that are not errors, or are problem+json already, pass untouched.
///
/// A tower layer rather than axum's `from_fn`, so that it boxes nothing while a request runs
/// (a long-waiting agent would hold it for the whole wait; see [`super::around`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProblemJsonOnly;

impl<S> Layer<S> for ProblemJsonOnly {
    type Service = ProblemJsonService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProblemJsonService { inner }
    }
}

/// The service [`ProblemJsonOnly`] wraps around the inner one.
#[derive(Clone, Debug)]
pub struct ProblemJsonService<S> {
    inner: S,
}

impl<S> Service<Request> for ProblemJsonService<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ProblemJsonFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // Only the API: `/readyz` and friends keep their plain answers for probes.
        let api = req.uri().path().starts_with("/api");
        ProblemJsonFuture::Answering {
            inner: self.inner.call(req),
            api,
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner call, then (for an error that is not a problem yet, which is rare) the
    /// rewrite of its body.
    #[project = ProblemJsonState]
    pub enum ProblemJsonFuture<F> {
        /// The inner service is answering.
        Answering { #[pin] inner: F, api: bool },
        /// Its answer is being made a problem.
        Rewriting { rewrite: BoxFuture<'static, Response> },
    }
}

impl<F, E> Future for ProblemJsonFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                ProblemJsonState::Answering { inner, api } => {
                    let response = ready!(inner.poll(cx))?;
                    if !*api || !needs_problem(&response) {
                        return Poll::Ready(Ok(response));
                    }
                    let rewrite = Box::pin(into_problem(response));
                    self.set(ProblemJsonFuture::Rewriting { rewrite });
                }
                ProblemJsonState::Rewriting { rewrite } => {
                    return rewrite.as_mut().poll(cx).map(Ok)
                }
            }
        }
    }
}

/// An error answer that is not problem+json.
fn needs_problem(response: &Response) -> bool {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    (status.is_client_error() || status.is_server_error()) && !is_problem
}

/// The same answer as a problem: status and headers kept, the body a problem document.
async fn into_problem(response: Response) -> Response {
    let status = response.status();
    let (mut parts, body) = response.into_parts();
    let text = to_bytes(body, 4096).await.unwrap_or_default();
    let plain = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    // A client error's text is written for the client (axum's rejections); a server error's
    // may name internals, so it goes to the log only.
    let detail = match std::str::from_utf8(&text) {
        Ok(text) if plain && !text.trim().is_empty() && status.is_client_error() => {
            text.trim().to_string()
        }
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string(),
    };
    let code = match status {
        StatusCode::UNAUTHORIZED => "invalid_token",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::GONE => "expired_token",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        s if s.is_server_error() => "internal_error",
        _ => "invalid_request",
    };
    if status.is_server_error() {
        let text = String::from_utf8_lossy(&text);
        tracing::error!(%status, %text, "an error was answered below the handlers");
    }
    let (problem, body) = Problem::new(status, code, detail)
        .into_response()
        .into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in problem.headers {
        if let Some(name) = name {
            parts.headers.insert(name, value);
        }
    }
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    async fn answer(router: Router, path: &str) -> (StatusCode, HeaderValue, serde_json::Value) {
        let res = router
            .layer(ProblemJsonOnly)
            .oneshot(
                axum::http::Request::get(path)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answered");
        let status = res.status();
        let content_type = res.headers()[header::CONTENT_TYPE].clone();
        let retry = res.headers().get(header::RETRY_AFTER).cloned();
        let body = to_bytes(res.into_body(), 1 << 16).await.expect("body");
        let mut value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(retry) = retry {
            value["retry_after_header"] = retry.to_str().unwrap_or_default().into();
        }
        (status, content_type, value)
    }

    #[tokio::test]
    async fn errors_answered_below_the_handlers_become_problems() {
        let router = Router::new()
            .route(
                "/api/plain",
                get(|| async { (StatusCode::BAD_REQUEST, "no good") }),
            )
            .route(
                "/api/busy",
                get(|| async { (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "7")]) }),
            )
            .route(
                "/api/broken",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "db password is hunter2") }),
            )
            .route("/api/fine", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "database unreachable") }),
            )
            .route(
                "/api/problem",
                get(|| async { ApiError(Error::NotFound("none".into())) }),
            );
        let (status, content_type, p) = answer(router.clone(), "/api/plain").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(
            (p["error"].as_str(), p["detail"].as_str()),
            (Some("invalid_request"), Some("no good"))
        );

        let (status, _, p) = answer(router.clone(), "/api/busy").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(p["error"], "rate_limited");
        assert_eq!(p["retry_after_header"], "7", "headers are kept");

        // A server error's text stays in the log.
        let (status, _, p) = answer(router.clone(), "/api/broken").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(p["error"], "internal_error");
        assert!(!p.to_string().contains("hunter2"), "{p}");

        let (status, content_type, _) = answer(router.clone(), "/api/fine").await;
        assert_eq!(
            (status, content_type),
            (
                StatusCode::OK,
                HeaderValue::from_static("text/plain; charset=utf-8")
            )
        );
        let (_, _, p) = answer(router.clone(), "/api/problem").await;
        assert_eq!(
            (p["error"].as_str(), p["detail"].as_str()),
            (Some("not_found"), Some("none"))
        );
        // Outside /api nothing is touched.
        let (status, content_type, _) = answer(router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(content_type, "text/plain; charset=utf-8");
    }

    #[test]
    fn every_service_code_has_a_title() {
        for e in [
            Error::invalid("f", "d"),
            Error::InvalidToken(String::new()),
            Error::SignInRequired,
            Error::Forbidden(String::new()),
            Error::NotFound(String::new()),
            Error::DeniedByPolicy {
                request_id: String::new(),
                rule: String::new(),
                explanation: String::new(),
            },
            Error::SlowDown { interval: 1 },
            Error::ExpiredToken(String::new()),
            Error::AccessDenied(String::new()),
            Error::GrantAlreadyRedeemed,
            Error::GrantExpired,
            Error::GrantRevoked,
            Error::RateLimited { retry_after: 1 },
            Error::PayloadTooLarge { limit: 1 },
            Error::Conflict(String::new()),
            Error::internal("test"),
        ] {
            assert!(
                CODES.iter().any(|(code, _)| *code == e.code()),
                "{} is not in CODES",
                e.code()
            );
        }
    }
}
