//! A typed client for the HTTP contract (`../shared/spec/api-v1.md`): one method per
//! endpoint, each returning a [`Reply`] whose status, headers and JSON body (typed per
//! endpoint) the caller asserts on. Transport failures stay `reqwest::Error`s so a fault
//! suite can tell a refused connection from a timeout.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use reqwest;

/// A user as the API shows it (`{user}`; `profile` adds `updatedAt`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
    pub created_at: String,
    pub updated_at: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct UserBody {
    pub user: User,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ProfileBody {
    pub profile: User,
}

/// One live session of the caller.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    pub current: bool,
    pub ip_address: Option<String>,
    pub browser: Option<String>,
    pub os: Option<String>,
    pub device_type: Option<String>,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SessionsBody {
    pub sessions: Vec<Session>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditItem {
    pub action: String,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub metadata: Value,
    pub created_at: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    pub page: u64,
    pub page_size: u64,
    pub total: u64,
    pub total_pages: u64,
    pub has_next: bool,
    pub has_prev: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub pagination: Pagination,
}

/// `{"ok":true}`, with `revoked` on the routes that revoke several sessions.
#[derive(Clone, Debug, Deserialize)]
pub struct Done {
    pub ok: bool,
    pub revoked: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Deleted {
    pub deleted: u64,
}

/// `/readyz`: `"ok"` or `"unavailable"` per dependency.
#[derive(Clone, Debug, Deserialize)]
pub struct Readiness {
    pub database: String,
    pub cache: String,
}

/// `PATCH /api/v1/account`.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
}

/// One answer; `T` is the success body's type ([`Reply::body`]).
pub struct Reply<T = Value> {
    pub status: u16,
    pub headers: HeaderMap,
    pub bytes: Bytes,
    /// From sending to the last body byte.
    pub elapsed: Duration,
    body: PhantomData<fn() -> T>,
}

impl<T> Clone for Reply<T> {
    fn clone(&self) -> Self {
        Reply {
            status: self.status,
            headers: self.headers.clone(),
            bytes: self.bytes.clone(),
            elapsed: self.elapsed,
            body: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text())
    }
}

impl<T: DeserializeOwned> Reply<T> {
    /// The body as the endpoint's success type.
    pub fn body(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.bytes)
            .map_err(|e| anyhow::anyhow!("{} body {:?}: {e}", self.status, self.text()))
    }
}

impl<T> Reply<T> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every `Set-Cookie` value.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// The body as untyped JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The `error` message of a failure body.
    pub fn error(&self) -> Option<String> {
        self.json().get("error")?.as_str().map(str::to_owned)
    }

    /// The session token this answer sets (cookie `session` or `__Host-session`).
    pub fn token(&self) -> Option<String> {
        self.set_cookies().into_iter().find_map(|v| {
            let (name, value) = v.split(';').next()?.split_once('=')?;
            let name = name.trim();
            ((name == "session" || name == "__Host-session") && !value.is_empty())
                .then(|| value.to_owned())
        })
    }

    /// `Retry-After` in seconds.
    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after").and_then(|v| v.parse().ok())
    }
}

/// The Prometheus text of `/metrics`.
pub struct Metrics(pub String);

impl Metrics {
    /// A counter or gauge summed over its label sets whose labels contain `label`.
    pub fn sum_with(&self, name: &str, label: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(name).is_some_and(|rest| {
                    rest.starts_with(' ') || (rest.starts_with('{') && rest.contains(label))
                })
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// A counter or gauge summed over all its label sets.
    pub fn sum(&self, name: &str) -> f64 {
        self.sum_with(name, "")
    }
}

/// A client for one origin (or an edge in front of it).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    forwarded_for: Option<String>,
    cookie: &'static str,
}

impl Api {
    /// A client with `timeout` per request, no redirects followed, and idle connections
    /// dropped before the origin's header timeout would close them.
    pub fn new(base: &str, timeout: Duration) -> Api {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain-HTTP client always builds");
        Api::with_client(base, http)
    }

