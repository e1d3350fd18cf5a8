//! The gateway behind real nginx (`auth_request`) and Caddy (`forward_auth`), started on
//! free loopback ports with the committed recipes (`deploy/nginx/sessiongate.conf`,
//! `deploy/caddy/Caddyfile`), in front of the example app, which echoes what it receives
//! and verifies the assertion. Everything is checked by HTTP from outside, as a browser
//! would see it.
//!
//! When a proxy is not installed the test says so and passes, unless
//! `SESSIONGATE_REQUIRE_PROXIES=1` (CI sets it): then a missing proxy fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use shared::assertion::is_identity_lookalike;

use crate::support::*;

const RULES: &str =
    "/ = public; /app = authenticated; /admin = role:ADMIN; GET,HEAD /app/status = public";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg(if program == "nginx" { "-v" } else { "version" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// True when the test may go on; false (with a note) when the proxy is missing and not
/// required.
fn available(program: &str) -> bool {
    if installed(program) {
        return true;
    }
    assert!(
        std::env::var_os("SESSIONGATE_REQUIRE_PROXIES").is_none(),
        "{program} is required (SESSIONGATE_REQUIRE_PROXIES) but not installed"
    );
    eprintln!("skipped: {program} is not installed (apt-get install {program})");
    false
}

/// A proxy process on a loopback port, stopped on drop.
struct Proxy {
    child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The committed recipe with the test's addresses: sessiongate at `origin`, the app at
/// `app`, the proxy listening on `port`.
fn render(recipe: &str, origin: SocketAddr, app: SocketAddr, listen: &str) -> String {
    recipe
        .replace("127.0.0.1:8080", &origin.to_string())
        .replace("127.0.0.1:3000", &app.to_string())
        .replace("listen 80;", listen)
        .replace(":80 {", listen)
}

async fn wait_ready(base: &str) {
    let http = http_client();
    for _ in 0..200 {
        if http
            .get(format!("{base}/auth/healthz"))
            .send()
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the proxy at {base} never answered");
}

async fn start_nginx(origin: SocketAddr, app: SocketAddr) -> Proxy {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let recipe = std::fs::read_to_string(repo().join("deploy/nginx/sessiongate.conf"))
        .expect("nginx recipe");
    let site = render(&recipe, origin, app, &format!("listen 127.0.0.1:{port};"));
    let d = dir.path().display();
    std::fs::write(dir.path().join("site.conf"), site).expect("write");
    let main = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         include {d}/site.conf;\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), main).expect("write");
    let child = Command::new("nginx")
        .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx starts");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    Proxy {
        child,
        base,
        _dir: dir,
    }
}

async fn start_caddy(origin: SocketAddr, app: SocketAddr) -> Proxy {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let recipe = std::fs::read_to_string(repo().join("deploy/caddy/Caddyfile")).expect("recipe");
    let site = render(
        &recipe,
        origin,
        app,
        &format!(":{port} {{\n\tbind 127.0.0.1"),
    );
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, site).expect("write");
    let child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("caddy starts");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    Proxy {
        child,
        base,
        _dir: dir,
    }
}

