//! Building responses: JSON bodies, the contract's error shape, cookies and the headers
//! that go with them.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER,
    SET_COOKIE,
};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::error::ApiError;

pub type Body = Full<Bytes>;
pub type Resp = Response<Body>;

/// Seconds a client should wait after a 503.
pub const RETRY_AFTER_UNAVAILABLE: u64 = 5;

/// A JSON response.
pub fn json(status: u16, value: &Value) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A JSON response serialized straight from `value`, without an intermediate `Value`.
pub fn json_of<T: serde::Serialize>(status: u16, value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            *resp.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(e) => error(&ApiError::Internal(format!("response serialization: {e}"))),
    }
}

pub fn ok(value: &Value) -> Resp {
    json(200, value)
}

/// `{"ok":true}`.
pub fn ok_true() -> Resp {
    json(200, &json!({ "ok": true }))
}

/// Sets a header whose value was built by us (always valid).
pub fn set_header(resp: &mut Resp, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// Adds a `Set-Cookie` and the `Cache-Control: no-store` that must accompany it.
pub fn add_cookie(resp: &mut Resp, set_cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(set_cookie) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The error in the contract's shape; internals are logged, never sent.
pub fn error(e: &ApiError) -> Resp {
    match e {
        ApiError::Internal(detail) => tracing::error!(error = %detail, "internal error"),
        ApiError::Unavailable(detail) => tracing::warn!(error = %detail, "dependency unavailable"),
        _ => {}
    }
    let mut resp = json(e.status(), &json!({ "error": e.to_string() }));
    match e {
        ApiError::RateLimited { retry_after } => {
            set_header(&mut resp, RETRY_AFTER, &retry_after.to_string());
        }
        ApiError::Unavailable(_) => {
            set_header(&mut resp, RETRY_AFTER, &RETRY_AFTER_UNAVAILABLE.to_string());
        }
        ApiError::MethodNotAllowed(allow) => set_header(&mut resp, ALLOW, allow),
        // The rest of a slow body may still arrive: never read it as a next request.
        ApiError::BodyTimeout => set_header(&mut resp, CONNECTION, "close"),
        _ => {}
    }
    resp
}
