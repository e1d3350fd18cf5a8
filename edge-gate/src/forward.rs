//! What the proxy adds to a forwarded request: the origin URL for the original path and
//! query, and the `X-Forwarded-*` header values. Pure, so tested natively.

use crate::gate::path_and_query;

/// The origin URL for a request: `origin` (no trailing `/`) + raw path + `?query`.
pub fn target_url(origin: &str, path: &str, query: Option<&str>) -> String {
    format!("{origin}{}", path_and_query(path, query))
}

/// The `X-Forwarded-For` value to send, if any.
///
/// `connecting_ip` is `CF-Connecting-IP`, set by Cloudflare (a client cannot forge it); it
/// is appended to any existing chain, so the right-most entry is always the address the
/// edge saw and an origin that trusts the edge reads the right-most untrusted entry.
/// Without it the existing chain is passed on as it came.
pub fn forwarded_for(existing: Option<&str>, connecting_ip: Option<&str>) -> Option<String> {
    let existing = existing.map(str::trim).filter(|e| !e.is_empty());
    let ip = connecting_ip.map(str::trim).filter(|ip| !ip.is_empty());
    match (existing, ip) {
        (Some(chain), Some(ip)) => Some(format!("{chain}, {ip}")),
        (None, Some(ip)) => Some(ip.to_owned()),
        (Some(chain), None) => Some(chain.to_owned()),
        (None, None) => None,
    }
}

/// The `X-Forwarded-Proto` value for the incoming URL's scheme (`"https:"` or `"https"`).
pub fn forwarded_proto(protocol: &str) -> &str {
    protocol.trim_end_matches(':')
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
    fn forwarded_for_chain() {
        assert_eq!(
            forwarded_for(None, Some("203.0.113.9")).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            forwarded_for(Some("10.0.0.1, 10.0.0.2"), Some("203.0.113.9")).as_deref(),
            Some("10.0.0.1, 10.0.0.2, 203.0.113.9")
        );
        assert_eq!(
            forwarded_for(Some(" 10.0.0.1 "), None).as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(forwarded_for(Some(""), Some(" ")), None);
        assert_eq!(forwarded_for(None, None), None);
    }

    #[test]
    fn proto() {
        assert_eq!(forwarded_proto("https:"), "https");
        assert_eq!(forwarded_proto("http"), "http");
    }
}
