//! Reading request bodies the careful way: content type checked, size capped before the whole
//! body is read, JSON errors turned into `invalid_request` naming the field.

use axum::body::{to_bytes, Body, Bytes};
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;

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
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(Error::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| Error::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        })
}

/// Parses JSON into `T`, naming the field on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let text = std::str::from_utf8(bytes).map_err(|_| Error::InvalidRequest {
        field: None,
        detail: "request body is not valid UTF-8".into(),
    })?;
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = (path != "." && !path.is_empty()).then_some(path);
        let detail = match &field {
            Some(f) => format!("{f}: {inner}"),
            None => format!("malformed JSON: {inner}"),
        };
        Error::InvalidRequest { field, detail }
    })
}
