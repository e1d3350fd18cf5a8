//! The page routes over real HTTP: status, content type, security headers, the `next`
//! sanitising of `/login`, the embedded assets (ETag revalidation, unknown names) and the
//! methods a page answers.

use crate::support::{Method, TestApp};
use serde_json::Value;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn text(body: &Value) -> &str {
    body.as_str().expect("an HTML or text body")
}

fn data_next(html: &str) -> &str {
    let start = html.find("data-next=\"").expect("data-next") + "data-next=\"".len();
    let end = start + html[start..].find('"').expect("closing quote");
    &html[start..end]
}

#[tokio::test]
async fn pages_are_served_with_security_headers_and_a_safe_next() {
    let server = TestApp::start().await;

    // Every page is a shell served to anyone: the edge protects /account and /users, and
    // the page's own API calls decide what it shows.
    for path in ["/login", "/register", "/account", "/users"] {
        let r = server.anon().get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert_eq!(r.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("same-origin"), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        let html = text(&r.body);
        assert!(html.starts_with("<!doctype html>"), "{path}");
        assert!(!html.contains("<style"), "{path}: inline style");
        assert!(!html.contains(" style="), "{path}: inline style attribute");
    }

    let home = server.anon().get("/").await;
    assert_eq!(home.status, 302);
    assert_eq!(home.header("location"), Some("/account"));

    // `next`: kept when it is a same-site relative path, dropped otherwise.
    for (query, expected) in [
        ("next=/account", "/account"),
        (
            "next=%2Fusers%3Fsearch%3Dann%26page%3D2",
            "/users?search=ann&amp;page=2",
        ),
        ("next=//evil.example", ""),
        ("next=%2F%2Fevil.example", ""),
        ("next=https%3A%2F%2Fevil.example%2F", ""),
        ("next=/%5Cevil.example", ""),
        ("next=/%0D%0Ax", ""),
        ("next=javascript:alert(1)", ""),
        ("next=/%22%3E%3Cscript%3E", "/&quot;&gt;&lt;script&gt;"),
    ] {
        for page in ["/login", "/register"] {
            let r = server.anon().get(&format!("{page}?{query}")).await;
            assert_eq!(r.status, 200);
            assert_eq!(data_next(text(&r.body)), expected, "{page}?{query}");
        }
    }

    server.stop().await;
}

#[tokio::test]
async fn assets_revalidate_and_pages_answer_only_get() {
    let server = TestApp::start().await;

    for (name, content_type) in [
        ("app.css", "text/css; charset=utf-8"),
        ("common.js", "text/javascript; charset=utf-8"),
        ("login.js", "text/javascript; charset=utf-8"),
        ("register.js", "text/javascript; charset=utf-8"),
        ("account.js", "text/javascript; charset=utf-8"),
        ("users.js", "text/javascript; charset=utf-8"),
        ("logo.svg", "image/svg+xml"),
    ] {
        let path = format!("/assets/{name}");
        let r = server.anon().get(&path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(content_type), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        let etag = r.header("etag").expect("etag").to_owned();
        let again = server
            .anon()
            .req(Method::GET, &path)
            .header("if-none-match", &etag)
            .send()
            .await;
        assert_eq!(again.status, 304, "{path}");
        assert_eq!(again.body, Value::Null, "{path}: a 304 has no body");
    }

    for missing in ["/assets/nope.js", "/assets/../Cargo.toml", "/favicon.ico"] {
        let r = server.anon().get(missing).await;
        assert_eq!(r.status, 404, "{missing}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{missing}"
        );
        assert!(r.body["error"].is_string(), "{missing}");
    }

    let head = server.anon().req(Method::HEAD, "/login").send().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.body, Value::Null);
    assert_eq!(head.header("content-security-policy"), Some(CSP));

    for method in ["POST", "PATCH", "DELETE"] {
        let r = server
            .anon()
            .req(
                Method::from_bytes(method.as_bytes()).expect("method"),
                "/account",
            )
            .send()
            .await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET"), "{method}");
        assert!(r.body["error"].is_string(), "{method}");
    }

    server.stop().await;
}
