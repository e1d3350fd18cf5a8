//! Path rules: which paths a prefix protects, where sessiongate's own routes are mounted
//! (`MOUNT_PATH`), and the safe `next` value for login redirects.

use std::fmt;

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
/// The root mount's [`MountPath::login_location`].
pub fn login_location(path_and_query: &str) -> String {
    MountPath::root().login_location(path_and_query)
}

/// sessiongate's own routes, relative to the mount path (gateway-v1 "Mount path"): its
/// pages, their assets, the API, the JWK Set and the operations endpoints. Under the root
/// mount these prefixes are sessiongate's and everything else is the app's; under any other
/// mount everything below the mount is sessiongate's. Keep in step with the origin's router.
pub const OWN_ROUTE_PREFIXES: &[&str] = &[
    "/login",
    "/register",
    "/account",
    "/users",
    "/assets",
    "/api/v1",
    "/.well-known/jwks.json",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// Where sessiongate's own routes live (`MOUNT_PATH`, default `/`). `/auth` and `/auth/`
/// are the same mount.
///
/// A mount is written in the form paths are matched in: it starts with `/`, has no empty,
/// `.` or `..` segment, and uses only unreserved characters, sub-delimiters, `:` and `@`
/// (no `%`, `?`, `#`, backslash, space or control character), so it never needs decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountPath {
    /// `""` for the root mount, else `/auth` (no trailing `/`).
    base: String,
    /// `/` or `/auth/`: the `<MOUNT_PATH>` that the contract writes in front of route names.
    display: String,
}

/// Why a `MOUNT_PATH` value was refused; the message names the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountPathError(String);

impl fmt::Display for MountPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MountPathError {}

impl Default for MountPath {
    fn default() -> Self {
        Self::root()
    }
}

impl MountPath {
    /// The default mount, `/`: every route as `api-v1.md` writes it.
    pub fn root() -> Self {
        Self {
            base: String::new(),
            display: "/".to_owned(),
        }
    }

    /// Parses a `MOUNT_PATH` value (surrounding whitespace ignored).
    pub fn parse(value: &str) -> Result<Self, MountPathError> {
        let value = value.trim();
        let refuse = |problem: &str| Err(MountPathError(format!("`{value}` {problem}")));
        if value.is_empty() {
            return Err(MountPathError("is empty; use / for the root".to_owned()));
        }
        if !value.starts_with('/') {
            return refuse("must start with /");
        }
        if let Some(bad) = value.chars().find(|&c| !is_mount_char(c)) {
            return match bad {
                '?' | '#' => refuse("must not contain a query or fragment"),
                '%' => refuse("must be written without percent-encoding"),
                _ => refuse(
                    "may contain only letters, digits, / and - . _ ~ ! $ & ' ( ) * + , ; = : @",
                ),
            };
        }
        let base = value.trim_end_matches('/');
        if base.is_empty() {
            return Ok(Self::root());
        }
        for segment in base[1..].split('/') {
            match segment {
                "" => return refuse("must not contain an empty segment (//)"),
                "." | ".." => return refuse("must not contain . or .. segments"),
                _ => {}
            }
        }
        Ok(Self {
            base: base.to_owned(),
            display: format!("{base}/"),
        })
    }

    /// True for the default mount `/`.
    pub fn is_root(&self) -> bool {
        self.base.is_empty()
    }

    /// The mount as the contract writes `<MOUNT_PATH>`: `/` or `/auth/`.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The full path of an own route given as `api-v1.md` names it (`/login` →
    /// `/auth/login`; unchanged under the root mount). `route` must start with `/`.
    pub fn join(&self, route: &str) -> String {
        debug_assert!(route.starts_with('/'), "routes start with /: {route:?}");
        format!("{}{route}", self.base)
    }

    /// `path` relative to the mount (`/auth/x` → `/x`, `/auth` → `/`), or `None` when the
    /// path is not below it (the mount `/auth` does not cover `/authx`). The root mount
    /// returns every path unchanged.
    pub fn strip<'p>(&self, path: &'p str) -> Option<&'p str> {
        if self.is_root() {
            return Some(path);
        }
        match path.strip_prefix(self.base.as_str()) {
            Some("") => Some("/"),
            Some(rest) if rest.starts_with('/') => Some(rest),
            _ => None,
        }
    }

    /// True when `path` (normalised) is one of sessiongate's own routes under this mount:
    /// anything below a non-root mount, or one of [`OWN_ROUTE_PREFIXES`] under the root.
    pub fn is_own_route(&self, path: &str) -> bool {
        match self.strip(path) {
            Some(relative) if self.is_root() => OWN_ROUTE_PREFIXES
                .iter()
                .any(|prefix| prefix_matches(prefix, relative)),
            Some(_) => true,
            None => false,
        }
    }

    /// The `Location` for an anonymous navigation to `path_and_query` (the original path
    /// and query, as sent): `<MOUNT_PATH>login?next=<percent-encoded>`, or the login page
    /// without `next` when the target is not a [`safe_next`].
    pub fn login_location(&self, path_and_query: &str) -> String {
        let login = self.join("/login");
        match safe_next(path_and_query) {
            Some(next) => format!("{login}?next={}", utf8_percent_encode(next, NEXT_VALUE)),
            None => login,
        }
    }
}

