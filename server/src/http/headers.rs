//! The browser edge: the security headers on every answer, in one place.
//!
//! Every page gets a Content Security Policy whose script source is a nonce drawn fresh for
//! that answer. The same nonce goes into the request, where the page render finds it
//! ([`provide_page_nonce`]) and hands it to Leptos, which writes it on every `<script>` it
//! emits (the hydration loader and the serialised resource data). So the only inline script
//! that runs is the one we rendered: should escaping of agent-supplied text ever regress, an
//! injected `<script>` has no nonce and the browser refuses it. Scripts from our own origin
//! (`'self'`: the wasm-bindgen module and its split-loader under `/pkg`) may load; wasm may be
//! compiled (`'wasm-unsafe-eval'`, which allows `WebAssembly` and nothing else: no `eval`).
//! Our pages use no inline styles (the stylesheet is a file; Leptos's `style:` bindings go
//! through the CSSOM, which CSP does not restrict), so styles need no `'unsafe-inline'` either.
//!
//! `frame-ancestors 'none'` (and `X-Frame-Options: DENY` for browsers that predate it) keep
//! every page out of other sites' frames, so nobody can lay a decoy over the Approve button.
//! `Referrer-Policy: same-origin` keeps approval URLs from reaching other sites in `Referer`
//! while still letting our own POSTs carry their `Origin` (with `no-referrer` a browser sends
//! `Origin: null` even to us, which the cross-site check would have to treat as foreign).
//!
//! Answers that carry personal data or grants (pages, `/api/ui`, `/api/app`, the agent API)
//! must not be kept by any cache: they get `Cache-Control: no-store` unless their handler set
//! a policy of its own (the JWKS is public and says so). The compiled assets under `/pkg` and
//! the files from `public/` are the same for everyone and stay cacheable.

use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::response::Response;
use base64::Engine;
use rand_core::{OsRng, RngCore};

use crate::config::Config;

/// The policy for everything that is not a page (JSON, problem+json, files): it may load
/// nothing, run nothing and be framed by nobody, should a browser ever render it as a document.
const NOT_A_PAGE_POLICY: &str =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One year: long enough that a browser which has seen us once never falls back to http.
/// No `includeSubDomains`: the hosts below ours are not ours to decide about.
const HSTS: &str = "max-age=31536000";

/// The nonce of one answer's Content Security Policy: 128 bits from the operating system's
/// generator, base64url. It travels in the request's extensions to the page render.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScriptNonce(std::sync::Arc<str>);

impl ScriptNonce {
    /// A nonce nobody can have seen or guessed.
    fn fresh() -> Self {
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        Self(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(bytes)
                .into(),
        )
    }
}

/// What the edge sends besides the per-answer policy; fixed by the configuration.
#[derive(Clone, Debug)]
pub struct BrowserEdge {
    /// `Strict-Transport-Security`, only when the public URL is https: over plain http it
    /// would mean nothing, and a browser that honoured it would lock itself out of a
    /// development server.
    hsts: bool,
}

impl BrowserEdge {
    /// The edge for this configuration.
    pub fn new(config: &Config) -> Self {
        Self {
            hsts: config.public_url.scheme() == "https",
        }
    }
}

/// The page policy for one answer: scripts only with its nonce or from our origin.
fn page_policy(nonce: &ScriptNonce) -> String {
    format!(
        "default-src 'none'; script-src 'self' 'nonce-{}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self'; connect-src 'self'; \
         base-uri 'none'; object-src 'none'; form-action 'self'; frame-ancestors 'none'",
        nonce.0
    )
}

/// The compiled assets and `public/`'s files: the same for everyone, so caches may keep them.
fn is_public_asset(path: &str) -> bool {
    path.starts_with("/pkg/") || matches!(path, "/favicon.ico" | "/robots.txt")
}

/// Paths that never answer with a page: the API (whose every answer is JSON or problem+json),
/// the discovery and operations endpoints, and the assets. They get no nonce: the agent API is
/// the hot path, and a nonce nobody uses is a system call for nothing.
fn never_a_page(path: &str) -> bool {
    is_public_asset(path)
        || path.starts_with("/api/")
        || path.starts_with("/.well-known/")
        || matches!(path, "/healthz" | "/readyz" | "/metrics")
}

impl BrowserEdge {
    /// The middleware's way in (see [`super::around`]): draws the answer's nonce (for what may
    /// be a page) and hands it to the request; what it returns sets the headers on the answer.
    pub fn before(&self, req: &mut Request) -> impl FnOnce(Response) -> Response + use<> {
        let path = req.uri().path();
        let public_asset = is_public_asset(path);
        let nonce = (!never_a_page(path)).then(ScriptNonce::fresh);
        if let Some(nonce) = &nonce {
            req.extensions_mut().insert(nonce.clone());
        }
        let hsts = self.hsts;
        move |mut res| {
            secure(res.headers_mut(), nonce, public_asset, hsts);
            res
        }
    }
}

/// The headers every answer gets.
fn secure(headers: &mut HeaderMap, nonce: Option<ScriptNonce>, public_asset: bool, hsts: bool) {
    let is_page = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    // A page gets the policy naming its nonce. Anything else, and a page where none was drawn
    // (or whose policy would not make a header value), gets the policy that runs nothing.
    let policy = nonce
        .filter(|_| is_page)
        .and_then(|nonce| HeaderValue::try_from(page_policy(&nonce)).ok())
        .unwrap_or(HeaderValue::from_static(NOT_A_PAGE_POLICY));
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(
        headers,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if hsts {
        set(headers, header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    if !public_asset && !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    headers.insert(name, HeaderValue::from_static(value));
}

/// Gives the page being rendered its answer's nonce, for Leptos to put on every `<script>`
/// ([`leptos::nonce::use_nonce`]). Called from the context the page routes provide; the
/// request's [`Parts`] are in that context already.
///
/// Leptos draws a nonce of its own for every render; this replaces it with the one the
/// policy header names. Without the middleware (no nonce in the request) Leptos's stays, and
/// no policy is sent that it could contradict.
pub fn provide_page_nonce() {
    use leptos::prelude::{provide_context, use_context};
    let nonce = use_context::<Parts>().and_then(|p| p.extensions.get::<ScriptNonce>().cloned());
    if let Some(ScriptNonce(nonce)) = nonce {
        provide_context(leptos::nonce::Nonce::from_value(nonce));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_long_and_never_repeat() {
        let drawn: std::collections::HashSet<ScriptNonce> =
            (0..1000).map(|_| ScriptNonce::fresh()).collect();
        assert_eq!(drawn.len(), 1000);
        assert!(drawn.iter().all(|n| n.0.len() == 22));
    }

    #[test]
    fn the_page_policy_allows_no_inline_script_but_its_nonce() {
        let nonce = ScriptNonce("abc_-123".into());
        let policy = page_policy(&nonce);
        assert!(policy.contains("script-src 'self' 'nonce-abc_-123' 'wasm-unsafe-eval';"));
        assert!(!policy.contains("unsafe-inline"));
        assert!(!policy.contains("'unsafe-eval'"));
    }
}
