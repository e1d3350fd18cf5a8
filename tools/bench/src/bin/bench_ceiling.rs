//! The benchmark's ceiling: the least a verify could do, a minimal hyper server that sends
//! one Redis `GET` per request (the fred client, as the origin uses it) and answers its
//! value as JSON. `bench.py` measures the origin against it under the same load generator
//! and connection count.
//! Since the session entry holds the user snapshot (DESIGN.md "Cache"), the origin's warm
//! verify does exactly this Redis work: the gap to the ceiling is the origin's own work.
//!
//! Environment: `BIND_ADDR` (default 127.0.0.1:8090), `REDIS_URL` (default
//! redis://127.0.0.1:6379), `CEILING_KEY` (default `v1:bench:ceiling`).

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
use tokio::net::TcpListener;

struct Ceiling {
    client: Client,
    key: String,
}

impl Ceiling {
    async fn value(&self) -> Result<Option<Bytes>, Error> {
        self.client.get(self.key.as_str()).await
    }
}

async fn answer(ceiling: Arc<Ceiling>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match ceiling.value().await {
        Ok(Some(v)) => (StatusCode::OK, v),
        Ok(None) => (StatusCode::NOT_FOUND, Bytes::from_static(b"{}")),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(b"{}")),
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap_or_default())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let addr: SocketAddr = env("BIND_ADDR", "127.0.0.1:8090").parse()?;
    let client = Builder::from_config(Config::from_url(&env(
        "REDIS_URL",
        "redis://127.0.0.1:6379",
    ))?)
    .build()?;
    client.init().await?;
    let ceiling = Arc::new(Ceiling {
        client,
        key: env("CEILING_KEY", "v1:bench:ceiling"),
    });
    let listener = TcpListener::bind(addr).await?;
    eprintln!("bench_ceiling listening on {addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let ceiling = ceiling.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req| answer(ceiling.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
