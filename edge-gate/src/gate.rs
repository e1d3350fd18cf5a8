//! The gate's decision: given a request (method, path, query, the `Cookie` header and the
//! headers the navigation test reads), the time and the configuration, say whether to
//! redirect to login, answer 401, 400 or 404, or proxy. Pure: no I/O, no clock, so every
//! rule is unit-tested natively.
//!
//! In order:
//! 1. `<MOUNT_PATH>metrics` and `<MOUNT_PATH>readyz`, however spelled: 404, never proxied.
//! 2. sessiongate's own protected pages and APIs (`PROTECTED_PATHS`, `PROTECTED_API_PATHS`,
//!    relative to the mount): no valid cookie → redirect or 401, as `api-v1.md` says
//!    (whatever the method: the contract's "Edge" section does not look at it).
//! 3. With `ACCESS_RULES`, every other path that is not one of sessiongate's own routes:
//!    the contract's anonymous rows. A path the rules cannot judge (`%2F`, `%5C`, NUL…) is
//!    400; `public` is proxied; otherwise a valid signature is proxied (the origin decides
//!    the rest) and anything else is redirected (a navigation) or 401.
//! 4. Everything else is proxied.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use shared::cookie::{cookie_name, cookie_values};
use shared::rules::{self, NavigationHeaders, PathRefusal, Policy, is_navigation, normalise_path};
use shared::{Rejection, VerifiedToken, verify};

use crate::config::EdgeConfig;

pub use shared::rules::path_and_query;

/// sessiongate's internal endpoints, relative to the mount, that the edge never proxies.
const NEVER_PROXIED: [&str; 2] = ["/metrics", "/readyz"];

/// What the worker does with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No valid cookie where one is needed, on a page or a navigation: `302` to `location`
    /// (`no-store`), clearing the cookie when an invalid one was sent.
    Redirect {
        location: String,
        clear_cookie: bool,
    },
    /// No valid cookie where one is needed, anything else: `401` JSON (`no-store`),
    /// clearing the cookie when an invalid one was sent. The origin is not contacted.
    Unauthorized { clear_cookie: bool },
    /// An internal endpoint (`metrics`, `readyz`): `404` JSON, never proxied.
    NotFound,
    /// A path the access rules refuse to judge: `400` JSON.
    BadRequest(PathRefusal),
    /// Forward to the origin (with the forwarding headers).
    Proxy,
}

/// One request, as the gate sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The raw path, percent-encoding intact.
    pub path: &'a str,
    /// The raw query without `?`; `None` or empty when absent.
    pub query: Option<&'a str>,
    pub cookie: Option<&'a str>,
    pub navigation: NavigationHeaders<'a>,
}

impl<'a> RequestFacts<'a> {
    /// A plain `GET` with no header but `Cookie` (a navigation, by the contract's test).
    pub fn get(path: &'a str, query: Option<&'a str>, cookie: Option<&'a str>) -> Self {
        Self {
            method: "GET",
            path,
            query,
            cookie,
            navigation: NavigationHeaders::default(),
        }
    }
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

/// Which of sessiongate's own protections, if any, covers a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    Page,
    Api,
    None,
}

/// The protection for `path` (the raw, possibly percent-encoded request path). The
/// prefixes are relative to the mount path. The path is matched both as sent and read
/// leniently (every escape decoded, `\` as `/`, dot segments resolved, repeated `/`
/// collapsed), so any spelling of a protected path is protected. API prefixes are checked
/// first: an API path under a page prefix still gets 401, not a redirect.
pub fn protection(config: &EdgeConfig, path: &str) -> Protection {
    protection_of(config, path, &lenient_reading(path))
}

fn protection_of(config: &EdgeConfig, raw: &str, lenient: &str) -> Protection {
    let readings = [config.mount.strip(raw), config.mount.strip(lenient)];
    let hit = |list: &shared::paths::PrefixList| readings.iter().flatten().any(|p| list.matches(p));
    if hit(&config.protected_api) {
        Protection::Api
    } else if hit(&config.protected_pages) {
        Protection::Page
    } else {
        Protection::None
    }
}

/// The most generous reading of a path: every escape decoded (invalid UTF-8 replaced),
/// backslashes taken as `/`, `.`/`..` resolved, repeated `/` collapsed. Used only to widen
/// what the gate guards, never to let something through.
fn lenient_reading(path: &str) -> String {
    let decoded: Cow<'_, str> = percent_decode_str(path).decode_utf8_lossy();
    let decoded = decoded.replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut reading = String::with_capacity(decoded.len() + 1);
    for segment in &segments {
        reading.push('/');
        reading.push_str(segment);
    }
    if reading.is_empty() {
        reading.push('/');
    }
    reading
}

