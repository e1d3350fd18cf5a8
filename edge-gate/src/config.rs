//! The edge's configuration: read once per request from wrangler vars and secrets, checked
//! strictly. A missing or bad value is an error naming the variable (never echoing a key),
//! which the worker turns into a 500: a misconfigured gate stays shut.

use std::fmt;

use shared::KeyRing;
use shared::paths::{MountPath, PrefixList};
use shared::rules::AccessRules;

pub const ORIGIN_URL: &str = "ORIGIN_URL";
pub const SESSION_KEYS: &str = "SESSION_KEYS";
pub const PROTECTED_PATHS: &str = "PROTECTED_PATHS";
pub const PROTECTED_API_PATHS: &str = "PROTECTED_API_PATHS";
pub const COOKIE_SECURE: &str = "COOKIE_SECURE";
pub const MOUNT_PATH: &str = "MOUNT_PATH";
pub const ACCESS_RULES: &str = "ACCESS_RULES";
pub const HSTS_MAX_AGE: &str = "HSTS_MAX_AGE";
pub const EDGE_SECRET: &str = "EDGE_SECRET";

/// Every variable the edge reads, vars and secrets alike.
pub const ALL_VARS: [&str; 9] = [
    ORIGIN_URL,
    SESSION_KEYS,
    PROTECTED_PATHS,
    PROTECTED_API_PATHS,
    COOKIE_SECURE,
    MOUNT_PATH,
    ACCESS_RULES,
    HSTS_MAX_AGE,
    EDGE_SECRET,
];

/// Page prefixes answered with a login redirect when no valid cookie is sent.
pub const DEFAULT_PROTECTED_PATHS: &str = "/account,/users";
/// API prefixes answered with 401 when no valid cookie is sent.
pub const DEFAULT_PROTECTED_API_PATHS: &str = "/api/v1/account,/api/v1/users,/api/v1/auth/me";
/// `Strict-Transport-Security` lifetime when `HSTS_MAX_AGE` is unset: one year.
pub const DEFAULT_HSTS_MAX_AGE: u64 = 365 * 24 * 60 * 60;

/// Everything the gate needs to decide and to proxy.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// Scheme, host, port and optional base path, without a trailing `/`.
    pub origin: String,
    pub keys: KeyRing,
    /// Page prefixes, relative to the mount path.
    pub protected_pages: PrefixList,
    /// API prefixes, relative to the mount path.
    pub protected_api: PrefixList,
    /// Picks the cookie name (`__Host-session` or `session`) and the clear-cookie form.
    pub cookie_secure: bool,
    /// Where sessiongate's own routes live (`MOUNT_PATH`, default `/`).
    pub mount: MountPath,
    /// The app's access rules (`ACCESS_RULES`), when the edge guards an app too.
    pub rules: Option<AccessRules>,
    /// `Strict-Transport-Security: max-age=…` on https responses; 0 sends none.
    pub hsts_max_age: u64,
    /// Sent to the origin as `X-Sessiongate-Edge` when set.
    pub edge_secret: Option<EdgeSecret>,
}

/// The `EDGE_SECRET` value. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct EdgeSecret(String);

impl EdgeSecret {
    /// The secret itself, for the one header that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EdgeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EdgeSecret(<redacted>)")
    }
}

/// A configuration variable that is missing or unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// What is wrong with it; never contains key material.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn error(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

