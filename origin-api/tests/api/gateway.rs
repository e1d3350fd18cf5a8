//! The gateway's endpoints, called directly as a proxy would (gateway-v1.md, "Forward-auth
//! mode", "The decision", "Identity handed to the app", "Mount path"). The same decisions
//! through real nginx and Caddy are in `proxies.rs`.

use serde_json::json;
use shared::assertion::{IDENTITY_HEADERS, Jwks, verify};

use crate::support::*;

const RULES: &str =
    "/ = public; /app = authenticated; /admin = role:ADMIN; GET,HEAD /app/status = public";
const FORWARD_AUTH: &str = "/auth/api/v1/authz/forward-auth";
const AUTH_REQUEST: &str = "/auth/api/v1/authz/auth-request";

async fn gateway() -> TestApp {
    TestApp::start_with(&[
        ("MOUNT_PATH", "/auth"),
        ("ACCESS_RULES", RULES),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await
}

/// Logs in through the mounted API.
async fn mounted_login(s: &TestApp, email: &str) -> Client {
    s.register_at("/auth", email).await;
    let r = s
        .anon()
        .post(
            "/auth/api/v1/auth/login",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    s.with_token(&r.cookie().expect("cookie"))
}

/// A forward-auth decision for `method uri` on host `app.example`.
async fn forward(client: &Client, method: &str, uri: &str, extra: &[(&str, &str)]) -> Resp {
    let mut req = client
        .req(Method::GET, FORWARD_AUTH)
        .header("x-forwarded-method", method)
        .header("x-forwarded-uri", uri)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example");
    for (k, v) in extra {
        req = req.header(k, v);
    }
    req.send().await
}

#[tokio::test]
async fn sessiongate_lives_under_the_mount_path() {
    let s = gateway().await;
    // The pages, their assets and the API are under /auth; the root is not sessiongate's.
    let login = s.anon().get("/auth/login?next=/app/x").await;
    assert_eq!(login.status, 200);
    let html = login.body.as_str().expect("html");
    assert!(html.contains(r#"data-mount="/auth""#));
    assert!(html.contains(r#"src="/auth/assets/login.js""#));
    assert!(html.contains(r#"data-next="/app/x""#));
    assert_eq!(s.anon().get("/auth/assets/common.js").await.status, 200);
    let home = s.anon().get("/auth").await;
    assert_eq!(home.status, 302);
    assert_eq!(home.header("location"), Some("/auth/account"));
    assert_eq!(s.anon().get("/login").await.status, 404);
    assert_eq!(s.anon().get("/api/v1/auth/me").await.status, 404);
    assert_eq!(s.anon().get("/auth/healthz").await.status, 200);
    let alice = mounted_login(&s, "alice@example.com").await;
    assert_eq!(alice.get("/auth/api/v1/auth/me").await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn only_trusted_proxies_may_ask() {
    let s = TestApp::start_with(&[("MOUNT_PATH", "/auth"), ("ACCESS_RULES", RULES)]).await;
    for path in [FORWARD_AUTH, AUTH_REQUEST] {
        let r = forward(&s.anon(), "GET", "/app", &[]).await;
        let _ = path;
        assert_eq!(r.status, 403);
        assert_eq!(r.body, json!({"error": "Forward-auth caller not trusted"}));
    }
    let r = s.anon().get(AUTH_REQUEST).await;
    assert_eq!(r.status, 403);
    s.stop().await;
}

#[tokio::test]
async fn forward_auth_answers_the_decision_table() {
    let s = gateway().await;
    let anon = s.anon();
    let html = [("accept", "text/html")];
    let xhr = [
        ("accept", "application/json"),
        ("x-requested-with", "XMLHttpRequest"),
    ];

    // Public: allowed, with every identity header present and empty.
    let r = forward(&anon, "GET", "/", &html).await;
    assert_eq!(r.status, 200);
    for name in IDENTITY_HEADERS {
        assert_eq!(r.header(name), Some(""), "{name}");
    }
    // Protected, anonymous: a navigation is redirected (no-store), anything else 401.
    let r = forward(&anon, "GET", "/app/page?tab=1", &html).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/auth/login?next=/app/page%3Ftab%3D1")
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(forward(&anon, "GET", "/app/page", &xhr).await.status, 401);
    assert_eq!(forward(&anon, "POST", "/app/page", &html).await.status, 401);
    assert_eq!(
        forward(&anon, "GET", "/app/page", &[("upgrade", "websocket")])
            .await
            .status,
        401
    );
    // The method-specific public rule.
    assert_eq!(forward(&anon, "GET", "/app/status", &xhr).await.status, 200);
    assert_eq!(
        forward(&anon, "DELETE", "/app/status", &xhr).await.status,
        401
    );
    // Paths the rules cannot judge safely, and missing descriptions.
    assert_eq!(forward(&anon, "GET", "/app%2Fx", &html).await.status, 400);
    assert_eq!(forward(&anon, "GET", "/%2e%2e/app", &xhr).await.status, 401);
    let r = anon
        .req(Method::GET, FORWARD_AUTH)
        .header("x-forwarded-method", "GET")
        .send()
        .await;
    assert_eq!(r.status, 400);
    let r = anon
        .req(Method::GET, FORWARD_AUTH)
        .header("x-forwarded-uri", "/app")
        .send()
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(forward(&anon, "GET", "app", &html).await.status, 400);

    // Live sessions: allowed with identity; a USER on an ADMIN path is refused.
    let user = mounted_login(&s, "user@example.com").await;
    let r = forward(&user, "GET", "/app/page", &html).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-sessiongate-email"), Some("user@example.com"));
    assert_eq!(r.header("x-sessiongate-role"), Some("USER"));
    assert_eq!(r.header("remote-groups"), Some("USER"));
    assert_eq!(
        r.header("x-sessiongate-session"),
        Some(user.session_id().as_str())
    );
    let id = user.get("/auth/api/v1/auth/me").await.body["user"]["id"].clone();
    assert_eq!(r.header("x-sessiongate-user-id"), id.as_str());
    assert_eq!(r.header("remote-user"), id.as_str());
    let r = forward(&user, "GET", "/admin", &html).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, json!({"error": "Forbidden"}));
    // A public path with a session describes it.
    let r = forward(&user, "GET", "/", &html).await;
    assert_eq!(r.header("x-sessiongate-email"), Some("user@example.com"));

    // Revoked: refused on the very next decision, and the dead cookie is cleared.
    let r = user.post("/auth/api/v1/auth/logout", json!({})).await;
    assert_eq!(r.status, 200);
    let r = forward(&user, "GET", "/app/page", &html).await;
    assert_eq!(r.status, 302);
    assert!(
        r.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    s.stop().await;
}

#[tokio::test]
async fn auth_request_speaks_nginx() {
    let s = gateway().await;
    let anon = s.anon();
    let ask = |client: &Client, headers: &[(&str, &str)]| {
        let mut req = client.req(Method::GET, AUTH_REQUEST);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    // Anonymous navigation: 401 with the login URL for `error_page 401`.
    let r = ask(
        &anon,
        &[
            ("x-original-uri", "/app/page?x=1"),
            ("accept", "text/html"),
            ("host", "app.example"),
        ],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("x-sessiongate-login"),
        Some("/auth/login?next=/app/page%3Fx%3D1")
    );
    // Not a navigation: 401 without it.
    let r = ask(
        &anon,
        &[
            ("x-original-method", "POST"),
            ("x-original-uri", "/app/page"),
        ],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-sessiongate-login"), None);
    // X-Original-URL (absolute) names scheme, host and path.
    let r = ask(&anon, &[("x-original-url", "https://app.example/")]).await;
    assert_eq!(r.status, 200);
    for bad in ["ftp://app.example/", "/relative", "https://"] {
        let r = ask(&anon, &[("x-original-url", bad)]).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    assert_eq!(ask(&anon, &[]).await.status, 400);
    let user = mounted_login(&s, "nina@example.com").await;
    let r = ask(
        &user,
        &[
            ("x-original-url", "https://app.example/app/page"),
            ("accept", "text/html"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-sessiongate-email"), Some("nina@example.com"));
    let r = ask(&user, &[("x-original-url", "https://app.example/admin")]).await;
    assert_eq!(r.status, 403);
    s.stop().await;
}

#[tokio::test]
async fn the_assertion_verifies_against_the_jwk_set_and_is_reused_briefly() {
    let s = gateway().await;
    let jwks = s.anon().get("/auth/.well-known/jwks.json").await;
    assert_eq!(jwks.status, 200);
    assert!(
        jwks.header("cache-control")
            .is_some_and(|c| c.contains("max-age"))
    );
    let key = &jwks.body["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert!(key["kid"].is_string() && key["x"].is_string());
    let keys = Jwks::parse(&jwks.body.to_string()).expect("jwks");

    let user = mounted_login(&s, "ada@example.com").await;
    let first = forward(&user, "GET", "/app/page", &[]).await;
    let token = first
        .header("x-sessiongate-assertion")
        .expect("assertion")
        .to_owned();
    let now = s.clock.now_unix();
    let verified = verify(&keys, &token, "app.example", now).expect("verifies");
    assert_eq!(verified.identity.email, "ada@example.com");
    assert_eq!(verified.identity.session, user.session_id());
    assert_eq!(verified.issuer, "https://app.example");
    assert!(verified.expires_at - verified.issued_at <= 60);
    assert!(
        verify(&keys, &token, "other.example", now).is_err(),
        "audience is checked"
    );
    let header = segment(&token, 0);
    assert_eq!(header["alg"], "EdDSA");

    // Reused for at most half its life: the same token shortly after, a new one later.
    let again = forward(&user, "GET", "/app/other", &[]).await;
    assert_eq!(
        again.header("x-sessiongate-assertion"),
        Some(token.as_str())
    );
    s.clock.advance(std::time::Duration::from_secs(31));
    let later = forward(&user, "GET", "/app/page", &[]).await;
    let renewed = later.header("x-sessiongate-assertion").expect("assertion");
    assert_ne!(renewed, token);
    assert!(verify(&keys, renewed, "app.example", s.clock.now_unix()).is_ok());
    s.stop().await;
}

#[tokio::test]
async fn a_decision_carries_the_sliding_refresh_cookie() {
    let s = gateway().await;
    let user = mounted_login(&s, "sly@example.com").await;
    s.clock.advance(days(4));
    let r = forward(&user, "GET", "/app/page", &[]).await;
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").expect("re-issued");
    assert!(
        cookie.starts_with("__Host-session=") && cookie.contains("Max-Age=604800"),
        "{cookie}"
    );
    s.stop().await;
}

#[tokio::test]
async fn with_the_cache_down_decisions_come_from_the_database() {
    let s = gateway().await;
    let user = mounted_login(&s, "ops@example.com").await;
    s.faults.fail(true);
    let r = forward(&user, "GET", "/app/page", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-sessiongate-email"), Some("ops@example.com"));
    s.faults.fail(false);
    s.stop().await;
}
