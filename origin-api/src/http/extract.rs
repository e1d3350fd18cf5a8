//! Extractors: what a handler asks for by type. The authenticated user ([`Authed`]), an
//! ADMIN ([`Admin`]), the session a request presented ([`Presented`]), where it came from
//! ([`ClientInfo`]), JSON bodies ([`ApiJson`], [`JsonObject`]) with the contract's
//! 415 / 413 / 400 / 422 / 408, paging, and [`Extras`]: the headers a handler or an
//! extractor adds to whatever answer the request gets (a re-issued cookie, rate-limit
//! state).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE, USER_AGENT};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use shared::SessionId;

use crate::domain::admin::Paging;
use crate::domain::sessions::{self, Issued, Session};
use crate::domain::types::Client;
use crate::http::context::{Peer, RequestContext};
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::ratelimit::{Decision, ip_key};

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;

/// The request's [`RequestContext`], decided once.
pub fn context(parts: &mut Parts, state: &AppState) -> RequestContext {
    if let Some(ctx) = parts.extensions.get::<RequestContext>() {
        return ctx.clone();
    }
    let peer = parts.extensions.get::<Peer>().map(|p| p.0);
    let ctx = RequestContext::of(&state.config, peer, &parts.headers);
    parts.extensions.insert(ctx.clone());
    ctx
}

/// Headers added to the answer, whatever it is (success or error).
#[derive(Clone, Default)]
pub struct Extras(Arc<Mutex<Deferred>>);

#[derive(Default)]
struct Deferred {
    cookies: Vec<HeaderValue>,
    rate: Option<(u32, u32)>,
}

impl Extras {
    fn lock(&self) -> std::sync::MutexGuard<'_, Deferred> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the session cookie (and `Cache-Control: no-store` with it).
    pub fn set_cookie(&self, state: &AppState, issued: &Issued) {
        let value =
            shared::cookie::set_cookie(state.config.cookie_secure, &issued.token, issued.max_age);
        if let Ok(v) = HeaderValue::from_str(&value) {
            self.lock().cookies.push(v);
        }
    }

    /// Clears the session cookie.
    pub fn clear_cookie(&self, state: &AppState) {
        let value = shared::cookie::clear_cookie(state.config.cookie_secure);
        if let Ok(v) = HeaderValue::from_str(&value) {
            self.lock().cookies.push(v);
        }
    }

    /// Records the rate-limit state for `X-RateLimit-Limit` / `-Remaining`.
    pub fn rate(&self, decision: &Decision) {
        self.lock().rate = Some((decision.tightest.limit, decision.tightest.remaining));
    }

    /// Adds what was recorded to `resp`.
    pub fn apply(&self, resp: &mut Response) {
        let deferred = std::mem::take(&mut *self.lock());
        let headers = resp.headers_mut();
        if !deferred.cookies.is_empty() {
            for cookie in deferred.cookies {
                headers.append(SET_COOKIE, cookie);
            }
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        if let Some((limit, remaining)) = deferred.rate {
            headers.insert(HeaderName::from_static("x-ratelimit-limit"), limit.into());
            headers.insert(
                HeaderName::from_static("x-ratelimit-remaining"),
                remaining.into(),
            );
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Extras {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Extras>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("response extras layer missing".into()))
    }
}

/// Where the request came from, for audit rows and per-IP rate limits.
pub struct ClientInfo(pub Client);

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ctx = context(parts, state);
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect::<String>());
        Ok(ClientInfo(Client {
            ip: ctx.client_ip,
            rate_key: ip_key(ctx.client_ip, state.config.ipv6_prefix),
            user_agent,
        }))
    }
}

/// The session cookie's values in every `Cookie` header, read as bytes: a pair that is not
/// ASCII (another site's cookie) is skipped without hiding the session cookie.
pub fn session_tokens(headers: &HeaderMap, secure: bool) -> impl Iterator<Item = &str> {
    let name = shared::cookie::cookie_name(secure);
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(move |v| shared::cookie::cookie_values_bytes(v.as_bytes(), name))
}

