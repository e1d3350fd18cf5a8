//! A private Redis for one run: `redis-server` on a free loopback port with its data in a
//! temp dir (`--save ''`, no AOF: a restart comes back empty, like a replaced cache node),
//! plus what fault injection needs (stop, restart, any command). The machine's shared
//! 6379 service is never touched.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::Mutex;

use crate::process::Proc;

pub struct Redis {
    port: u16,
    dir: PathBuf,
    proc: Mutex<Option<Proc>>,
    pid: std::sync::atomic::AtomicU32,
    _temp: Option<tempfile::TempDir>,
}

impl Redis {
    /// Starts a Redis of its own in a fresh temp dir.
    pub async fn start() -> anyhow::Result<Redis> {
        let temp = tempfile::Builder::new()
            .prefix("testkit-redis.")
            .tempdir()?;
        let mut redis = Redis::start_in(temp.path()).await?;
        redis._temp = Some(temp);
        Ok(redis)
    }

    /// Starts a Redis of its own with its data and log under `dir` (kept afterwards).
    pub async fn start_in(dir: &Path) -> anyhow::Result<Redis> {
        std::fs::create_dir_all(dir)?;
        let redis = Redis {
            port: crate::ports::free_port()?,
            dir: dir.to_owned(),
            proc: Mutex::new(None),
            pid: Default::default(),
            _temp: None,
        };
        redis.restart().await?;
        Ok(redis)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(std::sync::atomic::Ordering::SeqCst)).filter(|p| *p != 0)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Starts the server (again) on its port and waits for `PING`.
    pub async fn restart(&self) -> anyhow::Result<()> {
        let mut guard = self.proc.lock().await;
        if guard
            .as_mut()
            .is_some_and(|p| matches!(p.try_wait(), Ok(None)))
        {
            bail!("redis on {} is already running", self.port);
        }
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(&self.dir);
        let proc = Proc::spawn("redis-server", cmd, &self.log_path())?;
        self.pid
            .store(proc.pid(), std::sync::atomic::Ordering::SeqCst);
        *guard = Some(proc);
        drop(guard);
        crate::wait_until(
            "redis-server",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async { Ok(self.cli(&["PING"]).await.is_ok_and(|out| out == "PONG")) },
        )
        .await
    }

    /// `SHUTDOWN NOSAVE`, then waits for the process to exit.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let _ = self.cli(&["SHUTDOWN", "NOSAVE"]).await;
        let mut guard = self.proc.lock().await;
        if let Some(proc) = guard.as_mut()
            && proc.wait_exit(Duration::from_secs(5)).await?.is_none()
        {
            bail!("redis on {} did not stop", self.port);
        }
        *guard = None;
        self.pid.store(0, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// One command through `redis-cli`; its trimmed output (an error when the server
    /// answers with one or cannot be reached).
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .await
            .context("redis-cli")?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || text.starts_with("ERR") || text.starts_with("Could not connect")
        {
            bail!(
                "redis-cli {}: {text} {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(text)
    }
}
