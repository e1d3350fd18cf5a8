//! Requests an HTTP library refuses to send (obs-fold, bare CR, NUL, non-UTF-8 headers,
//! trickled headers and bodies): written to a raw TCP socket, the answer read until the
//! server closes or a deadline passes.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

impl RawReply {
    /// The value of the first `Set-Cookie: <name>=` in the head.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let prefix = format!("set-cookie: {name}=");
        self.head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with(&prefix)
                .then(|| l[prefix.len()..].split(';').next().map(str::to_owned))
                .flatten()
        })
    }
}

/// Writes `chunks` to a fresh connection, sleeping `gap` between them, then reads until
/// the server closes or `limit` passes.
pub async fn raw(
    addr: &str,
    chunks: &[Vec<u8>],
    gap: Duration,
    limit: Duration,
) -> anyhow::Result<RawReply> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.context("connect")?;
    let mut closed = false;
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 && !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        if stream.write_all(chunk).await.is_err() {
            // The server closed on us mid-request: that is an answer too.
            closed = true;
            break;
        }
    }
    let mut buf = Vec::new();
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
