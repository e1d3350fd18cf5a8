//! The contract's Auth table, the cookie, verification, refresh and expiry, black-box over
//! HTTP against a real server (embedded backends, or Postgres + Redis when configured).

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn register_rows_and_failures() {
    let s = TestApp::start().await;
    let r = s
        .anon()
        .post(
            "/api/v1/auth/register",
            json!({"email": "  Alice@Example.COM ", "password": PASSWORD, "name": "Alice"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.header("set-cookie").is_none(), "register sets no cookie");
    let user = &r.body["user"];
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["name"], "Alice");
    assert_eq!(user["role"], "USER");
    assert!(user["id"].is_string());
    assert!(
        user["createdAt"]
            .as_str()
            .expect("createdAt")
            .ends_with('Z')
    );
    assert!(user.get("passwordHash").is_none() && !r.body.to_string().contains("argon2"));

    let dup = s
        .anon()
        .post(
            "/api/v1/auth/register",
            json!({"email": "alice@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(dup.status, 409);
    assert!(dup.body["error"].is_string());

    for body in [
        json!({"email": "not-an-email", "password": PASSWORD}),
        json!({"email": "bob@example.com", "password": "short"}),
        json!({"email": "bob@example.com", "password": "x".repeat(1025)}),
        json!({"email": "bob@example.com"}),
        json!({"password": PASSWORD}),
        json!({"email": 5, "password": PASSWORD}),
        json!({"email": "bob@example.com", "password": PASSWORD, "name": 7}),
        // Control characters (NUL cannot even be stored in Postgres text: once a 500).
        json!({"email": "bob@example.com", "password": PASSWORD, "name": "a\u{0}b"}),
        json!({"email": "bob@example.com", "password": PASSWORD, "name": "bell\u{7}"}),
    ] {
        let r = s.anon().post("/api/v1/auth/register", body.clone()).await;
        assert_eq!(r.status, 422, "{body}");
        assert!(r.body["error"].is_string());
        // Every response of a rate-limited route carries the headers, invalid ones too.
        assert_eq!(r.header("x-ratelimit-limit"), Some("10000"), "{body}");
    }
    // Exactly 1024 bytes is allowed.
    let r = s
        .anon()
        .post(
            "/api/v1/auth/register",
            json!({"email": "long@example.com", "password": "y".repeat(1024)}),
        )
        .await;
    assert_eq!(r.status, 201);
    s.stop().await;
}

#[tokio::test]
async fn body_rules_413_415_400() {
    let s = TestApp::start().await;
    let url = format!("{}/api/v1/auth/login", s.base);
    let big = format!("{{\"email\":\"{}\"}}", "a".repeat(70 * 1024));
    let r = s
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 413);
    // Every response of a rate-limited route carries the headers, refusals included.
    let limited = |r: &reqwest::Response| {
        assert!(
            r.headers().get("x-ratelimit-limit").is_some()
                && r.headers().get("x-ratelimit-remaining").is_some(),
            "{}: {:?}",
            r.status(),
            r.headers()
        );
    };
    limited(&r);
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(body["error"].is_string());

    let r = s
        .http
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 415);
    limited(&r);
    let r = s
        .http
        .post(&url)
        .header("content-type", "application/json; charset=utf-8")
        .body("{nope")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    limited(&r);
    let r = s
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("[1,2]")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    limited(&r);
    let r = s
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 422);
    limited(&r);
    // A chunked body without Content-Length is capped while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..80).map(|_| Ok(vec![b' '; 1024])).collect();
    let stream = futures_util::stream::iter(chunks);
    let r = s
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 413);
    limited(&r);
    s.stop().await;
}

#[tokio::test]
async fn login_cookie_format_and_attributes() {
    let s = TestApp::start().await;
    s.register("carol@example.com").await;
    let before = s.clock.now_unix();
    let r = s.login_as(" CAROL@example.com", PASSWORD).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["user"]["email"], "carol@example.com");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let set = r.header("set-cookie").expect("set-cookie").to_owned();
    let attrs: Vec<&str> = set.split("; ").collect();
    assert!(attrs[0].starts_with("__Host-session="));
    for a in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=604800",
    ] {
        assert!(attrs.contains(&a), "{a} in {set}");
    }
    assert!(!set.to_ascii_lowercase().contains("domain"));
    let token = r.cookie().expect("token");
    assert_eq!(token.split('.').count(), 3);
    let header = segment(&token, 0);
    assert_eq!(header, json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}));
    let claims = segment(&token, 1);
    let obj = claims.as_object().expect("claims");
    let mut names: Vec<&str> = obj.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["exp", "iat", "sid"]);
    let sid = claims["sid"].as_str().expect("sid");
    assert_eq!(sid.len(), 43);
    assert!(shared::sid::is_session_id_form(sid));
    let iat = claims["iat"].as_u64().expect("iat");
    assert!(iat >= before && iat <= before + 5);
    assert_eq!(claims["exp"].as_u64().expect("exp") - iat, 604_800);
    // The token verifies with the shared code and the configured keys.
    let ring = shared::KeyRing::parse(KEYS).expect("ring");
    assert!(shared::verify(&ring, &token, iat).is_ok());

    // The sessions list shows the hash, never the raw id.
    let list = s.with_token(&token).get("/api/v1/account/sessions").await;
    let id = list.body["sessions"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let parsed = shared::SessionId::parse(sid).expect("sid");
    assert_eq!(id, parsed.storage_hash());
    assert!(!list.body.to_string().contains(sid));
    s.stop().await;
}

