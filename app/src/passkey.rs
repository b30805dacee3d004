//! The browser half of every passkey ceremony: call a `/api/ui/…/start` endpoint, hand its
//! options to `navigator.credentials`, and post the authenticator's answer to `…/finish`.
//!
//! The server speaks WebAuthn's JSON form (binary fields as base64url strings); the browser API
//! wants `ArrayBuffer`s. The two conversions below are the only WebAuthn knowledge in the app:
//! which fields are binary. Everything else (what the challenge is bound to, user verification,
//! counters) is the server's business.
//!
//! These functions run only in the browser. Under `ssr` they exist so pages compile, and they
//! fail if ever called, which they are not: they are called from event handlers only.

use serde_json::Value;

use crate::api::AppError;

/// Which ceremony: creating a passkey or using one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceremony {
    /// `navigator.credentials.create`.
    Create,
    /// `navigator.credentials.get`.
    Get,
}

/// Posts JSON to one of Countersign's `/api/ui` endpoints and returns its JSON answer. An
/// error answer (problem+json) becomes the matching [`AppError`], with its `detail` as message.
pub async fn post_json(url: &str, body: &Value) -> Result<Value, AppError> {
    imp::post_json(url, body).await
}

/// Runs a whole ceremony: `start_url` with `start_body`, the browser's passkey prompt, then
/// `finish_url`. Returns the finish answer. A prompt the person cancels gives
/// [`AppError::Conflict`] with a message saying nothing changed.
pub async fn ceremony(
    kind: Ceremony,
    start_url: &str,
    start_body: &Value,
    finish_url: &str,
) -> Result<Value, AppError> {
    let start = post_json(start_url, start_body).await?;
    let ceremony_id = start
        .get("ceremony_id")
        .cloned()
        .ok_or_else(|| AppError::Server("the server sent no ceremony".into()))?;
    let options = start
        .get("options")
        .cloned()
        .ok_or_else(|| AppError::Server("the server sent no passkey options".into()))?;
    let credential = imp::run(kind, options).await?;
    post_json(
        finish_url,
        &serde_json::json!({ "ceremony_id": ceremony_id, "credential": credential }),
    )
    .await
}

/// Starts loading the browser's half of the ceremonies in the background. That code lives in a
/// wasm chunk of its own (`#[lazy]`), so a page that shows a request downloads and starts
/// faster; pages that may run a ceremony call this once they are up, so the code is there
/// before anyone clicks.
pub fn preload() {
    imp::preload();
}

/// Whether this browser can use passkeys at all.
pub fn supported() -> bool {
    imp::supported()
}

/// The message for an error answer from `/api/ui`.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn problem_to_error(status: u16, body: &Value) -> AppError {
    let detail = body
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or("Something went wrong")
        .to_string();
    match status {
        400 | 413 | 415 => AppError::Invalid {
            field: body
                .get("field")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            message: detail,
        },
        401 => AppError::SignInRequired,
        403 => AppError::Forbidden(detail),
        404 => AppError::NotFound(detail),
        409 => AppError::Conflict(detail),
        410 => AppError::Expired(detail),
        429 => AppError::RateLimited(detail),
        _ => AppError::Server(detail),
    }
}

#[cfg(feature = "hydrate")]
mod imp {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use js_sys::{Array, Object, Reflect, Uint8Array};
    use serde_json::{json, Value};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    use super::{problem_to_error, Ceremony};
    use crate::api::AppError;

    fn js_err(context: &str, e: JsValue) -> AppError {
        let text = e
            .as_string()
            .or_else(|| {
                Reflect::get(&e, &"message".into())
                    .ok()
                    .and_then(|m| m.as_string())
            })
            .unwrap_or_else(|| format!("{e:?}"));
        AppError::Server(format!("{context}: {text}"))
    }

    pub fn supported() -> bool {
        web_sys::window()
            .map(|w| Reflect::has(&w, &"PublicKeyCredential".into()).unwrap_or(false))
            .unwrap_or(false)
    }

    pub async fn post_json(url: &str, body: &Value) -> Result<Value, AppError> {
        let window = web_sys::window().ok_or_else(|| AppError::Server("no window".into()))?;
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_credentials(web_sys::RequestCredentials::SameOrigin);
        init.set_body(&JsValue::from_str(&body.to_string()));
        let headers = web_sys::Headers::new().map_err(|e| js_err("request", e))?;
        headers
            .set("content-type", "application/json")
            .map_err(|e| js_err("request", e))?;
        init.set_headers(&headers);
        let request = web_sys::Request::new_with_str_and_init(url, &init)
            .map_err(|e| js_err("request", e))?;
        let response: web_sys::Response = JsFuture::from(window.fetch_with_request(&request))
            .await
            .map_err(|_| {
                AppError::Server(
                    "Could not reach Countersign. Check your connection and try again.".into(),
                )
            })?
            .dyn_into()
            .map_err(|e| js_err("response", e))?;
        let text = JsFuture::from(response.text().map_err(|e| js_err("response", e))?)
            .await
            .map_err(|e| js_err("response", e))?
            .as_string()
            .unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if response.ok() {
            Ok(value)
        } else {
            Err(problem_to_error(response.status(), &value))
        }
    }

