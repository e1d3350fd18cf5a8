//! The HTTP layer on axum. [`router`] is the one declaration of every path, method and
//! layer; handlers are grouped by the contract's tables ([`auth`], [`account`], [`admin`],
//! [`ops`], [`pages`]); [`extract`] turns requests into domain values and [`error`] turns
//! domain errors into the contract's answers. [`serve`] is the accept loop (hyper, with
//! the header-read timeout and graceful shutdown).

pub mod account;
pub mod admin;
pub mod auth;
pub mod context;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod middleware;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod proxy;
pub mod state;
pub mod types;
pub mod upstream;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header::{CACHE_CONTROL, HeaderName, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, Request};
use axum::response::Response;
use axum::routing::{MethodRouter, delete, get, post};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::util::{MapRequestLayer, MapResponse, MapResponseLayer};
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use shared::paths::MountPath;

use crate::http::context::Peer;
use crate::http::extract::{BodyReadTimeout, MAX_BODY};
use crate::http::middleware::{CounterRequestId, GateLayer};
use crate::http::pages::SECURITY_HEADERS;
use crate::http::state::AppState;

type Routes = Vec<(&'static str, MethodRouter<AppState>)>;

/// sessiongate's API: the contract's tables, row by row.
fn api_routes() -> Routes {
    vec![
        ("/api/v1/auth/register", post(auth::register)),
        ("/api/v1/auth/login", post(auth::login)),
        ("/api/v1/auth/logout", post(auth::logout)),
        ("/api/v1/auth/me", get(auth::me)),
        (
            "/api/v1/account",
            get(account::profile).patch(account::update),
        ),
        ("/api/v1/account/password", post(account::change_password)),
        (
            "/api/v1/account/sessions",
            get(account::sessions).delete(account::revoke_others),
        ),
        (
            "/api/v1/account/sessions/{id}",
            delete(account::revoke_session),
        ),
        ("/api/v1/account/audit", get(account::audit)),
        ("/api/v1/users", get(admin::list)),
        (
            "/api/v1/users/{id}",
            axum::routing::patch(admin::change_role).delete(admin::delete),
        ),
        (
            "/api/v1/users/{id}/sessions",
            delete(admin::revoke_sessions),
        ),
        ("/api/v1/authz/forward-auth", get(gateway::forward_auth)),
        ("/api/v1/authz/auth-request", get(gateway::auth_request)),
        ("/api/v1/cron/cleanup-sessions", post(ops::cleanup)),
        ("/api/v1/openapi.json", get(ops::openapi)),
        ("/healthz", get(ops::healthz)),
        ("/readyz", get(ops::readyz)),
        ("/metrics", get(ops::metrics)),
    ]
}

/// The browser pages and their assets, and the public keys of the identity assertion.
fn page_routes() -> Routes {
    vec![
        ("/", get(pages::home)),
        ("/.well-known/jwks.json", get(gateway::jwks)),
        ("/login", get(pages::login)),
        ("/register", get(pages::register)),
        ("/account", get(pages::account)),
        ("/users", get(pages::users)),
        ("/assets/{*path}", get(pages::asset_file)),
    ]
}

/// The routes under the mount path (`MOUNT_PATH=/auth`: `/login` is served at
/// `/auth/login`, and the mount itself at `/auth` as well as `/auth/`).
fn mounted(mount: &MountPath, list: Routes) -> Vec<(String, MethodRouter<AppState>)> {
    let mut out = Vec::with_capacity(list.len() + 1);
    for (path, methods) in list {
        if path == "/" && !mount.is_root() {
            out.push((
                mount.as_str().trim_end_matches('/').to_owned(),
                methods.clone(),
            ));
        }
        out.push((mount.join(path), methods));
    }
    out
}

fn routes(list: Vec<(String, MethodRouter<AppState>)>) -> Router<AppState> {
    list.into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(&path, methods)
        })
}

