//! The gate's decision: given a request's path, query and `Cookie` header, the time and
//! the configuration, say whether to redirect to login, answer 401, or proxy. Pure: no
//! I/O, no clock, so every rule is unit-tested natively.
//!
//! The contract makes no distinction by method, so the method is not an input.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use shared::cookie::{cookie_name, cookie_values};
use shared::paths::login_location;
use shared::{Rejection, VerifiedToken, verify};

use crate::config::EdgeConfig;

/// What the worker does with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A protected page without a valid cookie: `302` to `location` (`no-store`), clearing
    /// the cookie when an invalid one was sent.
    Redirect {
        location: String,
        clear_cookie: bool,
    },
    /// A protected API path without a valid cookie: `401` JSON (`no-store`), clearing the
    /// cookie when an invalid one was sent. The origin is not contacted.
    Unauthorized { clear_cookie: bool },
    /// Forward to the origin unchanged (plus the forwarded headers).
    Proxy,
}

/// The session cookie as sent with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CookieState {
    /// No session cookie, or only empty values.
    Absent,
    /// At least one value verified; the first that did.
    Valid(VerifiedToken),
    /// Values were sent and none verified; the first value's reason (internal only).
    Invalid(Rejection),
}

impl CookieState {
    /// True when a cookie was sent and it must be cleared.
    pub fn is_invalid(&self) -> bool {
        matches!(self, Self::Invalid(_))
    }
}

/// Verifies every value of the session cookie in `cookie_header`; any valid one wins
/// (browsers may send duplicates, e.g. a stale one from an older path).
pub fn cookie_state(config: &EdgeConfig, cookie_header: Option<&str>, now: u64) -> CookieState {
    let Some(header) = cookie_header else {
        return CookieState::Absent;
    };
    let mut first_rejection = None;
    for value in cookie_values(header, cookie_name(config.cookie_secure)).filter(|v| !v.is_empty())
    {
        match verify(&config.keys, value, now) {
            Ok(token) => return CookieState::Valid(token),
            Err(rejection) => {
                first_rejection.get_or_insert(rejection);
            }
        }
    }
    match first_rejection {
        Some(rejection) => CookieState::Invalid(rejection),
        None => CookieState::Absent,
    }
}

/// Which protection, if any, covers a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    Page,
    Api,
    None,
}

/// The protection for `path` (the raw, possibly percent-encoded request path). The path is
/// matched both as sent and normalised (percent-decoded, repeated `/` collapsed), so an
/// encoded or doubled spelling of a protected path is protected too. API prefixes are
/// checked first: an API path under a page prefix still gets 401, not a redirect.
pub fn protection(config: &EdgeConfig, path: &str) -> Protection {
    let normalised = normalise(path);
    let hit = |list: &shared::paths::PrefixList| list.matches(path) || list.matches(&normalised);
    if hit(&config.protected_api) {
        Protection::Api
    } else if hit(&config.protected_pages) {
        Protection::Page
    } else {
        Protection::None
    }
}

/// Percent-decodes `path` and collapses runs of `/`.
fn normalise(path: &str) -> Cow<'_, str> {
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    if !decoded.contains("//") {
        return decoded;
    }
    let mut collapsed = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    Cow::Owned(collapsed)
}

/// The decision for a request to `path` (raw) with `query` (raw, without `?`; `None` or
/// empty when absent) and the `Cookie` header, at unix time `now`.
pub fn decide(
    config: &EdgeConfig,
    path: &str,
    query: Option<&str>,
    cookie_header: Option<&str>,
    now: u64,
) -> Decision {
    let protection = protection(config, path);
    if protection == Protection::None {
        return Decision::Proxy;
    }
    let state = cookie_state(config, cookie_header, now);
    if matches!(state, CookieState::Valid(_)) {
        return Decision::Proxy;
    }
    let clear_cookie = state.is_invalid();
    match protection {
        Protection::Page => Decision::Redirect {
            location: login_location(&path_and_query(path, query)),
            clear_cookie,
        },
        Protection::Api => Decision::Unauthorized { clear_cookie },
        Protection::None => Decision::Proxy,
    }
}

