//! The benchmark's ceiling: the least a verify could do, a minimal hyper server that sends
//! one Redis `GET` per request (the fred client, as the origin uses it) and answers its
//! value as JSON. `bench.py` measures the origin against it under the same load generator
//! and connection count.
//!
//! With `CEILING_MODE=script` it instead sends, per request, the Redis work of today's
//! warm verify: one pipelined `EVALSHA` of a script that reads the session entry
//! `CEILING_KEY` and the user entry it names (the origin's own script, mirrored here), and
//! answers the user entry. That splits the gap to the plain ceiling into "the data
//! layout's one script" and "the origin's own work per request". Once the session entry
//! holds the user snapshot (DESIGN.md "Cache"), a warm verify is one `GET` and this mode
//! measures nothing the plain ceiling does not.
//!
//! Environment: `BIND_ADDR` (default 127.0.0.1:8090), `REDIS_URL` (default
//! redis://127.0.0.1:6379), `CEILING_KEY` (default `v1:bench:ceiling`), `CEILING_MODE`
//! (`get`, the default, or `script`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use fred::prelude::*;
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Today's warm verify in Redis: the session entry, then the user entry its `userId`
/// names (the prefix is ARGV[1]).
const SESSION_AND_USER: &str = r#"
local s = redis.call('GET', KEYS[1])
if not s then return {false, false} end
local id = string.match(s, '"userId":"([^"\]+)"')
if not id then return {s, false} end
return {s, redis.call('GET', ARGV[1] .. id)}
"#;

/// What one request reads.
enum Read {
    /// One `GET` of the key.
    Get,
    /// The verify's script on the session key.
    Script(Script),
}

struct Ceiling {
    client: Client,
    read: Read,
    key: String,
}

impl Ceiling {
    async fn value(&self) -> Result<Option<Bytes>, Error> {
        match &self.read {
            Read::Get => self.client.get(self.key.as_str()).await,
            Read::Script(script) => {
                // A custom command pipelines; fred flushes its own EVALSHA one at a time.
                let command = CustomCommand::new_static("EVALSHA", ClusterHash::Offset(2), false);
                let args: Vec<Value> = vec![
                    Value::from(script.sha1().clone()),
                    Value::Integer(1),
                    Value::from(self.key.as_str()),
                    Value::from(testkit::keys::user("")),
                ];
                let mut values: Vec<Option<Bytes>> = self.client.custom(command, args).await?;
                values.resize(2, None);
                Ok(values.pop().flatten())
            }
        }
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
    let read = match env("CEILING_MODE", "get").as_str() {
        "get" => Read::Get,
        "script" => {
            let script = Script::from_lua(SESSION_AND_USER);
            script.load(&client).await?;
            Read::Script(script)
        }
        other => anyhow::bail!("CEILING_MODE must be get or script, not {other}"),
    };
    let ceiling = Arc::new(Ceiling {
        client,
        read,
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
