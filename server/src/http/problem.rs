//! Errors on the wire: RFC 9457 problem+json with the agent contract's machine codes.
//!
//! This is the only place a service error becomes a status code. Internal causes are logged
//! here, once, and the caller sees only "internal error".

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::Error;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `/errors/<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short title for the code.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// The stable machine code (see the agent contract).
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
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn title_of(code: &str) -> &'static str {
    match code {
        "invalid_request" => "Invalid request",
        "invalid_token" => "Invalid credentials",
        "forbidden" => "Forbidden",
        "not_found" => "Not found",
        "denied_by_policy" => "Denied by policy",
        "authorization_pending" => "Authorization pending",
        "slow_down" => "Slow down",
        "expired_token" => "Expired",
        "access_denied" => "Access denied",
        "grant_already_redeemed" => "Grant already redeemed",
        "grant_expired" => "Grant expired",
        "grant_revoked" => "Grant revoked",
        "rate_limited" => "Rate limited",
        "payload_too_large" => "Payload too large",
        "conflict" => "Conflict",
        _ => "Internal error",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        if let Error::Internal(cause) = &e {
            tracing::error!(%cause, "internal error");
        }
        let status = status_of(&e);
        let code = e.code();
        let mut problem = Problem {
            kind: format!("/errors/{code}"),
            title: title_of(code).into(),
            status: status.as_u16(),
            error: code.into(),
            detail: e.to_string(),
            field: None,
            rule: None,
            explanation: None,
            request_id: None,
            interval: None,
        };
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
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
