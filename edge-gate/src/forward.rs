//! What the edge changes on the way through: the origin URL for a proxied request, the
//! client headers it drops and the forwarding headers it sets in their place, and the
//! `Strict-Transport-Security` header it puts on https responses. Pure, so tested natively.

use crate::gate::path_and_query;

/// The header that tells the origin a request came through this edge (`EDGE_SECRET`).
pub const EDGE_HEADER: &str = "X-Sessiongate-Edge";

/// The origin URL for a request: `origin` (no trailing `/`) + raw path + `?query`.
pub fn target_url(origin: &str, path: &str, query: Option<&str>) -> String {
    format!("{origin}{}", path_and_query(path, query))
}

/// True for a request header the edge never passes on from a client: every
/// `X-Forwarded-*`, `Forwarded`, and `X-Sessiongate-Edge`. The edge replaces the
/// forwarding headers with what it knows itself, so the origin's trust in the edge is never
/// trust in whatever a client wrote.
pub fn is_dropped_request_header(name: &str) -> bool {
    let name = name.trim();
    name.eq_ignore_ascii_case("forwarded")
        || name.eq_ignore_ascii_case(EDGE_HEADER)
        || name
            .get(..12)
            .is_some_and(|start| start.eq_ignore_ascii_case("x-forwarded-"))
}

/// The headers the edge sets on a proxied request, replacing any client-sent ones:
///
/// - `X-Forwarded-For`: the one address the edge knows, `CF-Connecting-IP` (set by
///   Cloudflare; a client cannot forge it). Without a usable one, no `X-Forwarded-For`.
/// - `X-Forwarded-Proto` and `X-Forwarded-Host`: from the request URL (`protocol` as
///   `"https:"` or `"https"`, `host` with its port when present).
/// - `X-Sessiongate-Edge: <EDGE_SECRET>` when the secret is configured.
pub fn forwarding_headers(
    protocol: &str,
    host: &str,
    connecting_ip: Option<&str>,
    edge_secret: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(4);
    if let Some(ip) = connecting_ip.map(str::trim).filter(|ip| is_ip_text(ip)) {
        headers.push(("X-Forwarded-For", ip.to_owned()));
    }
    headers.push(("X-Forwarded-Proto", forwarded_proto(protocol).to_owned()));
    headers.push(("X-Forwarded-Host", host.to_owned()));
    if let Some(secret) = edge_secret {
        headers.push((EDGE_HEADER, secret.to_owned()));
    }
    headers
}

/// An IPv4 or IPv6 address's characters only (no list, no port, no spaces): anything else
/// is not what Cloudflare writes, and is not passed on.
fn is_ip_text(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 45
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
}

/// The `X-Forwarded-Proto` value for the incoming URL's scheme (`"https:"` or `"https"`).
pub fn forwarded_proto(protocol: &str) -> &str {
    protocol.trim_end_matches(':')
}

/// The `Strict-Transport-Security` value for a response to a request with this URL scheme:
/// `max-age=<seconds>` on https when the max age is not 0, else none (never on plain http,
/// where browsers ignore it anyway and it would only mislead).
pub fn hsts_value(protocol: &str, max_age: u64) -> Option<String> {
    (forwarded_proto(protocol).eq_ignore_ascii_case("https") && max_age > 0)
        .then(|| format!("max-age={max_age}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            target_url("http://127.0.0.1:8080", "/a/b", None),
            "http://127.0.0.1:8080/a/b"
        );
        assert_eq!(
            target_url("https://o.example/base", "/a", Some("x=1&y=%20")),
            "https://o.example/base/a?x=1&y=%20"
        );
        assert_eq!(target_url("http://o", "/", Some("")), "http://o/");
    }

    #[test]
    fn client_forwarding_headers_are_dropped() {
        for name in [
            "X-Forwarded-For",
            "x-forwarded-for",
            "X-Forwarded-Proto",
            "X-FORWARDED-HOST",
            "X-Forwarded-Port",
            "X-Forwarded-Prefix",
            "x-forwarded-anything",
            "Forwarded",
            "forwarded",
            "X-Sessiongate-Edge",
            "x-sessiongate-edge",
        ] {
            assert!(is_dropped_request_header(name), "{name}");
        }
        for name in [
            "Cookie",
            "X-Forwarded",
            "X-Forwardedfor",
            "CF-Connecting-IP",
            "X-Real-IP",
            "Forwarded-For",
            "X-Sessiongate-Role",
            "",
        ] {
            assert!(!is_dropped_request_header(name), "{name}");
        }
    }

    #[test]
    fn forwarding_headers_are_what_the_edge_knows() {
        assert_eq!(
            forwarding_headers("https:", "app.example", Some("203.0.113.9"), None),
            [
                ("X-Forwarded-For", "203.0.113.9".to_owned()),
                ("X-Forwarded-Proto", "https".to_owned()),
                ("X-Forwarded-Host", "app.example".to_owned()),
            ]
        );
        assert_eq!(
            forwarding_headers(
                "http:",
                "127.0.0.1:8787",
                Some(" 2001:db8::1 "),
                Some("s3cret")
            ),
            [
                ("X-Forwarded-For", "2001:db8::1".to_owned()),
                ("X-Forwarded-Proto", "http".to_owned()),
                ("X-Forwarded-Host", "127.0.0.1:8787".to_owned()),
                ("X-Sessiongate-Edge", "s3cret".to_owned()),
            ]
        );
        // No usable address: no X-Forwarded-For at all (never a client's chain).
        for ip in [
            None,
            Some(""),
            Some("  "),
            Some("1.2.3.4, 5.6.7.8"),
            Some("evil\r\nx: y"),
        ] {
            let headers = forwarding_headers("https:", "h", ip, None);
            assert!(
                headers.iter().all(|(name, _)| *name != "X-Forwarded-For"),
                "{ip:?}: {headers:?}"
            );
        }
    }

    #[test]
    fn proto() {
        assert_eq!(forwarded_proto("https:"), "https");
        assert_eq!(forwarded_proto("http"), "http");
    }

    #[test]
    fn hsts_only_on_https_and_not_when_off() {
        assert_eq!(
            hsts_value("https:", 31_536_000).as_deref(),
            Some("max-age=31536000")
        );
        assert_eq!(hsts_value("https", 60).as_deref(), Some("max-age=60"));
        assert_eq!(hsts_value("https:", 0), None);
        assert_eq!(hsts_value("http:", 31_536_000), None);
        assert_eq!(hsts_value("ws:", 31_536_000), None);
    }
}
