//! Proxy mode's upstream (`UPSTREAM_URL`): the origin in front of the app. For an allowed
//! request (decided by `gateway::Gateway`) it
//! builds the request the app receives (the client's request with the anti-spoofing clean-up,
//! the identity headers and the `X-Forwarded-*` the origin determined) and relays the app's
//! answer unchanged, both bodies streaming; upgrades (WebSocket) are joined byte for byte.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1: `Connection` and every header it names,
//! `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`) are not
//! forwarded, except `Upgrade`/`Connection: upgrade` of a WebSocket handshake and
//! `TE: trailers`, which the app needs to send trailers.

use std::time::Duration;

use axum::body::Body;
use axum::http::header::{
    CONNECTION, CONTENT_LENGTH, COOKIE, EXPECT, HOST, HeaderMap, HeaderName, HeaderValue, TE,
    TRANSFER_ENCODING, UPGRADE,
};
use axum::http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{Config, UpstreamConfig};

/// Why the app gave no answer.
#[derive(Debug)]
pub enum UpstreamError {
    /// Not reachable, or the connection failed: `502`.
    Unreachable(String),
    /// No response headers within `UPSTREAM_TIMEOUT`: `504`.
    Timeout,
    /// The request body exceeded `UPSTREAM_MAX_BODY`: `413`.
    TooLarge,
}

/// The app: where requests go, and the pooled client that takes them there.
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    /// `scheme://authority`.
    origin: String,
    /// The URL's path without its trailing `/` (`""` for none).
    base_path: String,
    timeout: Duration,
    max_body: Option<u64>,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> anyhow::Result<Upstream> {
        let uri: Uri = config.url.parse()?;
        let scheme = uri.scheme_str().unwrap_or("http").to_owned();
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("UPSTREAM_URL: no host"))?
            .to_string();
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &config.ca_file {
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| anyhow::anyhow!("UPSTREAM_CA_FILE: {e}"))?
            {
                roots
                    .add(cert.map_err(|e| anyhow::anyhow!("UPSTREAM_CA_FILE: {e}"))?)
                    .map_err(|e| anyhow::anyhow!("UPSTREAM_CA_FILE: {e}"))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Upstream {
            client,
            origin: format!("{scheme}://{authority}"),
            base_path: uri.path().trim_end_matches('/').to_owned(),
            timeout: config.timeout,
            max_body: config.max_body,
        })
    }

    /// The app's URL for a request's path and query.
    fn target(&self, path_and_query: &str) -> Result<Uri, UpstreamError> {
        format!("{}{}{path_and_query}", self.origin, self.base_path)
            .parse()
            .map_err(|e| UpstreamError::Unreachable(format!("target URL: {e}")))
    }

    /// Sends `request` (already rewritten by [`app_request`]) and waits, up to
    /// `UPSTREAM_TIMEOUT`, for the app's response headers.
    pub async fn send(
        &self,
        mut request: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(max) = self.max_body {
            if declared.is_some_and(|len| len > max) {
                return Err(UpstreamError::TooLarge);
            }
            let body = std::mem::take(request.body_mut());
            *request.body_mut() = Body::new(Limited::new(
                body,
                usize::try_from(max).unwrap_or(usize::MAX),
            ));
        }
        let path_and_query = request
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        *request.uri_mut() = self.target(&path_and_query)?;
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                while let Some(err) = source {
                    if err.is::<http_body_util::LengthLimitError>() {
                        return Err(UpstreamError::TooLarge);
                    }
                    source = err.source();
                }
                Err(UpstreamError::Unreachable(e.to_string()))
            }
        }
    }
}

