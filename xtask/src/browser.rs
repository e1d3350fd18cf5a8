//! `cargo xtask browser`: the end-to-end tests in a real browser, through the edge.
//!
//! Two lines, each started through testkit on free loopback ports over a private Postgres
//! and Redis, each test getting its addresses and users by environment variables:
//! - `pages.test.mjs`: headless Chromium (playwright-core) → wrangler dev (edge-gate) →
//!   origin-api, with an ADMIN bootstrapped by `origin-api create-admin`; it rewrites the
//!   screenshots.
//! - `line.test.mjs`: Chromium → wrangler dev → origin-api in proxy mode under
//!   `MOUNT_PATH=/auth` → the example app (`example-app`), with `ACCESS_RULES` on the edge
//!   and the origin.

use std::time::Duration;

use anyhow::{Context, bail};
use testkit::{Edge, EdgeConfig, Origin, OriginConfig, Postgres, PostgresOptions, Proc, Redis};

use crate::run::{cmd, status_within};

const CHROMIUM: &str = "/usr/bin/chromium";

/// What both lines' origins share: a database of their own on `pg`, `redis`, the session
/// keys, plain http behind the edge on loopback.
async fn base_config(
    pg: &Postgres,
    database: &str,
    redis: &Redis,
    keys: &str,
) -> anyhow::Result<OriginConfig> {
    Ok(OriginConfig::new(Origin::release_bin())
        .var("DATABASE_URL", pg.create_database(database).await?)
        .var("REDIS_URL", redis.url())
        .var("SESSION_KEYS", keys)
        .var("COOKIE_SECURE", "false")
        .var("TRUSTED_PROXIES", "127.0.0.1/32")
        .var(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        ))
}

/// Starts the origin and waits until `/readyz` (under its mount path) answers 200.
async fn start_ready(config: OriginConfig) -> anyhow::Result<Origin> {
    let origin = Origin::start(config).await?;
    if !origin.api().wait_ready(Duration::from_secs(60)).await {
        bail!(
            "the origin is not ready; see {}",
            origin.log_path().display()
        );
    }
    Ok(origin)
}

/// The edge in front of `origin`, with the same session keys and `extra` variables.
async fn edge(origin: &Origin, keys: &str, extra: &[(&str, &str)]) -> anyhow::Result<Edge> {
    let config = extra.iter().fold(
        EdgeConfig::default()
            .var("ORIGIN_URL", origin.url())
            .var("COOKIE_SECURE", "false")
            .secret("SESSION_KEYS", keys),
        |config, (name, value)| config.var(name, *value),
    );
    Edge::start(config).await.context("starting wrangler dev")
}

