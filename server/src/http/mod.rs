//! The HTTP edges: routes, layers, and serving. Handlers are thin: parse, authenticate
//! (extractors), call one service method, map the error ([`problem`]).

pub mod agent_api;
mod around;
pub mod body;
pub mod gateway;
pub mod headers;
pub mod limits;
pub mod mcp;
pub mod openapi;
pub mod ops;
pub mod owner_api;
pub mod problem;
pub mod ui;

pub use openapi::ApiDoc;

use around::around;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get, post};
use axum::{Extension, Router};
use leptos::prelude::LeptosOptions;
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::service::Countersign;
use crate::store::sessions::DbSessionStore;

/// The session cookie's name. `__Host-` makes browsers insist on Secure, Path=/ and no Domain.
pub const SESSION_COOKIE: &str = "__Host-countersign";

/// The Leptos options for serving the app and its compiled assets.
pub fn leptos_options(core: &Countersign) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("countersign")
        .site_root(core.config.site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .build()
}

/// The browser session layer (see the threat model in the README).
fn session_layer(core: &Countersign) -> SessionManagerLayer<DbSessionStore> {
    SessionManagerLayer::new(DbSessionStore::new(core.db.clone()))
        .with_name(SESSION_COOKIE)
        .with_secure(true)
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(1)))
}

/// The app's page routes, listed once per process.
///
/// Listing them runs the whole app once, and while Leptos does that it sets a process-wide
/// flag that parks every resource first polled meanwhile, anywhere in the process, forever
/// (`leptos_server`'s `SuppressResourceLoad`; leptos-rs/leptos#4773). A second router built
/// while another one serves (replicas in one process, the tests) would hang whatever page
/// happened to be loading its data. Listed once, before the first router exists, nothing can
/// be rendering yet.
// The one place the route list is built; clippy.toml refuses `generate_route_list` anywhere
// else, for the reason above.
#[allow(clippy::disallowed_methods)]
fn app_routes() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(app::App)).clone()
}

