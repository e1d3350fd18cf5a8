//! `cargo xtask serve <service>`: one service started through testkit for a script in
//! another language (the edge end-to-end test's `support.mjs`, the benchmark's `bench.py`).
//! It prints the service's coordinates as one JSON line on standard output, holds the
//! service until its standard input closes (the script ended, however it ended) or a
//! SIGTERM arrives, then stops it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use testkit::{Edge, EdgeConfig, Origin, OriginConfig, Postgres, PostgresOptions, Redis};
use tokio::io::AsyncReadExt;

#[derive(clap::Args)]
pub struct Service {
    #[command(subcommand)]
    kind: Kind,
}

#[derive(clap::Subcommand)]
enum Kind {
    /// A private redis-server: {"url","port","pid","log"}.
    Redis,
    /// A private Postgres cluster: {"url" (database postgres),"port","pid","log"}.
    Postgres {
        /// Keep fsync on (the default here is off, as in the fault suites).
        #[arg(long)]
        fsync: bool,
    },
    /// The origin binary: {"url","port","pid","log"}.
    Origin {
        /// The binary (default: the release build).
        #[arg(long)]
        bin: Option<PathBuf>,
        /// NAME=VALUE of its environment (nothing else is inherited but PATH).
        #[arg(long = "env")]
        env: Vec<String>,
    },
    /// The worker under wrangler dev: {"url","pid","log","readyAfterMs"}.
    Edge {
        /// NAME=VALUE overrides of wrangler.toml's [vars].
        #[arg(long = "var")]
        vars: Vec<String>,
        /// NAME=VALUE secrets (SESSION_KEYS).
        #[arg(long = "secret")]
        secrets: Vec<String>,
        /// A ready env file of secrets instead.
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// wrangler's --log-level.
        #[arg(long, default_value = "log")]
        log_level: String,
        /// A further `wrangler dev` flag (repeatable; write `--wrangler-arg=--flag`).
        #[arg(long = "wrangler-arg", allow_hyphen_values = true)]
        wrangler_args: Vec<String>,
    },
}

fn pair(text: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| anyhow!("{text}: expected NAME=VALUE"))?;
    Ok((name.to_owned(), value.to_owned()))
}

fn pairs(list: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    list.iter().map(|p| pair(p)).collect()
}

/// Waits until standard input closes or SIGTERM arrives.
async fn hold() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    let eof = async { while stdin.read(&mut buf).await.unwrap_or(0) > 0 {} };
    tokio::select! {
        _ = eof => {},
        _ = term.recv() => {},
    }
    Ok(())
}

fn announce(info: Value) {
    println!("{info}");
}

pub async fn run(service: Service) -> anyhow::Result<()> {
    match service.kind {
        Kind::Redis => {
            let redis = Redis::start().await?;
            announce(
                json!({ "url": redis.url(), "port": redis.port(), "pid": redis.pid(), "log": redis.log_path() }),
            );
            hold().await
        }
        Kind::Postgres { fsync } => {
            let pg = Postgres::start(PostgresOptions {
                fsync,
                ..PostgresOptions::default()
            })
            .await?;
            announce(
                json!({ "url": pg.url("postgres"), "port": pg.port(), "pid": pg.pid(), "log": pg.log_path() }),
            );
            hold().await
        }
        Kind::Origin { bin, env } => {
            let mut config = OriginConfig::new(bin.unwrap_or_else(Origin::release_bin));
            config.env.extend(pairs(&env)?);
            let origin = Origin::start(config).await.context("starting the origin")?;
            announce(
                json!({ "url": origin.url(), "port": origin.port(), "pid": origin.pid(), "log": origin.log_path() }),
            );
            hold().await?;
            origin.stop(Duration::from_secs(10)).await;
            Ok(())
        }
        Kind::Edge {
            vars,
            secrets,
            env_file,
            log_level,
            wrangler_args,
        } => {
            let config = EdgeConfig {
                vars: pairs(&vars)?,
                secrets: pairs(&secrets)?,
                env_file,
                log_level,
                extra_args: wrangler_args,
                ..EdgeConfig::default()
            };
            let edge = Edge::start(config).await?;
            announce(json!({
                "url": edge.url(),
                "pid": edge.pid(),
                "log": edge.log_path(),
                "readyAfterMs": edge.ready_after().as_millis() as u64,
            }));
            hold().await?;
            edge.stop().await;
            Ok(())
        }
    }
}
