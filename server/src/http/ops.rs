//! Discovery and operations: health, readiness, metrics, the JWKS and the OpenAPI document.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::OpenApi;

use super::problem::ApiError;
use crate::service::Countersign;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database answers.
pub async fn readyz(State(core): State<Arc<Countersign>>) -> Response {
    if core.db.ping().await {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(core): State<Arc<Countersign>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        core.metrics.render(core.waiters.waiting()),
    )
        .into_response()
}

/// `GET /.well-known/jwks.json`: the grant verification keys.
pub async fn jwks(State(core): State<Arc<Countersign>>) -> Result<Response, ApiError> {
    let keys = core.jwks().await?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=300")], Json(keys)).into_response())
}

/// `GET /api/v1/openapi.json`
pub async fn openapi(State(core): State<Arc<Countersign>>) -> Response {
    let mut doc = super::ApiDoc::openapi();
    doc.servers = Some(vec![utoipa::openapi::Server::new(core.issuer())]);
    Json(doc).into_response()
}