/// Characters a mount path may use: RFC 3986 `pchar` without percent-encoding, plus `/`.
fn is_mount_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '/' | '-'
                | '.'
                | '_'
                | '~'
                | '!'
                | '$'
                | '&'
                | '\''
                | '('
                | ')'
                | '*'
                | '+'
                | ','
                | ';'
                | '='
                | ':'
                | '@'
        )
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

    #[test]
    fn mount_paths_parse() {
        let root = MountPath::parse("/").unwrap();
        assert!(root.is_root());
        assert_eq!(root, MountPath::root());
        assert_eq!(root.as_str(), "/");
        assert_eq!(MountPath::parse(" // ").unwrap(), MountPath::root());

        let auth = MountPath::parse("/auth").unwrap();
        assert_eq!(auth, MountPath::parse("/auth/").unwrap());
        assert!(!auth.is_root());
        assert_eq!(auth.as_str(), "/auth/");
        let deep = MountPath::parse("/_sg/v1.auth~x").unwrap();
        assert_eq!(deep.as_str(), "/_sg/v1.auth~x/");

        for (bad, says) in [
            ("", "empty"),
            ("auth", "start with /"),
            ("/auth?x=1", "query"),
            ("/auth#top", "fragment"),
            ("/a%2Fb", "percent"),
            ("/a b", "only"),
            ("/a\\b", "only"),
            ("/caf\u{e9}", "only"),
            ("/a\tb", "only"),
            ("/a//b", "empty segment"),
            ("/../x", ". or .."),
            ("/a/..", ". or .."),
            ("/./a", ". or .."),
        ] {
            let err = MountPath::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn mount_join_and_strip() {
        let root = MountPath::root();
        let auth = MountPath::parse("/auth").unwrap();
        assert_eq!(root.join("/login"), "/login");
        assert_eq!(auth.join("/login"), "/auth/login");
        assert_eq!(auth.join("/api/v1/auth/me"), "/auth/api/v1/auth/me");
        assert_eq!(
            auth.join("/.well-known/jwks.json"),
            "/auth/.well-known/jwks.json"
        );

        assert_eq!(root.strip("/anything"), Some("/anything"));
        assert_eq!(auth.strip("/auth"), Some("/"));
        assert_eq!(auth.strip("/auth/"), Some("/"));
        assert_eq!(auth.strip("/auth/login"), Some("/login"));
        assert_eq!(auth.strip("/auth/a/b?"), Some("/a/b?"));
        assert_eq!(auth.strip("/authx"), None);
        assert_eq!(auth.strip("/aut"), None);
        assert_eq!(auth.strip("/"), None);
        assert_eq!(auth.strip("/app/auth/login"), None);
    }

    #[test]
    fn own_routes() {
        let root = MountPath::root();
        for own in [
            "/login",
            "/account/x",
            "/api/v1/users",
            "/assets/app.css",
            "/metrics",
        ] {
            assert!(root.is_own_route(own), "{own}");
        }
        for app in [
            "/",
            "/app",
            "/loginx",
            "/api/v2/x",
            "/api",
            "/.well-known/other",
        ] {
            assert!(!root.is_own_route(app), "{app}");
        }
        let auth = MountPath::parse("/auth").unwrap();
        for own in ["/auth", "/auth/", "/auth/login", "/auth/anything/at/all"] {
            assert!(auth.is_own_route(own), "{own}");
        }
        for app in ["/login", "/account", "/authx", "/", "/api/v1/users"] {
            assert!(!auth.is_own_route(app), "{app}");
        }
    }

    #[test]
    fn login_locations_honour_the_mount() {
        let auth = MountPath::parse("/auth/").unwrap();
        assert_eq!(
            auth.login_location("/app/x?a=1"),
            "/auth/login?next=/app/x%3Fa%3D1"
        );
        assert_eq!(auth.login_location("//evil.example"), "/auth/login");
        // The root mount is exactly the free function's behaviour.
        for target in ["/account", "/a?b=c d", "//evil", "/caf\u{e9}", ""] {
            assert_eq!(
                MountPath::root().login_location(target),
                login_location(target)
            );
        }
    }
}
