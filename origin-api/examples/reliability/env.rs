//! The environment under test: the origin process (start, SIGTERM, SIGKILL, memory
//! high-water mark) and the suite's own Redis and Postgres, controlled through `svc.sh`.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use crate::Args;

/// How the origin is configured for the suite. Production defaults except where a
/// scenario needs a shorter bound (documented in RELIABILITY.md).
pub const SESSION_CACHE_TTL_SECS: u64 = 20;
pub const HEADER_READ_TIMEOUT_SECS: u64 = 10;
pub const BODY_READ_TIMEOUT_SECS: u64 = 10;
pub const SHUTDOWN_GRACE_SECS: u64 = 30;

pub struct Env {
    pub args: Args,
    pub base: String,
    pub database_url: String,
    pub redis_url: String,
    /// `SESSION_KEYS` of the run: one key.
    pub kid: String,
    pub key: Vec<u8>,
    pub origin_log: PathBuf,
    origin: Mutex<Option<Child>>,
    vars: HashMap<String, String>,
}

impl Env {
    pub fn new(args: Args) -> anyhow::Result<Env> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| anyhow!("random: {e}"))?;
        let kid = "rel1".to_owned();
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
        let database_url = format!("postgres://postgres@127.0.0.1:{}/sessiongate", args.pg_port);
        let redis_url = format!("redis://127.0.0.1:{}", args.redis_port);
        let base = format!("http://127.0.0.1:{}", args.origin_port);
        let mut vars = HashMap::new();
        for (k, v) in [
            ("DATABASE_URL", database_url.clone()),
            ("REDIS_URL", redis_url.clone()),
            ("SESSION_KEYS", format!("{kid}:{encoded}")),
            ("COOKIE_SECURE", "false".into()),
            ("BIND_ADDR", format!("127.0.0.1:{}", args.origin_port)),
            // The edge and the driver are the proxies in front: their X-Forwarded-For
            // spreads the traffic over many client addresses, as in production.
            ("TRUSTED_PROXIES", "127.0.0.1/32".into()),
            ("SESSION_CACHE_TTL", format!("{SESSION_CACHE_TTL_SECS}s")),
            (
                "HEADER_READ_TIMEOUT",
                format!("{HEADER_READ_TIMEOUT_SECS}s"),
            ),
            ("BODY_READ_TIMEOUT", format!("{BODY_READ_TIMEOUT_SECS}s")),
            ("SHUTDOWN_GRACE", format!("{SHUTDOWN_GRACE_SECS}s")),
            // Traffic logs the same accounts in many times; the per-IP limit keeps its
            // default and is what the rate-limit checks exercise.
            ("RATE_LIMIT_LOGIN_ACCOUNT", "100000/15m".into()),
            ("CRON_SECRET", "reliability-cron-secret".into()),
            ("LOG_FORMAT", "json".into()),
            ("RUST_LOG", "info".into()),
        ] {
            vars.insert(k.to_owned(), v);
        }
        let origin_log = args.run_dir.join("origin.log");
        Ok(Env {
            base,
            database_url,
            redis_url,
            kid,
            key: key.to_vec(),
            origin_log,
            origin: Mutex::new(None),
            vars,
            args,
        })
    }

    /// The key ring as the origin reads it.
    pub fn session_keys(&self) -> String {
        self.vars["SESSION_KEYS"].clone()
    }

    /// Runs `svc.sh <args>`; returns its standard output.
    pub async fn svc(&self, svc_args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = Command::new("bash");
        cmd.arg(&self.args.svc)
            .args(svc_args)
            .env("RUN_DIR", &self.args.run_dir)
            .env("REDIS_PORT", self.args.redis_port.to_string())
            .env("PG_PORT", self.args.pg_port.to_string());
        let what = svc_args.join(" ");
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .context("svc task")?
            .with_context(|| format!("svc.sh {what}"))?;
        if !out.status.success() {
            bail!(
                "svc.sh {what} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// A fresh database connection (the suite's own Postgres).
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

    /// Starts the origin and waits until `/healthz` answers.
    pub async fn start_origin(&self) -> anyhow::Result<u32> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.origin_log)
            .context("origin log")?;
        let child = Command::new(&self.args.origin_bin)
            .arg("serve")
            .env_clear()
            .envs(self.vars.iter())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.args.origin_bin.display()))?;
        let pid = child.id();
        // run.sh kills this pid if the driver itself dies.
        let _ = std::fs::write(self.args.run_dir.join("origin.pid"), pid.to_string());
        *self.origin.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", self.base)).send().await
                && r.status().as_u16() == 200
            {
                return Ok(pid);
            }
            if let Some(status) = self.try_wait()? {
                bail!(
                    "origin exited during start-up ({status}); see {}",
                    self.origin_log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "origin not healthy after 60 s; see {}",
                    self.origin_log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn origin_pid(&self) -> Option<u32> {
        self.origin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Child::id)
    }

    fn try_wait(&self) -> anyhow::Result<Option<ExitStatus>> {
        let mut guard = self.origin.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }

    /// Sends a signal to the origin (`TERM` or `KILL`).
    pub async fn signal_origin(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .origin_pid()
            .ok_or_else(|| anyhow!("origin not running"))?;
        let signal = format!("-{signal}");
        let status = tokio::task::spawn_blocking(move || {
            Command::new("kill")
                .args([signal.as_str(), &pid.to_string()])
                .status()
        })
        .await??;
        if !status.success() {
            bail!("kill failed for pid {pid}");
        }
        Ok(())
    }

    /// Waits for the origin to exit; `None` when it is still running at the deadline.
    pub async fn wait_origin(&self, limit: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait()? {
                *self.origin.lock().unwrap_or_else(|e| e.into_inner()) = None;
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the origin at the end of the run (SIGTERM, then SIGKILL after the grace).
    pub async fn stop_origin(&self) {
        if self.origin_pid().is_none() {
            return;
        }
        let _ = self.signal_origin("TERM").await;
        let grace = Duration::from_secs(SHUTDOWN_GRACE_SECS + 5);
        if let Ok(None) = self.wait_origin(grace).await {
            let _ = self.signal_origin("KILL").await;
            let _ = self.wait_origin(Duration::from_secs(5)).await;
        }
    }

    /// The origin's peak resident set size (`VmHWM`), in KiB.
    pub fn origin_vm_hwm_kib(&self) -> Option<u64> {
        let pid = self.origin_pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The origin's current resident set size (`VmRSS`), in KiB.
    pub fn origin_vm_rss_kib(&self) -> Option<u64> {
        let pid = self.origin_pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}