/// Every route, with every layer, outermost first: a panic answers 500; the request id is
/// set and echoed; tracing (at `debug`: a formatted line per request cost a quarter of
/// warm-verify throughput at `info`); the [`GateLayer`] (request context, CSRF rule,
/// deferred headers, HSTS, metrics by route); the body limit. API answers carry
/// `Cache-Control: no-store` and `nosniff`; pages their security headers.
pub fn router(state: AppState) -> Router {
    let mount = &state.config.mount;
    let mut page_list = page_routes();
    if state.upstream.is_some() && mount.is_root() {
        // Proxy mode under the root mount: `/` is the app's home, not a redirect to ours.
        page_list.retain(|(path, _)| *path != "/");
    }
    let (api, pages) = (mounted(mount, api_routes()), mounted(mount, page_list));
    let gate = GateLayer::new(
        state.clone(),
        api.iter()
            .chain(&pages)
            .map(|(path, _)| &*Box::leak(path.clone().into_boxed_str())),
    );
    let api = routes(api).layer(MapResponseLayer::new(
        api_headers as fn(Response) -> Response,
    ));
    let pages = routes(pages).layer(MapResponseLayer::new(
        page_headers as fn(Response) -> Response,
    ));
    Router::new()
        .merge(api)
        .merge(pages)
        .fallback(proxy::forward)
        .layer(
            ServiceBuilder::new()
                .layer(CatchPanicLayer::custom(middleware::panic_response))
                .layer(MapRequestLayer::new(
                    middleware::drop_client_request_id
                        as fn(axum::extract::Request) -> axum::extract::Request,
                ))
                .layer(SetRequestIdLayer::x_request_id(CounterRequestId))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(TraceLayer::new_for_http())
                .layer(gate)
                .layer(DefaultBodyLimit::max(MAX_BODY)),
        )
        .with_state(state)
}

/// `Cache-Control: no-store` and `nosniff` on every API answer. One layer for all the
/// static headers of a group: each `Router::layer` call boxes every route once more, and
/// each boxed route is cloned on every request.
fn api_headers(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// The pages' [`SECURITY_HEADERS`].
fn page_headers(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    resp
}

/// The service hyper runs: the [`router`], its 405s turned into the contract's JSON (from
/// outside: axum sets `Allow` after a route's own layers ran).
pub type Service = MapResponse<Router, fn(Response) -> Response>;

pub fn service(router: Router) -> Service {
    MapResponseLayer::new(middleware::method_not_allowed as fn(Response) -> Response).layer(router)
}

/// Accepts connections until `shutdown` resolves, then lets in-flight requests finish (up
/// to `grace`) while no new request starts on an open connection. Connections may upgrade
/// (proxy mode's WebSockets). Request bodies time out after `body_timeout` without data
/// (408); the bodies sessiongate reads itself must also arrive in full within it
/// ([`BodyReadTimeout`]).
pub async fn serve(
    service: Service,
    listener: TcpListener,
    header_timeout: Duration,
    body_timeout: Duration,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let service = ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .service(service);
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                let per_connection = tower::service_fn(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(Peer(peer));
                    req.extensions_mut().insert(BodyReadTimeout(body_timeout));
                    service.clone().oneshot(req)
                });
                let conn = builder
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(per_connection))
                    .with_upgrades();
                let closing = closing.clone();
                connections.spawn(async move {
                    tokio::pin!(conn);
                    let ended = tokio::select! {
                        ended = conn.as_mut() => ended,
                        () = closing.cancelled() => {
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    };
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    closing.cancel();
    connections.close();
    tokio::select! {
        () = connections.wait() => tracing::info!("in-flight requests finished"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
        }
    }
}

/// The `METRICS_ADDR` listener's router: `/metrics` without a token, nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(state): axum::extract::State<AppState>| async move {
                    ops::render_metrics(&state)
                },
            ),
        )
        .fallback(middleware::not_found)
        .with_state(state)
}