impl EdgeConfig {
    /// Builds the configuration from a variable lookup (`None` = not set). Unset optional
    /// variables take their defaults; a variable that is set must be valid, and an
    /// explicitly empty prefix list is refused rather than read as "protect nothing".
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let origin = match lookup(ORIGIN_URL) {
            Some(value) => parse_origin(&value)?,
            None => {
                return Err(error(
                    ORIGIN_URL,
                    "is not set (e.g. https://origin.example.com)",
                ));
            }
        };
        let keys = match lookup(SESSION_KEYS) {
            Some(value) => {
                KeyRing::parse(&value).map_err(|e| error(SESSION_KEYS, e.to_string()))?
            }
            None => {
                return Err(error(
                    SESSION_KEYS,
                    "is not set (a secret: `.dev.vars` locally, `wrangler secret put SESSION_KEYS` in production)",
                ));
            }
        };
        let protected_pages = parse_prefixes(
            PROTECTED_PATHS,
            lookup(PROTECTED_PATHS),
            DEFAULT_PROTECTED_PATHS,
        )?;
        let protected_api = parse_prefixes(
            PROTECTED_API_PATHS,
            lookup(PROTECTED_API_PATHS),
            DEFAULT_PROTECTED_API_PATHS,
        )?;
        let cookie_secure = match lookup(COOKIE_SECURE) {
            None => true,
            Some(value) => parse_bool(&value).ok_or_else(|| {
                error(
                    COOKIE_SECURE,
                    format!("`{value}` is not a boolean (use true or false)"),
                )
            })?,
        };
        let mount = match lookup(MOUNT_PATH) {
            None => MountPath::root(),
            Some(value) => {
                MountPath::parse(&value).map_err(|e| error(MOUNT_PATH, e.to_string()))?
            }
        };
        // The rule text is configuration, not a secret: the error names the bad rule.
        let rules = lookup(ACCESS_RULES)
            .map(|value| AccessRules::parse(&value).map_err(|e| error(ACCESS_RULES, e.to_string())))
            .transpose()?;
        let hsts_max_age = hsts_max_age(lookup(HSTS_MAX_AGE).as_deref())?;
        let edge_secret = lookup(EDGE_SECRET).map(parse_edge_secret).transpose()?;
        Ok(Self {
            origin,
            keys,
            protected_pages,
            protected_api,
            cookie_secure,
            mount,
            rules,
            hsts_max_age,
            edge_secret,
        })
    }
}

/// `HSTS_MAX_AGE` in seconds: unset is one year; `0` switches the header off.
pub fn hsts_max_age(value: Option<&str>) -> Result<u64, ConfigError> {
    match value {
        None => Ok(DEFAULT_HSTS_MAX_AGE),
        Some(text) => parse_duration(text).ok_or_else(|| {
            error(
                HSTS_MAX_AGE,
                format!("`{text}` is not a duration (seconds, or e.g. 365d, 12h, 30m, 45s)"),
            )
        }),
    }
}

/// A duration as the contract writes them: `7d`, `12h`, `30m`, `45s`, or plain seconds.
fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last()? {
        (at, c) if c.is_ascii_alphabetic() => (&text[..at], c),
        _ => (text, 's'),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(scale)
}

/// The secret goes into a header verbatim, so it must be visible ASCII with no spaces.
/// Errors never repeat the value.
fn parse_edge_secret(value: String) -> Result<EdgeSecret, ConfigError> {
    if value.is_empty() {
        return Err(error(
            EDGE_SECRET,
            "is set but empty; unset it or give the origin's EDGE_SECRET",
        ));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(error(
            EDGE_SECRET,
            "must be printable ASCII without spaces (it is sent as a header value)",
        ));
    }
    Ok(EdgeSecret(value))
}

/// An absolute `http`/`https` URL with an ASCII host (punycode for IDN), optional port
/// and optional base path, and no credentials, query or fragment. The base path, if any,
/// is put in front of every proxied path. Checked by hand rather than with a URL crate,
/// which would double the worker's size. The value itself is not echoed in errors: it
/// could carry credentials.
fn parse_origin(value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(error(ORIGIN_URL, "is empty"));
    }
    let lower = value.to_ascii_lowercase();
    let (scheme, rest) = if lower.starts_with("https://") {
        ("https", &value["https://".len()..])
    } else if lower.starts_with("http://") {
        ("http", &value["http://".len()..])
    } else {
        return Err(error(
            ORIGIN_URL,
            "must be an absolute http:// or https:// URL",
        ));
    };
    if rest
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\')
    {
        return Err(error(
            ORIGIN_URL,
            "contains spaces, backslashes or control characters",
        ));
    }
    if rest.contains(['?', '#']) {
        return Err(error(ORIGIN_URL, "must not contain a query or fragment"));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err(error(ORIGIN_URL, "must not contain credentials"));
    }
    let (host, port) = split_host_port(authority)?;
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').is_some_and(|ip| {
            !ip.is_empty()
                && ip
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        })
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if host.is_empty() {
        return Err(error(ORIGIN_URL, "has no host"));
    }
    if !host_ok {
        return Err(error(ORIGIN_URL, "has an invalid host"));
    }
    if let Some(port) = port
        && !(port.bytes().all(|b| b.is_ascii_digit())
            && matches!(port.parse::<u32>(), Ok(1..=65535)))
    {
        return Err(error(ORIGIN_URL, "has an invalid port"));
    }
    let path = path.trim_end_matches('/');
    Ok(format!("{scheme}://{authority}{path}"))
}