    /// A client on a reqwest client of the caller's.
    pub fn with_client(base: &str, http: reqwest::Client) -> Api {
        Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
            forwarded_for: None,
            cookie: "session",
        }
    }

    /// The same client, sending `X-Forwarded-For: ip` (the origin believes it from a
    /// trusted proxy): each simulated client gets an address of its own.
    pub fn from_ip(&self, ip: &str) -> Api {
        Api {
            forwarded_for: Some(ip.to_owned()),
            ..self.clone()
        }
    }

    /// Sends the session as `__Host-session` (an origin with `COOKIE_SECURE=true`).
    pub fn secure_cookie(mut self) -> Api {
        self.cookie = "__Host-session";
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path`, with the client address when one is set.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match &self.forwarded_for {
            Some(ip) => req.header("x-forwarded-for", ip),
            None => req,
        }
    }

    /// A request carrying the session cookie `token`.
    pub fn authed(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.with_cookie(self.request(method, path), token)
    }

    /// Adds the session cookie to a request.
    pub fn with_cookie(&self, req: RequestBuilder, token: &str) -> RequestBuilder {
        req.header("cookie", format!("{}={token}", self.cookie))
    }

    /// Sends a prepared request and reads the whole answer.
    pub async fn send<T>(&self, req: RequestBuilder) -> Result<Reply<T>, reqwest::Error> {
        let started = Instant::now();
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        Ok(Reply {
            status,
            headers,
            bytes,
            elapsed: started.elapsed(),
            body: PhantomData,
        })
    }

    async fn send_json<T>(
        &self,
        req: RequestBuilder,
        body: &Value,
    ) -> Result<Reply<T>, reqwest::Error> {
        self.send(
            req.header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn register(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
    ) -> Result<Reply<UserBody>, reqwest::Error> {
        let mut body = json!({ "email": email, "password": password });
        if let Some(name) = name {
            body["name"] = json!(name);
        }
        self.send_json(self.request(Method::POST, "/api/v1/auth/register"), &body)
            .await
    }

    /// The session token is [`Reply::token`].
    pub async fn login(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Reply<UserBody>, reqwest::Error> {
        let body = json!({ "email": email, "password": password });
        self.send_json(self.request(Method::POST, "/api/v1/auth/login"), &body)
            .await
    }

    pub async fn logout(&self, token: &str) -> Result<Reply<Done>, reqwest::Error> {
        self.send(self.authed(Method::POST, "/api/v1/auth/logout", token))
            .await
    }

    /// `GET /api/v1/auth/me`: the verify path.
    pub async fn me(&self, token: &str) -> Result<Reply<UserBody>, reqwest::Error> {
        self.send(self.authed(Method::GET, "/api/v1/auth/me", token))
            .await
    }

    pub async fn account(&self, token: &str) -> Result<Reply<ProfileBody>, reqwest::Error> {
        self.send(self.authed(Method::GET, "/api/v1/account", token))
            .await
    }

    pub async fn update_account(
        &self,
        token: &str,
        patch: &AccountPatch,
    ) -> Result<Reply<ProfileBody>, reqwest::Error> {
        let body = serde_json::to_value(patch).unwrap_or_default();
        self.send_json(self.authed(Method::PATCH, "/api/v1/account", token), &body)
            .await
    }

    pub async fn change_password(
        &self,
        token: &str,
        current: &str,
        new: &str,
    ) -> Result<Reply<Done>, reqwest::Error> {
        let body = json!({ "currentPassword": current, "newPassword": new });
        self.send_json(
            self.authed(Method::POST, "/api/v1/account/password", token),
            &body,
        )
        .await
    }

    pub async fn sessions(&self, token: &str) -> Result<Reply<SessionsBody>, reqwest::Error> {
        self.send(self.authed(Method::GET, "/api/v1/account/sessions", token))
            .await
    }

    /// Revokes every other session of the caller.
    pub async fn revoke_others(&self, token: &str) -> Result<Reply<Done>, reqwest::Error> {
        self.send(self.authed(Method::DELETE, "/api/v1/account/sessions", token))
            .await
    }

    /// Revokes the caller's session `id` (its storage hash).
    pub async fn revoke(&self, token: &str, id: &str) -> Result<Reply<Done>, reqwest::Error> {
        let path = format!("/api/v1/account/sessions/{id}");
        self.send(self.authed(Method::DELETE, &path, token)).await
    }

    pub async fn audit(
        &self,
        token: &str,
        page: u64,
        page_size: u64,
    ) -> Result<Reply<Page<AuditItem>>, reqwest::Error> {
        let path = format!("/api/v1/account/audit?page={page}&pageSize={page_size}");
        self.send(self.authed(Method::GET, &path, token)).await
    }

    /// `GET /api/v1/users` (ADMIN).
    pub async fn users(
        &self,
        token: &str,
        page: u64,
        page_size: u64,
        search: &str,
    ) -> Result<Reply<Page<User>>, reqwest::Error> {
        let req = self.authed(Method::GET, "/api/v1/users", token).query(&[
            ("page", page.to_string()),
            ("pageSize", page_size.to_string()),
            ("search", search.to_owned()),
        ]);
        self.send(req).await
    }

    pub async fn set_role(
        &self,
        token: &str,
        id: &str,
        role: &str,
    ) -> Result<Reply<UserBody>, reqwest::Error> {
        let path = format!("/api/v1/users/{id}");
        self.send_json(
            self.authed(Method::PATCH, &path, token),
            &json!({ "role": role }),
        )
        .await
    }

    pub async fn delete_user(&self, token: &str, id: &str) -> Result<Reply<Done>, reqwest::Error> {
        let path = format!("/api/v1/users/{id}");
        self.send(self.authed(Method::DELETE, &path, token)).await
    }

    pub async fn revoke_user_sessions(
        &self,
        token: &str,
        id: &str,
    ) -> Result<Reply<Done>, reqwest::Error> {
        let path = format!("/api/v1/users/{id}/sessions");
        self.send(self.authed(Method::DELETE, &path, token)).await
    }

    /// `POST /api/v1/cron/cleanup-sessions` with the cron secret.
    pub async fn cleanup(&self, cron_secret: &str) -> Result<Reply<Deleted>, reqwest::Error> {
        let req = self
            .request(Method::POST, "/api/v1/cron/cleanup-sessions")
            .bearer_auth(cron_secret);
        self.send(req).await
    }

    pub async fn healthz(&self) -> Result<Reply, reqwest::Error> {
        self.send(self.request(Method::GET, "/healthz")).await
    }

    pub async fn readyz(&self) -> Result<Reply<Readiness>, reqwest::Error> {
        self.send(self.request(Method::GET, "/readyz")).await
    }

    /// `/metrics` (with `Authorization: Bearer <token>` when one is given).
    pub async fn metrics(&self, token: Option<&str>) -> anyhow::Result<Metrics> {
        let mut req = self.request(Method::GET, "/metrics");
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let reply: Reply = self.send(req).await?;
        anyhow::ensure!(reply.status == 200, "/metrics answered {}", reply.status);
        Ok(Metrics(reply.text()))
    }

    /// One counter or gauge from `/metrics`, summed over its label sets.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        Ok(self.metrics(Some(crate::METRICS_TOKEN)).await?.sum(name))
    }

    /// Waits until `/readyz` answers 200; false at the deadline.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.readyz().await.is_ok_and(|r| r.status == 200) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply<UserBody> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, value.parse().expect("header value"));
        }
        Reply {
            status,
            headers: map,
            bytes: Bytes::from(body.to_owned()),
            elapsed: Duration::ZERO,
            body: PhantomData,
        }
    }

    #[test]
    fn token_is_the_session_cookie_only() {
        let r = reply(
            200,
            &[
                ("set-cookie", "other=1; Path=/"),
                ("set-cookie", "session=abc.def.ghi; Path=/; HttpOnly"),
            ],
            "{}",
        );
        assert_eq!(r.token().as_deref(), Some("abc.def.ghi"));
        let cleared = reply(200, &[("set-cookie", "__Host-session=; Max-Age=0")], "{}");
        assert_eq!(cleared.token(), None);
    }

    #[test]
    fn typed_body_and_error() {
        let ok = reply(
            200,
            &[],
            r#"{"user":{"id":"u1","email":"a@b.example","name":null,"role":"USER","createdAt":"t"}}"#,
        );
        assert_eq!(ok.body().expect("a user").user.email, "a@b.example");
        let failed = reply(401, &[("retry-after", "7")], r#"{"error":"Unauthorized"}"#);
        assert!(failed.body().is_err());
        assert_eq!(failed.error().as_deref(), Some("Unauthorized"));
        assert_eq!(failed.retry_after(), Some(7));
    }

    #[test]
    fn metrics_sum_over_label_sets() {
        let m = Metrics(
            "# HELP x\nreqs_total{route=\"/a\"} 2\nreqs_total{route=\"/b\"} 3\nreqs_total_other 9\nhits 4\n"
                .into(),
        );
        assert_eq!(m.sum("reqs_total"), 5.0);
        assert_eq!(m.sum_with("reqs_total", "route=\"/b\""), 3.0);
        assert_eq!(m.sum("hits"), 4.0);
        assert_eq!(m.sum("missing"), 0.0);
    }
}
