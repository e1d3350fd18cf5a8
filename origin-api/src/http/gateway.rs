//! The gateway's HTTP face (`gateway-v1.md`): the forward-auth endpoints for Traefik /
//! Caddy (`forward-auth`) and nginx (`auth-request`), and the JWK Set apps verify the
//! identity assertion with. The decision itself is `gateway::Gateway::decide`.

use axum::Json;
use axum::extract::State;
use axum::http::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HOST, LOCATION, RETRY_AFTER, UPGRADE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::rules::NavigationHeaders;

use crate::gateway::{Described, Outcome, assertions::identity_of};
use crate::http::context::Peer;
use crate::http::error::{ApiError, ErrorBody, RETRY_AFTER_UNAVAILABLE, error_response};
use crate::http::extract::{Extras, session_tokens};
use crate::http::state::AppState;
use crate::http::types::OkBody;

/// The header carrying the login URL on nginx's anonymous-navigation `401`.
pub const LOGIN_HEADER: &str = "x-sessiongate-login";

/// How the proxy describes the original request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Traefik `ForwardAuth`, Caddy `forward_auth`: `X-Forwarded-Method/-Proto/-Host/-Uri`;
    /// anonymous navigations get a `302`.
    ForwardAuth,
    /// nginx `auth_request`: `X-Original-Method` and `X-Original-URL` or `-URI`; nginx
    /// understands only 2xx/401/403, so anonymous navigations get a `401` with
    /// `X-Sessiongate-Login`.
    AuthRequest,
    /// Proxy mode: the origin itself forwards allowed requests; refusals are the
    /// contract's answers to the browser.
    Proxy,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::ForwardAuth => "forward-auth",
            Mode::AuthRequest => "auth-request",
            Mode::Proxy => "proxy",
        }
    }
}

/// The original request, as the proxy described it.
struct Original {
    method: String,
    scheme: String,
    host: String,
    path: String,
    query: Option<String>,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn first_value(value: &str) -> &str {
    value.split(',').next().unwrap_or(value).trim()
}

/// Splits `path?query`.
fn split_uri(uri: &str) -> (String, Option<String>) {
    let uri = uri.split('#').next().unwrap_or(uri);
    match uri.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (uri.to_owned(), None),
    }
}

fn bad(message: &str) -> ApiError {
    ApiError::BadRequest(message.to_owned())
}

/// Reads the original request from the proxy's headers (`400` when it cannot).
fn original(mode: Mode, headers: &HeaderMap) -> Result<Original, ApiError> {
    let forwarded_proto = header(headers, "x-forwarded-proto").map(first_value);
    let forwarded_host = header(headers, "x-forwarded-host").map(first_value);
    let host_header = header(headers, HOST.as_str());
    match mode {
        Mode::ForwardAuth | Mode::Proxy => {
            let method = header(headers, "x-forwarded-method")
                .ok_or_else(|| bad("X-Forwarded-Method is required"))?;
            let uri = header(headers, "x-forwarded-uri")
                .filter(|u| u.starts_with('/'))
                .ok_or_else(|| bad("X-Forwarded-Uri is required and must start with /"))?;
            let (path, query) = split_uri(uri);
            Ok(Original {
                method: method.to_ascii_uppercase(),
                scheme: forwarded_proto.unwrap_or("http").to_ascii_lowercase(),
                host: forwarded_host.or(host_header).unwrap_or("").to_owned(),
                path,
                query,
            })
        }
        Mode::AuthRequest => {
            let method = header(headers, "x-original-method").unwrap_or("GET");
            if let Some(url) = header(headers, "x-original-url") {
                let (scheme, rest) = url
                    .split_once("://")
                    .filter(|(s, _)| {
                        s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https")
                    })
                    .ok_or_else(|| bad("X-Original-URL must be an absolute http(s) URL"))?;
                let (authority, uri) = match rest.find(['/', '?']) {
                    Some(at) => (&rest[..at], &rest[at..]),
                    None => (rest, "/"),
                };
                if authority.is_empty() {
                    return Err(bad("X-Original-URL must name a host"));
                }
                let uri = if uri.starts_with('?') {
                    format!("/{uri}")
                } else {
                    uri.to_owned()
                };
                let (path, query) = split_uri(&uri);
                return Ok(Original {
                    method: method.to_ascii_uppercase(),
                    scheme: scheme.to_ascii_lowercase(),
                    host: authority.to_owned(),
                    path,
                    query,
                });
            }
            let uri = header(headers, "x-original-uri")
                .ok_or_else(|| bad("X-Original-URL or X-Original-URI is required"))?;
            if !uri.starts_with('/') {
                return Err(bad("X-Original-URI must start with /"));
            }
            let (path, query) = split_uri(uri);
            Ok(Original {
                method: method.to_ascii_uppercase(),
                scheme: forwarded_proto.unwrap_or("http").to_ascii_lowercase(),
                host: forwarded_host.or(host_header).unwrap_or("").to_owned(),
                path,
                query,
            })
        }
    }
}

