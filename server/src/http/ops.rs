//! Discovery and operations: health, readiness, metrics, the JWKS, the audit checkpoint feed
//! and the OpenAPI document.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, RawQuery, Request, State};
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

/// `GET /metrics`: the metrics in the OpenMetrics text format (which Prometheus scrapes).
pub async fn metrics(State(core): State<Arc<Countersign>>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::telemetry::CONTENT_TYPE)],
        core.metrics.render(core.waiters.waiting()),
    )
        .into_response()
}

/// Times every call for the per-route latency histogram, by the router's pattern for the path
/// (never the path itself, which would make a series per request id): the way in of a layer
/// made with [`super::around`].
pub fn time_calls(
    core: &Arc<Countersign>,
    request: &mut Request,
) -> impl FnOnce(Response) -> Response + use<> {
    let core = core.clone();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    move |response| {
        core.metrics.http_request(
            &method,
            route.as_ref().map(MatchedPath::as_str),
            response.status().as_u16(),
            started.elapsed(),
        );
        response
    }
}

/// `GET /.well-known/jwks.json`: the grant verification keys.
#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "discovery",
    responses(
        (status = 200, description = "The keys that verify grants", body = super::openapi::JwkSetDoc,
            headers(("Cache-Control" = String, description = "Cacheable for 5 minutes"))),
        (status = 500, response = super::openapi::InternalError),
    )
)]
pub async fn jwks(State(core): State<Arc<Countersign>>) -> Result<Response, ApiError> {
    let keys = core.jwks().await?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=300")], Json(keys)).into_response())
}

/// `GET /api/v1/audit/checkpoints[?limit=N]`: this replica's newest signed audit checkpoints
/// (100 unless asked, at most 1000) and the key they are signed with. Public on purpose: see
/// `service::checkpoints` on who may read them.
#[utoipa::path(
    get, path = "/api/v1/audit/checkpoints", tag = "audit",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000,
        description = "How many of the newest checkpoints (default 100)")),
    responses(
        (status = 200, description = "The newest checkpoints and the key that signs them",
            body = super::openapi::CheckpointFeedDoc),
        (status = 400, description = "invalid_request: `limit` is not a whole number from 1 to 1000",
            body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 500, response = super::openapi::InternalError),
    )
)]
pub async fn audit_checkpoints(
    State(core): State<Arc<Countersign>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut limit = crate::service::checkpoints::DEFAULT_FEED;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if name == "limit" {
            limit = value
                .parse()
                .map_err(|_| crate::service::Error::invalid("limit", "limit is a whole number"))?;
        }
    }
    let feed = core.checkpoint_feed(limit).await?;
    Ok(([(header::CACHE_CONTROL, "no-cache")], Json(feed)).into_response())
}

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "discovery",
    responses((status = 200, description = "The OpenAPI 3.1 document of the agent API", body = Object))
)]
pub async fn openapi(State(core): State<Arc<Countersign>>) -> Response {
    let mut doc = super::ApiDoc::openapi();
    doc.servers = Some(vec![utoipa::openapi::Server::new(core.issuer())]);
    match serde_json::to_value(&doc) {
        Ok(doc) => Json(super::openapi::with_webhooks(doc)).into_response(),
        Err(_) => Json(doc).into_response(),
    }
}
