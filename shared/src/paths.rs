//! Path rules: which paths a prefix protects, and the safe `next` value for login
//! redirects.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Longest `next` value kept; longer ones fall back to no `next` at all.
pub const MAX_NEXT_LEN: usize = 2048;

/// True when `prefix` protects `path`: equal, or followed by a `/` in `path`
/// (`/account` protects `/account` and `/account/x`, not `/accounting`).
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// A comma-separated list of path prefixes, as in `PROTECTED_PATHS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixList(Vec<String>);

impl PrefixList {
    /// Parses `"/account, /users/"`. Each entry must start with `/`; a trailing `/` is
    /// dropped so `/users/` means the same as `/users`. Empty input is an empty list.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut prefixes = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if !entry.starts_with('/') || entry.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                return Err(format!(
                    "`{entry}` is not a path prefix (it must start with /)"
                ));
            }
            let trimmed = entry.trim_end_matches('/');
            prefixes.push(if trimmed.is_empty() { "/" } else { trimmed }.to_owned());
        }
        Ok(Self(prefixes))
    }

    /// True when any prefix protects `path`.
    pub fn matches(&self, path: &str) -> bool {
        self.0.iter().any(|prefix| prefix_matches(prefix, path))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// `next` when it is a safe same-site relative target, else `None`.
///
/// Accepted: starts with exactly one `/` and contains no backslash, no control character
/// (CR, LF, tab: browsers strip some of them, turning `/\t/evil` into `//evil`) and no
/// space. That excludes absolute URLs, `//host` and `/\host`.
pub fn safe_next(next: &str) -> Option<&str> {
    let bytes = next.as_bytes();
    let safe = next.len() <= MAX_NEXT_LEN
        && bytes.first() == Some(&b'/')
        && bytes.get(1) != Some(&b'/')
        && !bytes
            .iter()
            .any(|&b| b == b'\\' || b == b' ' || b.is_ascii_control());
    safe.then_some(next)
}

/// Characters escaped inside the `next` query value: everything but unreserved ones
/// and `/`, so the value survives any query parser intact.
const NEXT_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The `Location` for an anonymous visit to `path_and_query`:
/// `/login?next=<percent-encoded>`, or plain `/login` when the target is not safe.
pub fn login_location(path_and_query: &str) -> String {
    match safe_next(path_and_query) {
        Some(next) => format!("/login?next={}", utf8_percent_encode(next, NEXT_VALUE)),
        None => "/login".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_boundary() {
        assert!(prefix_matches("/account", "/account"));
        assert!(prefix_matches("/account", "/account/"));
        assert!(prefix_matches("/account", "/account/x/y"));
        assert!(!prefix_matches("/account", "/accounting"));
        assert!(!prefix_matches("/account", "/"));
        assert!(!prefix_matches("/account", "/acc"));
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api/v1/auth/me", "/api/v1/auth/me"));
        assert!(!prefix_matches("/api/v1/auth/me", "/api/v1/auth/meow"));
    }

    #[test]
    fn prefix_lists() {
        let list = PrefixList::parse(" /account, /users/ ,").unwrap();
        assert_eq!(list.as_slice(), ["/account", "/users"]);
        assert!(list.matches("/users/3"));
        assert!(!list.matches("/usersx"));
        assert!(PrefixList::parse("account").is_err());
        assert!(PrefixList::parse("").unwrap().as_slice().is_empty());
        assert_eq!(PrefixList::parse("/").unwrap().as_slice(), ["/"]);
    }

    #[test]
    fn next_values() {
        for good in ["/", "/account", "/account?tab=sessions&x=%2F", "/a/b#frag"] {
            assert_eq!(safe_next(good), Some(good), "{good}");
        }
        for bad in [
            "",
            "account",
            "//evil.example",
            "/\\evil.example",
            "/a\\b",
            "https://evil.example/",
            "javascript:alert(1)",
            "/a\r\nSet-Cookie: x=1",
            "/\t/evil.example",
            "/a b",
            "/\u{7f}",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(MAX_NEXT_LEN))), None);
    }

    #[test]
    fn login_locations() {
        assert_eq!(login_location("/account"), "/login?next=/account");
        assert_eq!(
            login_location("/account?tab=a&b=c%20d"),
            "/login?next=/account%3Ftab%3Da%26b%3Dc%2520d"
        );
        assert_eq!(login_location("//evil.example"), "/login");
        assert_eq!(login_location("/caf\u{e9}"), "/login?next=/caf%C3%A9");
    }
}
