//! All configuration, read once from environment variables (or any key → value map, so
//! tests build it without touching the process environment).
//!
//! Every problem is reported as one line naming the variable.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use shared::KeyRing;
use shared::assertion::AssertionKeys;
use shared::paths::MountPath;
use shared::rules::AccessRules;

/// A fixed-window limit: at most `max` requests per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

/// The limits of the contract's rate-limit table.
#[derive(Clone, Debug)]
pub struct RateLimits {
    pub login: Limit,
    pub login_account: Limit,
    pub register: Limit,
    pub account_update_ip: Limit,
    pub account_update_user: Limit,
    pub password: Limit,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Where the signing keys came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `SESSION_KEYS`.
    Environment,
    /// Generated and kept in this file (embedded mode, local use only).
    LocalFile(PathBuf),
}

/// The origin's public scheme, host and port (`PUBLIC_URL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// Lower-cased host.
    pub host: String,
    /// The port, `None` when it is the scheme's default.
    pub port: Option<u16>,
}

impl PublicUrl {
    /// Parses `https://app.example[:port][/]` (no path, query or credentials).
    pub fn parse(text: &str) -> Option<PublicUrl> {
        let (scheme, rest) = text.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = split_authority(authority)?;
        let port = port.filter(|p| Some(*p) != default_port(&scheme));
        Some(PublicUrl { scheme, host, port })
    }

    /// `scheme://host[:port]`.
    pub fn origin(&self) -> String {
        match self.port {
            Some(port) => format!("{}://{}:{port}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

/// The default port of `http` and `https`.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `host[:port]` → lower-cased host and port; IPv6 literals in brackets. `None` when the
/// port is not a number.
pub fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.trim();
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (format!("[{host}]"), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// Proxy mode's upstream: `UPSTREAM_URL`, `UPSTREAM_TIMEOUT`, `UPSTREAM_MAX_BODY`,
/// `UPSTREAM_CA_FILE`.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    pub url: String,
    pub timeout: Duration,
    pub max_body: Option<u64>,
    /// Extra trusted roots (PEM) for an https upstream with a private CA.
    pub ca_file: Option<PathBuf>,
}

#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub redis_url: Option<String>,
    pub keys: KeyRing,
    pub key_source: KeySource,
    pub session_ttl: Duration,
    pub session_max_age: Duration,
    pub session_cache_ttl: Duration,
    pub max_sessions_per_user: u32,
    pub cookie_secure: bool,
    pub trusted_proxies: Vec<IpNet>,
    pub cron_secret: Option<String>,
    pub bind_addr: SocketAddr,
    pub log_format: LogFormat,
    pub cleanup_interval: Duration,
    pub rate_limits: RateLimits,
    pub header_read_timeout: Duration,
    /// How long a request body may take to arrive (slow-body cut-off).
    pub body_read_timeout: Duration,
    pub shutdown_grace: Duration,
    /// `PUBLIC_URL`: what the CSRF rule compares a request's `Origin` against.
    pub public_url: Option<PublicUrl>,
    /// `HSTS_MAX_AGE` (`None`: off).
    pub hsts_max_age: Option<Duration>,
    /// `EDGE_SECRET`: when set, a trusted peer's forwarded headers count only with it.
    pub edge_secret: Option<String>,
    /// `RATE_LIMIT_IPV6_PREFIX`: IPv6 clients are keyed by this network.
    pub ipv6_prefix: u8,
    /// `PASSWORD_QUEUE_MAX`: hashing jobs that may wait.
    pub password_queue_max: usize,
    /// `METRICS_ADDR`: a listener of its own for `/metrics`.
    pub metrics_addr: Option<SocketAddr>,
    /// `METRICS_TOKEN`: the bearer token for `/metrics` on the public listener.
    pub metrics_token: Option<String>,
    /// `SESSION_TOUCH_INTERVAL`: `lastUsedAt` is written at most this often per session.
    pub session_touch_interval: Duration,
    /// `MEMORY_CACHE_CAPACITY`: entries the in-process cache holds at most.
    pub memory_cache_capacity: u64,
    /// `MOUNT_PATH`: where sessiongate's own routes live (default `/`).
    pub mount: MountPath,
    /// `ACCESS_RULES` for the app's routes; `None`: every app route needs a session.
    pub access_rules: Option<AccessRules>,
    /// `ASSERTION_KEYS`: the Ed25519 keys of the identity assertion (first signs).
    pub assertion_keys: AssertionKeys,
    pub assertion_key_source: KeySource,
    /// `ASSERTION_AUDIENCE`: the assertion's `aud` (default: the request's host).
    pub assertion_audience: Option<String>,
    /// `UPSTREAM_URL` (proxy mode) with `UPSTREAM_TIMEOUT`, `UPSTREAM_MAX_BODY` and
    /// `UPSTREAM_CA_FILE`.
    pub upstream: Option<UpstreamConfig>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets or connection strings (they may carry passwords).
        f.debug_struct("Config")
            .field("bind_addr", &self.bind_addr)
            .field("production", &self.is_production())
            .finish_non_exhaustive()
    }
}

/// One configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

/// Parses `7d`, `12h`, `30m`, `45s` or plain seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(factor).map(Duration::from_secs)
}

/// Parses a byte size: plain bytes, or with `k`, `m`, `g` (powers of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let (number, factor) = match text.char_indices().last()? {
        (i, 'k') => (&text[..i], 1u64 << 10),
        (i, 'm') => (&text[..i], 1 << 20),
        (i, 'g') => (&text[..i], 1 << 30),
        _ => (text.as_str(), 1),
    };
    number
        .parse::<u64>()
        .ok()?
        .checked_mul(factor)
        .filter(|n| *n > 0)
}

