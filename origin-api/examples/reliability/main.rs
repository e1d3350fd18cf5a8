//! The reliability driver (issue 7): runs fault, load and abuse scenarios against the
//! release `origin-api` binary with its own Postgres and Redis, then checks in the
//! databases themselves that nothing was lost or half-written.
//!
//! Started by `origin-api/reliability/run.sh`, which builds the binaries, starts the
//! suite's own Redis and Postgres on other loopback ports and hands their coordinates
//! over; the driver starts, kills and restarts the origin itself and injects faults
//! through `svc.sh`. Every scenario reports checks and figures; the run exits non-zero
//! when any check fails and ends with `N passed, M failed`.
//!
//! Modules: [`env`] (processes and services), [`client`] (the HTTP client and the
//! contract's answers), [`ledger`] (what the server acknowledged), [`traffic`] (mixed
//! background traffic), [`checks`] (database and cache audits), [`scenarios`] (the faults
//! and the load), [`abuse`] (the bad-input corpus), [`report`] (results).

mod abuse;
mod checks;
mod client;
mod env;
mod ledger;
mod report;
mod scenarios;
mod traffic;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// How long and how hard to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// CI: every scenario, short phases, fuzz targets built and replayed over their corpus.
    Short,
    /// Longer phases, a second load round, and each fuzz target for a fixed time budget.
    Long,
}

#[derive(Parser, Debug)]
#[command(about = "sessiongate reliability driver (run it through origin-api/reliability/run.sh)")]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Mode::Short)]
    pub mode: Mode,
    /// The release origin binary.
    #[arg(long)]
    pub origin_bin: PathBuf,
    /// Scratch directory of this run (service data, logs, corpus hand-over files).
    #[arg(long)]
    pub run_dir: PathBuf,
    /// The service-control script (origin-api/reliability/svc.sh).
    #[arg(long)]
    pub svc: PathBuf,
    /// The repository root.
    #[arg(long)]
    pub repo: PathBuf,
    #[arg(long, default_value_t = 6392)]
    pub redis_port: u16,
    #[arg(long, default_value_t = 5442)]
    pub pg_port: u16,
    #[arg(long, default_value_t = 18480)]
    pub origin_port: u16,
    /// Skip the edge (wrangler dev) part of the token corpus.
    #[arg(long)]
    pub no_edge: bool,
    /// Skip the fuzz targets.
    #[arg(long)]
    pub no_fuzz: bool,
    /// Seconds per fuzz target in long mode.
    #[arg(long, default_value_t = 300)]
    pub fuzz_seconds: u64,
    /// Run only these scenarios (by name); the ledger audit always runs.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Write the results as JSON here.
    #[arg(long)]
    pub results: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reliability: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(scenarios::run_all(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("reliability: {e:#}");
            ExitCode::FAILURE
        }
    }
}