    fn bytes(value: &Value, what: &str) -> Result<JsValue, AppError> {
        let text = value
            .as_str()
            .ok_or_else(|| AppError::Server(format!("{what} is not a string")))?;
        let raw = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|e| AppError::Server(format!("{what}: {e}")))?;
        Ok(Uint8Array::from(raw.as_slice()).into())
    }

    fn set(target: &JsValue, key: &str, value: &JsValue) -> Result<(), AppError> {
        Reflect::set(target, &key.into(), value)
            .map(|_| ())
            .map_err(|e| js_err("options", e))
    }

    /// Server JSON options → the object `navigator.credentials` takes, with the binary
    /// fields (challenge, user id, credential ids) turned into byte arrays.
    fn to_js_options(options: &Value) -> Result<JsValue, AppError> {
        let public_key = options
            .get("publicKey")
            .ok_or_else(|| AppError::Server("options without publicKey".into()))?;
        let js = js_sys::JSON::parse(&public_key.to_string()).map_err(|e| js_err("options", e))?;
        set(
            &js,
            "challenge",
            &bytes(&public_key["challenge"], "challenge")?,
        )?;
        if let Some(id) = public_key.get("user").and_then(|u| u.get("id")) {
            let user = Reflect::get(&js, &"user".into()).map_err(|e| js_err("options", e))?;
            set(&user, "id", &bytes(id, "user.id")?)?;
        }
        for list in ["excludeCredentials", "allowCredentials"] {
            if let Some(items) = public_key.get(list).and_then(Value::as_array) {
                let array = Array::new();
                for item in items {
                    let entry =
                        js_sys::JSON::parse(&item.to_string()).map_err(|e| js_err("options", e))?;
                    set(&entry, "id", &bytes(&item["id"], list)?)?;
                    array.push(&entry);
                }
                set(&js, list, &array)?;
            }
        }
        let outer = Object::new();
        set(&outer, "publicKey", &js)?;
        Ok(outer.into())
    }

    fn b64(source: &JsValue, key: &str) -> Result<Option<String>, AppError> {
        let v = Reflect::get(source, &key.into()).map_err(|e| js_err("credential", e))?;
        if v.is_null() || v.is_undefined() {
            return Ok(None);
        }
        Ok(Some(URL_SAFE_NO_PAD.encode(Uint8Array::new(&v).to_vec())))
    }

    /// The authenticator's answer → WebAuthn JSON for the server.
    fn from_js_credential(kind: Ceremony, cred: &JsValue) -> Result<Value, AppError> {
        let response =
            Reflect::get(cred, &"response".into()).map_err(|e| js_err("credential", e))?;
        let raw_id = b64(cred, "rawId")?.unwrap_or_default();
        let client_data = b64(&response, "clientDataJSON")?.unwrap_or_default();
        let answer = match kind {
            Ceremony::Create => json!({
                "attestationObject": b64(&response, "attestationObject")?.unwrap_or_default(),
                "clientDataJSON": client_data,
            }),
            Ceremony::Get => json!({
                "authenticatorData": b64(&response, "authenticatorData")?.unwrap_or_default(),
                "clientDataJSON": client_data,
                "signature": b64(&response, "signature")?.unwrap_or_default(),
                "userHandle": b64(&response, "userHandle")?,
            }),
        };
        Ok(json!({
            "id": raw_id,
            "rawId": raw_id,
            "type": "public-key",
            "response": answer,
        }))
    }

    pub fn preload() {
        leptos::task::spawn_local(__preload_run());
    }

    /// Loaded on first use (or [`preload`]): see [`super::preload`].
    #[leptos::prelude::lazy]
    pub async fn run(kind: Ceremony, options: Value) -> Result<Value, AppError> {
        if !supported() {
            return Err(AppError::Server(
                "This browser cannot use passkeys. Try an up-to-date browser.".into(),
            ));
        }
        let window = web_sys::window().ok_or_else(|| AppError::Server("no window".into()))?;
        let container = window.navigator().credentials();
        let js_options = to_js_options(&options)?;
        let promise = match kind {
            Ceremony::Create => container
                .create_with_options(js_options.unchecked_ref())
                .map_err(|e| js_err("passkey", e))?,
            Ceremony::Get => container
                .get_with_options(js_options.unchecked_ref())
                .map_err(|e| js_err("passkey", e))?,
        };
        let credential = JsFuture::from(promise).await.map_err(|e| {
            let name = Reflect::get(&e, &"name".into())
                .ok()
                .and_then(|n| n.as_string())
                .unwrap_or_default();
            if name == "NotAllowedError" || name == "AbortError" {
                AppError::Conflict(
                    "The passkey prompt was cancelled or timed out. Nothing was changed.".into(),
                )
            } else if name == "InvalidStateError" {
                AppError::Conflict("This authenticator is already registered.".into())
            } else {
                js_err("passkey", e)
            }
        })?;
        if credential.is_null() {
            return Err(AppError::Conflict(
                "No passkey was chosen. Nothing was changed.".into(),
            ));
        }
        from_js_credential(kind, &credential)
    }
}

#[cfg(not(feature = "hydrate"))]
mod imp {
    use serde_json::Value;

    use super::Ceremony;
    use crate::api::AppError;

    fn browser_only() -> AppError {
        AppError::Server("passkeys work only in the browser".into())
    }

    pub fn supported() -> bool {
        false
    }

    pub async fn post_json(_url: &str, _body: &Value) -> Result<Value, AppError> {
        Err(browser_only())
    }

    pub async fn run(_kind: Ceremony, _options: Value) -> Result<Value, AppError> {
        Err(browser_only())
    }

    pub fn preload() {}
}