/// `UPSTREAM_URL`: an absolute `http://` or `https://` URL with a host, no query.
fn parse_upstream_url(url: &str) -> Result<String, ConfigError> {
    let bad = || {
        err(
            "UPSTREAM_URL",
            "expected an http:// or https:// URL such as http://127.0.0.1:3000",
        )
    };
    let uri: hyper::Uri = url.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http") | Some("https"));
    if !scheme_ok || uri.authority().is_none() || uri.query().is_some() {
        return Err(bad());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Parses `N/duration`, e.g. `5/60s` or `10/15m`.
pub fn parse_limit(text: &str) -> Option<Limit> {
    let (max, window) = text.trim().split_once('/')?;
    let max: u32 = max.trim().parse().ok()?;
    let window = parse_duration(window)?;
    (max > 0 && !window.is_zero()).then_some(Limit { max, window })
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Parses a comma-separated CIDR list; a bare address is a single-host range.
pub fn parse_cidrs(text: &str) -> Option<Vec<IpNet>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect()
}

struct Vars<'a>(&'a HashMap<String, String>);

impl Vars<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => parse_duration(v).filter(|d| !d.is_zero()).ok_or_else(|| {
                err(
                    var,
                    "expected a duration such as 7d, 12h, 30m, 45s or seconds",
                )
            }),
        }
    }

    fn positive(&self, var: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| err(var, "expected a positive integer")),
        }
    }

    fn limit(&self, var: &'static str, default: Limit) -> Result<Limit, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => {
                parse_limit(v).ok_or_else(|| err(var, "expected COUNT/DURATION such as 5/60s"))
            }
        }
    }
}

const fn limit(max: u32, secs: u64) -> Limit {
    Limit {
        max,
        window: Duration::from_secs(secs),
    }
}

