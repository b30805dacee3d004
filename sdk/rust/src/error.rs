//! The one error type of this crate, [`Error`], and the server's problem documents
//! ([`Problem`]).
//!
//! Every error the server answers is `application/problem+json` (RFC 9457) with a stable
//! machine code in `error`, a sentence in `detail` and, for validation failures, the offending
//! field path in `field`. [`Error::from_answer`] turns such an answer into the variant for its
//! code, so a caller matches on what it means (`Err(Error::InvalidToken(_))`) instead of
//! comparing strings, and still has the code string, the status and the field
//! ([`Error::code`], [`Error::status`], [`Error::field`]).
//!
//! The ends of a request that arrive as its *state* rather than as an error answer (a person
//! denied it, it expired, it was cancelled) are errors of their own: [`Error::Denied`],
//! [`Error::Expired`], [`Error::Cancelled`].
//!
//! Nothing here panics on what a server sends: an answer that is not a problem document (a
//! proxy's HTML error page, say) becomes [`Error::Other`] with the code `http_<status>`, a body
//! that is not what the contract says becomes [`Error::BadResponse`].

use std::fmt;
use std::time::Duration;

/// An RFC 9457 problem document as the server sent it, plus the `Retry-After` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status of the answer.
    pub status: u16,
    /// The contract's machine code (`invalid_request`, `slow_down` …), verbatim; `http_<status>`
    /// when the answer was not a problem document.
    pub error: String,
    /// A human sentence.
    pub detail: String,
    /// The offending field's path (`action.type`, `context.amount.value`, `wait` …), when one
    /// is at fault.
    pub field: Option<String>,
    /// `denied_by_policy`: the rule that denied.
    pub rule: Option<String>,
    /// `denied_by_policy`: the rule's explanation.
    pub explanation: Option<String>,
    /// `denied_by_policy`: the request as recorded.
    pub request_id: Option<String>,
    /// `slow_down`: the poll interval in seconds.
    pub interval: Option<u64>,
    /// The `Retry-After` header (seconds), when the server sent one.
    pub retry_after: Option<Duration>,
}