/// Headers named in `Connection` (lower-cased), and whether the request asks to upgrade.
fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// True for a WebSocket handshake (`Connection: upgrade` and `Upgrade: websocket`).
pub fn is_websocket(headers: &HeaderMap) -> bool {
    connection_tokens(headers).iter().any(|t| t == "upgrade")
        && headers
            .get(UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers and those `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for token in connection_tokens(headers) {
        headers.remove(token.as_str());
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The `Cookie` header without the session cookie (`name`): the app has no use for the
/// session token, and never holding it is safer. Other cookies pass as they came.
fn without_session_cookie(headers: &HeaderMap, name: &str) -> Option<HeaderValue> {
    let kept: Vec<&[u8]> = headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .map(|pair| pair.trim_ascii())
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let key = pair
                .split(|b| *b == b'=')
                .next()
                .unwrap_or(pair)
                .trim_ascii();
            key != name.as_bytes()
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(&kept.join(&b"; "[..])).ok()
}

/// What the origin determined about the request, for the app's `X-Forwarded-*`.
pub struct Forwarded<'a> {
    pub client_ip: std::net::IpAddr,
    pub scheme: &'a str,
    pub host: &'a str,
}

/// The request the app receives: the client's, minus hop-by-hop headers, every identity
/// look-alike, every `X-Forwarded-*`/`Forwarded`, the edge secret and the session cookie;
/// plus the identity headers (`identity`, all ten, empty when anonymous) and the
/// `X-Forwarded-For/-Proto/-Host` the origin determined.
pub fn app_request(
    mut request: Request<Body>,
    identity: [(&'static str, String); 10],
    forwarded: &Forwarded<'_>,
    config: &Config,
) -> Request<Body> {
    let websocket = is_websocket(request.headers());
    let wants_trailers = request
        .headers()
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("trailers"));
    let upgrade = request.headers().get(UPGRADE).cloned();
    let cookie = without_session_cookie(
        request.headers(),
        shared::cookie::cookie_name(config.cookie_secure),
    );
    let headers = request.headers_mut();
    strip_hop_by_hop(headers);
    let spoofable: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            shared::assertion::is_identity_lookalike(n)
                || n.starts_with("x-forwarded-")
                || n == "forwarded"
                || n == crate::http::context::EDGE_SECRET_HEADER
        })
        .cloned()
        .collect();
    for name in spoofable {
        headers.remove(name);
    }
    headers.remove(COOKIE);
    if let Some(cookie) = cookie {
        headers.insert(COOKIE, cookie);
    }
    // The origin answered `100 Continue` itself when it started reading the body.
    headers.remove(EXPECT);
    for (name, value) in identity {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
            headers.insert(name, value);
        }
    }
    let set = |headers: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set(headers, "x-forwarded-for", &forwarded.client_ip.to_string());
    set(headers, "x-forwarded-proto", forwarded.scheme);
    if !forwarded.host.is_empty() {
        set(headers, "x-forwarded-host", forwarded.host);
        if !headers.contains_key(HOST) {
            set(headers, "host", forwarded.host);
        }
    }
    if websocket {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(upgrade) = upgrade {
            headers.insert(UPGRADE, upgrade);
        }
    } else if wants_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    request
}

/// The app's response as the client receives it: unchanged but for hop-by-hop headers
/// (kept for a `101 Switching Protocols`, which needs them), body streaming.
pub fn client_response(response: Response<Incoming>) -> Response<Body> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let (mut parts, body) = response.into_parts();
    if !switching {
        strip_hop_by_hop(&mut parts.headers);
    } else {
        parts.headers.remove(TRANSFER_ENCODING);
    }
    Response::from_parts(parts, Body::new(body.map_err(axum::Error::new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn the_session_cookie_is_not_forwarded() {
        let h = headers(&[
            ("cookie", "a=1; __Host-session=tok; b=2"),
            ("cookie", "c=3"),
        ]);
        let kept = without_session_cookie(&h, "__Host-session").expect("others");
        assert_eq!(kept, "a=1; b=2; c=3");
        let h = headers(&[("cookie", "__Host-session=tok")]);
        assert_eq!(without_session_cookie(&h, "__Host-session"), None);
    }

    #[test]
    fn websocket_handshakes_are_recognised() {
        assert!(is_websocket(&headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket")
        ])));
        assert!(!is_websocket(&headers(&[("upgrade", "websocket")])));
    }
}
