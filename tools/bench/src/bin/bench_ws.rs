//! The benchmark's WebSocket client (`bench.py`'s proxy-mode phase runs it): opens many
//! WebSockets through the origin in proxy mode to the example app's `/demo/ws` echo, each
//! with its own session, holds them, then revokes some of those sessions and times how long
//! each revoked socket takes to close.
//!
//! ```text
//! bench_ws WS_URL TOKENS_FILE COUNT COOKIE_NAME LOGOUT_URL REVOKES SPREAD_MS
//! ```
//!
//! - Opens COUNT sockets to WS_URL (`ws://127.0.0.1:PORT/demo/ws`), socket `i` with the
//!   cookie `COOKIE_NAME=<line i of TOKENS_FILE>`, at most 200 handshakes at a time; each
//!   sends one message and waits for its echo, so every socket is known to reach the app.
//!   Prints `{"opened":…,"failed":…,"open_seconds":…,"nofile":…}` and waits for a line on
//!   standard input (the driver measures memory meanwhile).
//! - Then revokes the sessions of sockets `0..REVOKES`, one every SPREAD_MS (each with
//!   `POST LOGOUT_URL` carrying that socket's cookie), and for each measures the time from
//!   just before the logout request is sent to the moment its socket is closed. Prints
//!   `{"close_ms":[…],"logout_ms":[…],"not_closed":…,"others_closed":…}` (`others_closed`:
//!   sockets whose session was not revoked but that closed anyway: must be 0) and waits
//!   for standard input to close before it closes the rest.
//!
//! Each socket takes a file descriptor here, two in the origin (client and upstream) and
//! one in the app: the process raises its own open-files limit to the hard limit (and the
//! driver raises the hard limit for everything it starts).

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// The open-files limit, raised to the hard limit.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// One held socket: `closed` fires when the server closes it (or it fails).
struct Held {
    closed: oneshot::Receiver<Instant>,
}

async fn open(url: &str, cookie: &str) -> anyhow::Result<Held> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("cookie", HeaderValue::from_str(cookie)?);
    let (socket, response) = tokio_tungstenite::connect_async(request).await?;
    if response.status().as_u16() != 101 {
        bail!("handshake answered {}", response.status());
    }
    let (mut tx, mut rx) = socket.split();
    tx.send(Message::text("ping")).await?;
    match tokio::time::timeout(Duration::from_secs(30), rx.next()).await {
        Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "ping" => {}
        other => bail!("no echo: {other:?}"),
    }
    let (done, closed) = oneshot::channel();
    tokio::spawn(async move {
        // Held until the server closes it or the process exits; the sink stays alive
        // here so the socket is not closed from this side.
        let _tx = tx;
        while let Some(Ok(_)) = rx.next().await {}
        let _ = done.send(Instant::now());
    });
    Ok(Held { closed })
}

/// `POST` to `url` (`http://host:port/path`) with `cookie`; the status code.
async fn logout(url: &str, cookie: &str) -> anyhow::Result<u16> {
    let rest = url
        .strip_prefix("http://")
        .context("LOGOUT_URL must be http://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nCookie: {cookie}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let head = String::from_utf8_lossy(&answer[..answer.len().min(64)]).into_owned();
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))
}

fn wait_for_stdin_line() {
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 7 {
        bail!("usage: bench_ws WS_URL TOKENS_FILE COUNT COOKIE_NAME LOGOUT_URL REVOKES SPREAD_MS");
    }
    let (url, tokens_file, cookie_name, logout_url) = (&args[0], &args[1], &args[3], &args[4]);
    let count: usize = args[2].parse().context("COUNT")?;
    let revokes: usize = args[5].parse().context("REVOKES")?;
    let spread = Duration::from_millis(args[6].parse().context("SPREAD_MS")?);
    let nofile = raise_nofile();
    let cookies: Vec<String> = std::fs::read_to_string(tokens_file)?
        .lines()
        .filter(|l| !l.is_empty())
        .take(count)
        .map(|t| format!("{cookie_name}={t}"))
        .collect();
    if cookies.len() < count || revokes > count {
        bail!("{tokens_file} holds {} tokens: need {count}", cookies.len());
    }

    // Open them all, at most 200 handshakes at a time.
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(200));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut jobs = Vec::with_capacity(count);
    for cookie in &cookies {
        let (gate, url, failed, cookie) =
            (gate.clone(), url.clone(), failed.clone(), cookie.clone());
        jobs.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            match open(&url, &cookie).await {
                Ok(held) => Some(held),
                Err(e) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("bench_ws: {e:#}");
                    }
                    None
                }
            }
        }));
    }
    let mut held = Vec::with_capacity(count);
    for job in jobs {
        held.push(job.await?);
    }
    let opened = held.iter().filter(|h| h.is_some()).count();
    println!(
        "{{\"opened\":{opened},\"failed\":{},\"open_seconds\":{:.3},\"nofile\":{nofile}}}",
        count - opened,
        started.elapsed().as_secs_f64()
    );
    tokio::task::spawn_blocking(wait_for_stdin_line).await?;

    // Revoke the first REVOKES sessions, one every SPREAD_MS; time each close.
    let mut revoked = Vec::with_capacity(revokes);
    for (i, cookie) in cookies.iter().take(revokes).enumerate() {
        let Some(h) = held[i].take() else {
            continue;
        };
        let (cookie, logout_url) = (cookie.clone(), logout_url.clone());
        revoked.push(tokio::spawn(async move {
            let sent = Instant::now();
            let status = logout(&logout_url, &cookie).await;
            let answered = sent.elapsed();
            let closed = tokio::time::timeout(Duration::from_secs(15), h.closed).await;
            (status, answered, closed.ok().and_then(Result::ok), sent)
        }));
        tokio::time::sleep(spread).await;
    }
    let (mut close_ms, mut logout_ms, mut not_closed) = (Vec::new(), Vec::new(), 0);
    for job in revoked {
        let (status, answered, closed, sent) = job.await?;
        let status = status?;
        if status != 200 {
            bail!("logout answered {status}");
        }
        logout_ms.push(format!("{:.2}", answered.as_secs_f64() * 1000.0));
        match closed {
            Some(at) => close_ms.push(format!("{:.1}", (at - sent).as_secs_f64() * 1000.0)),
            None => not_closed += 1,
        }
    }
    // Sockets whose session lives must still be open.
    let mut others_closed = 0;
    for h in held.iter_mut().flatten() {
        if h.closed.try_recv().is_ok() {
            others_closed += 1;
        }
    }
    println!(
        "{{\"close_ms\":[{}],\"logout_ms\":[{}],\"not_closed\":{not_closed},\"others_closed\":{others_closed}}}",
        close_ms.join(","),
        logout_ms.join(",")
    );
    tokio::task::spawn_blocking(wait_for_stdin_line).await?;
    Ok(())
}