/// `path?query`, or `path` when the query is absent or empty.
pub fn path_and_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use shared::{KeyRing, SessionId, sign};

    use super::*;

    const KEY_A: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";
    const KEY_B: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA";
    const NOW: u64 = 1_790_000_000;
    const SID: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn config(secure: bool) -> EdgeConfig {
        EdgeConfig::from_vars(|name| match name {
            "ORIGIN_URL" => Some("http://127.0.0.1:8080".into()),
            "SESSION_KEYS" => Some(format!("new:{KEY_A},old:{KEY_B}")),
            "COOKIE_SECURE" => Some(secure.to_string()),
            _ => None,
        })
        .unwrap()
    }

    fn token_with(spec: &str, iat: u64, exp: u64) -> String {
        let ring = KeyRing::parse(spec).unwrap();
        sign(&ring, &SessionId::parse(SID).unwrap(), iat, exp)
    }

    fn valid() -> String {
        token_with(&format!("new:{KEY_A}"), NOW - 10, NOW + 3600)
    }

    fn cookie(token: &str) -> String {
        format!("theme=dark; __Host-session={token}")
    }

    fn redirect(location: &str, clear_cookie: bool) -> Decision {
        Decision::Redirect {
            location: location.into(),
            clear_cookie,
        }
    }

    #[test]
    fn anonymous_protected_page_redirects_without_clearing() {
        let c = config(true);
        assert_eq!(
            decide(&c, "/account", None, None, NOW),
            redirect("/login?next=/account", false)
        );
        assert_eq!(
            decide(&c, "/users/7", Some(""), Some("theme=dark"), NOW),
            redirect("/login?next=/users/7", false)
        );
    }

    #[test]
    fn redirect_keeps_the_query_encoded() {
        let c = config(true);
        assert_eq!(
            decide(&c, "/account", Some("x=1&tab=a%20b"), None, NOW),
            redirect("/login?next=/account%3Fx%3D1%26tab%3Da%2520b", false)
        );
    }

    #[test]
    fn anonymous_protected_api_is_unauthorized() {
        let c = config(true);
        for path in [
            "/api/v1/account",
            "/api/v1/account/sessions/x",
            "/api/v1/users",
            "/api/v1/auth/me",
        ] {
            assert_eq!(
                decide(&c, path, None, None, NOW),
                Decision::Unauthorized {
                    clear_cookie: false
                },
                "{path}"
            );
        }
    }

    #[test]
    fn unprotected_paths_proxy_whatever_the_cookie() {
        let c = config(true);
        for path in [
            "/",
            "/login",
            "/accounting",
            "/usersx",
            "/api/v1/auth/login",
            "/api/v1/auth/meow",
            "/api/v1/accounts",
        ] {
            assert_eq!(decide(&c, path, None, None, NOW), Decision::Proxy, "{path}");
            assert_eq!(
                decide(&c, path, None, Some(&cookie("junk")), NOW),
                Decision::Proxy,
                "{path}"
            );
        }
    }

    #[test]
    fn valid_cookie_proxies_protected_paths() {
        let c = config(true);
        let header = cookie(&valid());
        assert_eq!(
            decide(&c, "/account", Some("x=1"), Some(&header), NOW),
            Decision::Proxy
        );
        assert_eq!(
            decide(&c, "/api/v1/auth/me", None, Some(&header), NOW),
            Decision::Proxy
        );
    }

    #[test]
    fn second_listed_key_is_accepted() {
        let c = config(true);
        let old = token_with(&format!("old:{KEY_B}"), NOW - 10, NOW + 3600);
        assert_eq!(
            decide(&c, "/account", None, Some(&cookie(&old)), NOW),
            Decision::Proxy
        );
    }

    #[test]
    fn invalid_cookies_redirect_or_401_and_are_cleared() {
        let c = config(true);
        let expired = token_with(&format!("new:{KEY_A}"), NOW - 7200, NOW - 3600);
        let unknown_kid = token_with(&format!("gone:{KEY_A}"), NOW - 10, NOW + 3600);
        let mut forged = valid();
        forged.replace_range(forged.len() - 4.., "AAAA");
        let claims = forged.split('.').nth(1).unwrap().to_owned();
        // {"alg":"none","typ":"JWT","kid":"new"}
        let alg_none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIiwia2lkIjoibmV3In0.{claims}.");
        for (token, reason) in [
            (expired, Rejection::Expired),
            (unknown_kid, Rejection::UnknownKid),
            (forged, Rejection::BadSignature),
            (alg_none, Rejection::AlgorithmNotAllowed),
            ("garbage".to_owned(), Rejection::WrongSegmentCount),
        ] {
            let header = cookie(&token);
            assert_eq!(
                cookie_state(&c, Some(&header), NOW),
                CookieState::Invalid(reason)
            );
            assert_eq!(
                decide(&c, "/account", None, Some(&header), NOW),
                redirect("/login?next=/account", true),
                "{reason}"
            );
            assert_eq!(
                decide(&c, "/api/v1/account", None, Some(&header), NOW),
                Decision::Unauthorized { clear_cookie: true },
                "{reason}"
            );
        }
    }

    #[test]
    fn any_valid_duplicate_wins_and_empty_values_count_as_absent() {
        let c = config(true);
        let header = format!("__Host-session=junk; __Host-session={}", valid());
        assert_eq!(
            decide(&c, "/account", None, Some(&header), NOW),
            Decision::Proxy
        );
        assert_eq!(
            cookie_state(&c, Some("__Host-session="), NOW),
            CookieState::Absent
        );
        assert_eq!(
            decide(&c, "/account", None, Some("__Host-session="), NOW),
            redirect("/login?next=/account", false)
        );
    }

    #[test]
    fn cookie_name_follows_cookie_secure() {
        let token = valid();
        let secure = config(true);
        let insecure = config(false);
        let plain = format!("session={token}");
        let host = format!("__Host-session={token}");
        assert_eq!(
            decide(&secure, "/account", None, Some(&host), NOW),
            Decision::Proxy
        );
        assert_eq!(
            decide(&insecure, "/account", None, Some(&plain), NOW),
            Decision::Proxy
        );
        // The other name is simply not our cookie: absent, nothing to clear.
        assert_eq!(
            decide(&secure, "/account", None, Some(&plain), NOW),
            redirect("/login?next=/account", false)
        );
        assert_eq!(
            decide(&insecure, "/account", None, Some(&host), NOW),
            redirect("/login?next=/account", false)
        );
    }

    #[test]
    fn encoded_or_doubled_spellings_stay_protected() {
        let c = config(true);
        assert_eq!(protection(&c, "/%61ccount"), Protection::Page);
        assert_eq!(protection(&c, "//account/x"), Protection::Page);
        assert_eq!(protection(&c, "/api/v1//users"), Protection::Api);
        assert_eq!(protection(&c, "/api/v1/%61uth/me"), Protection::Api);
        assert_eq!(protection(&c, "/accounting"), Protection::None);
        assert_eq!(protection(&c, "/%2561ccount"), Protection::None);
    }

    #[test]
    fn api_prefix_wins_over_a_page_prefix() {
        let c = EdgeConfig::from_vars(|name| match name {
            "ORIGIN_URL" => Some("http://o".into()),
            "SESSION_KEYS" => Some(format!("k:{KEY_A}")),
            "PROTECTED_PATHS" => Some("/".into()),
            "PROTECTED_API_PATHS" => Some("/api".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(protection(&c, "/api/x"), Protection::Api);
        assert_eq!(protection(&c, "/anything"), Protection::Page);
    }

    #[test]
    fn unsafe_targets_redirect_to_plain_login() {
        let c = config(true);
        // A path that would make an unsafe `next` (here: a backslash) falls back to /login.
        assert_eq!(
            decide(&c, "/account/\\x", None, None, NOW),
            redirect("/login", false)
        );
    }

    #[test]
    fn path_and_query_joins() {
        assert_eq!(path_and_query("/a", None), "/a");
        assert_eq!(path_and_query("/a", Some("")), "/a");
        assert_eq!(path_and_query("/a", Some("b=1")), "/a?b=1");
    }
}
