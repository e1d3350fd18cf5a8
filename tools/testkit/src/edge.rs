//! The edge under test: the worker (`wrangler.toml` at the repository root) under
//! `wrangler dev` (local workerd, no account, no network) on a free loopback port, with
//! `--var` overrides and its secrets in an env file of its own. wrangler and its workerd
//! children share a process group, which is ended when the handle drops.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::process::Proc;

/// How to run `wrangler dev`.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// `--var NAME:VALUE` overrides of wrangler.toml's `[vars]`.
    pub vars: Vec<(String, String)>,
    /// Secrets (`SESSION_KEYS`), written to the env file that replaces `.dev.vars`.
    pub secrets: Vec<(String, String)>,
    /// An env file to use as is instead of `secrets`.
    pub env_file: Option<PathBuf>,
    /// wrangler's `--log-level` (`log` prints each request; `warn` for measurements).
    pub log_level: String,
    /// Time box for start-up, which includes the worker's build on a first run.
    pub ready_within: Duration,
    /// Further `wrangler dev` flags (e.g. `--local-upstream host --upstream-protocol
    /// https`, so the worker sees an https URL).
    pub extra_args: Vec<String>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            vars: Vec::new(),
            secrets: Vec::new(),
            env_file: None,
            log_level: "log".into(),
            ready_within: Duration::from_secs(600),
            extra_args: Vec::new(),
        }
    }
}

impl EdgeConfig {
    pub fn var(mut self, name: &str, value: impl Into<String>) -> EdgeConfig {
        self.vars.push((name.to_owned(), value.into()));
        self
    }

    pub fn secret(mut self, name: &str, value: impl Into<String>) -> EdgeConfig {
        self.secrets.push((name.to_owned(), value.into()));
        self
    }
}

pub struct Edge {
    port: u16,
    proc: Proc,
    ready_after: Duration,
    _dir: tempfile::TempDir,
}

/// `edge-gate/node_modules/.bin/wrangler`.
pub fn wrangler_bin() -> PathBuf {
    crate::repo_root().join("edge-gate/node_modules/.bin/wrangler")
}

impl Edge {
    /// Starts `wrangler dev` and waits until the worker answers HTTP (any status: a
    /// misconfigured worker answering 500 is up too).
    pub async fn start(config: EdgeConfig) -> anyhow::Result<Edge> {
        let wrangler = wrangler_bin();
        if !wrangler.exists() {
            bail!("{} is missing: run tools/provision.sh", wrangler.display());
        }
        let dir = tempfile::Builder::new().prefix("testkit-edge.").tempdir()?;
        let env_file = match &config.env_file {
            Some(path) => path.clone(),
            None => {
                let path = dir.path().join("edge.env");
                let text: String = config
                    .secrets
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\"\n"))
                    .collect();
                std::fs::write(&path, text)?;
                path
            }
        };
        let port = crate::ports::free_port()?;
        let mut cmd = Command::new(&wrangler);
        cmd.args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--inspector-port", &crate::ports::free_port()?.to_string()])
            .arg("--persist-to")
            .arg(dir.path().join("state"))
            .arg("--env-file")
            .arg(&env_file)
            .args([
                "--show-interactive-dev-session=false",
                "--log-level",
                &config.log_level,
            ]);
        for (name, value) in &config.vars {
            cmd.arg("--var").arg(format!("{name}:{value}"));
        }
        cmd.args(&config.extra_args);
        let home = std::env::var("HOME").unwrap_or_default();
        let path = format!(
            "{home}/.cargo/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.current_dir(crate::repo_root())
            .env("PATH", path)
            .envs([
                ("WRANGLER_SEND_METRICS", "false"),
                ("WRANGLER_SEND_ERROR_REPORTS", "false"),
            ])
            .envs([("CLOUDFLARE_CF_FETCH_ENABLED", "false"), ("NO_COLOR", "1")])
            .envs([("FORCE_COLOR", "0"), ("CI", "true")])
            .env_remove("CLOUDFLARE_INCLUDE_PROCESS_ENV")
            .env_remove("SESSION_KEYS");
        let started = Instant::now();
        let proc = Proc::spawn("wrangler dev", cmd, &dir.path().join("edge.log"))?;
        let mut edge = Edge {
            port,
            proc,
            ready_after: Duration::ZERO,
            _dir: dir,
        };
        edge.wait_ready(config.ready_within).await?;
        edge.ready_after = started.elapsed();
        Ok(edge)
    }

    async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let probe = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.proc.try_wait()? {
                bail!(
                    "wrangler dev exited ({status}) before it was ready:\n{}",
                    self.proc.log_tail(40)
                );
            }
            if probe
                .get(format!("{}/healthz", self.url()))
                .send()
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "wrangler dev not ready after {} s:\n{}",
                    limit.as_secs(),
                    self.proc.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// wrangler's pid (its group holds workerd too).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// How long start-up took (including a build on a first run).
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    pub fn log_path(&self) -> PathBuf {
        self.proc.log_path().to_owned()
    }

    /// Everything wrangler and the worker printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.proc.log_path()).unwrap_or_default()
    }

    /// SIGTERM to the group, 10 s, then SIGKILL.
    pub async fn stop(mut self) {
        self.proc.stop(Duration::from_secs(10)).await;
    }
}
