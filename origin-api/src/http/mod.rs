//! The HTTP layer, the only place that knows HTTP: the accept loop (graceful shutdown,
//! header read timeout), per-request context (request id, client IP, cookie), the CSRF
//! rule, routing and the response headers common to all routes.

pub mod handlers;
pub mod request;
pub mod response;
pub mod router;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{COOKIE, HeaderName, USER_AGENT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::app::App;
use crate::audit::Client;
use crate::error::{ApiError, ApiResult};
use request::Json;
use response::{Resp, set_header};
use router::{Route, Router};

/// What a handler knows about its request.
pub struct Ctx {
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Option<String>,
    pub id: Option<String>,
    pub client_ip: IpAddr,
    pub client: Client,
    pub cookie: Option<String>,
    body: Option<Incoming>,
    /// How long the body may take to arrive.
    body_timeout: std::time::Duration,
    /// A re-issued session cookie (sliding refresh) to send with the answer.
    pub set_cookie: Option<String>,
    /// `X-RateLimit-Limit` / `X-RateLimit-Remaining` to send with the answer.
    pub rate_headers: Option<(u32, u32)>,
}

impl Ctx {
    /// The JSON object body (read once).
    pub async fn json(&mut self) -> ApiResult<Json> {
        let body = self
            .body
            .take()
            .ok_or_else(|| ApiError::Internal("body read twice".into()))?;
        request::json_body(&self.headers, body, self.body_timeout).await
    }
}

async fn route(
    app: &Arc<App>,
    router: &Router,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> (&'static str, Resp) {
    let (parts, body) = req.into_parts();
    let client_ip = request::client_ip(&app.config, peer, &parts.headers);
    let host = request::effective_host(&app.config, peer, &parts.headers);
    let matched = router.at(parts.uri.path());
    let pattern = matched.as_ref().map_or("unmatched", |m| m.route.pattern());

    if request::cross_site(&parts.method, &parts.headers, host.as_deref()) {
        return (
            pattern,
            response::error(&ApiError::Forbidden("Cross-site request refused".into())),
        );
    }
    let Some(matched) = matched else {
        return (
            pattern,
            response::error(&ApiError::NotFound("Not found".into())),
        );
    };
    let allowed = matched.route.methods();
    let method_ok = allowed.contains(&parts.method)
        || (parts.method == Method::HEAD && allowed.contains(&Method::GET));
    if !method_ok {
        let allow = match allowed {
            [Method::GET] => "GET",
            [Method::POST] => "POST",
            [Method::DELETE] => "DELETE",
            [Method::GET, Method::PATCH] => "GET, PATCH",
            [Method::GET, Method::DELETE] => "GET, DELETE",
            _ => "PATCH, DELETE",
        };
        return (pattern, response::error(&ApiError::MethodNotAllowed(allow)));
    }

    let user_agent = parts
        .headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(512).collect::<String>());
    let cookie = parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    let mut ctx = Ctx {
        method: parts.method.clone(),
        query: parts.uri.query().map(str::to_owned),
        id: matched.id,
        client_ip,
        client: Client {
            ip: Some(client_ip.to_string()),
            user_agent,
        },
        cookie: (!cookie.is_empty()).then_some(cookie),
        headers: parts.headers,
        body: Some(body),
        body_timeout: app.config.body_read_timeout,
        set_cookie: None,
        rate_headers: None,
    };
    let result = dispatch(app, matched.route, &mut ctx).await;
    let mut resp = result.unwrap_or_else(|e| response::error(&e));
    if let Some(cookie) = &ctx.set_cookie {
        response::add_cookie(&mut resp, cookie);
    }
    if let Some((limit, remaining)) = ctx.rate_headers {
        set_header(
            &mut resp,
            HeaderName::from_static("x-ratelimit-limit"),
            &limit.to_string(),
        );
        set_header(
            &mut resp,
            HeaderName::from_static("x-ratelimit-remaining"),
            &remaining.to_string(),
        );
    }
    (pattern, resp)
}

async fn dispatch(app: &Arc<App>, route: Route, ctx: &mut Ctx) -> ApiResult<Resp> {
    use handlers as h;
    let m = ctx.method.clone();
    match (route, m) {
        (Route::Register, _) => h::register(app, ctx).await,
        (Route::Login, _) => h::login(app, ctx).await,
        (Route::Logout, _) => h::logout(app, ctx).await,
        (Route::Me, _) => h::me(app, ctx).await,
        (Route::Account, Method::PATCH) => h::update_account(app, ctx).await,
        (Route::Account, _) => h::account(app, ctx).await,
        (Route::AccountPassword, _) => h::change_password(app, ctx).await,
        (Route::AccountSessions, Method::DELETE) => h::revoke_others(app, ctx).await,
        (Route::AccountSessions, _) => h::sessions(app, ctx).await,
        (Route::AccountSession, _) => h::revoke_session(app, ctx).await,
        (Route::AccountAudit, _) => h::audit(app, ctx).await,
        (Route::Users, _) => h::list_users(app, ctx).await,
        (Route::User, Method::PATCH) => h::change_role(app, ctx).await,
        (Route::User, _) => h::delete_user(app, ctx).await,
        (Route::UserSessions, _) => h::revoke_user_sessions(app, ctx).await,
        (Route::CronCleanup, _) => h::cron_cleanup(app, ctx).await,
        (Route::Healthz, _) => h::healthz().await,
        (Route::Readyz, _) => h::readyz(app).await,
        (Route::Metrics, _) => h::metrics(app).await,
        (Route::Page(page), _) => Ok(crate::pages::page(page, ctx.query.as_deref())),
        (Route::Asset, _) => Ok(crate::pages::asset(
            ctx.id.as_deref().unwrap_or(""),
            crate::pages::if_none_match(&ctx.headers),
        )),
    }
}

/// A request id: 32 hex digits, a random per-process prefix and a counter. Unique without
/// reading the OS random source on every request (a `getrandom` call per request showed in
/// the warm-verify profile).
fn next_request_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    format!(
        "{prefix:016x}{:016x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Answers one request: request id, span, metrics and the access log line. The span and
/// the access line are at `debug` (like tower-http's `TraceLayer`): at `info`, one formatted,
/// unbuffered stderr write per request cost a quarter of warm-verify throughput and the span
/// another 1.8 µs of CPU per request (BENCHMARKS.md). Every request is still counted in
/// `/metrics`, errors are still logged where they happen, and
/// `RUST_LOG=info,origin_api::http=debug` brings the span and the access lines back.
async fn serve_request(
    app: Arc<App>,
    router: Arc<Router>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Resp {
    let started = Instant::now();
    let request_id = next_request_id();
    let method = req.method().clone();
    let span = tracing::debug_span!("request", id = %request_id, method = %method, route = tracing::field::Empty);
    async move {
        let (pattern, mut resp) = route(&app, &router, req, peer).await;
        tracing::Span::current().record("route", pattern);
        set_header(
            &mut resp,
            HeaderName::from_static("x-request-id"),
            &request_id,
        );
        let status = resp.status().as_u16();
        let elapsed = started.elapsed();
        app.metrics
            .request(pattern, method.as_str(), status, elapsed);
        tracing::debug!(
            status,
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
        resp
    }
    .instrument(span)
    .await
}

/// Accepts connections until `shutdown` resolves, then waits (up to the configured grace
/// period) for in-flight requests to finish.
pub async fn run(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let router = Arc::new(Router::new());
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let router = router.clone();
                let service = service_fn(move |req| {
                    let app = app.clone();
                    let router = router.clone();
                    async move { Ok::<_, Infallible>(serve_request(app, router, req, peer).await) }
                });
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("in-flight requests finished"),
        () = tokio::time::sleep(app.config.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
        }
    }
}
