//! `cargo xtask e2e`: the edge's release worker build, its gzipped size against the
//! budget, then the end-to-end test (node:test, `edge-gate/tests/e2e/`), which starts its
//! recording origin itself and every `wrangler dev` through `cargo xtask serve edge`.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::run::{self, cmd, serve_exe, status, status_within};

/// Gzipped .wasm budget (the issue asks for under 300 KiB).
const MAX_WASM_GZIP_BYTES: usize = 300 * 1024;

/// Builds the release worker (edge-gate/scripts/build.sh, also wrangler.toml's build
/// command) and checks its gzipped size; returns (raw, gzipped) bytes.
pub fn build_worker() -> anyhow::Result<(usize, usize)> {
    run::require("worker-build").or_else(|_| run::require("$HOME/.cargo/bin/worker-build"))?;
    status(cmd("bash", &["edge-gate/scripts/build.sh"]))?;
    let wasm = testkit::repo_root().join("edge-gate/build/index_bg.wasm");
    let raw = std::fs::metadata(&wasm).context("the built worker")?.len() as usize;
    let gzip = cmd("gzip", &["-9", "-c"])
        .arg(&wasm)
        .output()
        .context("gzip")?;
    let gz = gzip.stdout.len();
    if !gzip.status.success() || gz == 0 {
        bail!("gzip of {} failed", wasm.display());
    }
    if gz > MAX_WASM_GZIP_BYTES {
        bail!(
            "edge-gate: index_bg.wasm is {gz} bytes gzipped, over the {MAX_WASM_GZIP_BYTES}-byte budget"
        );
    }
    Ok((raw, gz))
}

pub async fn run() -> anyhow::Result<()> {
    if !testkit::edge::wrangler_bin().exists() {
        bail!("wrangler is missing: run tools/provision.sh");
    }
    let (raw, gz) = build_worker()?;
    println!("e2e: worker {raw} bytes raw, {gz} bytes gzipped (budget {MAX_WASM_GZIP_BYTES})");
    let mut node = cmd("node", &["--test", "--test-reporter=spec", "tests/e2e/"]);
    node.current_dir(testkit::repo_root().join("edge-gate"))
        .env("TESTKIT_SERVE", serve_exe()?);
    // Time box for the whole run; each wrangler start has its own deadline.
    status_within(node, Duration::from_secs(900)).await
}