#[tokio::test]
async fn insecure_cookie_name_when_secure_is_off() {
    let s = TestApp::start_with(&[("COOKIE_SECURE", "false")]).await;
    s.register("dev@example.com").await;
    let r = s.login_as("dev@example.com", PASSWORD).await;
    let set = r.header("set-cookie").expect("cookie");
    assert!(set.starts_with("session="));
    assert!(!set.contains("Secure"));
    let token = r.cookie().expect("token");
    let me = s
        .anon()
        .req(Method::GET, "/api/v1/auth/me")
        .header("cookie", &format!("session={token}"))
        .send()
        .await;
    assert_eq!(me.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn anti_enumeration_and_no_fixation() {
    let s = TestApp::start().await;
    s.register("dave@example.com").await;
    let unknown = s.login_as("nobody@example.com", PASSWORD).await;
    let wrong = s.login_as("dave@example.com", "wrong password").await;
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.body, json!({"error": "Invalid credentials"}));
    assert_eq!(unknown.body, wrong.body);
    // An email no account can have (NUL: once a 500 on Postgres) is just unknown.
    let nul = s.login_as("dave\u{0}@example.com", PASSWORD).await;
    assert_eq!(nul.status, 401);
    assert_eq!(nul.body, unknown.body);
    assert!(unknown.header("set-cookie").is_none() && wrong.header("set-cookie").is_none());

    let first = s.login("dave@example.com").await;
    // A login carrying a valid session cookie gets a brand-new session id, and the
    // presented session ends (ASVS 7.2.4; audited as a `relogin` revoke).
    let again = first
        .req(Method::POST, "/api/v1/auth/login")
        .json(json!({"email": "dave@example.com", "password": PASSWORD}))
        .send()
        .await;
    assert_eq!(again.status, 200);
    let second = first.with(again.cookie().expect("cookie"));
    assert_ne!(segment(&first, 1)["sid"], segment(&second, 1)["sid"]);
    assert_eq!(first.me().await.status, 401, "the presented session ended");
    let list = second.get("/api/v1/account/sessions").await;
    let ids: Vec<&str> = list.body["sessions"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|x| x["id"].as_str())
        .collect();
    assert_eq!(ids, [second.session_id()], "only the new session lives");
    let revoke = second
        .audit_item(|i| i["action"] == "session_revoke" && i["metadata"]["reason"] == "relogin")
        .await;
    assert_eq!(revoke["metadata"]["sessionId"], first.session_id().as_str());
    s.stop().await;
}

#[tokio::test]
async fn me_logout_and_revoked_cookie() {
    let s = TestApp::start().await;
    let token = s.user("erin@example.com").await;
    assert_eq!(s.anon().get("/api/v1/auth/me").await.status, 401);
    assert_eq!(
        s.anon().get("/api/v1/auth/me").await.body,
        json!({"error": "Unauthorized"})
    );
    assert_eq!(
        s.with_token("garbage.token.here")
            .get("/api/v1/auth/me")
            .await
            .status,
        401
    );
    let me = token.get("/api/v1/auth/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["user"]["email"], "erin@example.com");
    assert!(me.body["user"]["name"].is_null());

    let out = token.post("/api/v1/auth/logout", json!({})).await;
    assert_eq!(out.status, 200);
    assert_eq!(out.body, json!({"ok": true}));
    assert_eq!(out.header("clear-site-data"), Some("\"cookies\""));
    assert_eq!(out.header("cache-control"), Some("no-store"));
    let set = out.header("set-cookie").expect("cleared");
    assert!(
        set.starts_with("__Host-session=;") && set.contains("Max-Age=0") && set.contains("Path=/")
    );
    // The validly signed token of a deleted session is refused.
    assert_eq!(token.get("/api/v1/auth/me").await.status, 401);
    // Logout without a session also answers 200.
    let anon = s
        .anon()
        .req(Method::POST, "/api/v1/auth/logout")
        .send()
        .await;
    assert_eq!(anon.status, 200);
    assert!(anon.header("set-cookie").is_some());
    s.stop().await;
}

#[tokio::test]
async fn warm_verify_sends_no_database_query_and_cache_holds_no_secrets() {
    let s = TestApp::start().await;
    let token = s.user("fay@example.com").await;
    let id = token.id().await; // warms the cache
    let before = s.metric("sessiongate_db_queries_total").await;
    let hits = s.metric("sessiongate_session_cache_hits_total").await;
    for _ in 0..5 {
        assert_eq!(token.get("/api/v1/auth/me").await.status, 200);
    }
    assert_eq!(s.metric("sessiongate_db_queries_total").await, before);
    assert_eq!(
        s.metric("sessiongate_session_cache_hits_total").await,
        hits + 5.0
    );

    // Cache values: read straight from the cache backend (Redis in the Redis run).
    let sid = segment(&token, 1)["sid"].as_str().expect("sid").to_owned();
    let hash = shared::SessionId::parse(&sid).expect("sid").storage_hash();
    let cache = &s.core().cache;
    let session = cache
        .get(&format!("v1:s:{{{hash}}}"))
        .await
        .expect("cache")
        .expect("entry");
    let v: serde_json::Value = serde_json::from_str(&session).expect("json");
    assert_eq!(v["userId"], id.as_str());
    assert!(v["expiresAt"].is_string() && v["createdAt"].is_string());
    assert!(!session.contains(&sid));
    // The user snapshot travels in the entry: one GET per warm verify.
    let u = &v["user"];
    let mut keys: Vec<&str> = u
        .as_object()
        .expect("obj")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["createdAt", "email", "id", "name", "role", "updatedAt"]
    );
    assert_eq!(u["id"], id.as_str());
    let user = &session;
    assert!(!user.contains("argon2"));
    assert!(
        cache
            .get(&format!("v1:s:{{{sid}}}"))
            .await
            .expect("cache")
            .is_none()
    );
    s.stop().await;
}

#[tokio::test]
async fn refresh_past_half_life_exactly_once_and_never_before() {
    let s = TestApp::start().await;
    let token = s.user("gus@example.com").await;
    // Just before half of SESSION_TTL (7 d): nothing written, no cookie.
    s.clock
        .advance(hours(84) - std::time::Duration::from_secs(120));
    let r = token.get("/api/v1/auth/me").await;
    assert_eq!(r.status, 200);
    assert!(r.header("set-cookie").is_none());
    assert_eq!(
        s.metric("sessiongate_session_refresh_attempts_total").await,
        0.0
    );

    // Past half-life: re-issued cookie with a full TTL; one row write.
    s.clock.advance(std::time::Duration::from_secs(240));
    let r = token.get("/api/v1/auth/me").await;
    assert_eq!(r.status, 200);
    let set = r.header("set-cookie").expect("refreshed").to_owned();
    assert!(set.contains("Max-Age=604800"), "{set}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let fresh = token.with(r.cookie().expect("token"));
    let c = segment(&fresh, 1);
    assert_eq!(
        c["exp"].as_u64().expect("exp") - c["iat"].as_u64().expect("iat"),
        604_800
    );
    assert_eq!(c["sid"], segment(&token, 1)["sid"]);
    s.wait_metric("sessiongate_session_refresh_attempts_total", 1.0)
        .await;
    assert_eq!(s.metric("sessiongate_session_refreshes_total").await, 1.0);
    // Fresh again: no further write or cookie, with either token.
    for t in [&token, &fresh] {
        let r = t.me().await;
        assert!(r.header("set-cookie").is_none());
    }
    let list = fresh.get("/api/v1/account/sessions").await;
    let expires = list.body["sessions"][0]["expiresAt"]
        .as_str()
        .expect("exp")
        .to_owned();
    let exp = chrono::DateTime::parse_from_rfc3339(&expires)
        .expect("rfc3339")
        .timestamp() as u64;
    assert_eq!(exp, c["exp"].as_u64().expect("exp"));

    // Concurrent requests past the next half-life produce one write.
    s.clock.advance(hours(85));
    let futures: Vec<_> = (0..8).map(|_| fresh.get("/api/v1/auth/me")).collect();
    let results = futures_util::future::join_all(futures).await;
    let cookies = results
        .iter()
        .filter(|r| r.header("set-cookie").is_some())
        .count();
    assert!(cookies >= 1);
    s.wait_metric(
        "sessiongate_session_refresh_attempts_total",
        1.0 + cookies as f64,
    )
    .await;
    assert_eq!(s.metric("sessiongate_session_refreshes_total").await, 2.0);
    s.stop().await;
}

#[tokio::test]
async fn refresh_never_passes_max_age_and_expired_sessions_are_refused() {
    let s = TestApp::start_with(&[("SESSION_TTL", "1h"), ("SESSION_MAX_AGE", "2h")]).await;
    let token = s.user("hal@example.com").await;
    let created = segment(&token, 1)["iat"].as_u64().expect("iat");
    let mins = |m: u64| std::time::Duration::from_secs(m * 60);
    s.clock.advance(mins(35));
    let r = token.get("/api/v1/auth/me").await;
    assert!(
        r.header("set-cookie")
            .expect("refresh")
            .contains("Max-Age=3600")
    );
    let token = token.with(r.cookie().expect("token"));
    s.wait_metric("sessiongate_session_refresh_attempts_total", 1.0)
        .await;
    s.clock.advance(mins(40));
    let r = token.get("/api/v1/auth/me").await;
    // Capped by the absolute lifetime: created + 2 h, about 45 min away (exactly 2700 s
    // unless the wall clock ticked a second since the login, so read it from the token).
    let capped = token.with(r.cookie().expect("token"));
    let claims = segment(&capped, 1);
    let exp = claims["exp"].as_u64().expect("exp");
    assert_eq!(exp, created + 7200);
    let max_age = exp - claims["iat"].as_u64().expect("iat");
    assert!((2690..=2700).contains(&max_age), "{max_age}");
    assert!(
        r.header("set-cookie")
            .expect("refresh")
            .contains(&format!("Max-Age={max_age}"))
    );
    s.wait_metric("sessiongate_session_refresh_attempts_total", 2.0)
        .await;
    s.clock.advance(mins(44));
    let r = capped.get("/api/v1/auth/me").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("set-cookie").is_none(),
        "no refresh past SESSION_MAX_AGE"
    );
    s.clock.advance(mins(3));
    assert_eq!(capped.get("/api/v1/auth/me").await.status, 401);

    // A validly signed, unexpired token for an expired (not yet cleaned) session row.
    let other = s.login("hal@example.com").await;
    s.clock.advance(mins(61));
    let sid =
        shared::SessionId::parse(segment(&other, 1)["sid"].as_str().expect("sid")).expect("sid");
    let ring = shared::KeyRing::parse(KEYS).expect("ring");
    let now = s.clock.now_unix();
    let forged_exp = shared::sign(&ring, &sid, now, now + 3600);
    assert_eq!(s.with_token(&forged_exp).me().await.status, 401);
    s.stop().await;
}

#[tokio::test]
async fn concurrent_logins_and_verifies_stay_consistent() {
    let s = TestApp::start_with(&[("MAX_SESSIONS_PER_USER", "50")]).await;
    s.register("ivy@example.com").await;
    let logins: Vec<_> = (0..8)
        .map(|_| s.login_as("ivy@example.com", PASSWORD))
        .collect();
    let results = futures_util::future::join_all(logins).await;
    let tokens: Vec<String> = results
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200);
            r.cookie().expect("cookie")
        })
        .collect();
    let sids: std::collections::HashSet<_> = tokens
        .iter()
        .map(|t| segment(t, 1)["sid"].to_string())
        .collect();
    assert_eq!(sids.len(), 8);
    let verifies: Vec<_> = tokens
        .iter()
        .cycle()
        .take(32)
        .map(|t| {
            let client = s.with_token(t);
            async move { client.me().await }
        })
        .collect();
    for r in futures_util::future::join_all(verifies).await {
        assert_eq!(r.status, 200);
        assert_eq!(r.body["user"]["email"], "ivy@example.com");
    }
    let list = s
        .with_token(&tokens[0])
        .get("/api/v1/account/sessions")
        .await;
    assert_eq!(list.body["sessions"].as_array().expect("list").len(), 8);
    s.stop().await;
}

#[tokio::test]
async fn session_limit_evicts_least_recently_used() {
    let s = TestApp::start_with(&[("MAX_SESSIONS_PER_USER", "3")]).await;
    s.register("jo@example.com").await;
    let oldest = s.login("jo@example.com").await;
    s.clock.advance(std::time::Duration::from_secs(10));
    let t2 = s.login("jo@example.com").await;
    s.clock.advance(std::time::Duration::from_secs(10));
    let t3 = s.login("jo@example.com").await;
    s.clock.advance(std::time::Duration::from_secs(10));
    let t4 = s.login("jo@example.com").await;
    assert_eq!(oldest.get("/api/v1/auth/me").await.status, 401);
    for t in [&t2, &t3, &t4] {
        assert_eq!(t.me().await.status, 200);
    }
    let revoke = t4
        .audit_item(|i| i["action"] == "session_revoke" && i["metadata"]["reason"] == "limit")
        .await;
    let oldest_id = shared::SessionId::parse(segment(&oldest, 1)["sid"].as_str().expect("sid"))
        .expect("sid")
        .storage_hash();
    assert_eq!(revoke["metadata"]["sessionId"], oldest_id.as_str());
    s.stop().await;
}
