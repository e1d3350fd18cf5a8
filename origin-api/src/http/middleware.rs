//! The middleware of the router: the [`GateLayer`] (the request context, the CSRF rule,
//! the deferred answer headers, HSTS and request metrics), request ids, and the contract's
//! JSON for answers the router makes itself (404, 405, a panic's 500).

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, ORIGIN, STRICT_TRANSPORT_SECURITY};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::config::{PublicUrl, default_port, split_authority};
use crate::http::context::{Peer, RequestContext};
use crate::http::error::{ApiError, error_response};
use crate::http::extract::Extras;
use crate::http::state::AppState;
use crate::metrics::RouteMetrics;

/// The request's own layer, one job per request in one place: decides whether the request
/// came over HTTPS, refuses cross-site writes ([`cross_site`]), gives the request its [`Extras`]
/// and applies them to the answer, adds `Strict-Transport-Security` to every answer served
/// over HTTPS, and counts and times the request by route pattern, method and status.
///
/// One hand-written layer with a concrete future, not three `axum::middleware::from_fn`
/// layers: each of those boxed its future and cloned a boxed inner service per request,
/// and the warm-verify profile put 35.7 % of the origin's CPU below them (BENCHMARKS.md).
#[derive(Clone)]
pub struct GateLayer(Arc<Gate>);

struct Gate {
    state: AppState,
    /// Route pattern → its metrics (index into `metrics`); the last entry is "unmatched".
    routes: HashMap<&'static str, usize>,
    metrics: Vec<RouteMetrics>,
}

impl GateLayer {
    /// `patterns`: every route pattern the router declares.
    pub fn new(state: AppState, patterns: impl IntoIterator<Item = &'static str>) -> GateLayer {
        let mut metrics = Vec::new();
        let mut routes = HashMap::new();
        for pattern in patterns {
            routes.insert(pattern, metrics.len());
            metrics.push(state.core.metrics.route(pattern));
        }
        metrics.push(state.core.metrics.route("unmatched"));
        GateLayer(Arc::new(Gate {
            state,
            routes,
            metrics,
        }))
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            gate: self.0.clone(),
        }
    }
}

/// A service behind the [`GateLayer`].
#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S> Service<Request> for Gated<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GatedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> GatedFuture<S::Future> {
        let started = Instant::now();
        let gate = &self.gate;
        let state = &gate.state;
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .and_then(|p| gate.routes.get(p.as_str()).copied())
            .unwrap_or(gate.metrics.len() - 1);
        let peer = req.extensions().get::<Peer>().map(|p| p.0);
        // The full context (client address, host) only where the CSRF rule needs it; the
        // extractors that need it decide it themselves (`extract::context`).
        let mut refused = false;
        if state_changing(req.method()) && csrf_applies(state, req.uri().path()) {
            let ctx = RequestContext::of(&state.config, peer, req.headers());
            refused = cross_site(
                req.method(),
                req.headers(),
                &ctx,
                state.config.public_url.as_ref(),
            );
            req.extensions_mut().insert(ctx);
        }
        let finish = Finish {
            gate: gate.clone(),
            route,
            method: req.method().clone(),
            https: RequestContext::https_of(&state.config, peer, req.headers()),
            extras: Extras::default(),
            started,
        };
        let inner = if refused {
            None
        } else {
            req.extensions_mut().insert(finish.extras.clone());
            Some(self.inner.call(req))
        };
        GatedFuture {
            inner,
            finish: Some(finish),
        }
    }
}

/// The CSRF rule guards sessiongate's own routes. In proxy mode the app's routes follow
/// the app's own cross-origin policy (an app may accept cross-site requests on purpose).
fn csrf_applies(state: &AppState, path: &str) -> bool {
    state.upstream.is_none()
        || shared::rules::normalise_path(path).is_ok_and(|p| state.gateway.mount.is_own_route(&p))
}

/// What the [`GateLayer`] does to the answer.
struct Finish {
    gate: Arc<Gate>,
    route: usize,
    method: Method,
    https: bool,
    extras: Extras,
    started: Instant,
}

impl Finish {
    fn apply(self, mut resp: Response) -> Response {
        self.extras.apply(&mut resp);
        let state = &self.gate.state;
        if self.https
            && let Some(max_age) = state.config.hsts_max_age
            && let Ok(v) = HeaderValue::from_str(&format!("max-age={}", max_age.as_secs()))
        {
            resp.headers_mut().insert(STRICT_TRANSPORT_SECURITY, v);
        }
        self.gate.metrics[self.route].record(
            &state.core.metrics,
            &self.method,
            resp.status().as_u16(),
            self.started.elapsed(),
        );
        resp
    }
}

pin_project! {
    /// The [`Gated`] service's answer: the inner service's (`None`: refused as cross-site),
    /// finished by [`Finish`].
    pub struct GatedFuture<F> {
        #[pin]
        inner: Option<F>,
        finish: Option<Finish>,
    }
}

impl<F> Future for GatedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = match this.inner.as_pin_mut() {
            Some(inner) => match inner.poll(cx) {
                Poll::Ready(Ok(resp)) => resp,
                Poll::Pending => return Poll::Pending,
            },
            None => ApiError::Forbidden("Cross-site request refused".into()).into_response(),
        };
        let finish = this
            .finish
            .take()
            .expect("GatedFuture polled after completion");
        Poll::Ready(Ok(finish.apply(resp)))
    }
}

