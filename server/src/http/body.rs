//! Reading what a call carries, the careful way: bodies with their content type checked and
//! their size capped before the whole body is read, path and query parameters; whatever does
//! not parse becomes `invalid_request` naming the field (axum's own rejections are plain
//! text and name nothing).

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;

use super::problem::ApiError;
use crate::domain::intake::parse_strict_json;
use crate::service::Error;

/// The largest body any agent endpoint accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Checks the content type and reads at most [`MAX_BODY_BYTES`].
pub async fn read_json_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Error> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(Error::invalid(
            "Content-Type",
            "send the body as application/json",
        ));
    }
    read_capped_body(headers, body).await
}

/// Reads at most [`MAX_BODY_BYTES`] of any body, refusing a larger declared length before
/// reading anything.
pub async fn read_capped_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Error> {
    let too_large = || Error::PayloadTooLarge {
        limit: MAX_BODY_BYTES,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())
}

/// Parses JSON into `T`, naming the field on failure.
///
/// Two passes, like the create body's: the structural rules every body gets (a key given
/// twice, a broken string or runaway nesting is refused at its path, see
/// [`parse_strict_json`]), then `T`'s own shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let value = parse_strict_json(bytes).map_err(|e| Error::InvalidRequest {
        field: e.field,
        detail: e.detail,
    })?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = (path != "." && !path.is_empty()).then_some(path);
        let message = e.into_inner().to_string();
        // An unknown member's path already ends in it; a missing (or repeated) one is
        // reported at the object that should have it, and the member is the field at fault.
        let field = match (at, named_member(&message)) {
            (at, _) if message.starts_with("unknown field") => at,
            (Some(at), Some(member)) => Some(format!("{at}.{member}")),
            (at, member) => at.or(member.map(str::to_string)),
        };
        let detail = match &field {
            Some(f) => format!("{f}: {message}"),
            None => format!("request body: {message}"),
        };
        Error::InvalidRequest { field, detail }
    })
}

/// The member a serde error is about, from the wording serde's `de::Error` gives these
/// errors by default (`missing field `x``, `duplicate field `x``, `unknown field `x`, expected
/// …`), which serde_json and serde_urlencoded keep.
fn named_member(message: &str) -> Option<&str> {
    ["missing field `", "duplicate field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split_once('`'))
        .map(|(member, _)| member)
}

/// `axum::extract::Path`, answering a parameter that does not parse (not UTF-8 once
/// percent-decoded, say) with problem+json naming the parameter.
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError(path_error(rejection))),
        }
    }
}

fn path_error(rejection: PathRejection) -> Error {
    use axum::extract::path::ErrorKind;
    let PathRejection::FailedToDeserializePathParams(failed) = rejection else {
        // A handler asked for parameters its route does not have: our routing table is wrong.
        return Error::internal(rejection.body_text());
    };
    match failed.into_kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => Error::invalid(
            &key,
            format!("the path parameter `{key}` is not valid UTF-8 once percent-decoded"),
        ),
        ErrorKind::ParseErrorAtKey {
            key, expected_type, ..
        } => Error::invalid(
            &key,
            format!("the path parameter `{key}` must be {expected_type}"),
        ),
        ErrorKind::DeserializeError { key, message, .. } => {
            Error::invalid(&key, format!("the path parameter `{key}`: {message}"))
        }
        other => Error::InvalidRequest {
            field: None,
            detail: format!("the path does not parse: {other}"),
        },
    }
}

/// `axum::extract::Query`, answering a query that does not parse (a parameter given twice,
/// say) with problem+json naming the parameter.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::try_from_uri(&parts.uri) {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError(query_error(&rejection))),
        }
    }
}

fn query_error(rejection: &QueryRejection) -> Error {
    let text = rejection.body_text();
    let message = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    // axum reports the parameter as `name: …` when the value was wrong, and serde names it
    // itself when the parameter is missing, unknown or given twice.
    let field = named_member(message).map(str::to_string).or_else(|| {
        message
            .split_once(": ")
            .map(|(name, _)| name.to_string())
            .filter(|name| !name.is_empty() && !name.contains(' '))
    });
    Error::InvalidRequest {
        field,
        detail: format!("the query string does not parse: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        token: String,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
        n: u8,
    }

    fn field_of(body: &str) -> Option<String> {
        match parse_json::<Outer>(body.as_bytes()) {
            Err(Error::InvalidRequest { field, .. }) => field,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn every_kind_of_bad_member_is_named() {
        assert_eq!(field_of("{}").as_deref(), Some("token"));
        assert_eq!(field_of(r#"{"token":1}"#).as_deref(), Some("token"));
        assert_eq!(field_of(r#"{"token":"a","x":1}"#).as_deref(), Some("x"));
        assert_eq!(
            field_of(r#"{"token":"a","token":"b"}"#).as_deref(),
            Some("token")
        );
        assert_eq!(
            field_of(r#"{"token":"a","inner":{"n":1}}"#).as_deref(),
            Some("inner.name")
        );
        assert_eq!(
            field_of(r#"{"token":"a","inner":{"name":"x","n":300}}"#).as_deref(),
            Some("inner.n")
        );
        assert_eq!(
            field_of(r#"{"token":"a","inner":{"name":"x","n":1,"m":2}}"#).as_deref(),
            Some("inner.m")
        );
        assert_eq!(
            field_of(r#"{"token":"a","inner":{"name":"x","name":"y","n":1}}"#).as_deref(),
            Some("inner.name")
        );
        assert_eq!(field_of(r#"{"token":"\ud800"}"#).as_deref(), Some("token"));
        // The body as a whole.
        assert_eq!(field_of("[]"), None);
        assert_eq!(field_of("{"), None);
    }

    #[test]
    fn serde_still_words_its_errors_the_way_we_read_them() {
        use serde::de::Error as _;
        for (error, member) in [
            (serde_json::Error::missing_field("a"), "a"),
            (serde_json::Error::duplicate_field("b"), "b"),
            (serde_json::Error::unknown_field("c", &["d"]), "c"),
            (serde_json::Error::unknown_field("e", &[]), "e"),
        ] {
            assert_eq!(named_member(&error.to_string()), Some(member), "{error}");
        }
        assert_eq!(named_member("invalid type: integer `1`"), None);
    }
}
