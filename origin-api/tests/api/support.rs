//! The test harness: a [`TestApp`] is a real origin-api server on 127.0.0.1:0 with a
//! database of its own (a temp SQLite file, or a fresh Postgres database when
//! `DATABASE_URL` is set) and a cache of its own (in-process, or a Redis logical database
//! 1..15 leased with a lock key when `REDIS_URL` is set), a manual clock and a cache fault
//! switch. Everything it created is removed when it is dropped, also when a test panics.
//!
//! [`Client`] is a typed HTTP client for one user's session (or none): `alice.get(path)`,
//! `alice.post(path, json)`, `alice.req(Method::DELETE, path).header(..).send()`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use origin_api::{Config, FaultSwitch, ManualClock, Options, ServerHandle};
pub use reqwest::Method;
use sea_orm::ConnectionTrait;
use serde_json::Value;

pub use origin_api::Clock;

pub const KEYS: &str = "k1:c2Vzc2lvbmdhdGUtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyEh";
pub const CRON: &str = "cron-secret-for-tests";
pub const METRICS_TOKEN: &str = "metrics-token-for-tests";
pub const PASSWORD: &str = "correct horse battery";

pub fn postgres_url() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
}

pub fn redis_url() -> Option<String> {
    std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty())
}

pub fn random_name() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `url` with its path replaced by `/path` (and no query).
pub fn with_path(url: &str, path: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let slash = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{}", &base[..slash], path)
}

/// What a test app holds outside its process: removed on drop.
#[derive(Default)]
struct Resources {
    /// (server URL, database name) of a Postgres database created for the test.
    postgres: Option<(String, String)>,
    /// (Redis URL of db 0, lease key, lease token).
    redis_lease: Option<(String, String, String)>,
}

impl Resources {
    async fn release(&mut self) {
        if let Some((url, name)) = self.postgres.take()
            && let Ok(admin) = sea_orm::Database::connect(url.as_str()).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
            let _ = admin.close().await;
        }
        if let Some((url, key, token)) = self.redis_lease.take()
            && let Ok(config) = fred::prelude::Config::from_url(&url)
        {
            let client = fred::prelude::Client::new(config, None, None, None);
            if client.init().await.is_ok() {
                // Only our own lease: compare-and-delete.
                let held: Option<String> = client.get(&key).await.unwrap_or(None);
                if held.as_deref() == Some(token.as_str()) {
                    let _: Result<i64, _> = client.del(&key).await;
                }
                let _ = client.quit().await;
            }
        }
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        if self.postgres.is_none() && self.redis_lease.is_none() {
            return;
        }
        let mut owned = std::mem::take(self);
        // Drop cannot await: release on a thread of its own with its own runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(owned.release());
            }
        })
        .join();
    }
}

