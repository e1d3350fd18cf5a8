//! The origin under test: the built `origin-api` binary as a child process on a loopback
//! port, with exactly the environment it is given, its log captured, and the controls a
//! fault suite needs (signals, restart on the same port, memory figures).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use tokio::sync::Mutex;

use crate::api::Api;
use crate::process::Proc;

/// How to run the origin.
#[derive(Clone, Debug, Default)]
pub struct OriginConfig {
    /// The binary; [`Origin::release_bin`] or [`Origin::debug_bin`].
    pub bin: PathBuf,
    /// Its whole environment besides `PATH` and `BIND_ADDR` (nothing else is inherited).
    pub env: BTreeMap<String, String>,
    /// The port; a free one when `None`.
    pub port: Option<u16>,
    /// Where its output goes (appended across restarts); a temp file when `None`.
    pub log: Option<PathBuf>,
}

impl OriginConfig {
    pub fn new(bin: PathBuf) -> OriginConfig {
        OriginConfig {
            bin,
            ..OriginConfig::default()
        }
        .var("METRICS_TOKEN", crate::METRICS_TOKEN)
    }

    /// Adds one environment variable.
    pub fn var(mut self, name: &str, value: impl Into<String>) -> OriginConfig {
        self.env.insert(name.to_owned(), value.into());
        self
    }
}

pub struct Origin {
    config: OriginConfig,
    port: u16,
    log: PathBuf,
    proc: Mutex<Option<Proc>>,
    pid: AtomicU32,
    _temp: tempfile::TempDir,
}

impl Origin {
    /// `<target>/release/origin-api` (`cargo build --release -p origin-api`).
    pub fn release_bin() -> PathBuf {
        crate::target_dir().join("release/origin-api")
    }

    /// `<target>/debug/origin-api` (`cargo build -p origin-api`).
    pub fn debug_bin() -> PathBuf {
        crate::target_dir().join("debug/origin-api")
    }

    /// Starts it and waits until `/healthz` answers 200.
    pub async fn start(config: OriginConfig) -> anyhow::Result<Origin> {
        if !config.bin.is_file() {
            bail!("no origin binary at {}", config.bin.display());
        }
        let temp = tempfile::Builder::new()
            .prefix("testkit-origin.")
            .tempdir()?;
        let origin = Origin {
            port: match config.port {
                Some(p) => p,
                None => crate::ports::free_port()?,
            },
            log: config
                .log
                .clone()
                .unwrap_or_else(|| temp.path().join("origin.log")),
            config,
            proc: Mutex::new(None),
            pid: AtomicU32::new(0),
            _temp: temp,
        };
        origin.restart().await?;
        Ok(origin)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Where sessiongate's own routes live: `http://127.0.0.1:<port>` plus its
    /// `MOUNT_PATH`, without the trailing slash.
    pub fn mounted_url(&self) -> String {
        let mount = self
            .config
            .env
            .get("MOUNT_PATH")
            .map_or("", |m| m.trim_end_matches('/'));
        format!("{}{mount}", self.url())
    }

    /// A client for sessiongate's own routes on this origin, under its `MOUNT_PATH` (60 s
    /// per request).
    pub fn api(&self) -> Api {
        Api::new(&self.mounted_url(), Duration::from_secs(60))
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.config.env
    }

    /// The running process's pid.
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|p| *p != 0)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.config.bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.config.env)
            .env("BIND_ADDR", self.addr())
            .current_dir(self._temp.path());
        cmd
    }

    /// Starts the process (again, after an exit) and waits until `/healthz` (under
    /// `MOUNT_PATH` when set) answers 200.
    pub async fn restart(&self) -> anyhow::Result<u32> {
        let mut guard = self.proc.lock().await;
        if guard
            .as_mut()
            .is_some_and(|p| matches!(p.try_wait(), Ok(None)))
        {
            bail!("the origin on {} is already running", self.port);
        }
        let mut cmd = self.command();
        cmd.arg("serve");
        let proc = Proc::spawn("origin-api", cmd, &self.log)?;
        let pid = proc.pid();
        self.pid.store(pid, Ordering::SeqCst);
        *guard = Some(proc);
        drop(guard);
        let api = Api::new(&self.mounted_url(), Duration::from_secs(2));
        crate::wait_until(
            "origin-api",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || async {
                if let Some(status) = self.try_wait().await? {
                    bail!(
                        "the origin exited during start-up ({status}); see {}",
                        self.log.display()
                    );
                }
                Ok(api.healthz().await.is_ok_and(|r| r.status == 200))
            },
        )
        .await?;
        Ok(pid)
    }

    async fn try_wait(&self) -> anyhow::Result<Option<ExitStatus>> {
        match self.proc.lock().await.as_mut() {
            Some(p) => p.try_wait(),
            None => Ok(None),
        }
    }

    /// Sends `signal` (SIGTERM, SIGKILL, ...) to the process.
    pub async fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        match self.proc.lock().await.as_ref() {
            Some(p) => p.signal(signal),
            None => bail!("the origin is not running"),
        }
    }

    /// Waits up to `limit` for the process to exit; `None` if it still runs.
    pub async fn wait_exit(&self, limit: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let mut guard = self.proc.lock().await;
        let Some(proc) = guard.as_mut() else {
            return Ok(None);
        };
        let status = proc.wait_exit(limit).await?;
        if status.is_some() {
            *guard = None;
            self.pid.store(0, Ordering::SeqCst);
        }
        Ok(status)
    }

    /// SIGTERM, up to `grace` to drain, then SIGKILL.
    pub async fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        let proc = self.proc.lock().await.take();
        self.pid.store(0, Ordering::SeqCst);
        match proc {
            Some(mut p) => p.stop(grace).await,
            None => None,
        }
    }

    /// Runs a CLI subcommand (`create-admin`, `migrate`, ...) with the same environment,
    /// `stdin` as its standard input.
    pub async fn run_cli(&self, args: &[&str], stdin: &str) -> anyhow::Result<Output> {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::from(self.command())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("origin-api CLI")?;
        let mut input = child.stdin.take().context("stdin")?;
        input.write_all(stdin.as_bytes()).await?;
        drop(input);
        Ok(child.wait_with_output().await?)
    }

    /// Peak resident memory (`VmHWM`), KiB.
    pub fn vm_hwm_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmHWM:")
    }

    /// Resident memory now (`VmRSS`), KiB.
    pub fn vm_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmRSS:")
    }
}

/// One `kB` field of `/proc/<pid>/status`.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
