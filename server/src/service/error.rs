//! The services' error type. Each variant is something a caller can act on; the HTTP edge maps
//! it to a status and a problem+json `error` code (the agent contract's codes), the CLI to a
//! message. Internal causes are logged once where they are mapped and never shown to callers.

use crate::store::StoreError;

/// Why a use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is wrong; `field` names where, when we know.
    #[error("{detail}")]
    InvalidRequest {
        /// The offending field's path, e.g. `action.type`.
        field: Option<String>,
        /// A sentence saying what is wrong.
        detail: String,
    },
    /// The caller's credentials are missing, wrong, expired, replayed or suspended.
    #[error("{0}")]
    InvalidToken(String),
    /// A person must sign in first.
    #[error("sign in first")]
    SignInRequired,
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// There is no such thing, or the caller may not know it exists.
    #[error("{0}")]
    NotFound(String),
    /// Policy refuses this action outright.
    #[error("{explanation}")]
    DeniedByPolicy {
        /// The request as recorded (denied).
        request_id: String,
        /// The rule that denied it.
        rule: String,
        /// Why.
        explanation: String,
    },
    /// Polling faster than `interval`.
    #[error("poll no more often than every {interval} seconds, or long-wait with ?wait=")]
    SlowDown {
        /// The interval to respect.
        interval: u32,
    },
    /// The request or ceremony has expired.
    #[error("{0}")]
    ExpiredToken(String),
    /// The approver's authenticator or assertion was refused.
    #[error("{0}")]
    AccessDenied(String),
    /// The grant was already used.
    #[error("this grant has already been redeemed")]
    GrantAlreadyRedeemed,
    /// The grant is past its `exp`.
    #[error("this grant has expired")]
    GrantExpired,
    /// The grant was revoked.
    #[error("this grant has been revoked")]
    GrantRevoked,
    /// Too many requests; try again after this many seconds.
    #[error("too many requests; retry after {retry_after} seconds")]
    RateLimited {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// The body is over the limit.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The state does not allow this (already decided, key reused with another body…).
    #[error("{0}")]
    Conflict(String),
    /// A credential provider cannot be reached or cannot be used right now (its admin
    /// connection fails, its secret does not open here). Nothing was released and nothing was
    /// used up: the grant stays redeemable until it expires.
    #[error("{0}")]
    ProviderUnavailable(String),
    /// The downstream system failed or refused what Countersign asked of it (creating a login,
    /// a forwarded call that could not be completed).
    #[error("{0}")]
    UpstreamFailed(String),
    /// A forwarded call took longer than the provider allows.
    #[error("{0}")]
    UpstreamTimeout(String),
    /// Something on our side failed. The cause, with its chain of sources (a database error
    /// and the I/O error under it, say), is for the log; callers see only "internal error".
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    /// An input error on a named field.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field: Some(field.into()),
            detail: detail.into(),
        }
    }

    /// An internal failure, with the cause for the log. Takes anything displayable (a
    /// sentence, or an error whose message says enough); errors whose sources matter convert
    /// with `From` instead, which keeps the whole chain (see [`StoreError`]).
    pub fn internal<C>(cause: C) -> Self
    where
        C: std::fmt::Display + std::fmt::Debug + Send + Sync + 'static,
    {
        Self::Internal(anyhow::Error::msg(cause))
    }

    /// The cause of an internal failure as one line for the log, every source included
    /// (`outer: inner: innermost`); None for other errors.
    pub fn internal_cause(&self) -> Option<String> {
        match self {
            Self::Internal(cause) => Some(format!("{cause:#}")),
            _ => None,
        }
    }

    /// One line for the log: the cause chain of an internal failure, else the message.
    pub fn for_log(&self) -> String {
        self.internal_cause().unwrap_or_else(|| self.to_string())
    }

    /// The agent-contract error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::InvalidToken(_) => "invalid_token",
            Self::SignInRequired => "invalid_token",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::DeniedByPolicy { .. } => "denied_by_policy",
            Self::SlowDown { .. } => "slow_down",
            Self::ExpiredToken(_) => "expired_token",
            Self::AccessDenied(_) => "access_denied",
            Self::GrantAlreadyRedeemed => "grant_already_redeemed",
            Self::GrantExpired => "grant_expired",
            Self::GrantRevoked => "grant_revoked",
            Self::RateLimited { .. } => "rate_limited",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Conflict(_) => "conflict",
            Self::ProviderUnavailable(_) => "provider_unavailable",
            Self::UpstreamFailed(_) => "upstream_failed",
            Self::UpstreamTimeout(_) => "upstream_timeout",
            Self::Internal(_) => "internal_error",
        }
    }
}

/// An error and each of its sources on one line, `outer: inner: innermost`, for the log.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        next = cause.source();
    }
    line
}

impl From<StoreError> for Error {
    /// Keeps the store error as the source, and with it sqlx's error and whatever is under it.
    fn from(e: StoreError) -> Self {
        Self::Internal(anyhow::Error::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_keeps_the_causes_under_it() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let store = StoreError::Database(sqlx::Error::Io(io));
        let e = Error::from(store);
        // Callers see nothing of it…
        assert_eq!(e.to_string(), "internal error");
        // …the log sees all of it, and so does anything walking the sources.
        let cause = e.internal_cause().unwrap();
        assert!(cause.starts_with("database error: "), "{cause}");
        assert!(cause.ends_with("connection refused"), "{cause}");
        let mut depth = 0;
        let mut next = std::error::Error::source(&e);
        while let Some(s) = next {
            depth += 1;
            next = s.source();
        }
        assert!(depth >= 3, "{depth} sources under {cause}");
        assert_eq!(chain(&e), format!("internal error: {cause}"));
    }
}
