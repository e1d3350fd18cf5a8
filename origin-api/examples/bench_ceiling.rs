//! The benchmark's ceiling: the least a verify could do, a minimal hyper server that sends
//! one Redis GET per request (same fred client and settings style as the origin) and
//! answers its value as JSON. Bench-only: `origin-api/bench/run.sh` builds it with
//! `cargo build --release -p origin-api --example bench_ceiling` and measures the origin
//! against it under the same load generator and connection count.
//!
//! With `CEILING_MODE=script` it instead makes the warm verify's one cache call, the
//! origin's own `RedisCache::get_session_and_user` (one `EVALSHA` reading a session entry
//! and the user entry it names) on the session key `CEILING_KEY`, and answers the user
//! entry: the same Redis work as a warm verify with none of the origin's own work, so the
//! benchmark can split the gap to the plain ceiling into "the data layout's one script"
//! and "the origin's work per request".
//!
//! Environment: `BIND_ADDR` (default 127.0.0.1:8090), `REDIS_URL` (default
//! redis://127.0.0.1:6379), `CEILING_KEY` (default `v1:bench:ceiling`), `CEILING_MODE`
//! (`get`, the default, or `script`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use fred::prelude::*;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use origin_api::cache::{Cache, RedisCache};
use tokio::net::TcpListener;

/// What one request reads.
enum Read {
    /// One `GET` of the key.
    Get(Client),
    /// The warm verify's read through the origin's own cache client (one `GET` since the
    /// session entry carries the user).
    Script(Arc<RedisCache>),
}

impl Read {
    async fn value(&self, key: &str) -> Result<Option<Bytes>, String> {
        match self {
            Read::Get(client) => client.get(key).await.map_err(|e| e.to_string()),
            Read::Script(cache) => cache
                .get(key)
                .await
                .map(|v| v.map(Bytes::from))
                .map_err(|e| e.to_string()),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let addr: SocketAddr = env("BIND_ADDR", "127.0.0.1:8090").parse()?;
    let key = env("CEILING_KEY", "v1:bench:ceiling");
    let url = env("REDIS_URL", "redis://127.0.0.1:6379");
    let read = Arc::new(match env("CEILING_MODE", "get").as_str() {
        "get" => {
            let client = Builder::from_config(Config::from_url(&url)?).build()?;
            client.init().await?;
            Read::Get(client)
        }
        "script" => Read::Script(Arc::new(
            RedisCache::connect(&url, metrics::Counter::noop()).await?,
        )),
        other => anyhow::bail!("CEILING_MODE must be get or script, not {other}"),
    });
    let listener = TcpListener::bind(addr).await?;
    eprintln!("bench_ceiling listening on {addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let read = read.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req| {
                let read = read.clone();
                let key = key.clone();
                async move {
                    let value = read.value(&key).await;
                    let (status, body) = match value {
                        Ok(Some(v)) => (StatusCode::OK, v),
                        Ok(None) => (StatusCode::NOT_FOUND, Bytes::from_static(b"{}")),
                        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(b"{}")),
                    };
                    let resp = Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .unwrap_or_default();
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