/// `GET <MOUNT_PATH>api/v1/authz/forward-auth`: Traefik `ForwardAuth`, Caddy
/// `forward_auth`.
#[utoipa::path(get, path = "/api/v1/authz/forward-auth", tag = "gateway",
    description = "Decides a request to the app for Traefik ForwardAuth and Caddy forward_auth \
        (trusted proxies only). The original request is described by X-Forwarded-Method, \
        -Proto, -Host and -Uri; the cookie, Accept, Sec-Fetch-Mode and X-Requested-With are \
        the client's own. A 200 carries every identity header (empty when anonymous).",
    params(
        ("X-Forwarded-Method" = String, Header), ("X-Forwarded-Uri" = String, Header),
        ("X-Forwarded-Proto" = Option<String>, Header), ("X-Forwarded-Host" = Option<String>, Header)),
    responses(
        (status = 200, body = OkBody, description = "Allowed; the identity headers and the assertion"),
        (status = 302, description = "An anonymous navigation: to the login page"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "Not allowed, or the caller is not a trusted proxy"),
        (status = 503, body = ErrorBody)))]
pub async fn forward_auth(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    extras: Extras,
    headers: HeaderMap,
) -> Response {
    decision(Mode::ForwardAuth, &state, peer, &extras, &headers).await
}

/// `GET <MOUNT_PATH>api/v1/authz/auth-request`: nginx `auth_request`.
#[utoipa::path(get, path = "/api/v1/authz/auth-request", tag = "gateway",
    description = "Decides a request to the app for nginx auth_request (trusted proxies only). \
        The original request is X-Original-Method (default GET) and X-Original-URL (absolute) \
        or X-Original-URI. An anonymous navigation answers 401 with X-Sessiongate-Login.",
    params(
        ("X-Original-Method" = Option<String>, Header), ("X-Original-URL" = Option<String>, Header),
        ("X-Original-URI" = Option<String>, Header)),
    responses(
        (status = 200, body = OkBody, description = "Allowed; the identity headers and the assertion"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody, description = "No live session; X-Sessiongate-Login for a navigation"),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn auth_request(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    extras: Extras,
    headers: HeaderMap,
) -> Response {
    decision(Mode::AuthRequest, &state, peer, &extras, &headers).await
}

async fn decision(
    mode: Mode,
    state: &AppState,
    peer: Option<axum::Extension<Peer>>,
    extras: &Extras,
    headers: &HeaderMap,
) -> Response {
    let trusted = peer.is_some_and(|p| state.config.is_trusted_proxy(p.0.0.ip().to_canonical()));
    if !trusted {
        return ApiError::Forbidden("Forward-auth caller not trusted".into()).into_response();
    }
    let original = match original(mode, headers) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let described = Described {
        method: &original.method,
        path: &original.path,
        query: original.query.as_deref(),
        scheme: &original.scheme,
        host: &original.host,
        navigation: NavigationHeaders {
            accept: header(headers, ACCEPT.as_str()),
            sec_fetch_mode: header(headers, "sec-fetch-mode"),
            x_requested_with: header(headers, "x-requested-with"),
            upgrade: headers.contains_key(UPGRADE),
        },
        tokens: session_tokens(headers, state.config.cookie_secure).collect(),
    };
    let outcome = state.gateway.decide(&state.core, &described).await;
    state.core.metrics.decision(mode.label(), outcome.label());
    if let Some(issued) = outcome.reissued() {
        extras.set_cookie(state, issued);
    }
    answer(mode, state, extras, outcome)
}

/// The outcome as the proxy expects it.
pub fn answer(mode: Mode, state: &AppState, extras: &Extras, outcome: Outcome) -> Response {
    match outcome {
        Outcome::Allow {
            session, assertion, ..
        } => {
            let identity = session.as_deref().map(identity_of);
            let mut resp = Json(OkBody::TRUE).into_response();
            let out = resp.headers_mut();
            for (name, value) in
                shared::assertion::identity_headers(identity.as_ref(), assertion.as_deref())
            {
                if let (Ok(name), Ok(value)) =
                    (HeaderName::try_from(name), HeaderValue::from_str(&value))
                {
                    out.insert(name, value);
                }
            }
            resp
        }
        Outcome::Redirect {
            location,
            clear_cookie,
        } => {
            if clear_cookie {
                extras.clear_cookie(state);
            }
            match mode {
                Mode::ForwardAuth | Mode::Proxy => {
                    let mut resp = error_response(StatusCode::FOUND, "Unauthorized".into());
                    if let Ok(v) = HeaderValue::from_str(&location) {
                        resp.headers_mut().insert(LOCATION, v);
                    }
                    resp
                }
                Mode::AuthRequest => {
                    let mut resp = ApiError::Unauthorized.into_response();
                    if let Ok(v) = HeaderValue::from_str(&location) {
                        resp.headers_mut().insert(LOGIN_HEADER, v);
                    }
                    resp
                }
            }
        }
        Outcome::Unauthorized { clear_cookie } => {
            if clear_cookie {
                extras.clear_cookie(state);
            }
            ApiError::Unauthorized.into_response()
        }
        Outcome::Forbidden => ApiError::Forbidden("Forbidden".into()).into_response(),
        Outcome::BadRequest(refusal) => {
            ApiError::BadRequest(format!("Refused path: {refusal}")).into_response()
        }
        Outcome::Unavailable => {
            let mut resp = ApiError::Unavailable {
                message: "Service temporarily unavailable",
                retry_after: RETRY_AFTER_UNAVAILABLE,
                detail: "session store unavailable".into(),
            }
            .into_response();
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_UNAVAILABLE));
            resp
        }
    }
}

/// `GET <MOUNT_PATH>.well-known/jwks.json`: the public keys of the identity assertion.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "gateway",
    responses((status = 200, content_type = "application/json",
        description = "A JWK Set of Ed25519 keys (kty OKP, crv Ed25519, kid, alg EdDSA, use sig)")))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    (
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        state.gateway.assertions.jwks().to_json(),
    )
        .into_response()
}