/// Every route.
pub fn router(core: Arc<Countersign>) -> Router {
    // Per-client-address limits on unauthenticated calls: every sign-in and enrolment call,
    // refused redemptions and failed agent authentications (see `limits`).
    let limits = limits::Limits::start(&core.config.edge_limits, core.metrics.limited.clone());
    let calls = |which| from_fn_with_state((limits.clone(), which), limits::count_calls);
    let owner = Router::new()
        .route(
            "/enrol/start",
            post(owner_api::enrol_start).route_layer(calls(limits::Calls::Enrol)),
        )
        .route(
            "/enrol/finish",
            post(owner_api::enrol_finish).route_layer(calls(limits::Calls::Enrol)),
        )
        .route(
            "/sign-in/start",
            post(owner_api::sign_in_start).route_layer(calls(limits::Calls::SignIn)),
        )
        .route(
            "/sign-in/finish",
            post(owner_api::sign_in_finish).route_layer(calls(limits::Calls::SignIn)),
        )
        .route("/sign-out", post(owner_api::sign_out))
        .route("/me", get(owner_api::me))
        .route("/requests/{id}", get(owner_api::approval_view))
        .route(
            "/requests/{id}/decision/start",
            post(owner_api::decision_start),
        )
        .route(
            "/requests/{id}/decision/finish",
            post(owner_api::decision_finish),
        )
        .route("/batch/start", post(owner_api::batch_start))
        .route("/batch/finish", post(owner_api::batch_finish))
        .route("/passkeys/start", post(owner_api::add_passkey_start))
        .route("/passkeys/finish", post(owner_api::add_passkey_finish))
        .route("/events", get(owner_api::events))
        // --- audit ---
        .route("/audit/export", get(owner_api::audit_export))
        .layer(axum::middleware::from_fn_with_state(
            core.clone(),
            owner_api::same_origin_only,
        ))
        .layer(session_layer(&core));

    // Revocation is open to the agent (bearer) and to its owner (session), so this one agent
    // route also carries the session and the cross-site check.
    let revoke = Router::new()
        .route("/api/v1/grants/{jti}/revoke", post(agent_api::revoke_grant))
        .layer(axum::middleware::from_fn_with_state(
            core.clone(),
            owner_api::same_origin_only,
        ))
        .layer(session_layer(&core));

    // MCP (Streamable HTTP): every request authenticated like the agent API's.
    let mcp = Router::new()
        .route_service("/mcp", mcp::service(core.clone()))
        .layer(from_fn_with_state(core.clone(), mcp::authenticate));

    let api = Router::new()
        .route("/api/v1/requests", post(agent_api::create_request))
        .route("/api/v1/requests/{id}", get(agent_api::get_request))
        .route(
            "/api/v1/requests/{id}/cancel",
            post(agent_api::cancel_request),
        )
        .route(
            "/api/v1/grants/redeem",
            post(agent_api::redeem_grant).route_layer(from_fn_with_state(
                (limits.clone(), limits::Failures::Redeem),
                limits::count_refusals,
            )),
        )
        .route(
            "/api/v1/grants/{jti}/report",
            post(agent_api::report_outcome),
        )
        .route(
            "/api/v1/grants/{jti}/credential",
            post(agent_api::release_credential),
        )
        .route("/gw/{provider}/{*path}", any(gateway::forward))
        .route("/api/v1/openapi.json", get(ops::openapi))
        .route("/.well-known/jwks.json", get(ops::jwks))
        .route("/api/v1/audit/checkpoints", get(ops::audit_checkpoints))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .nest("/api/ui", owner)
        .merge(revoke)
        .merge(mcp)
        // Under /api/ a path that is no endpoint is a problem+json 404, not the app's page.
        .route("/api", any(problem::no_such_endpoint))
        .route("/api/", any(problem::no_such_endpoint))
        .route("/api/{*rest}", any(problem::no_such_endpoint))
        // Whatever a layer below the handlers answers under /api is problem+json too.
        .layer(problem::ProblemJsonOnly)
        .with_state(core.clone())
        // For the `AgentAuth` extractor, which counts failed authentications.
        .layer(Extension(limits));

    // The pages and the app's server functions (`/api/app/*`) get the session and the
    // cross-site check like `/api/ui`; each server function asks the backend, which finds the
    // signed-in person in the session.
    let options = leptos_options(&core);
    let routes = app_routes();
    let backend: Arc<dyn app::api::Backend> = Arc::new(ui::UiBackend::new(core.clone()));
    let site = Router::new()
        .leptos_routes_with_context(
            &options,
            routes,
            move || {
                leptos::prelude::provide_context(backend.clone());
                headers::provide_page_nonce();
            },
            {
                let options = options.clone();
                move || app::shell(options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler_with_context(
            headers::provide_page_nonce,
            app::shell,
        ))
        .with_state(options)
        // Pages and the wasm bundle go out gzipped (the bundle is about a third of its size
        // then, which matters on a phone). Not the agent API: its bodies are small, and a
        // long-wait answer must not wait on an encoder.
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn(ui::server_fn_status))
        .layer(axum::middleware::from_fn_with_state(
            core.clone(),
            owner_api::same_origin_only,
        ))
        .layer(session_layer(&core));

    // The security headers on every answer, and the nonce the page render puts on its scripts.
    api.merge(site)
        // A method a path does not take: problem+json, with the `Allow` header axum adds.
        .method_not_allowed_fallback(problem::method_not_allowed)
        .layer(around({
            let edge = headers::BrowserEdge::new(&core.config);
            move |req: &mut Request| edge.before(req)
        }))
        // Applied to each route (so it sees the route's pattern) and to the fallback.
        .layer(around({
            let core = core.clone();
            move |req: &mut Request| ops::time_calls(&core, req)
        }))
        .layer(TraceLayer::new_for_http())
}

/// Serves until `shutdown` completes (then finishes in-flight requests), with the sweeper
/// (and on PostgreSQL the decision listener) running beside the server.
pub async fn serve(
    core: Arc<Countersign>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(core.clone(), router(core), listener, shutdown).await
}

/// [`serve`] with a router of the caller's: [`router`], perhaps wrapped in a layer of its own
/// (the tests record every call to check it against the OpenAPI document).
///
/// Connections are served by hyper's HTTP/1 connection directly rather than `axum::serve`,
/// whose version-sniffing connection (hyper-util's `auto`) holds each request's first 8 KB
/// read buffer for as long as the connection lives: a third of what a long-waiting agent cost
/// (`bash .ci/bench waiters`). Countersign speaks HTTP/1.1 only (no HTTP/2 is compiled in);
/// TLS, if any, ends at the proxy in front.
pub async fn serve_router(
    core: Arc<Countersign>,
    app: Router,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::TokioIo;
    use tower::Service;

    spawn_background(core);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // No Nagle: an answer written in several small pieces (an MCP tool result is an SSE
        // event, then the stream's end) would otherwise wait for the client's delayed ACK,
        // 40 ms on Linux, before its last piece leaves (it did: `make bench` mcp p99 39 ms
        // against 10 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        // Every connection shares the one prepared router (a reference count per request);
        // the peer's address goes on each request, which the limits count by.
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().call(req)
        });
        // No timer, so no header read timeout: as under `axum::serve`, an idle kept-alive
        // connection stays open until its client closes it.
        let connection =
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // In-flight requests finish; idle connections close.
    graceful.shutdown().await;
    Ok(())
}

/// After a failed `accept`: a connection the peer gave up on is nothing; anything else (out
/// of file descriptors, say) is logged and retried after a pause, as a busy loop would not help.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Starts the background tasks: the sweeper, the audit checkpoints, the callback worker, the
/// credential revocation worker and reaper (on every replica; the reaper and sweeper act on one
/// at a time), on SQLite the WAL checkpoints, and on PostgreSQL the cross-replica listener.
pub fn spawn_background(core: Arc<Countersign>) {
    tokio::spawn(crate::service::callbacks::run(core.clone()));
    tokio::spawn(crate::service::credentials::run(core.clone()));
    tokio::spawn(crate::service::credentials::run_reaper(core.clone()));
    tokio::spawn(crate::service::checkpoints::run(
        core.clone(),
        Duration::from_secs(1),
    ));
    if core.db.backend() == crate::store::Backend::Sqlite {
        tokio::spawn(crate::store::run_wal_checkpoints(core.db.clone()));
    }
    if core.db.backend() == crate::store::Backend::Postgres {
        tokio::spawn(crate::service::waiters::listen(
            core.db.url().expose().to_string(),
            core.waiters.clone(),
        ));
    }
    tokio::spawn(crate::service::sweeper::run(core, Duration::from_secs(1)));
}
