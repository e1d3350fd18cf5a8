//! The command line, run as a real process: `migrate`, `create-admin` (password on stdin),
//! `cleanup`, configuration errors, and `serve` finishing an in-flight request on SIGTERM.
//! Runs on a temporary SQLite database: the commands share their code with the server,
//! whose behaviour on both backends the other suites cover.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_origin-api");
const PASSWORD: &str = "correct horse battery";

fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", dir)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/cli.db?mode=rwc", dir.display()),
        )
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(dir: &Path, args: &[&str], stdin: &str, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = command(dir);
    cmd.args(args);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn origin-api");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One raw HTTP/1.1 exchange; returns the status line and the body.
fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream)
}

fn read_response(stream: &mut TcpStream) -> (String, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw.lines().next().unwrap_or_default().to_owned();
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

/// Reads the rest of a short keep-alive response (headers and a `Content-Length` body).
fn drain_response(stream: &mut TcpStream) {
    let head = String::from_utf8_lossy(&read_head(stream)).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
}

/// Reads a response head up to and including its blank line, and nothing more.
fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    head
}

fn json_request(method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn wait_until_serving(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("server exited early: {status}");
        }
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not start listening on {addr}");
}

#[test]
fn migrate_create_admin_and_cleanup() {
    let dir = tempfile::tempdir().unwrap();

    let out = run(dir.path(), &["migrate"], "", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("cli.db").exists());

    let out = run(
        dir.path(),
        &["create-admin", "--email", " Boss@Example.COM "],
        &format!("{PASSWORD}\n"),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "admin created");

    let out = run(
        dir.path(),
        &["create-admin", "--email", "boss@example.com"],
        &format!("{PASSWORD}\n"),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "existing user promoted to admin");

    let out = run(
        dir.path(),
        &["create-admin", "--email", "weak@example.com"],
        "short\n",
        &[],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("password"), "{err}");
    assert!(
        !err.contains("short"),
        "the password itself is never echoed: {err}"
    );

    let out = run(dir.path(), &["cleanup"], "", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0");

    // The admin signs in through the real server with the role the CLI gave it.
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut server = command(dir.path())
        .env("BIND_ADDR", addr.to_string())
        .env("COOKIE_SECURE", "false")
        .spawn()
        .unwrap();
    wait_until_serving(addr, &mut server);
    let (status, body) = http(
        addr,
        &json_request(
            "POST",
            "/api/v1/auth/login",
            &format!(r#"{{"email":"boss@example.com","password":"{PASSWORD}"}}"#),
        ),
    );
    let _ = server.kill();
    let _ = server.wait();
    assert!(status.contains(" 200 "), "{status} {body}");
    assert!(body.contains(r#""role":"ADMIN""#), "{body}");
}

#[test]
fn bad_configuration_stops_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("SESSION_TTL", "soon"),
        ("SESSION_KEYS", "k1:c2hvcnQ"),
        ("TRUSTED_PROXIES", "not-a-cidr"),
        ("BIND_ADDR", "nowhere"),
        ("RATE_LIMIT_LOGIN", "five"),
    ] {
        let out = run(dir.path(), &["migrate"], "", &[(var, value)]);
        assert!(!out.status.success(), "{var}={value} was accepted");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{var}: {err}");
        assert!(err.contains(var), "{var}: {err}");
    }
    let out = run(
        dir.path(),
        &["migrate"],
        "",
        &[("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("SESSION_KEYS"));
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut server = command(dir.path())
        .env("BIND_ADDR", addr.to_string())
        .env("COOKIE_SECURE", "false")
        .spawn()
        .unwrap();
    wait_until_serving(addr, &mut server);

    // Start a registration whose body arrives in two parts, signal in between.
    let body = r#"{"email":"late@example.com","password":"correct horse battery"}"#;
    let (head, tail) = body.split_at(10);
    let mut stream = TcpStream::connect(addr).unwrap();
    // A first exchange on this keep-alive connection proves the server has accepted it
    // (a connection still in the accept backlog would be dropped by the shutdown).
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    drain_response(&mut stream);
    let request = json_request("POST", "/api/v1/auth/register", body);
    let headers = request[..request.len() - body.len()].replacen(
        "\r\n\r\n",
        "\r\nExpect: 100-continue\r\n\r\n",
        1,
    );
    stream.write_all(headers.as_bytes()).unwrap();
    // hyper answers 100 Continue when the handler starts reading the body: from then on the
    // request is in flight, whatever the machine's load.
    let interim = read_head(&mut stream);
    assert!(interim.starts_with(b"HTTP/1.1 100"), "{interim:?}");
    stream.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(300));

    stream.write_all(tail.as_bytes()).unwrap();
    let (status, response) = read_response(&mut stream);
    assert!(status.contains(" 201 "), "{status} {response}");
    assert!(response.contains("late@example.com"), "{response}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = server.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit after SIGTERM: {exit}");
}