async fn lease_redis(url: &str) -> (String, String, String) {
    let db0 = with_path(url, "0");
    let admin = fred::prelude::Client::new(
        fred::prelude::Config::from_url(&db0).expect("redis url"),
        None,
        None,
        None,
    );
    admin.init().await.expect("redis");
    let token = random_name();
    for _attempt in 0..600 {
        for db in 1..=15u8 {
            let key = format!("sessiongate-test-lease:{db}");
            let got: Option<String> = admin
                .set(
                    &key,
                    token.as_str(),
                    Some(Expiration::EX(600)),
                    Some(SetOptions::NX),
                    false,
                )
                .await
                .expect("redis set");
            if got.is_some() {
                let db_url = with_path(url, &db.to_string());
                let c = fred::prelude::Client::new(
                    fred::prelude::Config::from_url(&db_url).expect("url"),
                    None,
                    None,
                    None,
                );
                c.init().await.expect("redis");
                let _: fred::types::Value = c
                    .custom(
                        fred::types::CustomCommand::new_static(
                            "FLUSHDB",
                            fred::types::ClusterHash::FirstKey,
                            false,
                        ),
                        Vec::<String>::new(),
                    )
                    .await
                    .expect("flushdb");
                let _ = c.quit().await;
                let _ = admin.quit().await;
                return (db_url, key, token);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no free Redis database for the test");
}

/// The variables every test app starts with: its own database and cache, fixed keys and
/// secrets, rate limits out of the way (tests of the limits set their own). No Redis
/// database is leased when the test brings its own `REDIS_URL`.
async fn base_vars(
    dir: &std::path::Path,
    resources: &mut Resources,
    own_redis: bool,
) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = HashMap::new();
    let database_url = match postgres_url() {
        Some(url) => {
            let name = format!("sg_test_{}", random_name());
            let admin = sea_orm::Database::connect(url.as_str())
                .await
                .expect("postgres");
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create database");
            let _ = admin.close().await;
            resources.postgres = Some((url.clone(), name.clone()));
            with_path(&url, &name)
        }
        None => format!("sqlite://{}/test.db?mode=rwc", dir.display()),
    };
    if let Some(url) = redis_url().filter(|_| !own_redis) {
        let (db_url, key, token) = lease_redis(&url).await;
        vars.insert("REDIS_URL".into(), db_url);
        resources.redis_lease = Some((with_path(&url, "0"), key, token));
    }
    vars.insert("DATABASE_URL".into(), database_url);
    vars.insert("SESSION_KEYS".into(), KEYS.into());
    vars.insert("DATA_DIR".into(), dir.display().to_string());
    vars.insert("CRON_SECRET".into(), CRON.into());
    vars.insert("METRICS_TOKEN".into(), METRICS_TOKEN.into());
    for bucket in [
        "LOGIN",
        "LOGIN_ACCOUNT",
        "REGISTER",
        "ACCOUNT_UPDATE_IP",
        "ACCOUNT_UPDATE_USER",
        "PASSWORD",
    ] {
        vars.insert(format!("RATE_LIMIT_{bucket}"), "10000/60s".into());
    }
    vars
}

/// A running server with its own database and cache.
pub struct TestApp {
    pub base: String,
    pub clock: Arc<ManualClock>,
    pub faults: FaultSwitch,
    pub http: reqwest::Client,
    pub vars: HashMap<String, String>,
    pub config: Config,
    handle: Option<ServerHandle>,
    // Dropped after the handle: the server stops before its database goes.
    resources: Resources,
    dir: tempfile::TempDir,
}

/// A plain HTTP client that never follows redirects and drops idle connections below the
/// server's 10 s header-read timeout (a request must never race that close).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

impl TestApp {
    pub async fn start() -> TestApp {
        TestApp::start_with(&[]).await
    }

    /// Starts with `overrides` applied to the base variables (an empty value removes one;
    /// a `REDIS_URL` of the test's own replaces the leased Redis database).
    pub async fn start_with(overrides: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut resources = Resources::default();
        let own_redis = overrides.iter().any(|(k, _)| *k == "REDIS_URL");
        let mut vars = base_vars(dir.path(), &mut resources, own_redis).await;
        for (k, v) in overrides {
            if v.is_empty() {
                vars.remove(*k);
            } else {
                vars.insert((*k).into(), (*v).into());
            }
        }
        let config = Config::from_map(&vars).expect("config");
        let clock = Arc::new(ManualClock::new());
        let faults = FaultSwitch::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let handle = origin_api::serve_with(
            config.clone(),
            listener,
            Options {
                clock: clock.clone(),
                cache_faults: Some(faults.clone()),
            },
        )
        .await
        .expect("server starts");
        TestApp {
            base: format!("http://{}", handle.addr()),
            clock,
            faults,
            http: http_client(),
            vars,
            config,
            handle: Some(handle),
            resources,
            dir,
        }
    }

    pub fn server(&self) -> &ServerHandle {
        self.handle.as_ref().expect("running")
    }

    /// The running service's core (tests stage cache races through it).
    pub fn core(&self) -> &Arc<origin_api::domain::core::Core> {
        &self.server().app().core
    }

    pub fn host(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Another instance of the same service (same database, cache and clock), as a load
    /// balancer would have behind it; `base` is its address.
    pub async fn another_instance(&self) -> (ServerHandle, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let handle = origin_api::serve_with(
            self.config.clone(),
            listener,
            Options {
                clock: self.clock.clone(),
                cache_faults: None,
            },
        )
        .await
        .expect("second instance starts");
        let base = format!("http://{}", handle.addr());
        (handle, base)
    }

    /// Stops the server gracefully (drop would only abort it), then releases resources.
    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
        self.resources.release().await;
    }

    /// A client without a session.
    pub fn anon(&self) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            email: String::new(),
            token: None,
        }
    }

    /// A client without a session for another server at `base` (e.g. a second origin
    /// process on this app's database).
    pub fn anon_at(&self, base: &str) -> Client {
        Client {
            base: base.to_owned(),
            ..self.anon()
        }
    }

    /// A client presenting `token` as its session cookie.
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_owned()),
            ..self.anon()
        }
    }

    pub async fn register(&self, email: &str) -> Resp {
        let r = self
            .anon()
            .post(
                "/api/v1/auth/register",
                serde_json::json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, 201, "register {email}: {:?}", r.body);
        r
    }

    /// Registers through sessiongate mounted at `mount` (`/auth`).
    pub async fn register_at(&self, mount: &str, email: &str) -> Resp {
        let r = self
            .anon()
            .post(
                &format!("{mount}/api/v1/auth/register"),
                serde_json::json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, 201, "register {email}: {:?}", r.body);
        r
    }

    pub async fn login_as(&self, email: &str, password: &str) -> Resp {
        self.anon()
            .post(
                "/api/v1/auth/login",
                serde_json::json!({"email": email, "password": password}),
            )
            .await
    }

    /// A new session of an existing user.
    pub async fn login(&self, email: &str) -> Client {
        let r = self.login_as(email, PASSWORD).await;
        assert_eq!(r.status, 200, "login {email}: {:?}", r.body);
        Client {
            email: email.to_owned(),
            ..self.with_token(&r.cookie().expect("cookie"))
        }
    }

    /// Registers (if needed) and logs in.
    pub async fn user(&self, email: &str) -> Client {
        let r = self
            .anon()
            .post(
                "/api/v1/auth/register",
                serde_json::json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert!(r.status == 201 || r.status == 409, "{:?}", r.body);
        self.login(email).await
    }

    /// Creates an ADMIN through the library's `create-admin` path and logs in.
    pub async fn admin(&self, email: &str) -> Client {
        origin_api::create_admin(&self.config, email, PASSWORD.into())
            .await
            .expect("create admin");
        self.login(email).await
    }

    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let r = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("metrics");
        assert_eq!(r.status().as_u16(), 200);
        r.text().await.expect("text")
    }

    /// A metric's value summed over its label sets (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        metric_value(&self.metrics_text().await, name)
    }

    /// Waits (bounded) until the metric reaches `at_least`: for work done off the
    /// response path (refresh writes, audit rows).
    pub async fn wait_metric(&self, name: &str, at_least: f64) -> f64 {
        for _ in 0..500 {
            let v = self.metric(name).await;
            if v >= at_least {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("metric {name} never reached {at_least}");
    }

    /// Runs SQL on the server's own database.
    pub async fn sql(&self, statement: &str) {
        let db = sea_orm::Database::connect(self.config.database_url.as_str())
            .await
            .expect("db");
        db.execute_unprepared(statement).await.expect("sql");
        let _ = db.close().await;
    }

    /// Waits until background work (audit rows, evictions, refresh writes) is done.
    pub async fn settle(&self) {
        for _ in 0..500 {
            if self.core().background.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("background work never finished");
    }
}

/// A metric's value in a Prometheus text, summed over its label sets.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One user's view of the API: their session cookie (or none) on every request.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    pub email: String,
    pub token: Option<String>,
}

impl Client {
    /// The session token (panics for an anonymous client).
    pub fn token(&self) -> &str {
        self.token.as_deref().expect("a signed-in client")
    }

    /// The same user with another token (a refreshed cookie).
    pub fn with(&self, token: String) -> Client {
        Client {
            token: Some(token),
            ..self.clone()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn req(&self, method: Method, path: &str) -> Req {
        let mut builder = self.http.request(method, self.url(path));
        if let Some(token) = &self.token {
            builder = builder.header("cookie", format!("__Host-session={token}"));
        }
        Req { builder }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req(Method::GET, path).send().await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.req(Method::POST, path).json(body).send().await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.req(Method::PATCH, path).json(body).send().await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.req(Method::DELETE, path).send().await
    }

    pub async fn me(&self) -> Resp {
        self.get("/api/v1/auth/me").await
    }

    /// The user's id (their session must be live).
    pub async fn id(&self) -> String {
        let r = self.me().await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["user"]["id"].as_str().expect("id").to_owned()
    }

    /// The session's storage hash (the API's session `id`).
    pub fn session_id(&self) -> String {
        let sid = segment(self.token(), 1)["sid"]
            .as_str()
            .expect("sid")
            .to_owned();
        shared::SessionId::parse(&sid)
            .expect("session id form")
            .storage_hash()
    }

    /// Waits (bounded) until the caller's audit log holds an item matching `wanted`, and
    /// returns it. Audit rows are written off the response path, so an event can land
    /// after later ones: counting items is not enough to know that a given one is there.
    pub async fn audit_item(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        self.poll_audit(|items| items.into_iter().find(|i| wanted(i)))
            .await
            .expect("the expected audit item never appeared")
    }

    /// Waits (bounded) until the caller's audit log has `n` items.
    pub async fn audit_items(&self, n: usize) -> Vec<Value> {
        self.poll_audit(|items| (items.len() >= n).then_some(items))
            .await
            .unwrap_or_else(|| panic!("audit log never reached {n} items"))
    }

    async fn poll_audit<T>(&self, done: impl Fn(Vec<Value>) -> Option<T>) -> Option<T> {
        for _ in 0..500 {
            let r = self.get("/api/v1/account/audit?pageSize=100").await;
            assert_eq!(r.status, 200);
            if let Some(found) = done(r.body["items"].as_array().cloned().unwrap_or_default()) {
                return Some(found);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

impl AsRef<str> for Client {
    /// The session token.
    fn as_ref(&self) -> &str {
        self.token()
    }
}

/// A request being built.
pub struct Req {
    builder: reqwest::RequestBuilder,
}

impl Req {
    pub fn json(self, body: Value) -> Req {
        Req {
            builder: self.builder.json(&body),
        }
    }

    pub fn header(self, name: &str, value: &str) -> Req {
        Req {
            builder: self.builder.header(name, value),
        }
    }

    /// A raw body with its content type.
    pub fn body(self, content_type: &str, body: impl Into<reqwest::Body>) -> Req {
        Req {
            builder: self.builder.header("content-type", content_type).body(body),
        }
    }

    pub async fn send(self) -> Resp {
        let r = self.builder.send().await.expect("request");
        Resp::read(r).await
    }
}

/// An answer: status, headers, and the body as JSON (a string when it is not JSON, null
/// when empty).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub async fn read(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The session token set by this response, if any.
    pub fn cookie(&self) -> Option<String> {
        let set = self.header("set-cookie")?;
        let (pair, _) = set.split_once(';')?;
        let (_, value) = pair.split_once('=')?;
        (!value.is_empty()).then(|| value.to_owned())
    }
}

/// Decodes a base64url JSON segment of a token.
pub fn segment(token: impl AsRef<str>, index: usize) -> Value {
    use base64::Engine;
    let part = token.as_ref().split('.').nth(index).expect("segment");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

pub fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

pub fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}
