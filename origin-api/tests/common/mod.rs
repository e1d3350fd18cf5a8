//! Test harness: a real origin-api server on 127.0.0.1:0 with its own database (a temp
//! SQLite file, or a fresh Postgres database when DATABASE_URL is set) and its own cache
//! (in-process, or a Redis logical database 1..15 leased with a lock key when REDIS_URL is
//! set), a manual clock, and a small HTTP client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use origin_api::{Config, FaultSwitch, ManualClock, Options, ServerHandle};
use reqwest::Method;
use sea_orm::ConnectionTrait;
use serde_json::Value;
type RedisValue = fred::types::Value;

#[allow(unused_imports)]
pub use origin_api::Clock;

pub const KEYS: &str = "k1:c2Vzc2lvbmdhdGUtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyEh";
pub const CRON: &str = "cron-secret-for-tests";
pub const PASSWORD: &str = "correct horse battery";

pub struct Server {
    pub base: String,
    pub clock: Arc<ManualClock>,
    pub faults: FaultSwitch,
    pub http: reqwest::Client,
    pub vars: HashMap<String, String>,
    pub config: Config,
    handle: Option<ServerHandle>,
    pg: Option<(String, String)>,
    redis_lease: Option<(Client, String)>,
    _dir: tempfile::TempDir,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
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

pub fn postgres_url() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
}

pub fn redis_url() -> Option<String> {
    std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty())
}

fn random_name() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn with_path(url: &str, path: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let slash = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{}", &base[..slash], path)
}

async fn lease_redis(url: &str) -> (Client, String, String) {
    let admin = Client::new(
        fred::prelude::Config::from_url(&with_path(url, "0")).expect("redis url"),
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
                let c = Client::new(
                    fred::prelude::Config::from_url(&db_url).expect("url"),
                    None,
                    None,
                    None,
                );
                c.init().await.expect("redis");
                let _: RedisValue = c
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
                return (admin, key, db_url);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no free Redis database for the test");
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    pub async fn start_with(overrides: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut vars: HashMap<String, String> = HashMap::new();
        let mut pg = None;
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
                pg = Some((url.clone(), name.clone()));
                with_path(&url, &name)
            }
            None => format!("sqlite://{}/test.db?mode=rwc", dir.path().display()),
        };
        let mut redis_lease = None;
        if let Some(url) = redis_url() {
            let (admin, key, db_url) = lease_redis(&url).await;
            vars.insert("REDIS_URL".into(), db_url);
            redis_lease = Some((admin, key));
        }
        vars.insert("DATABASE_URL".into(), database_url);
        vars.insert("SESSION_KEYS".into(), KEYS.into());
        vars.insert("DATA_DIR".into(), dir.path().display().to_string());
        vars.insert("CRON_SECRET".into(), CRON.into());
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
        Server {
            base: format!("http://{}", handle.addr()),
            clock,
            faults,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                // Below the server's 10 s header-read timeout, which closes idle keep-alive
                // connections: a request must never race that close.
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .expect("client"),
            vars,
            config,
            handle: Some(handle),
            pg,
            redis_lease,
            _dir: dir,
        }
    }

    pub fn app(&self) -> &Arc<origin_api::App> {
        self.handle.as_ref().expect("running").app()
    }

    pub fn host(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
        if let Some((url, name)) = self.pg.take()
            && let Ok(admin) = sea_orm::Database::connect(url.as_str()).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
            let _ = admin.close().await;
        }
        if let Some((admin, key)) = self.redis_lease.take() {
            let _: Result<i64, _> = admin.del(key).await;
            let _ = admin.quit().await;
        }
    }

    /// Any request. `cookie` is the bare token; `headers` are extra.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(c) = cookie {
            req = req.header("cookie", format!("__Host-session={c}"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.expect("request");
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

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Resp {
        self.call("GET", path, cookie, None, &[]).await
    }

    pub async fn post(&self, path: &str, cookie: Option<&str>, body: Value) -> Resp {
        self.call("POST", path, cookie, Some(body), &[]).await
    }

    pub async fn register(&self, email: &str) -> Resp {
        let r = self
            .post(
                "/api/v1/auth/register",
                None,
                serde_json::json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, 201, "register {email}: {:?}", r.body);
        r
    }

    pub async fn login_as(&self, email: &str, password: &str) -> Resp {
        self.post(
            "/api/v1/auth/login",
            None,
            serde_json::json!({"email": email, "password": password}),
        )
        .await
    }

    /// Registers (if needed) and logs in; returns the token.
    pub async fn user(&self, email: &str) -> String {
        let r = self
            .post(
                "/api/v1/auth/register",
                None,
                serde_json::json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert!(r.status == 201 || r.status == 409, "{:?}", r.body);
        self.login(email).await
    }

    pub async fn login(&self, email: &str) -> String {
        let r = self.login_as(email, PASSWORD).await;
        assert_eq!(r.status, 200, "login {email}: {:?}", r.body);
        r.cookie().expect("cookie")
    }

    /// Creates an ADMIN through the library's `create-admin` path and logs in.
    pub async fn admin(&self, email: &str) -> String {
        origin_api::create_admin(&self.config, email, PASSWORD.into())
            .await
            .expect("create admin");
        self.login(email).await
    }

    pub async fn user_id(&self, token: &str) -> String {
        let r = self.get("/api/v1/auth/me", Some(token)).await;
        assert_eq!(r.status, 200);
        r.body["user"]["id"].as_str().expect("id").to_owned()
    }

    /// A metric's value summed over its label sets (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let r = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics");
        let text = r.text().await.expect("text");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
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

    /// Waits (bounded) until the caller's audit log has `n` items.
    pub async fn audit_items(&self, token: &str, n: usize) -> Vec<Value> {
        self.poll_audit(token, |items| (items.len() >= n).then_some(items))
            .await
            .unwrap_or_else(|| panic!("audit log never reached {n} items"))
    }

    /// Waits (bounded) until the caller's audit log holds an item matching `wanted`, and
    /// returns it. Audit rows are written off the response path, so an event can land
    /// after later ones: counting items is not enough to know that a given one is there.
    pub async fn audit_item(&self, token: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        self.poll_audit(token, |items| items.into_iter().find(|i| wanted(i)))
            .await
            .expect("the expected audit item never appeared")
    }

    /// Reads the caller's audit log (first 100 items) until `done` returns something.
    async fn poll_audit<T>(
        &self,
        token: &str,
        done: impl Fn(Vec<Value>) -> Option<T>,
    ) -> Option<T> {
        for _ in 0..500 {
            let r = self
                .get("/api/v1/account/audit?pageSize=100", Some(token))
                .await;
            assert_eq!(r.status, 200);
            if let Some(found) = done(r.body["items"].as_array().cloned().unwrap_or_default()) {
                return Some(found);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Runs SQL on the server's own database.
    pub async fn sql(&self, statement: &str) {
        let db = sea_orm::Database::connect(self.config.database_url.as_str())
            .await
            .expect("db");
        db.execute_unprepared(statement).await.expect("sql");
        let _ = db.close().await;
    }
}

/// Decodes a base64url JSON segment of a token.
pub fn segment(token: &str, index: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(index).expect("segment");
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
