//! Operations, rate limits and the cross-cutting rules: cron cleanup, health, readiness,
//! metrics, CSRF, routing errors, X-Forwarded-For trust, limiter fallback and audit faults.

use crate::support::*;
use serde_json::json;

const TOO_MANY: &str = "Too many requests. Please try again later.";

fn defaults() -> Vec<(&'static str, &'static str)> {
    [
        "LOGIN",
        "LOGIN_ACCOUNT",
        "REGISTER",
        "ACCOUNT_UPDATE_IP",
        "ACCOUNT_UPDATE_USER",
        "PASSWORD",
    ]
    .iter()
    .map(|b| -> (&'static str, &'static str) {
        (Box::leak(format!("RATE_LIMIT_{b}").into_boxed_str()), "")
    })
    .collect()
}

#[tokio::test]
async fn login_and_register_limits_per_ip() {
    let s = TestApp::start_with(&defaults()).await;
    s.register("sue@example.com").await;
    for remaining in (1..5).rev() {
        let r = s.login_as("sue@example.com", "bad password").await;
        assert_eq!(r.status, 401);
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some(remaining.to_string().as_str())
        );
    }
    let r = s.login_as("sue@example.com", PASSWORD).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    let r = s.login_as("sue@example.com", PASSWORD).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body, json!({"error": TOO_MANY}));
    assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    let retry: u64 = r
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("secs");
    assert!((1..=60).contains(&retry), "{retry}");

    // register: 5 per 60 s per IP (one was used above).
    for i in 0..4 {
        let r = s
            .anon()
            .post(
                "/api/v1/auth/register",
                json!({"email": format!("r{i}@example.com"), "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, 201);
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
    }
    let r = s
        .anon()
        .post(
            "/api/v1/auth/register",
            json!({"email": "r9@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    s.stop().await;
}

#[tokio::test]
async fn login_account_limit_across_ips_and_forwarded_for_trust() {
    let s = TestApp::start_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ("RATE_LIMIT_LOGIN", ""),
        ("RATE_LIMIT_LOGIN_ACCOUNT", ""),
    ])
    .await;
    s.register("tom@example.com").await;
    for i in 0..10 {
        let ip = format!("198.51.100.{i}");
        let r = s
            .anon()
            .req(Method::POST, "/api/v1/auth/login")
            .json(json!({"email": "tom@example.com", "password": "bad password"}))
            .header("x-forwarded-for", &ip)
            .send()
            .await;
        assert_eq!(r.status, 401, "attempt {i}");
        // Each IP is fresh (4 left); the account bucket has fewer left from the 7th on.
        let expected = if i < 6 { "5" } else { "10" };
        assert_eq!(r.header("x-ratelimit-limit"), Some(expected), "attempt {i}");
    }
    let r = s
        .anon()
        .req(Method::POST, "/api/v1/auth/login")
        .json(json!({"email": "TOM@example.com", "password": PASSWORD}))
        .header("x-forwarded-for", "198.51.100.77")
        .send()
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ratelimit-limit"), Some("10"));
    let retry: u64 = r
        .header("retry-after")
        .expect("retry")
        .parse()
        .expect("secs");
    assert!(retry > 60 && retry <= 900);

    // The trusted proxy's X-Forwarded-For names the client: right-most untrusted entry.
    let r = s
        .anon()
        .req(Method::POST, "/api/v1/auth/register")
        .json(json!({"email": "uma@example.com", "password": PASSWORD}))
        .send()
        .await;
    assert_eq!(r.status, 201);
    let r = s
        .anon()
        .req(Method::POST, "/api/v1/auth/login")
        .json(json!({"email": "uma@example.com", "password": PASSWORD}))
        .header("x-forwarded-for", "10.9.9.9, 203.0.113.9, 127.0.0.1")
        .send()
        .await;
    let token = s.with_token(&r.cookie().expect("cookie"));
    let list = token.get("/api/v1/account/sessions").await;
    assert_eq!(list.body["sessions"][0]["ipAddress"], "203.0.113.9");
    s.stop().await;

    // From an untrusted peer the header is ignored.
    let s = TestApp::start().await;
    s.register("vic@example.com").await;
    let r = s
        .anon()
        .req(Method::POST, "/api/v1/auth/login")
        .json(json!({"email": "vic@example.com", "password": PASSWORD}))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await;
    let token = s.with_token(&r.cookie().expect("cookie"));
    let list = token.get("/api/v1/account/sessions").await;
    assert_eq!(list.body["sessions"][0]["ipAddress"], "127.0.0.1");
    s.stop().await;
}

#[tokio::test]
async fn account_update_and_password_limits() {
    let s = TestApp::start_with(&defaults()).await;
    let token = s.user("wes@example.com").await;
    for i in 0..10 {
        let r = token
            .req(Method::PATCH, "/api/v1/account")
            .json(json!({"name": format!("W{i}")}))
            .send()
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-ratelimit-limit"),
            Some("10"),
            "user bucket is tighter"
        );
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some((9 - i).to_string().as_str())
        );
    }
    let r = token
        .req(Method::PATCH, "/api/v1/account")
        .json(json!({"name": "again"}))
        .send()
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["error"], TOO_MANY);

    let path = "/api/v1/account/password";
    // An invalid request counts and carries the headers too.
    let r = token.post(path, json!({"currentPassword": PASSWORD})).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("4"));
    for _ in 0..4 {
        let r = token
            .post(
                path,
                json!({"currentPassword": "wrong password", "newPassword": "new password 2"}),
            )
            .await;
        assert_eq!(r.status, 403);
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
    }
    let r = token
        .post(
            path,
            json!({"currentPassword": PASSWORD, "newPassword": "new password 2"}),
        )
        .await;
    assert_eq!(r.status, 429);
    let retry: u64 = r
        .header("retry-after")
        .expect("retry")
        .parse()
        .expect("secs");
    assert!(retry > 60 && retry <= 900);
    s.stop().await;
}

