//! `cargo xtask ci`: the whole CI, in order, each step timed. `.ci/run` calls it after
//! `tools/provision.sh`. The tests run as the README says (`cargo test --workspace`), once
//! on the embedded default and once on a fresh database of the machine's Postgres and its
//! Redis (the services provision.sh starts), exactly as before. The fuzz targets are built
//! (with cargo-fuzz's instrumentation) and their corpora replayed by the reliability
//! suite's `fuzz` scenario, so no separate fuzz build step is needed.

use std::time::Instant;

use testkit::SharedPostgres;

use crate::run::{cargo, cmd, status};

/// The steps, by name, in order.
const STEPS: &[&str] = &[
    "fmt",
    "clippy",
    "tests",
    "tests-pg",
    "compose",
    "e2e",
    "browser",
    "bench",
    "reliability",
];

pub async fn run(skip: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut timings = Vec::new();
    for &step in STEPS {
        if skip.iter().any(|s| s == step) {
            println!("\n=== {step}: skipped");
            continue;
        }
        let at = Instant::now();
        println!("\n=== {step} ({}s)", started.elapsed().as_secs());
        run_step(step)
            .await
            .map_err(|e| e.context(format!("CI step {step}")))?;
        timings.push((step, at.elapsed().as_secs()));
    }
    println!("\n=== done ({}s)", started.elapsed().as_secs());
    for (step, secs) in timings {
        println!("{step:<12} {secs:>5} s");
    }
    Ok(())
}

async fn run_step(step: &str) -> anyhow::Result<()> {
    match step {
        "fmt" => status(cargo(&["fmt", "--all", "--", "--check"])),
        "clippy" => status(cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])),
        // The README's test command, on the embedded default (SQLite + in-process cache).
        "tests" => {
            let mut c = cargo(&["test", "--workspace"]);
            c.env_remove("DATABASE_URL").env_remove("REDIS_URL");
            // The gateway tests run real nginx and Caddy: in CI they must not skip.
            c.env("SESSIONGATE_REQUIRE_PROXIES", "1");
            status(c)
        }
        // The same command on Postgres + Redis.
        "tests-pg" => {
            let db = SharedPostgres::fresh_database("sessiongate_ci").await?;
            let mut c = cargo(&["test", "--workspace"]);
            c.env("DATABASE_URL", &db.url)
                .env("REDIS_URL", "redis://127.0.0.1:6379")
                .env("SESSIONGATE_REQUIRE_PROXIES", "1");
            status(c)
        }
        "compose" => status(cmd("python3", &[".ci/check-compose.py"])),
        "e2e" => crate::e2e::run().await,
        "browser" => crate::browser::run().await,
        "bench" => crate::run::bench(&["--smoke".to_owned()]).await,
        "reliability" => crate::run::reliability(&["--short".to_owned()]).await,
        other => anyhow::bail!("unknown step {other}"),
    }
}
