//! The HTTP client side: the contract's requests (register, login, verify, revoke), the
//! session cookie, session hashes from tokens, and a raw-socket request for the cases an
//! HTTP library refuses to send.

use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The cookie name with `COOKIE_SECURE=false`.
pub const COOKIE: &str = "session";

/// One answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The session token set by this answer.
    pub fn token(&self) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                let pair = v.split(';').next()?;
                let (name, value) = pair.split_once('=')?;
                (name.trim() == COOKIE && !value.is_empty()).then(|| value.to_owned())
            })
    }

    /// A 503 must say when to come back.
    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after").and_then(|v| v.parse().ok())
    }
}

/// A status, or the kind of transport failure, as a tally key.
pub fn status_key(r: &Result<Reply, reqwest::Error>) -> String {
    match r {
        Ok(reply) => reply.status.to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(e) if e.is_connect() => "connect-error".into(),
        Err(_) => "transport-error".into(),
    }
}

/// The storage hash (the API's session `id`) of a token's session id.
pub fn session_hash(token: &str) -> Option<String> {
    let claims = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let sid = shared::SessionId::parse(value.get("sid")?.as_str()?)?;
    Some(sid.storage_hash())
}

/// The raw session id in a token (for the log hygiene check only).
pub fn raw_sid(token: &str) -> Option<String> {
    let claims = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("sid")?.as_str().map(str::to_owned)
}

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Api> {
        Ok(Api {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(10))
                // Shorter than the origin's HEADER_READ_TIMEOUT, which closes idle
                // keep-alive connections: never reuse one the server is closing.
                .pool_idle_timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .context("http client")?,
            base: base.to_owned(),
        })
    }

    /// Sends a prepared request and reads the whole answer.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
        let started = Instant::now();
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?.to_vec();
        Ok(Reply {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    pub fn post_json(&self, path: &str, body: &Value, ip: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("x-forwarded-for", ip)
            .body(body.to_string())
    }

    pub async fn register(
        &self,
        email: &str,
        password: &str,
        ip: &str,
    ) -> Result<Reply, reqwest::Error> {
        self.send(self.post_json(
            "/api/v1/auth/register",
            &json!({ "email": email, "password": password }),
            ip,
        ))
        .await
    }

    pub async fn login(
        &self,
        email: &str,
        password: &str,
        ip: &str,
    ) -> Result<Reply, reqwest::Error> {
        self.send(self.post_json(
            "/api/v1/auth/login",
            &json!({ "email": email, "password": password }),
            ip,
        ))
        .await
    }

    pub fn with_cookie(req: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
        req.header("cookie", format!("{COOKIE}={token}"))
    }

    /// `GET /api/v1/auth/me`: the verify path.
    pub async fn me(&self, token: &str) -> Result<Reply, reqwest::Error> {
        self.send(Self::with_cookie(self.get("/api/v1/auth/me"), token))
            .await
    }

    /// `DELETE /api/v1/account/sessions/{id}` with `actor`'s cookie.
    pub async fn revoke(&self, actor: &str, id: &str) -> Result<Reply, reqwest::Error> {
        self.send(Self::with_cookie(
            self.http
                .delete(self.url(&format!("/api/v1/account/sessions/{id}"))),
            actor,
        ))
        .await
    }

    pub async fn healthz(&self) -> Result<Reply, reqwest::Error> {
        self.send(self.get("/healthz")).await
    }

    pub async fn readyz(&self) -> Result<Reply, reqwest::Error> {
        self.send(self.get("/readyz")).await
    }

    /// One counter or gauge from `/metrics` (summed over label sets).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let reply = self.send(self.get("/metrics")).await?;
        let text = String::from_utf8_lossy(&reply.body);
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Waits until `/readyz` answers 200; false at the deadline.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(r) = self.readyz().await
                && r.status == 200
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// What a raw socket saw.
#[derive(Debug)]
pub struct RawReply {
    /// The status line's code, when an answer came.
    pub status: Option<u16>,
    pub head: String,
    /// The server closed the connection (rather than our deadline ending the wait).
    pub closed: bool,
    pub elapsed: Duration,
}

/// Writes `chunks` to a fresh connection, sleeping `gap` between them, then reads until
/// the server closes or `limit` passes. For requests an HTTP library will not send.
pub async fn raw(
    addr: &str,
    chunks: &[Vec<u8>],
    gap: Duration,
    limit: Duration,
) -> anyhow::Result<RawReply> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.context("connect")?;
    let mut write_error = false;
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 && !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        if stream.write_all(chunk).await.is_err() {
            // The server closed on us mid-request: that is an answer too.
            write_error = true;
            break;
        }
    }
    let mut buf = Vec::new();
    let mut closed = write_error;
    let deadline = started + limit;
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 1 << 20 {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_owned();
    Ok(RawReply {
        status,
        head,
        closed,
        elapsed: started.elapsed(),
    })
}
