//! sessiongate's reliability suite (issue 7): fault, load and abuse scenarios against the
//! release `origin-api` binary with its own Redis and Postgres, then checks in the stores
//! themselves that nothing was lost or half-written. Run it with
//! `cargo xtask reliability --short` (CI) or `--long`; RELIABILITY.md has the scenarios.
//!
//! Every service comes from testkit on free loopback ports (the shared 6379/5432 services
//! are never touched) and is stopped when the run ends. Each scenario lives in
//! `scenarios/<name>.rs` and reports checks and figures; the run exits non-zero when any
//! check fails and ends with `N passed, M failed`.

mod abuse;
mod checks;
mod cx;
mod ledger;
mod rawsock;
mod report;
mod scenarios;
mod traffic;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde_json::json;
use testkit::{Origin, OriginConfig, Postgres, PostgresOptions, Redis, Reply};

use crate::cx::{Cx, Options};

/// How long and how hard to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// CI: every scenario, short phases, fuzz targets built and replayed over their corpus.
    Short,
    /// Longer phases, three load rounds, and each fuzz target for a fixed time budget.
    Long,
}

#[derive(Parser, Debug)]
#[command(about = "sessiongate reliability suite (cargo xtask reliability [--short | --long])")]
pub struct Args {
    /// CI mode (the default).
    #[arg(long, conflicts_with = "long")]
    pub short: bool,
    /// Longer faults, 3 load rounds, `--fuzz-seconds` per fuzz target.
    #[arg(long)]
    pub long: bool,
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
    /// Keep the run directory (service data and logs; also kept when a check fails).
    #[arg(long)]
    pub keep: bool,
    /// The origin binary (default: the release build in the target directory).
    #[arg(long)]
    pub origin_bin: Option<PathBuf>,
    /// Where the results JSON goes (default tools/reliability/results/latest-<mode>.json).
    #[arg(long)]
    pub results: Option<PathBuf>,
}

/// A status, or the kind of transport failure, as a tally key.
pub fn status_key<T>(r: &Result<Reply<T>, testkit::api::reqwest::Error>) -> String {
    match r {
        Ok(reply) => reply.status.to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(e) if e.is_connect() => "connect-error".into(),
        Err(_) => "transport-error".into(),
    }
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
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("reliability: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The origin's environment for the suite (RELIABILITY.md lists the departures from the
/// production defaults).
fn origin_config(
    bin: PathBuf,
    database_url: &str,
    redis_url: &str,
    session_keys: String,
    log: PathBuf,
) -> OriginConfig {
    use cx::{
        BODY_READ_TIMEOUT_SECS, HEADER_READ_TIMEOUT_SECS, PASSWORD_QUEUE_MAX,
        SESSION_CACHE_TTL_SECS, SHUTDOWN_GRACE_SECS,
    };
    let mut config = OriginConfig::new(bin)
        .var("DATABASE_URL", database_url)
        .var("REDIS_URL", redis_url)
        .var("SESSION_KEYS", session_keys)
        .var("COOKIE_SECURE", "false")
        // The edge and the driver are the proxies in front: their X-Forwarded-For spreads
        // the traffic over many client addresses, as in production.
        .var("TRUSTED_PROXIES", "127.0.0.1/32")
        .var("SESSION_CACHE_TTL", format!("{SESSION_CACHE_TTL_SECS}s"))
        .var(
            "HEADER_READ_TIMEOUT",
            format!("{HEADER_READ_TIMEOUT_SECS}s"),
        )
        .var("BODY_READ_TIMEOUT", format!("{BODY_READ_TIMEOUT_SECS}s"))
        .var("SHUTDOWN_GRACE", format!("{SHUTDOWN_GRACE_SECS}s"))
        .var("PASSWORD_QUEUE_MAX", PASSWORD_QUEUE_MAX.to_string())
        // Traffic logs the same accounts in many times; the per-IP limit keeps its
        // default and is what the rate-limit checks exercise.
        .var("RATE_LIMIT_LOGIN_ACCOUNT", "100000/15m")
        .var("CRON_SECRET", "reliability-cron-secret")
        .var("LOG_FORMAT", "json")
        .var("RUST_LOG", "info");
    config.log = Some(log);
    config
}

/// Starts the services, runs the scenarios, prints and writes the results.
async fn run(args: Args) -> anyhow::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let started = Instant::now();
    let mode = if args.long { Mode::Long } else { Mode::Short };
    let run_dir = tempfile::Builder::new()
        .prefix("sessiongate-reliability.")
        .tempdir()?;
    std::fs::set_permissions(run_dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let redis = Redis::start_in(&run_dir.path().join("redis")).await?;
    let pg = Postgres::start_in(&run_dir.path().join("pg"), PostgresOptions::default()).await?;
    let database_url = pg.create_database("sessiongate").await?;
    let key = cx::new_key()?;
    let bin = args.origin_bin.clone().unwrap_or_else(Origin::release_bin);
    let keys = format!(
        "{}:{}",
        key.0,
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &key.1)
    );
    let config = origin_config(
        bin,
        &database_url,
        &redis.url(),
        keys,
        run_dir.path().join("origin.log"),
    );
    let origin = Origin::start(config).await?;
    println!(
        "reliability: mode {mode:?}; origin {} (pid {}); Redis :{}, Postgres :{}; run dir {}",
        origin.url(),
        origin.pid().unwrap_or(0),
        redis.port(),
        pg.port(),
        run_dir.path().display()
    );
    let opts = Options {
        mode,
        edge: !args.no_edge,
        fuzz_seconds: args.fuzz_seconds,
        run_dir: run_dir.path().to_owned(),
    };
    let cx = Cx::new(origin, redis, pg, database_url, key, opts);
    let outcomes = scenarios::run_all(&cx, &args.only, !args.no_fuzz).await?;
    cx.origin
        .stop(Duration::from_secs(cx::SHUTDOWN_GRACE_SECS + 5))
        .await;
    let ok = report::summary(&outcomes, started.elapsed());
    let path = args.results.clone().unwrap_or_else(|| {
        let mode = format!("{mode:?}").to_lowercase();
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("results/latest-{mode}.json"))
    });
    let doc = json!({
        "mode": format!("{mode:?}").to_lowercase(),
        "seconds": started.elapsed().as_secs_f64(),
        "passed": outcomes.iter().filter(|o| o.passed()).count(),
        "failed": outcomes.iter().filter(|o| !o.passed()).count(),
        "scenarios": outcomes,
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", path.display()))?;
    drop(cx);
    if args.keep || !ok {
        println!(
            "reliability: logs and data kept in {}",
            run_dir.keep().display()
        );
    }
    Ok(ok)
}
