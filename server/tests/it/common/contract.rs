//! Every call the integration suite makes is checked against the served OpenAPI document.
//!
//! The test server's router is wrapped in [`record`], which keeps, for every call under
//! `/api/` (and the JWKS), the method, path, request body, status, headers and body of the
//! answer. When the [`TestApp`](super::TestApp) goes away, [`Recorder::violations`] checks them
//! with a real JSON Schema validator (draft 2020-12, which OpenAPI 3.1 uses):
//!
//! - every answer under `/api/v1` and `/api/ui` that is an error is `application/problem+json`;
//! - for a call of a documented operation: its status is documented; a body the server
//!   accepted (2xx) validates against the operation's request schema; a JSON answer validates
//!   against the schema documented for its status and content type; every header documented
//!   for that status is present.
//!
//! So the whole suite, on both databases, is a test of the document, and a test that makes the
//! server answer something the document does not say fails, naming the call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{json, Value};

/// One answered call.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub request: Bytes,
    pub status: u16,
    pub headers: HeaderMap,
    /// The answer's body, when it was read (JSON answers and errors).
    pub response: Option<Bytes>,
}

impl Call {
    fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim())
            .unwrap_or("")
    }
}

/// The calls a test server answered.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Adds a call made up by a test (to check that the checker itself finds violations).
    pub fn push(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }

    /// Everything the recorded calls show the document gets wrong, one line each.
    pub fn violations(&self, doc: &Value) -> Vec<String> {
        let mut check = Checker::new(doc);
        for call in self.calls() {
            check.call(&call);
        }
        check.found
    }
}

fn recorded(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path.starts_with("/.well-known/")
}