/// Splits `host[:port]` or `[v6][:port]`.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), ConfigError> {
    if authority.starts_with('[') {
        let close = authority
            .find(']')
            .ok_or_else(|| error(ORIGIN_URL, "has an invalid host"))?;
        let (host, rest) = authority.split_at(close + 1);
        return match rest.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if rest.is_empty() => Ok((host, None)),
            None => Err(error(ORIGIN_URL, "has an invalid host")),
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn parse_prefixes(
    var: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<PrefixList, ConfigError> {
    let spec = value.as_deref().unwrap_or(default);
    let list = PrefixList::parse(spec).map_err(|e| error(var, e))?;
    if list.as_slice().is_empty() {
        return Err(error(
            var,
            "is set but lists no prefix; leave it unset for the default",
        ));
    }
    Ok(list)
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// 32 bytes of key material, base64.
    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn minimal<'a>() -> Vec<(&'a str, &'a str)> {
        vec![
            (ORIGIN_URL, "http://127.0.0.1:8080"),
            (
                SESSION_KEYS,
                "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY",
            ),
        ]
    }

    fn with(overrides: &[(&str, &str)]) -> Result<EdgeConfig, ConfigError> {
        let mut pairs: Vec<(&str, &str)> = minimal();
        pairs.retain(|(k, _)| !overrides.iter().any(|(o, _)| o == k));
        pairs.extend_from_slice(overrides);
        EdgeConfig::from_vars(vars(&pairs))
    }

    fn without(name: &str) -> Result<EdgeConfig, ConfigError> {
        let mut pairs = minimal();
        pairs.retain(|(k, _)| *k != name);
        EdgeConfig::from_vars(vars(&pairs))
    }

    #[test]
    fn defaults() {
        let config = EdgeConfig::from_vars(vars(&minimal())).unwrap();
        assert_eq!(config.origin, "http://127.0.0.1:8080");
        assert_eq!(config.protected_pages.as_slice(), ["/account", "/users"]);
        assert_eq!(
            config.protected_api.as_slice(),
            ["/api/v1/account", "/api/v1/users", "/api/v1/auth/me"]
        );
        assert!(config.cookie_secure);
        assert_eq!(config.keys.signing_key().kid(), "k1");
        assert!(config.mount.is_root());
        assert_eq!(config.rules, None);
        assert_eq!(config.hsts_max_age, 31_536_000);
        assert_eq!(config.edge_secret, None);
    }

    #[test]
    fn gateway_variables() {
        let config = with(&[
            (MOUNT_PATH, "/auth/"),
            (ACCESS_RULES, "/ = public; /app = authenticated"),
            (HSTS_MAX_AGE, "1d"),
            (EDGE_SECRET, "s3cret-value"),
        ])
        .unwrap();
        assert_eq!(config.mount.as_str(), "/auth/");
        assert_eq!(config.rules.unwrap().rules().len(), 2);
        assert_eq!(config.hsts_max_age, 86_400);
        assert_eq!(
            config.edge_secret.as_ref().unwrap().expose(),
            "s3cret-value"
        );
        assert_eq!(
            format!("{:?}", config.edge_secret.unwrap()),
            "EdgeSecret(<redacted>)"
        );
        for (text, seconds) in [
            ("0", 0),
            ("600", 600),
            ("45s", 45),
            ("30m", 1800),
            ("12h", 43_200),
            ("365d", 31_536_000),
        ] {
            assert_eq!(
                with(&[(HSTS_MAX_AGE, text)]).unwrap().hsts_max_age,
                seconds,
                "{text}"
            );
        }
    }

    #[test]
    fn bad_gateway_variables_are_named() {
        for (var, bad) in [
            (MOUNT_PATH, "auth"),
            (MOUNT_PATH, "/a/../b"),
            (MOUNT_PATH, "/a?b"),
            (MOUNT_PATH, ""),
            (ACCESS_RULES, ""),
            (ACCESS_RULES, "/ = public; /x = nobody"),
            (HSTS_MAX_AGE, "forever"),
            (HSTS_MAX_AGE, "-1"),
            (HSTS_MAX_AGE, "1w"),
            (HSTS_MAX_AGE, "d"),
            (HSTS_MAX_AGE, "99999999999999999999"),
            (EDGE_SECRET, ""),
            (EDGE_SECRET, "has space"),
            (EDGE_SECRET, "caf\u{e9}"),
        ] {
            let err = with(&[(var, bad)]).unwrap_err();
            assert_eq!(err.var, var, "{var}={bad:?}");
        }
        let err = with(&[(ACCESS_RULES, "/ = public; /x = nobody")]).unwrap_err();
        assert!(err.to_string().contains("`/x = nobody`"), "{err}");
        let err = with(&[(EDGE_SECRET, "top secret")]).unwrap_err();
        assert!(!err.to_string().contains("top secret"), "{err}");
    }

    #[test]
    fn overrides() {
        let config = with(&[
            (ORIGIN_URL, " https://origin.example.com/base/ "),
            (PROTECTED_PATHS, "/a, /b/"),
            (PROTECTED_API_PATHS, "/api/x"),
            (COOKIE_SECURE, "False"),
        ])
        .unwrap();
        assert_eq!(config.origin, "https://origin.example.com/base");
        assert_eq!(config.protected_pages.as_slice(), ["/a", "/b"]);
        assert_eq!(config.protected_api.as_slice(), ["/api/x"]);
        assert!(!config.cookie_secure);
        assert_eq!(
            with(&[(ORIGIN_URL, "http://h:1/")]).unwrap().origin,
            "http://h:1"
        );
    }

    #[test]
    fn missing_required_variables_are_named() {
        assert_eq!(without(ORIGIN_URL).unwrap_err().var, ORIGIN_URL);
        let err = without(SESSION_KEYS).unwrap_err();
        assert_eq!(err.var, SESSION_KEYS);
        assert!(
            err.to_string().starts_with("SESSION_KEYS: is not set"),
            "{err}"
        );
    }

    #[test]
    fn bad_origin_urls() {
        for bad in [
            "",
            "   ",
            "127.0.0.1:8080",
            "/relative",
            "ftp://host/",
            "http://user:pw@host/",
            "http://host/?q=1",
            "http://host/#f",
            "not a url",
            "http://",
            "http:///path",
            "http://:8080",
            "http://host:0",
            "http://host:65536",
            "http://host:8o",
            "http://ho st/",
            "http://host/a b",
            "http://host\\@evil/",
            "http://[::1/",
            "http://[::1]x/",
            "http://h_st/",
            "http://caf\u{e9}.example/",
        ] {
            let err = with(&[(ORIGIN_URL, bad)]).unwrap_err();
            assert_eq!(err.var, ORIGIN_URL, "{bad:?}");
        }
        let err = with(&[(ORIGIN_URL, "http://user:hunter2@host/")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn bad_session_keys_never_echo_the_key() {
        for bad in [
            String::new(),
            "k1".to_owned(),
            "k1:c2hvcnQ=".to_owned(),
            "k1:not base64!".to_owned(),
            format!("k1:{KEY},k1:{KEY}"),
            format!("k1:{KEY},"),
            format!("bad kid:{KEY}"),
        ] {
            let err = with(&[(SESSION_KEYS, &bad)]).unwrap_err();
            assert_eq!(err.var, SESSION_KEYS, "{bad:?}");
            assert!(!err.to_string().contains(KEY), "{err}");
            assert!(!err.to_string().contains("c2hvcnQ"), "{err}");
        }
    }

    #[test]
    fn bad_prefix_lists() {
        for var in [PROTECTED_PATHS, PROTECTED_API_PATHS] {
            for bad in ["account", "/ok,nope", "", " , "] {
                let err = with(&[(var, bad)]).unwrap_err();
                assert_eq!(err.var, var, "{var}={bad:?}");
            }
        }
    }

    #[test]
    fn cookie_secure_values() {
        for (text, expected) in [("true", true), ("1", true), ("FALSE", false), ("0", false)] {
            assert_eq!(
                with(&[(COOKIE_SECURE, text)]).unwrap().cookie_secure,
                expected
            );
        }
        let err = with(&[(COOKIE_SECURE, "maybe")]).unwrap_err();
        assert_eq!(err.var, COOKIE_SECURE);
    }
}
