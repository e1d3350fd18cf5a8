//! Where a request came from, decided once per request: the client's address, whether it
//! arrived over HTTPS, and the host it addressed.
//!
//! Forwarded headers (`X-Forwarded-For`, `-Proto`, `-Host`) are believed only from a peer
//! in `TRUSTED_PROXIES` and, when `EDGE_SECRET` is set, only when the request also carries
//! `X-Sessiongate-Edge: <EDGE_SECRET>` (compared in constant time): an address range alone
//! (Cloudflare's is shared by every Worker) does not prove the edge sent it.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use axum::http::header::HOST;

use crate::config::Config;

/// The header by which the edge proves itself.
pub const EDGE_SECRET_HEADER: &str = "x-sessiongate-edge";

/// The socket peer of a connection (set by the accept loop).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Where a request came from.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The client: the socket peer, or from a trusted proxy the right-most
    /// `X-Forwarded-For` entry that is not itself a trusted proxy.
    pub client_ip: IpAddr,
    /// Served over HTTPS: a trusted proxy said `X-Forwarded-Proto: https`.
    pub https: bool,
    /// The authority the client addressed (`X-Forwarded-Host` from a trusted proxy, else
    /// `Host`), lower-cased.
    pub host: Option<String>,
}

impl RequestContext {
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// Decides the context of a request from `peer`.
    pub fn of(config: &Config, peer: Option<SocketAddr>, headers: &HeaderMap) -> RequestContext {
        let peer_ip = peer_ip(peer);
        let trusted = config.is_trusted_proxy(peer_ip) && edge_proven(config, headers);
        let (client_ip, https, forwarded_host) = if trusted {
            (
                forwarded_client(config, peer_ip, headers),
                forwarded_https(headers),
                header(headers, "x-forwarded-host").and_then(first_entry),
            )
        } else {
            (peer_ip, false, None)
        };
        let host = forwarded_host
            .or_else(|| header(headers, HOST.as_str()))
            .map(|h| h.trim().to_ascii_lowercase());
        RequestContext {
            client_ip,
            https,
            host,
        }
    }

    /// Only whether the request arrived over HTTPS, as [`RequestContext::of`] decides it:
    /// what every answer needs (HSTS), without the address and host the rest need.
    pub fn https_of(config: &Config, peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
        config.is_trusted_proxy(peer_ip(peer))
            && edge_proven(config, headers)
            && forwarded_https(headers)
    }
}

fn peer_ip(peer: Option<SocketAddr>) -> IpAddr {
    peer.map_or(IpAddr::from([127, 0, 0, 1]), |p| p.ip().to_canonical())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The first entry of a comma-separated forwarded header.
fn first_entry(v: &str) -> Option<&str> {
    v.split(',').next().map(str::trim).filter(|v| !v.is_empty())
}

/// A trusted proxy's `X-Forwarded-Proto: https`.
fn forwarded_https(headers: &HeaderMap) -> bool {
    header(headers, "x-forwarded-proto")
        .and_then(first_entry)
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// Without `EDGE_SECRET` a trusted range suffices; with it the request must carry it.
fn edge_proven(config: &Config, headers: &HeaderMap) -> bool {
    let Some(secret) = config.edge_secret.as_deref() else {
        return true;
    };
    headers
        .get(EDGE_SECRET_HEADER)
        .is_some_and(|v| constant_time_eq(v.as_bytes(), secret.as_bytes()))
}

/// The right-most `X-Forwarded-For` entry that is not a trusted proxy (or the left-most
/// entry when all are trusted; the peer when there is none or it is unreadable).
fn forwarded_client(config: &Config, peer_ip: IpAddr, headers: &HeaderMap) -> IpAddr {
    let mut client = peer_ip;
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
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

/// Compares secrets in constant time (hashing first, so length leaks nothing either).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let a = hmac_sha256::Hash::hash(a);
    let b = hmac_sha256::Hash::hash(b);
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::http::HeaderValue;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        let mut map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert(
            "SESSION_KEYS".into(),
            "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
        );
        Config::from_map(&map).expect("config")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    const PEER: &str = "10.0.0.5:4000";

    #[test]
    fn forwarded_headers_count_only_from_trusted_peers() {
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7, 10.0.0.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "App.Example"),
            ("host", "internal:8080"),
        ]);
        let c = config(&[("TRUSTED_PROXIES", "10.0.0.0/8")]);
        let ctx = RequestContext::of(&c, Some(PEER.parse().unwrap()), &h);
        assert_eq!(ctx.client_ip.to_string(), "198.51.100.7");
        assert!(ctx.https);
        assert_eq!(ctx.host.as_deref(), Some("app.example"));

        let c = config(&[]);
        let ctx = RequestContext::of(&c, Some(PEER.parse().unwrap()), &h);
        assert_eq!(ctx.client_ip.to_string(), "10.0.0.5");
        assert!(!ctx.https);
        assert_eq!(ctx.host.as_deref(), Some("internal:8080"));
    }

    #[test]
    fn with_an_edge_secret_the_range_alone_is_not_enough() {
        let secret = "0123456789abcdef0123";
        let c = config(&[("TRUSTED_PROXIES", "10.0.0.0/8"), ("EDGE_SECRET", secret)]);
        let peer = Some(PEER.parse().unwrap());
        let forged = headers(&[("x-forwarded-for", "203.0.113.1")]);
        assert_eq!(
            RequestContext::of(&c, peer, &forged).client_ip.to_string(),
            "10.0.0.5"
        );
        let wrong = headers(&[
            ("x-forwarded-for", "203.0.113.1"),
            (EDGE_SECRET_HEADER, "0123456789abcdef0124"),
        ]);
        assert_eq!(
            RequestContext::of(&c, peer, &wrong).client_ip.to_string(),
            "10.0.0.5"
        );
        let proven = headers(&[
            ("x-forwarded-for", "203.0.113.1"),
            (EDGE_SECRET_HEADER, secret),
        ]);
        assert_eq!(
            RequestContext::of(&c, peer, &proven).client_ip.to_string(),
            "203.0.113.1"
        );
    }
}
