//! Reading requests: the capped JSON body, typed field access (422 naming the field), the
//! query string, the CSRF rule, the client IP and the effective host.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN};
use hyper::{HeaderMap, Method};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::error::{ApiError, ApiResult};

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON object body.
pub struct Json(pub Map<String, Value>);

/// Reads the body as a JSON object: 415 unless `application/json`, 413 over 64 KiB (by
/// `Content-Length` before reading, and while streaming otherwise), 408 when it has not
/// fully arrived within `timeout` (a slow-body client holds no connection longer), 400
/// unless it parses to an object.
pub async fn json_body(
    headers: &HeaderMap,
    body: Incoming,
    timeout: std::time::Duration,
) -> ApiResult<Json> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    if let Some(len) = headers.get(CONTENT_LENGTH) {
        let len = len
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::BadRequest("Invalid Content-Length".into()))?;
        if len > MAX_BODY as u64 {
            return Err(ApiError::PayloadTooLarge);
        }
    }
    let read = tokio::time::timeout(timeout, Limited::new(body, MAX_BODY).collect()).await;
    let bytes: Bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::PayloadTooLarge);
        }
        Ok(Err(_)) => {
            return Err(ApiError::BadRequest(
                "Could not read the request body".into(),
            ));
        }
        Err(_) => return Err(ApiError::BodyTimeout),
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(Json(map)),
        Ok(_) => Err(ApiError::BadRequest(
            "Request body must be a JSON object".into(),
        )),
        Err(_) => Err(ApiError::BadRequest(
            "Request body is not valid JSON".into(),
        )),
    }
}

impl Json {
    /// A required string field.
    pub fn string(&self, field: &str) -> ApiResult<String> {
        match self.0.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(ApiError::invalid(field, "must be a string")),
            None => Err(ApiError::invalid(field, "is required")),
        }
    }

    /// An optional string field: absent → `None`, `null` → `Some(None)`.
    pub fn nullable_string(&self, field: &str) -> ApiResult<Option<Option<String>>> {
        match self.0.get(field) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
            Some(_) => Err(ApiError::invalid(field, "must be a string or null")),
        }
    }
}

/// Query-string value by name (percent-decoded; first occurrence).
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The client IP: the socket peer; when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(config: &Config, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let peer_ip = peer.ip().to_canonical();
    if !config.is_trusted_proxy(peer_ip) {
        return peer_ip;
    }
    let mut client = peer_ip;
    let entries = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    for entry in entries.iter().rev() {
        let Ok(ip) = entry.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            break;
        };
        client = ip;
        if !config.is_trusted_proxy(ip) {
            break;
        }
    }
    client
}

/// The host the client addressed: `X-Forwarded-Host` from a trusted proxy, else `Host`.
pub fn effective_host(config: &Config, peer: SocketAddr, headers: &HeaderMap) -> Option<String> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let forwarded = config
        .is_trusted_proxy(peer.ip().to_canonical())
        .then(|| header("x-forwarded-host"))
        .flatten()
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    forwarded
        .or_else(|| header(HOST.as_str()))
        .map(normalise_authority)
}

fn normalise_authority(authority: &str) -> String {
    let a = authority.trim().to_ascii_lowercase();
    a.strip_suffix(":80")
        .or_else(|| a.strip_suffix(":443"))
        .map(str::to_owned)
        .unwrap_or(a)
}

/// The CSRF rule: a state-changing request whose `Origin` names another origin, or that
/// says `Sec-Fetch-Site: cross-site`, is refused.
pub fn cross_site(method: &Method, headers: &HeaderMap, host: Option<&str>) -> bool {
    if !matches!(
        *method,
        Method::POST | Method::PATCH | Method::DELETE | Method::PUT
    ) {
        return false;
    }
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().eq_ignore_ascii_case("cross-site"))
        .unwrap_or(false);
    if fetch_site {
        return true;
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return false;
    };
    let Some(origin_authority) = origin
        .to_str()
        .ok()
        .and_then(|o| o.trim().split_once("://"))
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
        .filter(|a| !a.is_empty())
    else {
        // `Origin: null` or garbage: not this origin.
        return true;
    };
    match host {
        Some(host) => normalise_authority(origin_authority) != host,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn csrf_rule() {
        let host = Some("app.example");
        let post = Method::POST;
        assert!(!cross_site(&post, &headers(&[]), host));
        assert!(!cross_site(
            &post,
            &headers(&[("origin", "https://app.example")]),
            host
        ));
        assert!(!cross_site(
            &post,
            &headers(&[("origin", "http://APP.example:80")]),
            host
        ));
        assert!(cross_site(
            &post,
            &headers(&[("origin", "https://evil.example")]),
            host
        ));
        assert!(cross_site(&post, &headers(&[("origin", "null")]), host));
        assert!(cross_site(
            &post,
            &headers(&[("sec-fetch-site", "cross-site")]),
            host
        ));
        assert!(!cross_site(
            &post,
            &headers(&[("sec-fetch-site", "same-origin")]),
            host
        ));
        assert!(!cross_site(
            &Method::GET,
            &headers(&[("origin", "https://evil.example")]),
            host
        ));
    }

    #[test]
    fn queries() {
        assert_eq!(
            query_param(Some("a=1&search=J%C3%BCrgen+x"), "search").as_deref(),
            Some("Jürgen x")
        );
        assert_eq!(query_param(None, "a"), None);
    }
}