#[tokio::test]
async fn cache_failure_falls_back_to_database_and_local_limiter() {
    let s = TestApp::start_with(&defaults()).await;
    let token = s.user("xan@example.com").await;
    s.faults.fail(true);
    // Verify still works, from the database.
    let r = token.get("/api/v1/auth/me").await;
    assert_eq!(r.status, 200);
    assert!(s.metric("sessiongate_session_db_fallbacks_total").await >= 1.0);
    let r = s.anon().get("/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["cache"], "unavailable");
    assert_eq!(r.body["database"], "ok");
    assert!(r.header("retry-after").is_some());
    assert!(r.body["error"].as_str().expect("error").contains("cache"));
    // Login is neither open to brute force nor shut down: the per-process window applies.
    for _ in 0..5 {
        assert_eq!(s.login_as("xan@example.com", PASSWORD).await.status, 200);
    }
    let r = s.login_as("xan@example.com", PASSWORD).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["error"], TOO_MANY);
    assert!(s.metric("sessiongate_rate_limit_fallbacks_total").await >= 5.0);
    s.faults.fail(false);
    assert_eq!(s.anon().get("/readyz").await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn audit_write_failure_does_not_fail_login() {
    let s = TestApp::start().await;
    s.register("yan@example.com").await;
    s.sql("DROP TABLE audit_log").await;
    let r = s.login_as("yan@example.com", PASSWORD).await;
    assert_eq!(r.status, 200);
    assert!(r.cookie().is_some());
    s.wait_metric("sessiongate_audit_write_failures_total", 1.0)
        .await;
    s.stop().await;
}

#[tokio::test]
async fn cron_cleanup_deletes_exactly_the_expired_rows() {
    let s = TestApp::start().await;
    let path = "/api/v1/cron/cleanup-sessions";
    assert_eq!(s.anon().req(Method::POST, path).send().await.status, 401);
    let r = s
        .anon()
        .req(Method::POST, path)
        .header("authorization", "Bearer wrong")
        .send()
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"], "Unauthorized");
    let bearer = format!("Bearer {CRON}");
    let r = s
        .anon()
        .req(Method::POST, path)
        .header("authorization", &bearer)
        .send()
        .await;
    assert_eq!(r.body, json!({"deleted": 0}));
    // The scheme is case-insensitive and may be followed by several spaces (RFC 7235/6750);
    // another scheme or no separator is refused.
    for (header, status) in [
        (format!("bearer {CRON}"), 200),
        (format!("Bearer   {CRON}"), 200),
        (format!("Basic {CRON}"), 401),
        (format!("Bearer{CRON}"), 401),
        (CRON.to_owned(), 401),
    ] {
        let r = s
            .anon()
            .req(Method::POST, path)
            .header("authorization", &header)
            .send()
            .await;
        assert_eq!(r.status, status, "{header}");
    }

    s.register("old@example.com").await;
    s.register("new@example.com").await;
    let _old1 = s.login("old@example.com").await;
    let _old2 = s.login("old@example.com").await;
    s.clock.advance(days(4));
    let fresh = s.login("new@example.com").await;
    s.clock.advance(hours(84));
    let r = s
        .anon()
        .req(Method::POST, path)
        .header("authorization", &bearer)
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"deleted": 2}));
    assert_eq!(fresh.get("/api/v1/auth/me").await.status, 200);
    let r = s
        .anon()
        .req(Method::POST, path)
        .header("authorization", &bearer)
        .send()
        .await;
    assert_eq!(r.body, json!({"deleted": 0}));
    s.stop().await;

    let s = TestApp::start_with(&[("CRON_SECRET", "")]).await;
    let r = s
        .anon()
        .req(Method::POST, path)
        .header("authorization", "Bearer ")
        .send()
        .await;
    assert_eq!(r.status, 401);
    s.stop().await;
}

