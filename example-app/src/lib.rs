//! An app behind sessiongate, and how it learns who is calling.
//!
//! sessiongate (in proxy mode, or as the forward-auth service of nginx, Caddy or Traefik)
//! hands every allowed request the identity headers (`X-Sessiongate-User-Id`, `-Email`,
//! `-Name`, `-Role`, `-Session`, the `Remote-*` set) and `X-Sessiongate-Assertion`, an
//! Ed25519-signed JWT of the same identity. An app that verifies the assertion against
//! sessiongate's JWK Set needs to trust neither the headers nor the network path:
//!
//! ```no_run
//! # async fn demo(headers: axum::http::HeaderMap) -> anyhow::Result<()> {
//! let keys = example_app::Keys::fetch("http://127.0.0.1:8080/.well-known/jwks.json").await?;
//! let token = headers.get("x-sessiongate-assertion").and_then(|v| v.to_str().ok()).unwrap_or("");
//! let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
//! match shared::assertion::verify(&keys.current(), token, "app.example", now) {
//!     Ok(verified) => println!("signed in: {}", verified.identity.email),
//!     Err(_) => println!("anonymous"),
//! }
//! # Ok(()) }
//! ```
//!
//! [`router`] is the whole app: every path answers with a JSON echo of the request
//! (method, path, query, headers) and the identity the assertion proves, if any, except the
//! [`demo`] routes under `/demo/` (streaming, events, a WebSocket, trailers...).

pub mod demo;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Html;
use axum::routing::get;
use serde_json::{Value, json};
use shared::assertion::{ASSERTION_HEADER, Jwks, verify};

/// sessiongate's public keys, fetched from its JWK Set and fetched again when an assertion
/// names a key the app has not seen (a rotation).
#[derive(Clone)]
pub struct Keys {
    url: String,
    jwks: Arc<RwLock<Jwks>>,
}

impl Keys {
    /// Fetches the JWK Set at `url` (`<sessiongate>/<MOUNT_PATH>.well-known/jwks.json`).
    pub async fn fetch(url: &str) -> anyhow::Result<Keys> {
        let jwks = download(url).await?;
        Ok(Keys {
            url: url.to_owned(),
            jwks: Arc::new(RwLock::new(jwks)),
        })
    }

    /// The keys as last fetched.
    pub fn current(&self) -> Jwks {
        self.jwks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetches the keys again (after an assertion named an unknown key).
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let jwks = download(&self.url).await?;
        *self.jwks.write().unwrap_or_else(|e| e.into_inner()) = jwks;
        Ok(())
    }
}

async fn download(url: &str) -> anyhow::Result<Jwks> {
    let text = reqwest::get(url).await?.error_for_status()?.text().await?;
    Ok(Jwks::parse(&text)?)
}

/// What the app needs: sessiongate's keys and the audience it expects (its own host as
/// clients address it, or sessiongate's `ASSERTION_AUDIENCE`); `None` takes the request's
/// `Host`.
#[derive(Clone)]
pub struct App {
    pub keys: Keys,
    pub audience: Option<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The identity the request's assertion proves, or why there is none.
pub async fn identity(app: &App, headers: &HeaderMap) -> Result<Value, String> {
    let token = headers
        .get(ASSERTION_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if token.is_empty() {
        return Err("no assertion: anonymous".into());
    }
    let audience = app.audience.clone().unwrap_or_else(|| {
        headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    });
    let mut result = verify(&app.keys.current(), token, &audience, now());
    if matches!(result, Err(shared::assertion::AssertionError::UnknownKid))
        && app.keys.refresh().await.is_ok()
    {
        result = verify(&app.keys.current(), token, &audience, now());
    }
    match result {
        Ok(v) => Ok(json!({
            "userId": v.identity.user_id,
            "email": v.identity.email,
            "name": v.identity.name,
            "role": v.identity.role.as_str(),
            "session": v.identity.session,
            "issuer": v.issuer,
            "kid": v.kid,
        })),
        Err(e) => Err(e.to_string()),
    }
}

/// Every request: its echo and its verified identity.
async fn echo(State(app): State<App>, request: Request) -> Json<Value> {
    let headers: BTreeMap<String, Vec<String>> =
        request
            .headers()
            .iter()
            .fold(BTreeMap::new(), |mut all, (name, value)| {
                all.entry(name.as_str().to_owned())
                    .or_default()
                    .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
                all
            });
    let identity = identity(&app, request.headers()).await;
    Json(json!({
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "query": request.uri().query(),
        "headers": headers,
        "identity": identity.as_ref().ok(),
        "identityError": identity.as_ref().err(),
    }))
}

/// `GET /app`: a page for browsers, greeting the signed-in user by the identity the
/// assertion proves, with a live WebSocket to `/app/socket` whose state it shows.
async fn page(State(app): State<App>, headers: HeaderMap) -> Html<String> {
    let who = match identity(&app, &headers).await {
        Ok(identity) => format!(
            "Signed in as {} ({})",
            escape(identity["email"].as_str().unwrap_or("")),
            escape(identity["role"].as_str().unwrap_or(""))
        ),
        Err(why) => format!("Anonymous ({})", escape(&why)),
    };
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Example app</title></head>
<body>
<h1>Example app behind sessiongate</h1>
<p id="identity">{who}</p>
<p>Socket: <span id="socket">connecting</span></p>
<script>
  const status = document.getElementById('socket');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const socket = new WebSocket(`${{scheme}}://${{location.host}}/app/socket`);
  socket.onopen = () => {{ status.textContent = 'open'; socket.send('hello'); }};
  socket.onmessage = (e) => {{ status.textContent = `open: ${{e.data}}`; }};
  socket.onclose = () => {{ status.textContent = 'closed'; }};
</script>
</body></html>"#
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The app: its page at `/app` with a WebSocket at `/app/socket`, the demo routes under
/// `/demo` ([`demo`]), and every other path echoes.
pub fn router(app: App) -> Router {
    demo::routes()
        .route("/app", get(page))
        .route("/app/socket", get(demo::ws))
        .fallback(echo)
        .with_state(app)
}