impl Problem {
    /// How long to wait before calling again: `Retry-After`, else `interval`, when the server
    /// said either.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
            .or_else(|| self.interval.map(Duration::from_secs))
    }

    /// Reads a problem document leniently: a member of an unexpected type is treated as
    /// absent, so a strange answer still yields its code and sentence. `None` when the body is
    /// not a JSON object with a string `error`.
    pub(crate) fn parse(status: u16, body: &[u8], retry_after: Option<Duration>) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let object = value.as_object()?;
        let text = |name: &str| object.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let error = text("error")?;
        let detail = text("detail")
            .or_else(|| text("title"))
            .unwrap_or_else(|| error.clone());
        Some(Self {
            status,
            detail,
            field: text("field"),
            rule: text("rule"),
            explanation: text("explanation"),
            request_id: text("request_id"),
            interval: object.get("interval").and_then(|v| v.as_u64()),
            retry_after,
            error,
        })
    }

    /// The stand-in for an error answer that is not a problem document: its code is
    /// `http_<status>` and its detail the start of its text, on one line.
    pub(crate) fn from_text(status: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        let text = String::from_utf8_lossy(body);
        let mut detail: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if detail.chars().count() > 200 {
            detail = detail.chars().take(200).collect::<String>() + "…";
        }
        if detail.is_empty() {
            detail = format!("HTTP {status}");
        }
        Self {
            status,
            error: format!("http_{status}"),
            detail,
            field: None,
            rule: None,
            explanation: None,
            request_id: None,
            interval: None,
            retry_after,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.error)?;
        if let Some(field) = &self.field {
            write!(f, " (field {field})")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// Everything that can go wrong, as one type.
///
/// The variants that hold a [`Problem`] are the server's error answers, one per code of the
/// agent contract; [`Error::Other`] holds any other code (`internal_error`, a code newer than
/// this crate). The rest are the request's own ends and failures found on this side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `400 invalid_request`: the body or a parameter is wrong; [`Problem::field`] names it.
    #[error("{0}")]
    InvalidRequest(Box<Problem>),
    /// `401 invalid_token`: the API key or the signed assertion was refused (wrong, revoked,
    /// expired, replayed, another key, or the agent is suspended).
    #[error("{0}")]
    InvalidToken(Box<Problem>),
    /// `403 forbidden`.
    #[error("{0}")]
    Forbidden(Box<Problem>),
    /// `404 not_found` (also what another agent's request looks like).
    #[error("{0}")]
    NotFound(Box<Problem>),
    /// `429 slow_down`: read sooner than `interval` seconds without `wait`;
    /// [`Problem::retry_after`] says how long to wait.
    #[error("{0}")]
    SlowDown(Box<Problem>),
    /// `429 rate_limited`; [`Problem::retry_after`] is the server's `Retry-After`.
    #[error("{0}")]
    RateLimited(Box<Problem>),
    /// `409 grant_already_redeemed`: a grant is usable once.
    #[error("{0}")]
    GrantAlreadyRedeemed(Box<Problem>),
    /// `410 grant_expired`.
    #[error("{0}")]
    GrantExpired(Box<Problem>),
    /// `410 grant_revoked`.
    #[error("{0}")]
    GrantRevoked(Box<Problem>),
    /// `413 payload_too_large`: bodies are at most 64 KiB.
    #[error("{0}")]
    PayloadTooLarge(Box<Problem>),
    /// `409 conflict`: an `Idempotency-Key` reused with another body, cancelling a decided
    /// request, reporting twice.
    #[error("{0}")]
    Conflict(Box<Problem>),
    /// Any other error answer: `internal_error`, a code this crate does not know, or an answer
    /// that was not a problem document (code `http_<status>`).
    #[error("{0}")]
    Other(Box<Problem>),

    /// A policy rule forbids the action (`403 denied_by_policy` when asking, or a request
    /// whose decision has `reason_code` `policy`).
    #[error("denied by policy{}: {explanation}", rule.as_deref().map(|r| format!(" (rule {r})")).unwrap_or_default())]
    DeniedByPolicy {
        /// The request as recorded, when the server said.
        request_id: Option<String>,
        /// The rule that denied, when the server said.
        rule: Option<String>,
        /// Why, in the rule's words.
        explanation: String,
    },
    /// A person denied the request.
    #[error("request {request_id} denied ({reason_code}): {reason}")]
    Denied {
        /// The request.
        request_id: String,
        /// The person's machine-readable reason (`too_risky`, `wrong_details` …).
        reason_code: String,
        /// The person's sentence (may be empty).
        reason: String,
    },
    /// The request expired before anyone decided.
    #[error("request {request_id} expired before a decision")]
    Expired {
        /// The request.
        request_id: String,
    },
    /// The request was cancelled (by this agent, or by its suspension) before a decision.
    #[error("request {request_id} was cancelled")]
    Cancelled {
        /// The request.
        request_id: String,
    },

    /// A grant failed verification on this side ([`Downstream::verify_grant`]): `field` names
    /// the header member or claim at fault (`typ`, `kid`, `signature`, `aud`, `exp`,
    /// `action_hash` …), or `token` when it is not a compact JWS at all.
    ///
    /// [`Downstream::verify_grant`]: crate::Downstream::verify_grant
    #[error("invalid grant ({field}): {detail}")]
    InvalidGrant {
        /// What is wrong.
        field: String,
        /// A sentence saying so.
        detail: String,
    },
    /// The server answered something the contract does not allow (a body that does not parse,
    /// an approved request without a grant …).
    #[error("unexpected answer (HTTP {status}): {detail}")]
    BadResponse {
        /// The answer's HTTP status.
        status: u16,
        /// What was wrong with it.
        detail: String,
    },
    /// The call never got an answer: connection refused, TLS, timeout.
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The client was set up wrongly (a base URL that is not http(s), an API key that is not a
    /// Countersign agent key).
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// The error for a server answer that is not a success: the variant for the problem
    /// document's code, or [`Error::Other`].
    pub(crate) fn from_answer(status: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        let Some(problem) = Problem::parse(status, body, retry_after) else {
            return Self::Other(Box::new(Problem::from_text(status, body, retry_after)));
        };
        let problem = Box::new(problem);
        match problem.error.as_str() {
            "invalid_request" => Self::InvalidRequest(problem),
            "invalid_token" => Self::InvalidToken(problem),
            "forbidden" => Self::Forbidden(problem),
            "not_found" => Self::NotFound(problem),
            "slow_down" => Self::SlowDown(problem),
            "rate_limited" => Self::RateLimited(problem),
            "grant_already_redeemed" => Self::GrantAlreadyRedeemed(problem),
            "grant_expired" => Self::GrantExpired(problem),
            "grant_revoked" => Self::GrantRevoked(problem),
            "payload_too_large" => Self::PayloadTooLarge(problem),
            "conflict" => Self::Conflict(problem),
            "denied_by_policy" => Self::DeniedByPolicy {
                request_id: problem.request_id.clone(),
                rule: problem.rule.clone(),
                explanation: problem
                    .explanation
                    .clone()
                    .unwrap_or_else(|| problem.detail.clone()),
            },
            _ => Self::Other(problem),
        }
    }

    pub(crate) fn invalid_grant(field: &str, detail: impl Into<String>) -> Self {
        Self::InvalidGrant {
            field: field.to_owned(),
            detail: detail.into(),
        }
    }

    pub(crate) fn bad_response(status: u16, detail: impl Into<String>) -> Self {
        Self::BadResponse {
            status,
            detail: detail.into(),
        }
    }

    /// The server's problem document, for the variants that carry one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::InvalidRequest(p)
            | Self::InvalidToken(p)
            | Self::Forbidden(p)
            | Self::NotFound(p)
            | Self::SlowDown(p)
            | Self::RateLimited(p)
            | Self::GrantAlreadyRedeemed(p)
            | Self::GrantExpired(p)
            | Self::GrantRevoked(p)
            | Self::PayloadTooLarge(p)
            | Self::Conflict(p)
            | Self::Other(p) => Some(p),
            _ => None,
        }
    }

    /// A stable code for the error: the server's `error` verbatim when it answered one, the
    /// contract's code for a request's end (`denied_by_policy`, `access_denied`,
    /// `expired_token`; `cancelled`), and `invalid_grant`, `bad_response`, `transport` or
    /// `config` for what this side found.
    pub fn code(&self) -> &str {
        if let Some(p) = self.problem() {
            return &p.error;
        }
        match self {
            Self::DeniedByPolicy { .. } => "denied_by_policy",
            Self::Denied { .. } => "access_denied",
            Self::Expired { .. } => "expired_token",
            Self::Cancelled { .. } => "cancelled",
            Self::InvalidGrant { .. } => "invalid_grant",
            Self::BadResponse { .. } => "bad_response",
            Self::Transport(_) => "transport",
            _ => "config",
        }
    }

    /// The offending field: the problem's `field`, or the claim an [`Error::InvalidGrant`]
    /// names.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::InvalidGrant { field, .. } => Some(field),
            _ => self.problem().and_then(|p| p.field.as_deref()),
        }
    }

    /// The HTTP status of the error answer, when the server sent one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::BadResponse { status, .. } => Some(*status),
            Self::Transport(e) => e.status().map(|s| s.as_u16()),
            _ => self.problem().map(|p| p.status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_documents_become_their_variant_with_code_field_and_status() {
        let body = br#"{"type":"/errors/invalid_request","title":"Invalid request","status":400,
            "error":"invalid_request","field":"action.type",
            "detail":"action.type must match ^[a-z0-9_.-]{1,128}$"}"#;
        let e = Error::from_answer(400, body, None);
        assert!(matches!(e, Error::InvalidRequest(_)), "{e:?}");
        assert_eq!(e.code(), "invalid_request");
        assert_eq!(e.field(), Some("action.type"));
        assert_eq!(e.status(), Some(400));
        assert_eq!(
            e.to_string(),
            "400 invalid_request (field action.type): action.type must match ^[a-z0-9_.-]{1,128}$"
        );
    }

    #[test]
    fn every_contract_code_has_its_variant() {
        type Is = fn(&Error) -> bool;
        let cases: [(&str, Is); 12] = [
            ("invalid_request", |e| matches!(e, Error::InvalidRequest(_))),
            ("invalid_token", |e| matches!(e, Error::InvalidToken(_))),
            ("forbidden", |e| matches!(e, Error::Forbidden(_))),
            ("not_found", |e| matches!(e, Error::NotFound(_))),
            ("slow_down", |e| matches!(e, Error::SlowDown(_))),
            ("rate_limited", |e| matches!(e, Error::RateLimited(_))),
            ("grant_already_redeemed", |e| {
                matches!(e, Error::GrantAlreadyRedeemed(_))
            }),
            ("grant_expired", |e| matches!(e, Error::GrantExpired(_))),
            ("grant_revoked", |e| matches!(e, Error::GrantRevoked(_))),
            ("payload_too_large", |e| {
                matches!(e, Error::PayloadTooLarge(_))
            }),
            ("conflict", |e| matches!(e, Error::Conflict(_))),
            ("internal_error", |e| matches!(e, Error::Other(_))),
        ];
        for (code, is) in cases {
            let body = format!(r#"{{"error":"{code}","detail":"d","status":400}}"#);
            let e = Error::from_answer(400, body.as_bytes(), None);
            assert!(is(&e), "{code}: {e:?}");
            assert_eq!(e.code(), code);
        }
    }

    #[test]
    fn policy_denials_keep_rule_explanation_and_request() {
        let body = br#"{"error":"denied_by_policy","status":403,"detail":"Agents never drop production tables.",
            "rule":"no-prod-drops","explanation":"Agents never drop production tables.","request_id":"r1"}"#;
        match Error::from_answer(403, body, None) {
            Error::DeniedByPolicy {
                request_id,
                rule,
                explanation,
            } => {
                assert_eq!(request_id.as_deref(), Some("r1"));
                assert_eq!(rule.as_deref(), Some("no-prod-drops"));
                assert_eq!(explanation, "Agents never drop production tables.");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn slow_down_says_how_long_to_wait() {
        let body = br#"{"error":"slow_down","status":429,"detail":"poll less","interval":5}"#;
        let e = Error::from_answer(429, body, None);
        assert_eq!(
            e.problem().and_then(Problem::retry_after),
            Some(Duration::from_secs(5))
        );
        // The header wins over the body.
        let e = Error::from_answer(429, body, Some(Duration::from_secs(7)));
        assert_eq!(
            e.problem().and_then(Problem::retry_after),
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn answers_that_are_not_problems_still_become_errors() {
        let html = b"<html>\n<body>502   Bad Gateway</body></html>";
        let e = Error::from_answer(502, html, None);
        assert!(matches!(e, Error::Other(_)));
        assert_eq!(e.code(), "http_502");
        assert_eq!(e.status(), Some(502));
        assert_eq!(
            e.problem().map(|p| p.detail.as_str()),
            Some("<html> <body>502 Bad Gateway</body></html>")
        );
        for body in [&b""[..], b"[1,2]", b"{\"error\":5}", b"\xff\xfe"] {
            let e = Error::from_answer(500, body, None);
            assert_eq!(e.code(), "http_500", "{body:?}");
        }
        let long = "x".repeat(1000);
        let e = Error::from_answer(500, long.as_bytes(), None);
        assert!(e.to_string().len() < 300);
    }

    #[test]
    fn members_of_the_wrong_type_are_ignored() {
        let body =
            br#"{"error":"invalid_request","field":7,"detail":["no"],"title":"Invalid request"}"#;
        let e = Error::from_answer(400, body, None);
        assert_eq!(e.field(), None);
        assert_eq!(
            e.problem().map(|p| p.detail.as_str()),
            Some("Invalid request")
        );
    }
}