/// True for `<MOUNT>metrics` and `<MOUNT>readyz` in any spelling (with or without a
/// trailing `/`).
fn never_proxied(config: &EdgeConfig, raw: &str, lenient: &str) -> bool {
    [raw, lenient].iter().any(|path| {
        config.mount.strip(path).is_some_and(|relative| {
            let relative = relative.trim_end_matches('/');
            NEVER_PROXIED.contains(&relative)
        })
    })
}

/// The decision for a plain `GET` to `path` (raw) with `query` (raw, without `?`; `None`
/// or empty when absent) and the `Cookie` header, at unix time `now`.
pub fn decide(
    config: &EdgeConfig,
    path: &str,
    query: Option<&str>,
    cookie_header: Option<&str>,
    now: u64,
) -> Decision {
    decide_request(config, &RequestFacts::get(path, query, cookie_header), now)
}

/// The decision for `request` at unix time `now` (see the module documentation).
pub fn decide_request(config: &EdgeConfig, request: &RequestFacts<'_>, now: u64) -> Decision {
    let lenient = lenient_reading(request.path);
    if never_proxied(config, request.path, &lenient) {
        return Decision::NotFound;
    }
    // Without a valid signature, the answer the decision table gives an anonymous request;
    // with one, the origin decides.
    let anonymous = |answer: rules::Decision| {
        let state = cookie_state(config, request.cookie, now);
        let clear_cookie = state.is_invalid();
        match (state, answer) {
            (CookieState::Valid(_), _) | (_, rules::Decision::Allow) => Decision::Proxy,
            (_, rules::Decision::Redirect) => Decision::Redirect {
                location: config
                    .mount
                    .login_location(&path_and_query(request.path, request.query)),
                clear_cookie,
            },
            (_, rules::Decision::Unauthorized | rules::Decision::Forbidden) => {
                Decision::Unauthorized { clear_cookie }
            }
        }
    };
    match protection_of(config, request.path, &lenient) {
        Protection::Page => return anonymous(rules::Decision::Redirect),
        Protection::Api => return anonymous(rules::Decision::Unauthorized),
        Protection::None => {}
    }
    let Some(access_rules) = &config.rules else {
        return Decision::Proxy;
    };
    // sessiongate's own routes keep their api-v1 behaviour whatever the rules say. The
    // lenient reading decides what is "own": for a path the rules can judge it agrees with
    // theirs (own prefixes hold only unreserved characters); a path they cannot judge
    // (`/login%2Fx`) is left to the origin when that reading lands on sessiongate's routes.
    if config.mount.is_own_route(&lenient) {
        return Decision::Proxy;
    }
    let path = match normalise_path(request.path) {
        Ok(path) => path,
        Err(refusal) => return Decision::BadRequest(refusal),
    };
    let policy = access_rules.policy(request.method, &path);
    if policy == Policy::Public {
        // No cookie check: public paths are proxied whatever the cookie says.
        return Decision::Proxy;
    }
    let navigation = is_navigation(request.method, &path, &request.navigation);
    anonymous(rules::decide(policy, None, navigation))
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

    fn gateway(extra: &[(&str, &str)]) -> EdgeConfig {
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        EdgeConfig::from_vars(move |name| match name {
            "ORIGIN_URL" => Some("http://127.0.0.1:8080".into()),
            "SESSION_KEYS" => Some(format!("new:{KEY_A},old:{KEY_B}")),
            _ => extra
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
        })
        .unwrap()
    }

    fn facts<'a>(
        method: &'a str,
        path: &'a str,
        accept: Option<&'a str>,
        cookie: Option<&'a str>,
    ) -> RequestFacts<'a> {
        RequestFacts {
            method,
            path,
            query: None,
            cookie,
            navigation: NavigationHeaders {
                accept,
                ..NavigationHeaders::default()
            },
        }
    }

    const RULES: &str = "/ = public; /app = authenticated; /admin = role:ADMIN; GET,HEAD /app/status = public; /closed = deny";

    #[test]
    fn internal_endpoints_are_never_proxied() {
        for c in [config(true), gateway(&[("ACCESS_RULES", RULES)])] {
            let valid = cookie(&valid());
            for path in [
                "/metrics",
                "/metrics/",
                "/readyz",
                "//readyz",
                "/%6detrics",
                "/%2fmetrics",
                "/x/../metrics",
                "/x/%2e%2e/readyz",
                "/\\metrics",
            ] {
                assert_eq!(
                    decide(&c, path, None, None, NOW),
                    Decision::NotFound,
                    "{path}"
                );
                assert_eq!(
                    decide(&c, path, Some("x=1"), Some(&valid), NOW),
                    Decision::NotFound,
                    "{path}"
                );
            }
            for path in ["/metricsx", "/readyz2", "/healthz", "/app/metrics"] {
                assert_ne!(
                    decide(&c, path, None, None, NOW),
                    Decision::NotFound,
                    "{path}"
                );
            }
        }
        // Under a mount, the mount's own endpoints; the app's /metrics is the app's.
        let mounted = gateway(&[("MOUNT_PATH", "/auth")]);
        assert_eq!(
            decide(&mounted, "/auth/metrics", None, None, NOW),
            Decision::NotFound
        );
        assert_eq!(
            decide(&mounted, "/auth/readyz/", None, None, NOW),
            Decision::NotFound
        );
        assert_eq!(
            decide(&mounted, "/metrics", None, None, NOW),
            Decision::Proxy
        );
    }

    #[test]
    fn the_mount_path_moves_own_routes() {
        let c = gateway(&[("MOUNT_PATH", "/auth")]);
        assert_eq!(
            decide(&c, "/auth/account", Some("tab=1"), None, NOW),
            redirect("/auth/login?next=/auth/account%3Ftab%3D1", false)
        );
        assert_eq!(
            decide(&c, "/auth/users/7", None, None, NOW),
            redirect("/auth/login?next=/auth/users/7", false)
        );
        assert_eq!(
            decide(&c, "/auth/api/v1/auth/me", None, None, NOW),
            Decision::Unauthorized {
                clear_cookie: false
            }
        );
        assert_eq!(
            decide(&c, "/auth/%61ccount", None, Some(&cookie("junk")), NOW),
            redirect("/auth/login?next=/auth/%2561ccount", true)
        );
        // Outside the mount the lists mean nothing, and without rules all is proxied.
        for path in [
            "/account",
            "/api/v1/auth/me",
            "/authx/account",
            "/auth/login",
        ] {
            assert_eq!(decide(&c, path, None, None, NOW), Decision::Proxy, "{path}");
        }
        assert_eq!(
            decide(&c, "/auth/account", None, Some(&cookie(&valid())), NOW),
            Decision::Proxy
        );
    }

    #[test]
    fn access_rules_anonymous_rows() {
        let c = gateway(&[("ACCESS_RULES", RULES)]);
        let html = Some("text/html");
        let json = Some("application/json");
        let unauthorized = Decision::Unauthorized {
            clear_cookie: false,
        };
        for (method, path, accept, expected) in [
            ("GET", "/", html, Decision::Proxy),
            ("POST", "/docs", json, Decision::Proxy),
            ("GET", "/app/status", json, Decision::Proxy),
            ("HEAD", "/app/status", None, Decision::Proxy),
            ("GET", "/app", html, redirect("/login?next=/app", false)),
            ("GET", "/app/x", None, redirect("/login?next=/app/x", false)),
            ("GET", "/app/x", json, unauthorized.clone()),
            ("POST", "/app/status", html, unauthorized.clone()),
            ("GET", "/admin", html, redirect("/login?next=/admin", false)),
            ("DELETE", "/admin/1", html, unauthorized.clone()),
            (
                "GET",
                "/closed",
                html,
                redirect("/login?next=/closed", false),
            ),
            (
                "GET",
                "/public/../admin",
                html,
                redirect("/login?next=/public/../admin", false),
            ),
            ("GET", "/%61dmin", json, unauthorized.clone()),
            ("GET", "/api/app", html, Decision::Proxy),
        ] {
            assert_eq!(
                decide_request(&c, &facts(method, path, accept, None), NOW),
                expected,
                "{method} {path}"
            );
        }
        // Not a navigation under /api/, with XHR, or with Upgrade.
        let rules_under_api = gateway(&[("ACCESS_RULES", "/api = authenticated")]);
        assert_eq!(
            decide(&rules_under_api, "/api/x", None, None, NOW),
            unauthorized
        );
        let mut xhr = facts("GET", "/app", html, None);
        xhr.navigation.x_requested_with = Some("XMLHttpRequest");
        assert_eq!(decide_request(&c, &xhr, NOW), unauthorized);
        let mut upgrade = facts("GET", "/app", None, None);
        upgrade.navigation.upgrade = true;
        assert_eq!(decide_request(&c, &upgrade, NOW), unauthorized);
        let mut navigate = facts("GET", "/app", json, None);
        navigate.navigation.sec_fetch_mode = Some("navigate");
        assert_eq!(
            decide_request(&c, &navigate, NOW),
            redirect("/login?next=/app", false)
        );
    }

    #[test]
    fn access_rules_and_cookies() {
        let c = gateway(&[("ACCESS_RULES", RULES)]);
        let good = cookie(&valid());
        let bad = cookie("junk");
        // A valid signature goes to the origin, which decides roles, deny and revocation.
        for path in ["/app", "/admin", "/closed"] {
            assert_eq!(
                decide(&c, path, None, Some(&good), NOW),
                Decision::Proxy,
                "{path}"
            );
        }
        // An invalid cookie is bounced and cleared.
        assert_eq!(
            decide(&c, "/app", Some("a=1"), Some(&bad), NOW),
            redirect("/login?next=/app%3Fa%3D1", true)
        );
        assert_eq!(
            decide_request(
                &c,
                &facts("GET", "/app", Some("application/json"), Some(&bad)),
                NOW
            ),
            Decision::Unauthorized { clear_cookie: true }
        );
        // Public paths are proxied with whatever cookie came along.
        assert_eq!(decide(&c, "/docs", None, Some(&bad), NOW), Decision::Proxy);
    }

    #[test]
    fn access_rules_refuse_encoded_separators() {
        let c = gateway(&[("ACCESS_RULES", RULES)]);
        let good = cookie(&valid());
        for (path, refusal) in [
            ("/docs/a%2Fb", PathRefusal::EncodedSeparator),
            ("/public%2F..%2Fadmin", PathRefusal::EncodedSeparator),
            ("/docs%5cx", PathRefusal::EncodedSeparator),
            ("/docs%00", PathRefusal::ControlCharacter),
            ("/docs\\x", PathRefusal::Backslash),
            ("/public/..;/admin", PathRefusal::DotSegmentWithParameters),
        ] {
            assert_eq!(
                decide(&c, path, None, None, NOW),
                Decision::BadRequest(refusal),
                "{path}"
            );
            assert_eq!(
                decide(&c, path, None, Some(&good), NOW),
                Decision::BadRequest(refusal),
                "{path}"
            );
        }
        // Without ACCESS_RULES the edge does not judge the app's paths.
        assert_eq!(
            decide(&config(true), "/docs/a%2Fb", None, None, NOW),
            Decision::Proxy
        );
    }

    #[test]
    fn own_routes_keep_their_behaviour_under_rules() {
        // Rules that would shut everything do not touch sessiongate's own routes.
        let c = gateway(&[("ACCESS_RULES", "/ = deny")]);
        for path in [
            "/login",
            "/register",
            "/api/v1/auth/login",
            "/assets/app.css",
            "/.well-known/jwks.json",
            "/healthz",
            "/login%2Fx",
        ] {
            assert_eq!(decide(&c, path, None, None, NOW), Decision::Proxy, "{path}");
        }
        assert_eq!(
            decide(&c, "/account", None, None, NOW),
            redirect("/login?next=/account", false)
        );
        assert_eq!(
            decide(&c, "/", None, None, NOW),
            redirect("/login?next=/", false)
        );
        // A spelling that only looks like an own route is judged by the rules.
        assert_eq!(
            decide(&c, "/login/../app", None, None, NOW),
            redirect("/login?next=/login/../app", false)
        );
        assert_eq!(
            decide(&c, "/login%2F..%2Fapp", None, None, NOW),
            Decision::BadRequest(PathRefusal::EncodedSeparator)
        );
        // Under a mount, everything below it is sessiongate's; the rest follows the rules.
        let mounted = gateway(&[("ACCESS_RULES", "/ = deny"), ("MOUNT_PATH", "/auth")]);
        assert_eq!(
            decide(&mounted, "/auth/login", None, None, NOW),
            Decision::Proxy
        );
        assert_eq!(
            decide(&mounted, "/auth/anything", None, None, NOW),
            Decision::Proxy
        );
        assert_eq!(
            decide(&mounted, "/login", None, None, NOW),
            redirect("/auth/login?next=/login", false)
        );
        assert_eq!(
            decide_request(&mounted, &facts("POST", "/app", None, None), NOW),
            Decision::Unauthorized {
                clear_cookie: false
            }
        );
    }

    #[test]
    fn path_and_query_joins() {
        assert_eq!(path_and_query("/a", None), "/a");
        assert_eq!(path_and_query("/a", Some("")), "/a");
        assert_eq!(path_and_query("/a", Some("b=1")), "/a?b=1");
    }
}