/// The middleware: passes every call through unchanged and keeps what it needs to check it.
pub async fn record(State(recorder): State<Recorder>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if !recorded(&path) {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let (parts, body) = req.into_parts();
    let request = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let res = next
        .run(Request::from_parts(parts, Body::from(request.clone())))
        .await;
    let (parts, body) = res.into_parts();
    // Read the answer only when it is finite: JSON or an error (never the live-inbox stream).
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let readable = content_type.contains("json") || parts.status.as_u16() >= 400;
    let (body, response) = if readable {
        let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
        (Body::from(bytes.clone()), Some(bytes))
    } else {
        (body, None)
    };
    recorder.calls.lock().unwrap().push(Call {
        method,
        path,
        request,
        status: parts.status.as_u16(),
        headers: parts.headers.clone(),
        response,
    });
    Response::from_parts(parts, body)
}

/// A validator for the JSON request body of the operation `method template` of `doc`.
pub fn request_body_validator(doc: &Value, method: &str, template: &str) -> jsonschema::Validator {
    let pointer = format!(
        "/paths/{}/{}/requestBody/content/application~1json/schema",
        token(template),
        method.to_ascii_lowercase()
    );
    assert!(
        doc.pointer(&pointer).is_some(),
        "the document has no {pointer}"
    );
    validator(doc, &pointer)
}

/// A validator for the schema at `pointer` in `doc`, resolving its `$ref`s in `doc`.
fn validator(doc: &Value, pointer: &str) -> jsonschema::Validator {
    // The whole document is the root resource, so `#/components/schemas/...` resolve; OpenAPI's
    // own keys are not JSON Schema keywords and are ignored.
    let mut root = doc.clone();
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["$ref"] = json!(format!("#{}", fragment(pointer)));
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"))
}

/// A JSON pointer as a URI fragment (RFC 6901 §6): `{id}` becomes `%7Bid%7D`.
fn fragment(pointer: &str) -> String {
    pointer
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Escapes one JSON pointer token (RFC 6901).
fn token(text: &str) -> String {
    text.replace('~', "~0").replace('/', "~1")
}

/// Whether a path matches an OpenAPI path template (`/api/v1/requests/{id}`).
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

struct Checker<'d> {
    doc: &'d Value,
    validators: HashMap<String, jsonschema::Validator>,
    found: Vec<String>,
}

impl<'d> Checker<'d> {
    fn new(doc: &'d Value) -> Self {
        Self {
            doc,
            validators: HashMap::new(),
            found: Vec::new(),
        }
    }

    /// Follows an OpenAPI `$ref` (to `#/components/...`) of a response or body.
    fn resolve(&self, value: &'d Value) -> &'d Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(r) => self
                .doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("the document has no {r}")),
            None => value,
        }
    }

    /// Validates `instance` against the schema at `pointer` in the document, resolving its
    /// `$ref`s in the document. Returns the validator's messages.
    fn validate(&mut self, pointer: &str, instance: &Value) -> Vec<String> {
        let doc = self.doc;
        let validator = self
            .validators
            .entry(pointer.to_string())
            .or_insert_with(|| validator(doc, pointer));
        validator
            .iter_errors(instance)
            .map(|e| format!("at {:?}: {e}", e.instance_path().to_string()))
            .collect()
    }

    fn call(&mut self, call: &Call) {
        let doc = self.doc;
        let what = format!("{} {} -> {}", call.method, call.path, call.status);
        let body_text = |b: &Option<Bytes>| {
            b.as_ref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(600)]).to_string())
                .unwrap_or_default()
        };
        let is_error = call.status >= 400;
        // The app's server functions (`/api/app/*`) answer their errors in the encoding the
        // app's browser code decodes; everything else under /api/ speaks problem+json.
        let problem_path = call.path.starts_with("/api") && !call.path.starts_with("/api/app/");
        if is_error && problem_path && call.content_type() != "application/problem+json" {
            self.found.push(format!(
                "{what}: an error answered as {:?}, not application/problem+json: {}",
                call.content_type(),
                body_text(&call.response)
            ));
        }

        let Some((template, operation)) = doc["paths"].as_object().and_then(|paths| {
            paths.iter().find_map(|(template, item)| {
                let op = item.get(call.method.to_ascii_lowercase())?;
                matches(template, &call.path).then_some((template.as_str(), op))
            })
        }) else {
            return; // not a documented operation (a wrong method, no such endpoint)
        };
        let op_pointer = format!(
            "/paths/{}/{}",
            token(template),
            call.method.to_ascii_lowercase()
        );

        // The status is documented.
        let Some(response) = operation["responses"]
            .get(call.status.to_string())
            .or_else(|| operation["responses"].get("default"))
            .map(|r| self.resolve(r))
        else {
            self.found.push(format!(
                "{what}: status {} is not documented for {} {template} (documented: {:?}); body {}",
                call.status,
                call.method,
                operation["responses"]
                    .as_object()
                    .map(|r| r.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default(),
                body_text(&call.response)
            ));
            return;
        };

        // An accepted body is one the document allows.
        if (200..300).contains(&call.status) {
            if let Some(body) = operation.get("requestBody").map(|b| self.resolve(b)) {
                if body["content"].get("application/json").is_some() {
                    let pointer =
                        format!("{op_pointer}/requestBody/content/application~1json/schema");
                    match serde_json::from_slice::<Value>(&call.request) {
                        Ok(instance) => {
                            for e in self.validate(&pointer, &instance) {
                                self.found.push(format!(
                                    "{what}: the server accepted a body the document refuses: {e}; body {}",
                                    String::from_utf8_lossy(&call.request)
                                ));
                            }
                        }
                        Err(e) => self.found.push(format!(
                            "{what}: the server accepted a body that is not JSON ({e})"
                        )),
                    }
                }
            }
        }

        // Documented headers are sent.
        if let Some(headers) = response.get("headers").and_then(Value::as_object) {
            for name in headers.keys() {
                if !call.headers.contains_key(name.as_str()) {
                    self.found
                        .push(format!("{what}: the documented header {name} is missing"));
                }
            }
        }

        // The answer has a documented content type, and a JSON answer its documented shape.
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return;
        };
        let content_type = call.content_type().to_string();
        let Some(media) = content.get(&content_type) else {
            self.found.push(format!(
                "{what}: answered as {content_type:?}, documented as {:?}",
                content.keys().collect::<Vec<_>>()
            ));
            return;
        };
        if media.get("schema").is_none() || !content_type.contains("json") {
            return;
        }
        let Some(bytes) = &call.response else {
            return;
        };
        let pointer = match response_pointer(operation, call.status, &op_pointer) {
            Some(p) => format!("{p}/content/{}/schema", token(&content_type)),
            None => return,
        };
        match serde_json::from_slice::<Value>(bytes) {
            Ok(instance) => {
                for e in self.validate(&pointer, &instance) {
                    self.found.push(format!(
                        "{what}: the answer does not match its documented schema: {e}; answer {}",
                        body_text(&call.response)
                    ));
                }
            }
            Err(e) => self.found.push(format!(
                "{what}: answered {content_type} that is not JSON ({e})"
            )),
        }
    }
}

/// Where the response object for `status` lives: the operation's own, or the component it
/// refers to.
fn response_pointer(operation: &Value, status: u16, op_pointer: &str) -> Option<String> {
    let key = if operation["responses"].get(status.to_string()).is_some() {
        status.to_string()
    } else {
        "default".to_string()
    };
    let response = operation["responses"].get(&key)?;
    Some(match response.get("$ref").and_then(Value::as_str) {
        Some(r) => r.trim_start_matches('#').to_string(),
        None => format!("{op_pointer}/responses/{key}"),
    })
}
