//! `cargo xtask <command>`: sessiongate's tooling in one place. Every command that needs
//! services (the origin, Redis, Postgres, `wrangler dev`) starts them through testkit, so
//! there is one way services are started; the JavaScript tests get theirs through
//! `cargo xtask serve` (see `serve.rs`).
//!
//! - `ci`: the whole CI in order (what `.ci/run` runs after `tools/provision.sh`).
//! - `e2e`: the edge's wasm build, its size budget, and the end-to-end test under wrangler dev.
//! - `browser`: the pages in headless Chromium through the edge, on Postgres + Redis.
//! - `bench [--smoke] [...]`: the benchmark (tools/bench/bench.py); `reliability [...]`:
//!   the reliability suite (tools/reliability).
//! - `provision`: `tools/provision.sh`; `serve <service>`: one service held for a script.

mod browser;
mod ci;
mod e2e;
mod run;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "sessiongate's tooling (cargo xtask <command>)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole CI: fmt, clippy, tests on both backends, compose check, edge e2e, browser
    /// test, bench smoke, reliability short (which builds and replays the fuzz targets).
    Ci {
        /// Skip these steps (by name: fmt, clippy, tests, tests-pg, compose, e2e, browser,
        /// bench, reliability).
        #[arg(long, value_delimiter = ',')]
        skip: Vec<String>,
    },
    /// Edge: release wasm build, size budget, end-to-end test through wrangler dev.
    E2e,
    /// Pages in headless Chromium through the edge in front of the origin.
    Browser,
    /// The benchmark; arguments go to tools/bench/bench.py (`--smoke`, `--only`, `--help`).
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The reliability suite; arguments go to it (`--short`, `--long`, `--only`, `--help`).
    #[command(disable_help_flag = true)]
    Reliability {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Installs and starts what the tooling needs (tools/provision.sh).
    Provision,
    /// Starts one service through testkit, prints its coordinates as one JSON line and
    /// holds it until standard input closes or a SIGTERM arrives.
    Serve(serve::Service),
}

/// Drops the variables `cargo run` hands this process about the xtask package
/// (`CARGO_PKG_*`, `CARGO_MANIFEST_DIR`, ...). A cargo started from here would see them
/// as a change of environment (build scripts' `rerun-if-env-changed` is checked against
/// cargo's own environment) and rebuild crates such as ring that read them.
fn forget_cargo_run_vars() {
    let injected = |name: &str| {
        name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
    };
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(injected) {
            // SAFETY: called first thing in main, before any other thread exists.
            unsafe { std::env::remove_var(&name) };
        }
    }
}

fn main() -> ExitCode {
    forget_cargo_run_vars();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xtask: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = dispatch(cli.command) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Ci { skip } => ci::run(&skip).await,
        Command::E2e => e2e::run().await,
        Command::Browser => browser::run().await,
        Command::Bench { args } => run::bench(&args).await,
        Command::Reliability { args } => run::reliability(&args).await,
        Command::Provision => run::status(run::bash("tools/provision.sh")),
        Command::Serve(service) => serve::run(service).await,
    }
}
