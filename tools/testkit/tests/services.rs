//! testkit's private services against the real servers: they start on free ports, answer,
//! survive a stop and restart (the fault suites rely on it), and leave no process behind
//! when their handle drops. Needs redis-server and the Postgres server binaries
//! (tools/provision.sh; CI always has them): without them each test says so and passes,
//! so the README's `cargo test --workspace` still works on a bare machine.

use std::time::Duration;

use testkit::{Postgres, PostgresOptions, Redis};

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// False (with a note) when `tool` is not installed.
fn have(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool} || ls {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: {tool} is not installed (tools/provision.sh installs it)");
    }
    found
}

async fn gone(pid: u32) -> bool {
    for _ in 0..100 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn redis_stops_restarts_and_is_cleaned_up() {
    if !have("redis-server") {
        return;
    }
    let redis = Redis::start().await.expect("redis starts");
    assert_ne!(redis.port(), 6379, "never the shared service");
    redis.cli(&["SET", "k", "v"]).await.expect("SET");
    assert_eq!(redis.cli(&["GET", "k"]).await.expect("GET"), "v");
    redis.stop().await.expect("stops");
    assert!(redis.cli(&["PING"]).await.is_err(), "down after stop");
    redis.restart().await.expect("restarts");
    assert_eq!(
        redis.cli(&["GET", "k"]).await.expect("GET"),
        "",
        "comes back empty"
    );
    let pid = redis.pid().expect("running");
    drop(redis);
    assert!(gone(pid).await, "redis-server {pid} outlived its handle");
}

#[tokio::test]
async fn postgres_stops_restarts_and_is_cleaned_up() {
    if !have("/usr/lib/postgresql/*/bin/initdb") || !have("psql") {
        return;
    }
    let pg = Postgres::start(PostgresOptions::default())
        .await
        .expect("postgres starts");
    assert_ne!(pg.port(), 5432, "never the shared service");
    let url = pg.create_database("kit").await.expect("a database");
    assert!(url.ends_with(&format!(":{}/kit", pg.port())));
    pg.psql("kit", "CREATE TABLE t (n int); INSERT INTO t VALUES (7)")
        .await
        .expect("sql");
    pg.stop().await.expect("stops");
    assert!(pg.psql("kit", "SELECT 1").await.is_err(), "down after stop");
    pg.restart().await.expect("restarts");
    assert_eq!(
        pg.psql("kit", "SELECT n FROM t").await.expect("data kept"),
        "7"
    );
    let pid = pg.pid().expect("running");
    drop(pg);
    assert!(gone(pid).await, "postgres {pid} outlived its handle");
}