/// sessiongate (mounted at /auth, trusting the local proxy) and the example app.
async fn gateway_and_app() -> (TestApp, SocketAddr) {
    let s = TestApp::start_with(&[
        ("MOUNT_PATH", "/auth"),
        ("ACCESS_RULES", RULES),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await;
    let keys = example_app::Keys::fetch(&format!("{}/auth/.well-known/jwks.json", s.base))
        .await
        .expect("jwks");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let app = listener.local_addr().expect("addr");
    let router = example_app::router(example_app::App {
        keys,
        audience: None,
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (s, app)
}

/// A browser-like client of the proxy: a session cookie (or none) and request headers.
struct Browser<'a> {
    http: reqwest::Client,
    base: &'a str,
    token: Option<String>,
}

impl Browser<'_> {
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.header("cookie", format!("__Host-session={token}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        Resp::read(req.send().await.expect("request")).await
    }

    async fn page(&self, path: &str) -> Resp {
        self.send(Method::GET, path, &[("accept", "text/html")], None)
            .await
    }

    async fn xhr(&self, path: &str) -> Resp {
        self.send(
            Method::GET,
            path,
            &[
                ("accept", "application/json"),
                ("x-requested-with", "XMLHttpRequest"),
            ],
            None,
        )
        .await
    }
}

/// The app's echo of a request that reached it (panics otherwise).
fn echo(r: &Resp) -> &Value {
    assert_eq!(r.status, 200, "did not reach the app: {:?}", r.body);
    assert!(
        r.body.get("headers").is_some(),
        "not the app's echo: {:?}",
        r.body
    );
    &r.body
}

/// Every identity look-alike header the app received, with its values.
fn received_identity(echo: &Value) -> Vec<(String, Vec<String>)> {
    echo["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .filter(|(name, _)| is_identity_lookalike(name))
        .map(|(name, values)| {
            (
                name.clone(),
                values
                    .as_array()
                    .expect("values")
                    .iter()
                    .map(|v| v.as_str().unwrap_or("").to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// What the contract promises through any proxy recipe.
async fn the_contract_holds_through(proxy: &str, s: &TestApp, base: &str) {
    let http = http_client();
    let anon = Browser {
        http: http.clone(),
        base,
        token: None,
    };

    // Anonymous: a navigation to a protected path is sent to the login page with `next`,
    // an XHR gets 401 JSON, a public path reaches the app with no identity.
    let r = anon.page("/app/page?tab=2").await;
    assert_eq!(r.status, 302, "{proxy}: {:?}", r.body);
    assert_eq!(
        r.header("location"),
        Some("/auth/login?next=/app/page%3Ftab%3D2"),
        "{proxy}"
    );
    let r = anon.xhr("/app/data").await;
    assert_eq!(r.status, 401, "{proxy}");
    assert_eq!(r.body, json!({"error": "Unauthorized"}), "{proxy}");
    let public = anon.page("/").await;
    let e = echo(&public);
    assert!(e["identity"].is_null(), "{proxy}: {e}");
    for (name, values) in received_identity(e) {
        assert!(
            values.iter().all(String::is_empty),
            "{proxy}: {name} = {values:?}"
        );
    }

    // Signing in through the proxy, on the mount path.
    let email = format!("{proxy}@example.com");
    let r = anon
        .send(
            Method::POST,
            "/auth/api/v1/auth/register",
            &[],
            Some(json!({"email": email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 201, "{proxy}: {:?}", r.body);
    let r = anon
        .send(
            Method::POST,
            "/auth/api/v1/auth/login",
            &[],
            Some(json!({"email": email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 200, "{proxy}: {:?}", r.body);
    let user = Browser {
        http: http.clone(),
        base,
        token: Some(r.cookie().expect("cookie")),
    };
    let me = user.xhr("/auth/api/v1/auth/me").await;
    let id = me.body["user"]["id"].as_str().expect("id").to_owned();

    // The app receives the identity and an assertion it verifies.
    let r = user.page("/app/page").await;
    let e = echo(&r);
    assert_eq!(e["identity"]["email"], email.as_str(), "{proxy}: {e}");
    assert_eq!(e["identity"]["userId"], id.as_str());
    assert_eq!(e["identity"]["role"], "USER");
    let h = &e["headers"];
    assert_eq!(h["x-sessiongate-email"], json!([email]), "{proxy}");
    assert_eq!(h["x-sessiongate-user-id"], json!([id]), "{proxy}");
    assert_eq!(h["remote-user"], json!([id]), "{proxy}");
    assert_eq!(h["remote-groups"], json!(["USER"]), "{proxy}");
    // A USER on an ADMIN path.
    let r = user.page("/admin/panel").await;
    assert_eq!(r.status, 403, "{proxy}");
    assert_eq!(r.body, json!({"error": "Forbidden"}), "{proxy}");

    // Spoofing: nothing the client sends is taken for identity.
    let spoofs = [
        ("x-sessiongate-role", "ADMIN"),
        ("X-SessionGate-User-Id", "someone-else"),
        ("x_sessiongate_role", "ADMIN"),
        ("x_sessiongate_email", "boss@example.com"),
        ("Remote-User", "root"),
        ("REMOTE_GROUPS", "ADMIN"),
        ("remote-email", "boss@example.com"),
        (
            "connection",
            "X-Sessiongate-User-Id, X-Sessiongate-Assertion",
        ),
        (
            "x-sessiongate-assertion",
            "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJyb290In0.c2ln",
        ),
    ];
    for browser in [&anon, &user] {
        for path in ["/", "/app/page"] {
            let r = browser
                .send(
                    Method::GET,
                    path,
                    &[spoofs.as_slice(), &[("accept", "text/html")]].concat(),
                    None,
                )
                .await;
            if browser.token.is_none() && path != "/" {
                assert_eq!(
                    r.status, 302,
                    "{proxy}: anonymous {path} with spoofed headers"
                );
                continue;
            }
            let e = echo(&r);
            let session = browser
                .token
                .as_deref()
                .map(|t| s.with_token(t).session_id())
                .unwrap_or_default();
            let truth: Vec<&str> = if browser.token.is_some() {
                vec!["USER", email.as_str(), id.as_str(), session.as_str()]
            } else {
                Vec::new()
            };
            for (name, values) in received_identity(e) {
                for value in values {
                    let allowed = value.is_empty()
                        || truth.contains(&value.as_str())
                        || (name.contains("assertion")
                            && value.starts_with("eyJ")
                            && e["identity"].is_object());
                    assert!(allowed, "{proxy}: {path}: the app saw {name}: {value}");
                }
            }
            if browser.token.is_some() {
                assert_eq!(e["identity"]["role"], "USER", "{proxy}: {path}");
                assert_eq!(
                    e["headers"]["x-sessiongate-user-id"],
                    json!([id]),
                    "{proxy}"
                );
            } else {
                assert!(
                    e["identity"].is_null(),
                    "{proxy}: forged assertion accepted"
                );
            }
        }
        let r = browser
            .send(
                Method::GET,
                "/admin/x",
                &[spoofs.as_slice(), &[("accept", "application/json")]].concat(),
                None,
            )
            .await;
        assert!(
            r.status == 401 || r.status == 403,
            "{proxy}: spoofed ADMIN got {}",
            r.status
        );
    }

    // Paths that try to reach a protected path as a public one never reach the app.
    for path in [
        "/app/status/../secret",
        "/app/status/%2e%2e/secret",
        "/app%2Fsecret",
        "/%61pp/secret",
        "/app/status/..%2Fsecret",
        "//app/secret",
    ] {
        let r = anon.xhr(path).await;
        assert!(
            r.status != 200 || r.body.get("headers").is_none(),
            "{proxy}: {path} reached the app anonymously: {:?}",
            r.body
        );
    }

    // The sliding refresh's cookie reaches the browser through the proxy.
    s.clock.advance(days(4));
    let r = user.page("/app/page").await;
    echo(&r);
    let cookies: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Host-session=") && c.contains("Max-Age=604800")),
        "{proxy}: no re-issued cookie in {cookies:?}"
    );
    let refreshed = Browser {
        http: http.clone(),
        base,
        token: Some(
            cookies
                .iter()
                .find_map(|c| c.strip_prefix("__Host-session=")?.split(';').next())
                .expect("token")
                .to_owned(),
        ),
    };
    echo(&refreshed.page("/app/page").await);

    // Revoked elsewhere (another tab logs out): the very next request is refused.
    let r = refreshed
        .send(Method::POST, "/auth/api/v1/auth/logout", &[], None)
        .await;
    assert_eq!(r.status, 200, "{proxy}");
    let r = user.page("/app/page").await;
    assert_eq!(r.status, 302, "{proxy}: revoked session let through");
    assert_eq!(user.xhr("/app/page").await.status, 401, "{proxy}");
}

/// With Redis down, decisions come from the database; with the database down too, the
/// proxy denies (fails closed). The database part needs Postgres (it refuses new
/// connections to the test's database while the cache is failing).
async fn the_gate_fails_closed_through(proxy: &str, s: &TestApp, base: &str) {
    let http = http_client();
    let email = format!("{proxy}-outage@example.com");
    s.register_at("/auth", &email).await;
    let r = s
        .anon()
        .post(
            "/auth/api/v1/auth/login",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    let user = Browser {
        http,
        base,
        token: Some(r.cookie().expect("cookie")),
    };
    echo(&user.page("/app/page").await);
    s.faults.fail(true);
    let r = user.page("/app/page").await;
    assert_eq!(
        echo(&r)["identity"]["email"],
        email.as_str(),
        "{proxy}: from the database: {}",
        r.body
    );
    let Some(db) = postgres_url().map(|_| {
        s.config
            .database_url
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned()
    }) else {
        s.faults.fail(false);
        eprintln!(
            "{proxy}: database outage not simulated on SQLite (run with DATABASE_URL=postgres://…)"
        );
        return;
    };
    let admin_url = with_path(&postgres_url().expect("pg"), "postgres");
    let admin = sea_orm::Database::connect(admin_url.as_str())
        .await
        .expect("pg");
    use sea_orm::ConnectionTrait;
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}';"
        ))
        .await
        .expect("cut the database");
    let r = user.page("/app/page").await;
    admin
        .execute_unprepared(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"))
        .await
        .expect("restore");
    let _ = admin.close().await;
    s.faults.fail(false);
    assert_eq!(r.status, 503, "{proxy}: {:?}", r.body);
    assert!(
        r.body.get("headers").is_none(),
        "{proxy}: the app was reached"
    );
    assert!(r.header("retry-after").is_some(), "{proxy}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_nginx_auth_request() {
    if !available("nginx") {
        return;
    }
    let (s, app) = gateway_and_app().await;
    let nginx = start_nginx(s.server().addr(), app).await;
    // First: the contract's checks move the service clock days ahead of the app's.
    the_gate_fails_closed_through("nginx", &s, &nginx.base).await;
    the_contract_holds_through("nginx", &s, &nginx.base).await;
    drop(nginx);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_caddy_forward_auth() {
    if !available("caddy") {
        return;
    }
    let (s, app) = gateway_and_app().await;
    let caddy = start_caddy(s.server().addr(), app).await;
    // First: the contract's checks move the service clock days ahead of the app's.
    the_gate_fails_closed_through("caddy", &s, &caddy.base).await;
    the_contract_holds_through("caddy", &s, &caddy.base).await;
    drop(caddy);
    s.stop().await;
}