/// The origin on its own Postgres and Redis, with an ADMIN; returns it and the ADMIN's
/// email and password.
async fn origin(
    pg: &Postgres,
    redis: &Redis,
    keys: &str,
) -> anyhow::Result<(Origin, String, String)> {
    let config = base_config(pg, "sessiongate_browser", redis, keys)
        .await?
        // Every browser device reaches the origin as 127.0.0.1 (the edge forwards only
        // CF-Connecting-IP, which wrangler dev sets to the socket's peer): the per-IP limits
        // would count the whole suite as one client. The per-account failure bucket, which
        // the rate-limit scenario exercises, keeps a one-minute window so its wait fits the
        // page's message.
        .var("RATE_LIMIT_LOGIN", "1000/60s")
        .var("RATE_LIMIT_REGISTER", "1000/60s")
        .var("RATE_LIMIT_ACCOUNT_UPDATE_IP", "1000/60s")
        .var("RATE_LIMIT_LOGIN_ACCOUNT", "5/60s");
    let origin = start_ready(config).await?;
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

/// The line test's mount path and rules (the edge and the origin share both).
const LINE_MOUNT: &str = "/auth";
const LINE_RULES: &str = "/ = public; /app = authenticated";

pub async fn run() -> anyhow::Result<()> {
    let here = testkit::repo_root().join("origin-api/tests/browser");
    if !std::path::Path::new(CHROMIUM).exists()
        || !here.join("node_modules/playwright-core").exists()
    {
        bail!("Chromium or playwright-core is missing: run tools/provision.sh");
    }
    // The release builds the bench and the reliability suite use too: built once per CI run.
    crate::run::release_build()?;
    let pg = Postgres::start(PostgresOptions::default()).await?;
    // A Redis each: the rate-limit buckets of one line must not fill the other's.
    pages(&here, &pg, &Redis::start().await?).await?;
    line(&here, &pg, &Redis::start().await?).await
}

/// `pages.test.mjs`: the pages through the edge.
async fn pages(here: &std::path::Path, pg: &Postgres, redis: &Redis) -> anyhow::Result<()> {
    let keys = format!("browser:{}", testkit::random_b64url(32));
    let (origin, email, password) = origin(pg, redis, &keys).await?;
    let edge = edge(&origin, &keys, &[]).await?;
    println!(
        "browser: origin {} behind the edge {}",
        origin.url(),
        edge.url()
    );
    let mut node = node_test("pages.test.mjs");
    node.current_dir(here)
        .env("EDGE_URL", edge.url())
        .env("ADMIN_EMAIL", &email)
        .env("ADMIN_PASSWORD", &password)
        .env("SCREENSHOT_DIR", here.join("screenshots"));
    let result = status_within(node, Duration::from_secs(900)).await;
    if result.is_err() {
        print_logs(&[
            ("origin", origin.log_path().to_owned()),
            ("edge", edge.log_path()),
        ]);
    }
    edge.stop().await;
    origin.stop(Duration::from_secs(15)).await;
    result
}

/// `line.test.mjs`: the edge in front of the origin in proxy mode in front of the app.
async fn line(here: &std::path::Path, pg: &Postgres, redis: &Redis) -> anyhow::Result<()> {
    let keys = format!("line:{}", testkit::random_b64url(32));
    let app_port = testkit::ports::free_port()?;
    let config = base_config(pg, "sessiongate_line", redis, &keys)
        .await?
        .var(
            "ASSERTION_KEYS",
            format!("line:{}", testkit::random_b64url(32)),
        )
        .var("ASSERTION_AUDIENCE", "app.example.test")
        .var("MOUNT_PATH", LINE_MOUNT)
        .var("ACCESS_RULES", LINE_RULES)
        .var("UPSTREAM_URL", format!("http://127.0.0.1:{app_port}"));
    let origin = start_ready(config).await?;
    let api = origin.api();
    let app_log = origin.log_path().with_file_name("example-app.log");
    let mut app_cmd = std::process::Command::new(testkit::target_dir().join("release/example-app"));
    app_cmd
        .env("BIND_ADDR", format!("127.0.0.1:{app_port}"))
        .env(
            "JWKS_URL",
            format!("{}/.well-known/jwks.json", origin.mounted_url()),
        )
        .env("APP_AUDIENCE", "app.example.test");
    let mut app = Proc::spawn("example-app", app_cmd, &app_log)?;
    testkit::wait_until(
        "example-app",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { Ok(std::net::TcpStream::connect(("127.0.0.1", app_port)).is_ok()) },
    )
    .await?;
    let email = format!("line-{}@example.test", std::process::id());
    let password = format!("line-{}", testkit::random_b64url(18));
    let registered = api.register(&email, &password, Some("Line User")).await?;
    if registered.status != 201 {
        bail!("registering the line test's user: {}", registered.text());
    }
    let edge = edge(
        &origin,
        &keys,
        &[("MOUNT_PATH", LINE_MOUNT), ("ACCESS_RULES", LINE_RULES)],
    )
    .await?;
    println!(
        "browser: the example app on :{app_port} behind the origin {} (proxy mode) behind the edge {}",
        origin.url(),
        edge.url()
    );
    let mut node = node_test("line.test.mjs");
    node.current_dir(here)
        .env("EDGE_URL", edge.url())
        .env("MOUNT", LINE_MOUNT)
        .env("APP_USER_EMAIL", &email)
        .env("APP_USER_PASSWORD", &password)
        .env("SCREENSHOT_DIR", here.join("screenshots"));
    let result = status_within(node, Duration::from_secs(300)).await;
    if result.is_err() {
        print_logs(&[
            ("origin", origin.log_path().to_owned()),
            ("edge", edge.log_path()),
            ("example app", app_log.clone()),
        ]);
    }
    edge.stop().await;
    app.stop(Duration::from_secs(5)).await;
    origin.stop(Duration::from_secs(15)).await;
    result
}

/// `node --test` on one file, in order, with Chromium's path.
fn node_test(file: &str) -> std::process::Command {
    let mut node = cmd(
        "node",
        &[
            "--test",
            "--test-concurrency=1",
            "--test-reporter=spec",
            file,
        ],
    );
    node.env("CHROMIUM", CHROMIUM);
    node
}

/// The last lines of each log, after a failure.
fn print_logs(logs: &[(&str, std::path::PathBuf)]) {
    for (name, log) in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!(
            "\n--- last lines of the {name} log ---\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        );
    }
}
