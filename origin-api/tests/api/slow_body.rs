//! A request whose body stops arriving is answered 408 and its connection closed once
//! `BODY_READ_TIMEOUT` has passed (found by the reliability suite: a body trickled one byte
//! at a time held its connection and handler open indefinitely; hyper's header read
//! timeout does not cover bodies).

use std::time::Duration;

use crate::support::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads the answer to its end: a JSON 408 with `Connection: close`, the connection then
/// closed by the server (the 60 s bound only keeps a broken server from hanging the test).
async fn expect_408_and_close(stream: &mut (impl tokio::io::AsyncRead + Unpin)) {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .expect("the server neither answered nor closed")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(text.contains("\"error\""), "{text}");
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_the_connection_closed() {
    let s = TestApp::start_with(&[("BODY_READ_TIMEOUT", "1s")]).await;
    let mut stream = TcpStream::connect(s.host()).await.expect("connect");
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"email\":",
        s.host()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    // Nothing more is sent; the server must answer and close on its own.
    expect_408_and_close(&mut stream).await;
    // The server still serves.
    let r = s.anon().get("/healthz").await;
    assert_eq!(r.status, 200);
    s.stop().await;
}

/// A body trickled one byte at a time never stalls long enough for the idle timeout, yet
/// must not hold its handler open past `BODY_READ_TIMEOUT` (regression: the move to axum
/// kept only tower-http's per-frame timeout; the reliability suite's slowloris case held
/// a connection for 42 s). Delivered in full, this body would be a well-formed login
/// answered 401, so only a cut-off answers 408.
#[tokio::test]
async fn a_trickled_body_is_cut_at_body_read_timeout() {
    let s = TestApp::start_with(&[("BODY_READ_TIMEOUT", "1s")]).await;
    let body = r#"{"email":"nobody@example.test","password":"a wrong password"}"#;
    let stream = TcpStream::connect(s.host()).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        s.host(),
        body.len()
    );
    write.write_all(head.as_bytes()).await.expect("write");
    // One byte every 150 ms: the whole body would take about 9 s.
    let trickle = tokio::spawn(async move {
        for byte in body.as_bytes() {
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        write
    });
    expect_408_and_close(&mut read).await;
    trickle.abort();
    let r = s.anon().get("/healthz").await;
    assert_eq!(r.status, 200);
    s.stop().await;
}