impl RateLimits {
    pub const DEFAULT: RateLimits = RateLimits {
        login: limit(5, 60),
        login_account: limit(10, 15 * 60),
        register: limit(5, 60),
        account_update_ip: limit(20, 60),
        account_update_user: limit(10, 60),
        password: limit(5, 15 * 60),
    };
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_map(&std::env::vars().collect())
    }

    /// Builds the configuration from variables. In embedded mode without `SESSION_KEYS` this
    /// creates (or reads) the local signing key file under `DATA_DIR`.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let vars = Vars(map);
        let data_dir = PathBuf::from(vars.get("DATA_DIR").unwrap_or("./data"));
        let database_url = match vars.get("DATABASE_URL") {
            Some(url) => {
                if !(url.starts_with("postgres://")
                    || url.starts_with("postgresql://")
                    || url.starts_with("sqlite:"))
                {
                    return Err(err("DATABASE_URL", "expected a postgres:// or sqlite: URL"));
                }
                url.to_owned()
            }
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("sessiongate.db").display()
            ),
        };
        let production = is_postgres(&database_url);
        let redis_url = match vars.get("REDIS_URL") {
            Some(url)
                if url.starts_with("redis://")
                    || url.starts_with("redis-cluster://")
                    || url.starts_with("redis-sentinel://") =>
            {
                crate::cache::RedisCache::check_url(url).map_err(|e| err("REDIS_URL", e.0))?;
                Some(url.to_owned())
            }
            Some(_) => {
                return Err(err(
                    "REDIS_URL",
                    "expected a redis://, redis-cluster:// or redis-sentinel:// URL",
                ));
            }
            None => None,
        };
        let (keys, key_source) = match vars.get("SESSION_KEYS") {
            Some(spec) => (
                KeyRing::parse(spec).map_err(|e| err("SESSION_KEYS", e.to_string()))?,
                KeySource::Environment,
            ),
            None if production => {
                return Err(err(
                    "SESSION_KEYS",
                    "required when DATABASE_URL points to Postgres (production mode)",
                ));
            }
            None => {
                let path = data_dir.join("session.key");
                (local_key(&path)?, KeySource::LocalFile(path))
            }
        };
        let session_ttl = vars.duration("SESSION_TTL", Duration::from_secs(7 * 86_400))?;
        let session_max_age = vars.duration("SESSION_MAX_AGE", Duration::from_secs(30 * 86_400))?;
        if session_max_age < session_ttl {
            return Err(err(
                "SESSION_MAX_AGE",
                "must not be shorter than SESSION_TTL",
            ));
        }
        let session_cache_ttl = vars.duration("SESSION_CACHE_TTL", Duration::from_secs(300))?;
        let max_sessions_per_user = u32::try_from(vars.positive("MAX_SESSIONS_PER_USER", 20)?)
            .map_err(|_| err("MAX_SESSIONS_PER_USER", "too large"))?;
        let cookie_secure = match vars.get("COOKIE_SECURE") {
            None => true,
            Some(v) => {
                parse_bool(v).ok_or_else(|| err("COOKIE_SECURE", "expected true or false"))?
            }
        };
        let trusted_proxies = match vars.get("TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(v) => parse_cidrs(v).ok_or_else(|| {
                err(
                    "TRUSTED_PROXIES",
                    "expected comma-separated CIDRs such as 127.0.0.1/32",
                )
            })?,
        };
        let cron_secret = vars.get("CRON_SECRET").map(str::to_owned);
        let bind_addr = match vars.get("BIND_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(v) => v
                .parse()
                .map_err(|_| err("BIND_ADDR", "expected host:port such as 127.0.0.1:8080"))?,
        };
        let log_format = match vars
            .get("LOG_FORMAT")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("pretty") | Some("text") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(err("LOG_FORMAT", "expected json or pretty")),
        };
        let cleanup_interval = vars.duration("CLEANUP_INTERVAL", Duration::from_secs(3600))?;
        let d = RateLimits::DEFAULT;
        let rate_limits = RateLimits {
            login: vars.limit("RATE_LIMIT_LOGIN", d.login)?,
            login_account: vars.limit("RATE_LIMIT_LOGIN_ACCOUNT", d.login_account)?,
            register: vars.limit("RATE_LIMIT_REGISTER", d.register)?,
            account_update_ip: vars.limit("RATE_LIMIT_ACCOUNT_UPDATE_IP", d.account_update_ip)?,
            account_update_user: vars
                .limit("RATE_LIMIT_ACCOUNT_UPDATE_USER", d.account_update_user)?,
            password: vars.limit("RATE_LIMIT_PASSWORD", d.password)?,
        };
        let header_read_timeout = vars.duration("HEADER_READ_TIMEOUT", Duration::from_secs(10))?;
        let body_read_timeout = vars.duration("BODY_READ_TIMEOUT", Duration::from_secs(10))?;
        let shutdown_grace = vars.duration("SHUTDOWN_GRACE", Duration::from_secs(30))?;
        let public_url = match vars.get("PUBLIC_URL") {
            None => None,
            Some(v) => Some(PublicUrl::parse(v).ok_or_else(|| {
                err(
                    "PUBLIC_URL",
                    "expected scheme://host[:port] such as https://app.example",
                )
            })?),
        };
        let hsts_max_age = match vars.get("HSTS_MAX_AGE") {
            None => Some(Duration::from_secs(365 * 86_400)),
            Some(v) => match parse_duration(v) {
                Some(d) if d.is_zero() => None,
                Some(d) => Some(d),
                None => {
                    return Err(err(
                        "HSTS_MAX_AGE",
                        "expected a duration such as 365d, or 0 to switch it off",
                    ));
                }
            },
        };
        let edge_secret = vars.get("EDGE_SECRET").map(str::to_owned);
        if edge_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(err("EDGE_SECRET", "must be at least 16 characters"));
        }
        let ipv6_prefix = match vars.get("RATE_LIMIT_IPV6_PREFIX") {
            None => 64,
            Some(v) => v
                .parse::<u8>()
                .ok()
                .filter(|p| (1..=128).contains(p))
                .ok_or_else(|| err("RATE_LIMIT_IPV6_PREFIX", "expected 1 to 128"))?,
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let password_queue_max = vars.positive("PASSWORD_QUEUE_MAX", 64 * cores as u64)? as usize;
        let metrics_addr =
            match vars.get("METRICS_ADDR") {
                None => None,
                Some(v) => Some(v.parse().map_err(|_| {
                    err("METRICS_ADDR", "expected host:port such as 127.0.0.1:9100")
                })?),
            };
        let metrics_token = vars.get("METRICS_TOKEN").map(str::to_owned);
        let session_touch_interval =
            vars.duration("SESSION_TOUCH_INTERVAL", Duration::from_secs(60))?;
        let memory_cache_capacity = vars.positive("MEMORY_CACHE_CAPACITY", 100_000)?;
        let mount = match vars.get("MOUNT_PATH") {
            None => MountPath::root(),
            Some(v) => MountPath::parse(v).map_err(|e| err("MOUNT_PATH", e.to_string()))?,
        };
        let access_rules = match vars.get("ACCESS_RULES") {
            None => None,
            Some(v) => Some(AccessRules::parse(v).map_err(|e| err("ACCESS_RULES", e.to_string()))?),
        };
        let (assertion_keys, assertion_key_source) = match vars.get("ASSERTION_KEYS") {
            Some(spec) => (
                AssertionKeys::parse(spec).map_err(|e| err("ASSERTION_KEYS", e.to_string()))?,
                KeySource::Environment,
            ),
            None => {
                let path = data_dir.join("assertion.key");
                let seed = local_secret(&path, "ASSERTION_KEYS")?;
                let keys = AssertionKeys::parse(&format!("local:{seed}")).map_err(|e| {
                    err(
                        "ASSERTION_KEYS",
                        format!("local key file {}: {e}", path.display()),
                    )
                })?;
                (keys, KeySource::LocalFile(path))
            }
        };
        let assertion_audience = vars.get("ASSERTION_AUDIENCE").map(str::to_owned);
        let upstream_timeout = vars.duration("UPSTREAM_TIMEOUT", Duration::from_secs(30))?;
        let upstream_max_body = match vars.get("UPSTREAM_MAX_BODY") {
            None => None,
            Some(v) => Some(parse_size(v).ok_or_else(|| {
                err(
                    "UPSTREAM_MAX_BODY",
                    "expected a size such as 10485760, 10m or 1g",
                )
            })?),
        };
        let upstream = match vars.get("UPSTREAM_URL") {
            None => None,
            Some(url) => Some(UpstreamConfig {
                url: parse_upstream_url(url)?,
                timeout: upstream_timeout,
                max_body: upstream_max_body,
                ca_file: vars.get("UPSTREAM_CA_FILE").map(PathBuf::from),
            }),
        };
        Ok(Config {
            database_url,
            redis_url,
            keys,
            key_source,
            session_ttl,
            session_max_age,
            session_cache_ttl,
            max_sessions_per_user,
            cookie_secure,
            trusted_proxies,
            cron_secret,
            bind_addr,
            log_format,
            cleanup_interval,
            rate_limits,
            header_read_timeout,
            body_read_timeout,
            shutdown_grace,
            public_url,
            hsts_max_age,
            edge_secret,
            ipv6_prefix,
            password_queue_max,
            metrics_addr,
            metrics_token,
            session_touch_interval,
            memory_cache_capacity,
            mount,
            access_rules,
            assertion_keys,
            assertion_key_source,
            assertion_audience,
            upstream,
        })
    }

    /// Postgres database: production mode.
    pub fn is_production(&self) -> bool {
        is_postgres(&self.database_url)
    }

    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Sessions and user pages are cached only where every instance sees the same cache:
    /// Redis, or the single process of the embedded SQLite default. Several instances on
    /// one Postgres without Redis would each keep their own copy, and one instance would
    /// serve a session another had revoked; there every verify asks the database.
    pub fn caches_sessions(&self) -> bool {
        self.redis_url.is_some() || !self.is_production()
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Reads the embedded-mode key from `path`, creating it (32 random bytes, mode 0600) when
/// missing.
fn local_key(path: &Path) -> Result<KeyRing, ConfigError> {
    let encoded = local_secret(path, "SESSION_KEYS")?;
    KeyRing::parse(&format!("local:{encoded}")).map_err(|e| {
        err(
            "SESSION_KEYS",
            format!("local key file {}: {e}", path.display()),
        )
    })
}

/// 32 random bytes (base64url) kept in `path` (mode 0600), created when missing; errors
/// name `var`, the variable that would make the file unnecessary.
fn local_secret(path: &Path, var: &'static str) -> Result<String, ConfigError> {
    use base64::Engine;
    let fail = |e: std::io::Error| {
        err(
            var,
            format!("cannot use local key file {}: {e}", path.display()),
        )
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(fail)?;
            }
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| err(var, format!("no random source: {e}")))?;
            let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            match write_private(path, &encoded) {
                Ok(()) => Ok(encoded),
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    std::fs::read_to_string(path)
                        .map(|t| t.trim().to_owned())
                        .map_err(fail)
                }
                Err(e) => Err(fail(e)),
            }
        }
        Err(e) => Err(fail(e)),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("12h"), Some(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("45s"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        for bad in ["", "d", "7x", "-1", "1.5h", "h7"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_limit("5/60s"), Some(limit(5, 60)));
        assert_eq!(parse_limit("10/15m"), Some(limit(10, 900)));
        assert_eq!(parse_limit("0/1s"), None);
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn errors_name_the_variable() {
        let keys = (
            "SESSION_KEYS",
            "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        );
        for (var, value) in [
            ("SESSION_TTL", "soon"),
            ("BODY_READ_TIMEOUT", "slow"),
            ("COOKIE_SECURE", "maybe"),
            ("TRUSTED_PROXIES", "not-a-cidr"),
            ("BIND_ADDR", "nowhere"),
            ("RATE_LIMIT_LOGIN", "5 per minute"),
            ("LOG_FORMAT", "xml"),
            ("MAX_SESSIONS_PER_USER", "0"),
            ("PUBLIC_URL", "app.example"),
            ("PUBLIC_URL", "https://app.example/path"),
            ("HSTS_MAX_AGE", "forever"),
            ("EDGE_SECRET", "short"),
            ("RATE_LIMIT_IPV6_PREFIX", "129"),
            ("PASSWORD_QUEUE_MAX", "0"),
            ("METRICS_ADDR", "nowhere"),
            ("MOUNT_PATH", "auth"),
            ("MOUNT_PATH", "/a/../b"),
            ("ACCESS_RULES", "/app = nobody"),
            ("ASSERTION_KEYS", "k1:dG9vLXNob3J0"),
            ("UPSTREAM_URL", "ftp://app"),
            ("UPSTREAM_URL", "localhost:3000"),
            ("UPSTREAM_MAX_BODY", "lots"),
        ] {
            let e = Config::from_map(&map(&[keys, (var, value)])).expect_err(var);
            assert_eq!(e.var, var);
            assert!(e.to_string().contains(var));
        }
        let e = Config::from_map(&map(&[("DATABASE_URL", "postgres://x/y")]))
            .expect_err("keys required");
        assert_eq!(e.var, "SESSION_KEYS");
    }

    #[test]
    fn redis_urls() {
        let keys = (
            "SESSION_KEYS",
            "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        );
        for good in [
            "redis://127.0.0.1:6379/2",
            "redis-cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000",
            "redis-cluster://10.0.0.1:7000?node=10.0.0.2:7000",
            "redis-sentinel://10.0.0.1:26379,10.0.0.2:26379/0?sentinelServiceName=mymaster",
        ] {
            let c = Config::from_map(&map(&[keys, ("REDIS_URL", good)])).expect(good);
            assert_eq!(c.redis_url.as_deref(), Some(good));
        }
        for bad in [
            "http://x",
            // No TLS in this build: fred would connect in plain text.
            "rediss://10.0.0.1:6379",
            "redis-sentinel://10.0.0.1:26379/0",
            "redis-cluster://10.0.0.1:7000,,10.0.0.2:7000",
        ] {
            let e = Config::from_map(&map(&[keys, ("REDIS_URL", bad)])).expect_err(bad);
            assert_eq!(e.var, "REDIS_URL", "{bad}");
        }
    }

    #[test]
    fn public_urls() {
        let u = PublicUrl::parse("HTTPS://App.Example:443/").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.host.as_str(), u.port),
            ("https", "app.example", None)
        );
        assert_eq!(u.origin(), "https://app.example");
        let u = PublicUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(u.origin(), "http://127.0.0.1:8080");
        let u = PublicUrl::parse("http://[::1]:80").unwrap();
        assert_eq!(u.origin(), "http://[::1]");
        for bad in [
            "ftp://x",
            "https://",
            "https://a/b",
            "https://u@a",
            "https://a:x",
        ] {
            assert_eq!(PublicUrl::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn embedded_key_is_generated_once_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vars = map(&[("DATA_DIR", dir.path().to_str().expect("utf8"))]);
        let a = Config::from_map(&vars).expect("config");
        let b = Config::from_map(&vars).expect("config");
        assert_eq!(a.key_source, b.key_source);
        let KeySource::LocalFile(path) = &a.key_source else {
            panic!("expected a local key")
        };
        assert_eq!(
            std::fs::read_to_string(path).expect("read"),
            std::fs::read_to_string(path).expect("read")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(a.database_url.starts_with("sqlite://"));
        assert!(!a.is_production());
    }
}
