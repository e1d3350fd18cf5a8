//! The run's context, shared by every scenario: the services (the origin, its Redis and
//! Postgres, all started through testkit), the client, the ledger of what the server
//! acknowledged, and the helpers scenarios share (logins, registrations, store access).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use testkit::{Api, Origin, Postgres, Redis};
use tokio::task::JoinSet;

use crate::ledger::{Ledger, Rng, Sess, User};
use crate::report::Tally;
use crate::traffic::Mix;
use crate::{Mode, status_key};

/// The origin's settings for the suite: production defaults except where a scenario needs
/// a shorter bound (documented in RELIABILITY.md).
pub const SESSION_CACHE_TTL_SECS: u64 = 20;
pub const HEADER_READ_TIMEOUT_SECS: u64 = 10;
pub const BODY_READ_TIMEOUT_SECS: u64 = 10;
pub const SHUTDOWN_GRACE_SECS: u64 = 30;
/// `PASSWORD_QUEUE_MAX` of the suite's origin (the default on 2 cores), set so the load
/// scenario's bound does not depend on the machine.
pub const PASSWORD_QUEUE_MAX: usize = 128;
/// Users whose sessions carry the background traffic.
pub const TRAFFIC_USERS: usize = 160;
/// Users set aside for targeted checks, handed out one by one.
pub const DEDICATED_USERS: usize = 60;

/// Options of the run that scenarios read.
pub struct Options {
    pub mode: Mode,
    pub edge: bool,
    pub fuzz_seconds: u64,
    pub run_dir: PathBuf,
}

pub struct Cx {
    pub origin: Origin,
    pub redis: Redis,
    pub pg: Postgres,
    pub database_url: String,
    pub api: Api,
    pub ledger: Arc<Ledger>,
    pub opts: Options,
    /// The run's one signing key (`SESSION_KEYS=<kid>:<key>`).
    pub kid: String,
    pub key: Vec<u8>,
    dedicated: AtomicUsize,
}

/// The run's `SESSION_KEYS`: one fresh key.
pub fn new_key() -> anyhow::Result<(String, Vec<u8>)> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow!("random: {e}"))?;
    Ok(("rel1".to_owned(), key.to_vec()))
}

impl Cx {
    pub fn new(
        origin: Origin,
        redis: Redis,
        pg: Postgres,
        database_url: String,
        key: (String, Vec<u8>),
        opts: Options,
    ) -> Cx {
        Cx {
            api: origin.api(),
            origin,
            redis,
            pg,
            database_url,
            ledger: Arc::new(Ledger::default()),
            opts,
            kid: key.0,
            key: key.1,
            dedicated: AtomicUsize::new(0),
        }
    }

    pub fn long(&self) -> bool {
        self.opts.mode == Mode::Long
    }

    /// `SESSION_KEYS` as the origin reads it.
    pub fn session_keys(&self) -> String {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.key);
        format!("{}:{encoded}", self.kid)
    }

    /// Seconds of traffic before, during and after a fault.
    pub fn phases(&self) -> (Duration, Duration, Duration) {
        if self.long() {
            (secs(10), secs(30), secs(15))
        } else {
            (secs(3), secs(6), secs(4))
        }
    }

    /// The background traffic's mix.
    pub fn mix(&self) -> Mix {
        Mix {
            users: 0..TRAFFIC_USERS,
            verify_workers: 6,
            login_workers: 2,
            revoke_workers: 1,
            verify_pace: Duration::from_millis(5),
            write_pace: Duration::from_millis(60),
        }
    }

    /// The client with a fresh client address.
    pub fn client(&self) -> Api {
        self.api.from_ip(&Rng::new().ip())
    }

    /// The next user set aside for a targeted check.
    pub fn dedicated(&self) -> anyhow::Result<usize> {
        let n = self.dedicated.fetch_add(1, Ordering::SeqCst);
        if n >= DEDICATED_USERS {
            bail!("out of dedicated users");
        }
        Ok(TRAFFIC_USERS + n)
    }

    /// Logs `user` in from a fresh address; the session goes into the ledger.
    pub async fn login(&self, user: usize, scenario: &str) -> anyhow::Result<Arc<Sess>> {
        let u = self.ledger.user(user);
        let reply = self.client().login(&u.email, &u.password).await?;
        if reply.status != 200 {
            bail!("login of {} answered {}", u.email, reply.status);
        }
        let token = reply
            .token()
            .ok_or_else(|| anyhow!("login without a cookie"))?;
        self.ledger
            .add_session(user, token, scenario)
            .ok_or_else(|| anyhow!("login cookie carries no session id"))
    }

    /// Registers `n` users (16 at a time, each from its own address); their indexes.
    pub async fn register_users(
        &self,
        n: usize,
        tag: &str,
        tally: &Tally,
    ) -> anyhow::Result<Vec<usize>> {
        let run = format!("{:x}", Rng::new().next() & 0xffff_ffff);
        let mut set = JoinSet::new();
        let mut made = Vec::new();
        let mut i = 0;
        while i < n || !set.is_empty() {
            while i < n && set.len() < 16 {
                let api = self.client();
                let email = format!("{tag}-{run}-{i}@reliability.example");
                let pw = password(i);
                set.spawn(async move {
                    let r = api.register(&email, &pw, None).await;
                    (email, pw, r)
                });
                i += 1;
            }
            if let Some(done) = set.join_next().await {
                let (email, password, r) = done?;
                tally.add("register", &status_key(&r));
                let reply = r?;
                if reply.status != 201 {
                    bail!("register {email}: {}", reply.status);
                }
                let id = reply.body()?.user.id;
                made.push(self.ledger.add_user(User {
                    id,
                    email,
                    password,
                }));
            }
        }
        Ok(made)
    }

    /// A fresh connection to the suite's Postgres.
    pub async fn db(&self) -> anyhow::Result<DatabaseConnection> {
        let mut options = ConnectOptions::new(self.database_url.clone());
        options
            .max_connections(2)
            .connect_timeout(Duration::from_secs(5))
            .sqlx_logging(false);
        Database::connect(options)
            .await
            .context("connecting to the suite's Postgres")
    }

    /// `SELECT count(*) AS n ...` on the suite's Postgres.
    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        let db = self.db().await?;
        let rows = db
            .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await
            .with_context(|| format!("query {sql}"));
        let _ = db.close().await;
        let n = rows?
            .first()
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        Ok(n)
    }

    /// Runs statements on the suite's Postgres (fault injection: triggers).
    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        let db = self.db().await?;
        let r = db
            .execute_unprepared(sql)
            .await
            .with_context(|| format!("executing {sql}"));
        let _ = db.close().await;
        r.map(drop)
    }

    /// A connection to the suite's Redis.
    pub async fn redis_client(&self) -> anyhow::Result<fred::prelude::Client> {
        use fred::prelude::*;
        let config = Config::from_url(&self.redis.url()).context("redis url")?;
        let client = Client::new(config, None, None, None);
        client
            .init()
            .await
            .context("connecting to the suite's Redis")?;
        Ok(client)
    }
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A fresh random password for user `i`.
pub fn password(i: usize) -> String {
    let mut b = [0u8; 12];
    let _ = getrandom::fill(&mut b);
    format!(
        "pw{}x{i}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}
