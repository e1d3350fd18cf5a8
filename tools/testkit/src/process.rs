//! Child processes that never outlive their owner: each runs in a process group of its
//! own with its output appended to a log file, and the whole group is killed when the
//! handle drops (a panicking test included).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// A running child process and its log.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` (stdin closed, stdout and stderr appended to `log`) in a new process group.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        use std::os::unix::process::CommandExt;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("{name}: log {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            exited: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends `signal` to the process itself.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        kill(self.nix_pid(), signal).with_context(|| format!("{} {signal}", self.name))
    }

    fn nix_pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// The exit status once the process has ended (reaped on the first look).
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM to the group, up to `grace` for the process to exit, then SIGKILL to the
    /// group (children such as workerd may outlive their parent). Returns the exit status.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if matches!(self.try_wait(), Ok(None)) {
            let _ = killpg(self.nix_pid(), Signal::SIGTERM);
            let _ = self.wait_exit(grace).await;
        }
        self.kill_group();
        self.try_wait().ok().flatten()
    }

    /// SIGKILL to the whole group, then reaps the process.
    pub fn kill_group(&mut self) {
        let _ = killpg(self.nix_pid(), Signal::SIGKILL);
        if self.exited.is_none() {
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_group();
    }
}
