//! `cargo xtask browser`: the pages' end-to-end test in a real browser, through the edge.
//!
//! headless Chromium (playwright-core) → wrangler dev (edge-gate) → origin-api → a private
//! Postgres and Redis. Everything starts through testkit on free loopback ports; an ADMIN
//! is bootstrapped with `origin-api create-admin`; `pages.test.mjs` gets the edge's address
//! and the ADMIN by environment variables and rewrites the screenshots.

use std::time::Duration;

use anyhow::{Context, bail};
use testkit::{Edge, EdgeConfig, Origin, OriginConfig, Postgres, PostgresOptions, Redis};

use crate::run::{cargo, cmd, status, status_within};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The origin on its own Postgres and Redis, with an ADMIN; returns it and the ADMIN's
/// email and password.
async fn origin(
    pg: &Postgres,
    redis: &Redis,
    keys: &str,
) -> anyhow::Result<(Origin, String, String)> {
    let db = pg.create_database("sessiongate_browser").await?;
    let config = OriginConfig::new(Origin::release_bin())
        .var("DATABASE_URL", db)
        .var("REDIS_URL", redis.url())
        .var("SESSION_KEYS", keys)
        .var("COOKIE_SECURE", "false")
        .var("TRUSTED_PROXIES", "127.0.0.1/32")
        .var(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
    let origin = Origin::start(config).await?;
    if !origin.api().wait_ready(Duration::from_secs(60)).await {
        bail!(
            "the origin is not ready; see {}",
            origin.log_path().display()
        );
    }
    let email = format!("admin-{}@example.test", std::process::id());
    let password = format!("admin-{}", testkit::random_b64url(18));
    let out = origin
        .run_cli(
            &["create-admin", "--email", &email],
            &format!("{password}\n"),
        )
        .await?;
    if !out.status.success() {
        bail!("create-admin: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((origin, email, password))
}

pub async fn run() -> anyhow::Result<()> {
    let here = testkit::repo_root().join("origin-api/tests/browser");
    if !std::path::Path::new(CHROMIUM).exists()
        || !here.join("node_modules/playwright-core").exists()
    {
        bail!("Chromium or playwright-core is missing: run tools/provision.sh");
    }
    // The release build the bench and the reliability suite use too: built once per CI run.
    status(cargo(&["build", "--release", "-p", "origin-api"]))?;
    let redis = Redis::start().await?;
    let pg = Postgres::start(PostgresOptions::default()).await?;
    let keys = format!("browser:{}", testkit::random_b64url(32));
    let (origin, email, password) = origin(&pg, &redis, &keys).await?;
    let edge = Edge::start(
        EdgeConfig::default()
            .var("ORIGIN_URL", origin.url())
            .var("COOKIE_SECURE", "false")
            .secret("SESSION_KEYS", &keys),
    )
    .await
    .context("starting wrangler dev")?;
    println!(
        "browser: origin {} behind the edge {}",
        origin.url(),
        edge.url()
    );
    let mut node = cmd(
        "node",
        &[
            "--test",
            "--test-concurrency=1",
            "--test-reporter=spec",
            "pages.test.mjs",
        ],
    );
    node.current_dir(&here)
        .env("EDGE_URL", edge.url())
        .env("ADMIN_EMAIL", &email)
        .env("ADMIN_PASSWORD", &password)
        .env("CHROMIUM", CHROMIUM)
        .env("SCREENSHOT_DIR", here.join("screenshots"));
    let result = status_within(node, Duration::from_secs(900)).await;
    if result.is_err() {
        for (name, log) in [
            ("origin", origin.log_path().to_owned()),
            ("edge", edge.log_path()),
        ] {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "\n--- last lines of the {name} log ---\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
    edge.stop().await;
    origin.stop(Duration::from_secs(15)).await;
    result
}
