//! Proxy mode's handler: every request that is not one of sessiongate's own routes (the
//! router's fallback) is decided by the gateway and, when allowed, forwarded to the app
//! (`http::upstream`); the app's answer streams back, and a WebSocket is joined byte for
//! byte. A long-lived connection (an upgrade, or a response still streaming) whose session
//! ends is closed by the gateway's watcher.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{ACCEPT, UPGRADE};
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use hyper_util::rt::TokioIo;
use shared::rules::NavigationHeaders;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::gateway::watch::Watch;
use crate::gateway::{Described, Outcome, assertions::identity_of};
use crate::http::context::{Peer, RequestContext};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Extras, session_tokens};
use crate::http::gateway::{Mode, answer};
use crate::http::middleware::not_found;
use crate::http::state::AppState;
use crate::http::upstream::{Forwarded, UpstreamError, app_request, client_response, is_websocket};

fn header<'h>(request: &'h Request, name: &str) -> Option<&'h str> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn gateway_error(status: StatusCode, message: &str) -> Response {
    let mut resp = (
        status,
        Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response();
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// The fallback route: sessiongate's own unknown paths are 404; the app's are decided and
/// forwarded.
pub async fn forward(State(state): State<AppState>, mut request: Request) -> Response {
    let Some(upstream) = state.upstream.as_ref() else {
        return not_found().await.into_response();
    };
    let path = request.uri().path().to_owned();
    if shared::rules::normalise_path(&path).is_ok_and(|p| state.gateway.mount.is_own_route(&p)) {
        return not_found().await.into_response();
    }
    let ctx = request
        .extensions()
        .get::<RequestContext>()
        .cloned()
        .unwrap_or_else(|| {
            let peer = request.extensions().get::<Peer>().map(|p| p.0);
            RequestContext::of(&state.config, peer, request.headers())
        });
    let extras = request
        .extensions()
        .get::<Extras>()
        .cloned()
        .unwrap_or_default();
    let host = ctx.host.clone().unwrap_or_default();
    let method = request.method().as_str().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let outcome = {
        let described = Described {
            method: &method,
            path: &path,
            query: query.as_deref(),
            scheme: ctx.scheme(),
            host: &host,
            navigation: NavigationHeaders {
                accept: header(&request, ACCEPT.as_str()),
                sec_fetch_mode: header(&request, "sec-fetch-mode"),
                x_requested_with: header(&request, "x-requested-with"),
                upgrade: request.headers().contains_key(UPGRADE),
            },
            tokens: session_tokens(request.headers(), state.config.cookie_secure).collect(),
        };
        state.gateway.decide(&state.core, &described).await
    };
    let metrics = &state.core.metrics;
    metrics.decision(Mode::Proxy.label(), outcome.label());
    if let Some(issued) = outcome.reissued() {
        extras.set_cookie(&state, issued);
    }
    let Outcome::Allow {
        session,
        assertion,
        sid,
        policy,
    } = outcome
    else {
        return answer(Mode::Proxy, &state, &extras, outcome);
    };
    let identity = session.as_deref().map(identity_of);
    let identity = shared::assertion::identity_headers(identity.as_ref(), assertion.as_deref());
    let watch = sid.map(|sid| state.gateway.watcher.watch(sid, policy));
    let websocket = is_websocket(request.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut request));
    let forwarded = Forwarded {
        client_ip: ctx.client_ip,
        scheme: ctx.scheme(),
        host: &host,
    };
    let app_req = app_request(request, identity, &forwarded, &state.config);
    let started = std::time::Instant::now();
    let response = match upstream.send(app_req).await {
        Ok(response) => response,
        Err(e) => {
            let (status, message, kind) = match e {
                UpstreamError::Timeout => {
                    (StatusCode::GATEWAY_TIMEOUT, "Gateway timeout", "timeout")
                }
                UpstreamError::TooLarge => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body too large",
                    "too_large",
                ),
                UpstreamError::Unreachable(detail) => {
                    tracing::warn!(error = %detail, "upstream unreachable");
                    (StatusCode::BAD_GATEWAY, "Bad gateway", "unreachable")
                }
            };
            metrics.upstream_error(kind);
            return gateway_error(status, message);
        }
    };
    metrics
        .upstream_seconds
        .record(started.elapsed().as_secs_f64());
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return ApiError::Internal("the app switched protocols unasked".into()).into_response();
        };
        let mut response = response;
        let app_upgrade = hyper::upgrade::on(&mut response);
        let stopping = state.core.background.stopping();
        let open = metrics.connections_open.clone();
        tokio::spawn(async move {
            let (Ok(client), Ok(app)) = (client_upgrade.await, app_upgrade.await) else {
                return;
            };
            open.increment(1.0);
            let (mut client, mut app) = (TokioIo::new(client), TokioIo::new(app));
            let closed = watch.as_ref().map(|w| w.closed.clone()).unwrap_or_default();
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut app) => {}
                () = closed.cancelled() => {}
                () = stopping.cancelled() => {}
            }
            open.decrement(1.0);
            drop(watch);
        });
        return client_response(response);
    }
    let response = client_response(response);
    match watch {
        Some(watch) => {
            let (parts, body) = response.into_parts();
            Response::from_parts(parts, Body::new(WatchedBody::new(body, watch)))
        }
        None => response,
    }
}

/// A response body that ends when its session does (the watcher cancels it), and stops
/// being watched when it ends.
struct WatchedBody {
    inner: Body,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    _watch: Watch,
}

impl WatchedBody {
    fn new(inner: Body, watch: Watch) -> WatchedBody {
        WatchedBody {
            inner,
            closed: Box::pin(watch.closed.clone().cancelled_owned()),
            _watch: watch,
        }
    }
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new("session ended"))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