/// The session id a request presented with a valid signature (whether or not the session
/// is still live), for login (which revokes it) and logout.
pub struct Presented(pub Option<SessionId>);

impl FromRequestParts<AppState> for Presented {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let tokens = session_tokens(&parts.headers, state.config.cookie_secure);
        Ok(Presented(sessions::session_id(&state.core, tokens)))
    }
}

/// A live session (401 otherwise). When the request slid the session, the re-issued
/// cookie goes out with the answer.
pub struct Authed(pub Session);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let tokens = session_tokens(&parts.headers, state.config.cookie_secure);
        let sid = sessions::session_id(&state.core, tokens).ok_or(ApiError::Unauthorized)?;
        let session = sessions::authenticate(&state.core, &sid)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if let Some(issued) = &session.reissued {
            Extras::from_request_parts(parts, state)
                .await?
                .set_cookie(state, issued);
        }
        Ok(Authed(session))
    }
}

/// A live session of an ADMIN (401 without a session, 403 for a USER).
pub struct Admin(pub Session);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authed(session) = Authed::from_request_parts(parts, state).await?;
        if !session.user.is_admin() {
            return Err(ApiError::Forbidden("Admin role required".into()));
        }
        Ok(Admin(session))
    }
}

/// `?page&pageSize&search`; garbage falls back to the defaults.
pub struct PageQuery {
    pub paging: Paging,
    pub search: String,
}

impl<S: Send + Sync> FromRequestParts<S> for PageQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let param = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        Ok(PageQuery {
            paging: Paging::parse(param("page").as_deref(), param("pageSize").as_deref()),
            search: param("search").unwrap_or_default(),
        })
    }
}

/// `BODY_READ_TIMEOUT`, put on every request by [`crate::http::serve`]: the time a body
/// sessiongate reads itself may take to arrive in full. The body's per-frame idle timeout
/// (the same value) catches a stalled body but not one trickled a byte at a time, which
/// would hold its connection and handler open indefinitely. Proxied bodies (uploads to the
/// app) have the idle timeout only.
#[derive(Clone, Copy, Debug)]
pub struct BodyReadTimeout(pub std::time::Duration);

/// A JSON object body: 415 unless `application/json`, 413 over 64 KiB (by `Content-Length`
/// before reading, while reading otherwise), 408 when it has not fully arrived within
/// `BODY_READ_TIMEOUT`, 400 unless it parses to an object.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let essence = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::UnsupportedMediaType);
        }
        let timeout = req.extensions().get::<BodyReadTimeout>().map(|t| t.0);
        let read = Bytes::from_request(req, state);
        let bytes = match timeout {
            Some(limit) => tokio::time::timeout(limit, read)
                .await
                .map_err(|_| ApiError::BodyTimeout)?,
            None => read.await,
        }
        .map_err(body_error)?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::BadRequest(
                "Request body must be a JSON object".into(),
            )),
            Err(_) => Err(ApiError::BadRequest(
                "Request body is not valid JSON".into(),
            )),
        }
    }
}

/// Maps a failed body read: over the limit (413), timed out (408, see `BODY_READ_TIMEOUT`
/// in `http::service`), anything else (400).
fn body_error(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
    if let BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) = rejection {
        return ApiError::PayloadTooLarge;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
    while let Some(e) = source {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::BodyTimeout;
        }
        source = e.source();
    }
    ApiError::BadRequest("Could not read the request body".into())
}

impl JsonObject {
    /// A string field, if present as a string.
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// The typed body: 422 naming the field when one is missing or of the wrong type.
    pub fn parse<T: DeserializeOwned>(self) -> Result<T, ApiError> {
        serde_path_to_error::deserialize(Value::Object(self.0)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            let problem = inner.split(" at line ").next().unwrap_or(&inner).to_owned();
            if path == "." {
                ApiError::Unprocessable(problem)
            } else {
                ApiError::Unprocessable(format!("{path}: {problem}"))
            }
        })
    }
}

/// A typed JSON body (the rules of [`JsonObject`], then 422 for missing or invalid fields).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        JsonObject::from_request(req, state)
            .await?
            .parse()
            .map(ApiJson)
    }
}
