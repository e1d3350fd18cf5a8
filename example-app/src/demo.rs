//! What a gateway in front of this app must carry, one route each (the gateway tests and
//! the benchmark drive them): large bodies both ways, slow answers, server-sent events, a
//! WebSocket echo, conditional requests, the app's own cookie, trailers, any status.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures_util::{SinkExt, StreamExt};
use http_body::Frame;
use serde::Deserialize;

const CHUNK: usize = 64 * 1024;

#[derive(Deserialize)]
struct Size {
    bytes: u64,
    #[serde(default)]
    chunked: bool,
}

/// `GET /demo/download?bytes=N[&chunked=true]`: N bytes, produced as they are sent.
async fn download(Query(size): Query<Size>) -> Response {
    let total = size.bytes;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= total {
                return None;
            }
            let n = (total - sent).min(CHUNK as u64);
            Some((Ok::<_, Infallible>(chunk.slice(..n as usize)), sent + n))
        }
    });
    let mut resp = Body::from_stream(stream).into_response();
    if !size.chunked {
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(total));
    }
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// `POST /demo/upload`: reads the body as it arrives and answers how many bytes came.
async fn upload(request: Request) -> Response {
    let mut body = request.into_body().into_data_stream();
    let mut bytes = 0u64;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => bytes += chunk.len() as u64,
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        }
    }
    axum::Json(serde_json::json!({ "bytes": bytes })).into_response()
}

#[derive(Deserialize)]
struct Delay {
    ms: u64,
}

/// `GET /demo/slow?ms=N`: answers after N milliseconds.
async fn slow(Query(delay): Query<Delay>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(delay.ms)).await;
    "late"
}

/// `GET /demo/events`: server-sent events, one every 200 ms, forever.
async fn events() -> Response {
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(
        Duration::from_millis(200),
    ));
    let stream = ticks
        .enumerate()
        .map(|(i, _)| Ok::<_, Infallible>(Bytes::from(format!("data: tick {i}\n\n"))));
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp
}

/// `GET /demo/ws`: a WebSocket that echoes every message.
pub async fn ws(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|socket: WebSocket| async move {
        let (mut tx, mut rx) = socket.split();
        while let Some(Ok(message)) = rx.next().await {
            let echo = match message {
                Message::Text(t) => Message::Text(t),
                Message::Binary(b) => Message::Binary(b),
                Message::Close(_) => break,
                _ => continue,
            };
            if tx.send(echo).await.is_err() {
                break;
            }
        }
    })
}

/// `GET /demo/etag`: a resource with an ETag; `304` when `If-None-Match` names it.
async fn etag(headers: HeaderMap) -> Response {
    const TAG: &str = "\"v1\"";
    if headers.get(IF_NONE_MATCH).is_some_and(|v| v == TAG) {
        return (StatusCode::NOT_MODIFIED, [(ETAG, TAG)]).into_response();
    }
    ([(ETAG, TAG)], "the resource").into_response()
}

/// `GET /demo/cookie`: the app sets a cookie of its own.
async fn cookie() -> Response {
    (
        [(SET_COOKIE, "app-pref=dark; Path=/; HttpOnly")],
        "cookie set",
    )
        .into_response()
}

/// `GET /demo/trailers`: a chunked body followed by a trailer (sent when the client
/// asked with `TE: trailers`).
async fn trailers() -> Response {
    let mut trailer = HeaderMap::new();
    trailer.insert("x-checksum", HeaderValue::from_static("abc123"));
    let frames = futures_util::stream::iter(vec![
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"part one, "))),
        Ok(Frame::data(Bytes::from_static(b"part two"))),
        Ok(Frame::trailers(trailer)),
    ]);
    let mut resp = Body::new(http_body_util::StreamBody::new(frames)).into_response();
    resp.headers_mut()
        .insert("trailer", HeaderValue::from_static("x-checksum"));
    resp
}

/// `ANY /demo/status/{code}`: answers that status with a short JSON body.
async fn status(Path(code): Path<u16>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        axum::Json(serde_json::json!({ "from": "app", "status": code })),
    )
        .into_response()
}

/// The demo routes, under `/demo`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/demo/download", get(download))
        .route("/demo/upload", post(upload))
        .route("/demo/slow", get(slow))
        .route("/demo/events", get(events))
        .route("/demo/ws", get(ws))
        .route("/demo/etag", get(etag))
        .route("/demo/cookie", get(cookie))
        .route("/demo/trailers", get(trailers))
        .route("/demo/status/{code}", any(status))
}
