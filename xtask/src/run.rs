//! Running things: cargo and other commands from the repository root (failing on a
//! non-zero exit, optionally time-boxed), and the benchmark and reliability commands,
//! which build what they measure and hand over to their drivers.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

/// A command in the repository root.
pub fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).current_dir(testkit::repo_root());
    c
}

pub fn cargo(args: &[&str]) -> Command {
    cmd("cargo", args)
}

pub fn bash(script: &str) -> Command {
    cmd("bash", &[script])
}

/// Runs `c` to completion; an error unless it exits 0.
pub fn status(mut c: Command) -> anyhow::Result<()> {
    let what = format!("{c:?}");
    let status = c.status().with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs `c` for at most `limit` (a time box, not an assertion about speed).
pub async fn status_within(c: Command, limit: Duration) -> anyhow::Result<()> {
    let what = format!("{c:?}");
    let mut child = tokio::process::Command::from(c)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => {
            let status = status?;
            if !status.success() {
                bail!("{what} failed ({status})");
            }
            Ok(())
        }
        Err(_) => {
            let _ = child.kill().await;
            bail!("{what} still running after {} s", limit.as_secs())
        }
    }
}

/// This binary, for scripts that start services through `xtask serve`.
pub fn serve_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("the xtask binary's path")
}

/// A tool the machine must have (tools/provision.sh installs it).
pub fn require(tool: &str) -> anyhow::Result<()> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        bail!("{tool} is missing: run tools/provision.sh (or cargo xtask provision)");
    }
    Ok(())
}

/// Every release binary the harnesses run (the origin, the example app, the bench's helpers,
/// the reliability suite), in one build. Always the same package set: cargo unifies the
/// dependencies' features over the packages of one build, so building them one at a time,
/// or in another set, compiles the shared dependencies again for each feature set (and gives
/// a second, different origin binary). One set: the first harness of a CI run builds, the
/// others find everything built.
pub fn release_build() -> anyhow::Result<()> {
    status(cargo(&[
        "build",
        "--release",
        "-p",
        "origin-api",
        "-p",
        "example-app",
        "-p",
        "bench",
        "-p",
        "reliability",
    ]))
}

/// `cargo xtask bench [args]`: the release builds ([`release_build`]), then
/// tools/bench/bench.py.
pub async fn bench(args: &[String]) -> anyhow::Result<()> {
    for tool in ["wrk", "redis-server", "psql", "python3", "nginx"] {
        require(tool)?;
    }
    release_build()?;
    let mut c = cmd("python3", &["tools/bench/bench.py"]);
    c.args(args).env("TESTKIT_SERVE", serve_exe()?);
    status(c)
}

/// `cargo xtask reliability [args]`: the release builds ([`release_build`]), then the suite.
pub async fn reliability(args: &[String]) -> anyhow::Result<()> {
    for tool in ["redis-server", "psql", "node"] {
        require(tool)?;
    }
    if !args.iter().any(|a| a == "--no-fuzz")
        && !cargo(&["fuzz", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    {
        bail!("cargo-fuzz is missing: run tools/provision.sh (or pass --no-fuzz)");
    }
    release_build()?;
    let bin = testkit::target_dir().join("release/reliability");
    let mut c = Command::new(bin);
    c.args(args).current_dir(testkit::repo_root());
    status(c)
}