/// The methods the CSRF rule applies to.
fn state_changing(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PATCH | Method::DELETE | Method::PUT
    )
}

/// True when a state-changing request comes from another site. Its `Origin` must equal
/// `PUBLIC_URL` (scheme, host and port), or without it the request's own scheme and host;
/// a default port counts only for its own scheme.
pub fn cross_site(
    method: &Method,
    headers: &axum::http::HeaderMap,
    ctx: &RequestContext,
    public_url: Option<&PublicUrl>,
) -> bool {
    if !state_changing(method) {
        return false;
    }
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("cross-site"));
    if fetch_site {
        return true;
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return false;
    };
    // `Origin: null` or garbage: not this origin.
    let Some(origin) = origin.to_str().ok().and_then(PublicUrl::parse) else {
        return true;
    };
    let expected = match public_url {
        Some(url) => url.clone(),
        None => {
            let Some((host, port)) = ctx.host.as_deref().and_then(split_authority) else {
                return true;
            };
            let scheme = ctx.scheme().to_owned();
            let port = port.filter(|p| Some(*p) != default_port(&scheme));
            PublicUrl { scheme, host, port }
        }
    };
    origin != expected
}

/// The router's own 405 as the contract's JSON, with `Allow` listing the methods as the
/// contract's tables do (`HEAD` is implied by `GET`). Applied around the whole router:
/// axum adds `Allow` after a route's own layers have run.
pub fn method_not_allowed(resp: Response) -> Response {
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
        return resp;
    }
    let allow = resp
        .headers()
        .get(ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty() && *m != "HEAD")
                .collect::<Vec<_>>()
                .join(", ")
        });
    let mut json = ApiError::MethodNotAllowed.into_response();
    // Keep what the layers added to the router's answer (the request id, HSTS over HTTPS,
    // a page's security headers), except what described its empty body. Keeping only the
    // request id once dropped HSTS from every 405 served over HTTPS (hardening item 11).
    let original = resp.headers();
    let kept = original
        .keys()
        .filter(|name| ![CONTENT_TYPE, CONTENT_LENGTH, ALLOW].contains(*name))
        .cloned()
        .collect::<Vec<_>>();
    for name in kept {
        json.headers_mut().remove(&name);
        for value in original.get_all(&name) {
            json.headers_mut().append(name.clone(), value.clone());
        }
    }
    if let Some(allow) = allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
        json.headers_mut().insert(ALLOW, allow);
    }
    json
}

/// The answer for a path no route matches.
pub async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// A panicking handler answers 500 in the contract's shape (the panic is logged).
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal server error".into(),
    )
}

/// Drops a client's `X-Request-Id` before the origin sets its own: the id in the logs and
/// in the answer is always the origin's, never one a client chose (log forging,
/// correlation spoofing; the reliability suite's abuse scenario checks it).
pub fn drop_client_request_id(mut req: Request) -> Request {
    req.headers_mut().remove("x-request-id");
    req
}

/// Request ids: 32 hex digits, a random per-process prefix and a counter, unique without
/// reading the OS random source on every request (a `getrandom` call per request showed
/// in the warm-verify profile).
#[derive(Clone, Copy, Default)]
pub struct CounterRequestId;

impl MakeRequestId for CounterRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicU64, Ordering};
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| {
            let mut bytes = [0u8; 8];
            let _ = getrandom::fill(&mut bytes);
            u64::from_le_bytes(bytes)
        });
        let id = format!(
            "{prefix:016x}{:016x}",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    fn ctx(host: &str, https: bool) -> RequestContext {
        RequestContext {
            client_ip: "127.0.0.1".parse().unwrap(),
            https,
            host: Some(host.into()),
        }
    }

    #[test]
    fn csrf_compares_scheme_host_and_port() {
        let post = Method::POST;
        let c = ctx("app.example", true);
        let refused = |h: &[(&'static str, &str)], c: &RequestContext, p: Option<&PublicUrl>| {
            cross_site(&post, &headers(h), c, p)
        };
        assert!(!refused(&[], &c, None));
        assert!(!refused(&[("origin", "https://app.example")], &c, None));
        assert!(!refused(&[("origin", "https://APP.example:443")], &c, None));
        // Same host, other scheme: another origin.
        assert!(refused(&[("origin", "http://app.example")], &c, None));
        // `:80` is not the default port of https.
        assert!(refused(&[("origin", "https://app.example:80")], &c, None));
        assert!(refused(&[("origin", "https://evil.example")], &c, None));
        assert!(refused(&[("origin", "null")], &c, None));
        assert!(refused(&[("sec-fetch-site", "cross-site")], &c, None));
        assert!(!refused(&[("sec-fetch-site", "same-origin")], &c, None));
        assert!(!cross_site(
            &Method::GET,
            &headers(&[("origin", "https://evil.example")]),
            &c,
            None
        ));
        let plain = ctx("127.0.0.1:8080", false);
        assert!(!refused(
            &[("origin", "http://127.0.0.1:8080")],
            &plain,
            None
        ));
        assert!(refused(
            &[("origin", "https://127.0.0.1:8080")],
            &plain,
            None
        ));
        // PUBLIC_URL decides when set, whatever the Host header says.
        let public = PublicUrl::parse("https://app.example").unwrap();
        assert!(!refused(
            &[("origin", "https://app.example")],
            &plain,
            Some(&public)
        ));
        assert!(refused(
            &[("origin", "http://127.0.0.1:8080")],
            &plain,
            Some(&public)
        ));
    }
}