#[tokio::test]
async fn health_ready_metrics_and_routing() {
    let s = TestApp::start().await;
    assert_eq!(s.anon().get("/healthz").await.status, 200);
    let r = s.anon().get("/readyz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"database": "ok", "cache": "ok"}));
    let token = s.user("zed@example.com").await;
    let _ = token.get("/api/v1/auth/me").await;
    // Public listener: only with the bearer token.
    for auth in [None, Some("Bearer wrong-token"), Some("Basic bWV0cmljcw==")] {
        let mut req = s.http.get(format!("{}/metrics", s.base));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let r = Resp::read(req.send().await.expect("metrics")).await;
        assert_eq!(r.status, 401, "{auth:?}");
        assert!(r.body["error"].is_string());
    }
    let r = s
        .http
        .get(format!("{}/metrics", s.base))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/plain")
    );
    let text = r.text().await.expect("text");
    for name in [
        "sessiongate_http_requests_total",
        "sessiongate_http_request_duration_seconds_bucket",
        "sessiongate_session_cache_hits_total",
        "sessiongate_session_cache_misses_total",
        "sessiongate_password_queue_depth",
    ] {
        assert!(text.contains(name), "{name}");
    }
    assert!(text.contains("route=\"/api/v1/auth/me\""));
    assert!(!text.contains(token.token()));

    // Unknown API path: JSON 404; wrong method: 405; every answer has a request id.
    let r = s.anon().get("/api/v1/nothing/here").await;
    assert_eq!(r.status, 404);
    assert!(r.body["error"].is_string());
    assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()));
    // A client's own request id is replaced, never echoed (regression: the axum move let
    // tower-http keep it).
    let r = s
        .anon()
        .req(Method::GET, "/healthz")
        .header("x-request-id", "injected")
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("x-request-id")
            .is_some_and(|v| v.len() == 32 && v != "injected"),
        "{:?}",
        r.header("x-request-id")
    );
    let r = s.anon().req(Method::PUT, "/api/v1/auth/me").send().await;
    assert_eq!(r.status, 405);
    assert!(r.body["error"].is_string());
    let r = s.anon().req(Method::GET, "/api/v1/auth/login").send().await;
    assert_eq!(r.status, 405);
    s.stop().await;
}

#[tokio::test]
async fn cross_site_requests_are_refused_first() {
    let s = TestApp::start().await;
    let token = s.user("csrf@example.com").await;
    let login = json!({"email": "csrf@example.com", "password": PASSWORD});
    let r = s
        .anon()
        .req(Method::POST, "/api/v1/auth/login")
        .json(login.clone())
        .header("origin", "https://evil.example")
        .send()
        .await;
    assert_eq!(r.status, 403);
    assert!(r.body["error"].is_string());
    let r = token
        .req(Method::POST, "/api/v1/auth/logout")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        token.get("/api/v1/auth/me").await.status,
        200,
        "logout did not happen"
    );
    let r = token
        .req(Method::DELETE, "/api/v1/account/sessions")
        .header("origin", "null")
        .send()
        .await;
    assert_eq!(r.status, 403);
    // Same origin is fine, and so is a request with neither header.
    let origin = format!("http://{}", s.host());
    let r = s
        .anon()
        .req(Method::POST, "/api/v1/auth/login")
        .json(login.clone())
        .header("origin", &origin)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await;
    assert_eq!(r.status, 200);
    // A GET with a foreign Origin is not state-changing.
    let r = token
        .req(Method::GET, "/api/v1/auth/me")
        .header("origin", "https://evil.example")
        .send()
        .await;
    assert_eq!(r.status, 200);
    s.stop().await;
}
