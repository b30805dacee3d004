//! The HTTP plumbing [`Client`](crate::Client) and [`Downstream`](crate::Downstream) share:
//! where the server is, building URLs with escaped path segments, sending, reading at most
//! [`MAX_ANSWER_BYTES`] of an answer and turning error answers into [`Error`]s.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, Url};

use crate::error::Error;

/// The most of an answer we read: the contract's answers are a few KiB (a grant fits in
/// 8 KiB), so anything far larger is not from a Countersign server.
pub(crate) const MAX_ANSWER_BYTES: usize = 1 << 20;
/// How long an ordinary call may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A Countersign server: where to reach it and what it calls itself.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub http: reqwest::Client,
    base: Url,
    /// The server's public URL without a trailing slash: the `aud` of assertions and the `iss`
    /// of grants.
    pub public_url: String,
}

impl Server {
    pub(crate) fn new(base_url: &str) -> Result<Self, Error> {
        let trimmed = base_url.trim_end_matches('/');
        let base = Url::parse(trimmed)
            .map_err(|e| Error::Config(format!("base URL {base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::Config(format!(
                "base URL {base_url:?}: expected http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // The API never redirects; following one would carry the credential elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("countersign-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            public_url: trimmed.to_owned(),
        })
    }

    pub(crate) fn set_public_url(&mut self, public_url: &str) {
        public_url
            .trim_end_matches('/')
            .clone_into(&mut self.public_url);
    }

    /// The URL of the base plus these path segments, each escaped (an id cannot add a path
    /// segment or a query).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends a call and returns the answer's status and body; an answer that is not a success
    /// becomes its [`Error`].
    pub(crate) async fn send(&self, request: RequestBuilder) -> Result<(u16, Vec<u8>), Error> {
        let mut response = request.send().await?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(Error::bad_response(
                    status,
                    format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if !(200..300).contains(&status) {
            return Err(Error::from_answer(status, &body, retry_after));
        }
        Ok((status, body))
    }
}

/// `Retry-After` in seconds (the server never sends the HTTP-date form).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The current time in unix seconds.
pub(crate) fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_escape_ids_and_keep_a_path_prefix() {
        let server = Server::new("https://example.com/countersign/").expect("a server");
        assert_eq!(server.public_url, "https://example.com/countersign");
        assert_eq!(
            server
                .url(&["api", "v1", "requests", "../x?wait=1"])
                .as_str(),
            "https://example.com/countersign/api/v1/requests/..%2Fx%3Fwait=1"
        );
        let root = Server::new("http://localhost:3000").expect("a server");
        assert_eq!(
            root.url(&[".well-known", "jwks.json"]).as_str(),
            "http://localhost:3000/.well-known/jwks.json"
        );
    }

    #[test]
    fn only_http_urls_are_servers() {
        for bad in [
            "localhost:3000",
            "ftp://example.com",
            "mailto:a@b",
            "not a url",
        ] {
            assert!(matches!(Server::new(bad), Err(Error::Config(_))), "{bad}");
        }
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, reqwest::header::HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            reqwest::header::HeaderValue::from_static("Wed, 21 Oct 2026 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
