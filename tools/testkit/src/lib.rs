//! Test support shared by sessiongate's harnesses (xtask, the reliability suite, the
//! benchmark): start the services a run needs on free loopback ports, every one cleaned up
//! when its handle drops (also when a test panics), and talk to the origin through a typed
//! client for the HTTP contract (`../shared/spec/api-v1.md`).
//!
//! - [`ports`]: free loopback ports.
//! - [`process`]: child processes in their own process group, with a log file.
//! - [`redis`], [`postgres`]: private servers under a temp dir (fault injection included),
//!   and [`postgres::SharedPostgres`] for the machine's 5432 service when told to use it.
//! - [`origin`]: the `origin-api` binary as a child process.
//! - [`edge`]: the worker under `wrangler dev`.
//! - [`api`]: the typed HTTP client; [`keys`]: every cache key name the tools use.

pub mod api;
pub mod edge;
pub mod keys;
pub mod origin;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod redis;

pub use api::{Api, Reply};
pub use edge::{Edge, EdgeConfig};
pub use nix::sys::signal::Signal;
pub use origin::{Origin, OriginConfig};
pub use postgres::{Postgres, PostgresOptions, SharedPostgres};
pub use process::Proc;
pub use redis::Redis;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The repository root (this crate lives at `tools/testkit`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Cargo's target directory as the harnesses see it (`CARGO_TARGET_DIR` or `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Polls `ready` every `every` until it answers true; an error at `limit`.
pub async fn wait_until<F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut ready: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if ready().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("{what}: not ready after {} s", limit.as_secs());
        }
        tokio::time::sleep(every).await;
    }
}

/// `n` random bytes, base64url without padding.
pub fn random_b64url(n: usize) -> String {
    use base64::Engine;
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the OS random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The bearer token the origins started here accept on `/metrics` (the contract serves
/// metrics on the public listener only with one).
pub const METRICS_TOKEN: &str = "testkit-metrics-token";
