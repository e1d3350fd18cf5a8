//! The contract's Users table (ADMIN only): RBAC, list with search and pagination (and its
//! cache), role change, delete, revoke a user's sessions, IDOR attempts.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn rbac_401_then_403() {
    let s = TestApp::start().await;
    let user = s.user("user@example.com").await;
    let uid = user.id().await;
    for (method, path) in [
        ("GET", "/api/v1/users".to_owned()),
        ("PATCH", format!("/api/v1/users/{uid}")),
        ("DELETE", format!("/api/v1/users/{uid}")),
        ("DELETE", format!("/api/v1/users/{uid}/sessions")),
    ] {
        let send = |client: &Client| {
            let req = client.req(
                Method::from_bytes(method.as_bytes()).expect("method"),
                &path,
            );
            let req = if method == "PATCH" {
                req.json(json!({"role": "ADMIN"}))
            } else {
                req
            };
            req.send()
        };
        let anon = send(&s.anon()).await;
        assert_eq!(anon.status, 401, "{method} {path}");
        let r = send(&user).await;
        assert_eq!(r.status, 403, "{method} {path}");
        assert!(r.body["error"].is_string());
    }
    // The USER did not promote themselves.
    assert_eq!(
        user.get("/api/v1/auth/me").await.body["user"]["role"],
        "USER"
    );
    s.stop().await;
}

#[tokio::test]
async fn role_change_and_deletion_take_effect_on_the_next_request() {
    let s = TestApp::start().await;
    let admin = s.admin("root@example.com").await;
    let admin_id = admin.id().await;
    let user = s.user("quinn@example.com").await;
    let uid = user.id().await;
    assert_eq!(user.get("/api/v1/users").await.status, 403);

    let r = admin
        .req(Method::PATCH, &format!("/api/v1/users/{uid}"))
        .json(json!({"role": "ADMIN"}))
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["user"]["role"], "ADMIN");
    assert_eq!(user.get("/api/v1/users").await.status, 200);
    let r = admin
        .req(Method::PATCH, &format!("/api/v1/users/{uid}"))
        .json(json!({"role": "USER"}))
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(user.get("/api/v1/users").await.status, 403);

    // Failures: 422 bad role, 400 unreadable, 404 unknown, 409 last ADMIN.
    let path = format!("/api/v1/users/{uid}");
    assert_eq!(
        admin
            .req(Method::PATCH, &path)
            .json(json!({"role": "ROOT"}))
            .send()
            .await
            .status,
        422
    );
    assert_eq!(
        admin
            .req(Method::PATCH, &path)
            .json(json!({}))
            .send()
            .await
            .status,
        422
    );
    let r = admin
        .req(Method::PATCH, &path)
        .header("content-type", "application/json")
        .send()
        .await;
    assert_eq!(r.status, 400);
    let r = admin
        .req(Method::PATCH, "/api/v1/users/no-such-user")
        .json(json!({"role": "ADMIN"}))
        .send()
        .await;
    assert_eq!(r.status, 404);
    let r = admin
        .req(Method::PATCH, &format!("/api/v1/users/{admin_id}"))
        .json(json!({"role": "USER"}))
        .send()
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        admin.get("/api/v1/auth/me").await.body["user"]["role"],
        "ADMIN"
    );

    // Deletion: own account 400, unknown 404, then the user's sessions die at once.
    assert_eq!(
        admin
            .req(Method::DELETE, &format!("/api/v1/users/{admin_id}"))
            .send()
            .await
            .status,
        400
    );
    assert_eq!(
        admin
            .req(Method::DELETE, "/api/v1/users/no-such-user")
            .send()
            .await
            .status,
        404
    );
    assert_eq!(user.get("/api/v1/auth/me").await.status, 200);
    let r = admin.req(Method::DELETE, &path).send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"ok": true}));
    assert_eq!(user.get("/api/v1/auth/me").await.status, 401);
    assert_eq!(s.login_as("quinn@example.com", PASSWORD).await.status, 401);
    assert_eq!(admin.req(Method::DELETE, &path).send().await.status, 404);
    let entry = origin_api::cache::keys::session(&user.session_id());
    assert!(s.core().cache.get(&entry).await.expect("cache").is_none());
    s.stop().await;
}

#[tokio::test]
async fn admin_revokes_a_users_sessions() {
    let s = TestApp::start().await;
    let admin = s.admin("boss@example.com").await;
    let a = s.user("rae@example.com").await;
    let b = s.login("rae@example.com").await;
    let uid = a.id().await;
    let r = admin
        .req(Method::DELETE, &format!("/api/v1/users/{uid}/sessions"))
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"ok": true, "revoked": 2}));
    assert_eq!(a.get("/api/v1/auth/me").await.status, 401);
    assert_eq!(b.get("/api/v1/auth/me").await.status, 401);
    assert_eq!(
        admin
            .req(Method::DELETE, "/api/v1/users/nobody/sessions")
            .send()
            .await
            .status,
        404
    );
    admin
        .audit_item(|i| {
            i["action"] == "session_revoke" && i["metadata"]["targetUserId"] == uid.as_str()
        })
        .await;
    s.stop().await;
}

/// Role changes racing other writes (logins, their audit rows, password changes) never
/// answer 500. On SQLite a transaction that read and then wrote failed at once with
/// SQLITE_BUSY when another connection wrote in between (seen in CI as a 500 on PATCH).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn role_changes_racing_other_writes_never_fail() {
    let s = TestApp::start().await;
    let admin = s.admin("boss@example.com").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let token = s.user(&format!("racer{i}@example.com")).await;
        ids.push(token.id().await);
    }
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for round in 0..6 {
            let http = s.http.clone();
            let url = format!("{}/api/v1/users/{id}", s.base);
            let cookie = format!("__Host-session={}", admin.token());
            let role = if round % 2 == 0 { "ADMIN" } else { "USER" };
            tasks.push(tokio::spawn(async move {
                let r = http
                    .patch(url)
                    .header("cookie", cookie)
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"role":"{role}"}}"#))
                    .send()
                    .await
                    .expect("patch");
                r.status().as_u16()
            }));
        }
        let http = s.http.clone();
        let url = format!("{}/api/v1/auth/login", s.base);
        let body = format!(r#"{{"email":"racer{i}@example.com","password":"{PASSWORD}"}}"#);
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .header("x-forwarded-for", format!("10.0.0.{i}"))
                .body(body)
                .send()
                .await
                .expect("login");
            r.status().as_u16()
        }));
    }
    for t in tasks {
        let status = t.await.expect("task");
        assert!(status == 200, "a write answered {status}");
    }
    s.stop().await;
}

/// A verify that read a session (with its user snapshot) just before a role change must
/// not leave the old role in the cache after the change: the change marks the user changed
/// and every entry write checks the marker after writing (on the in-process cache or
/// Redis, as the environment selects).
#[tokio::test]
async fn a_session_entry_read_before_a_role_change_is_not_kept_after_it() {
    use origin_api::cache::{Lookup, Write, keys};
    let s = TestApp::start().await;
    let admin = s.admin("chief@example.com").await;
    let user = s.user("riley@example.com").await;
    let uid = user.id().await;
    let hash = origin_api::domain::types::SessionHash::parse(&user.session_id()).expect("hash");
    let sessions = &s.core().sessions;
    let Lookup::Hit(before) = sessions.get(&hash).await else {
        panic!("the session is cached after login")
    };
    assert_eq!(before.user.role.as_str(), "USER");

    let r = admin
        .patch(&format!("/api/v1/users/{uid}"), json!({"role": "ADMIN"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let key = keys::session(hash.as_str());
    assert_eq!(
        s.core().cache.get(&key).await.expect("get"),
        None,
        "entry evicted"
    );

    // What a verify that read the entry before the change would write now.
    let now = s.clock.now();
    sessions
        .put(
            &hash,
            &before,
            now,
            Write::Replace,
            std::time::Instant::now(),
        )
        .await;
    assert_eq!(
        s.core().cache.get(&key).await.expect("get"),
        None,
        "the old snapshot stayed cached after the role change"
    );
    assert_eq!(user.me().await.body["user"]["role"], "ADMIN");
    assert_eq!(user.get("/api/v1/users").await.status, 200);

    // Another user's session is cached as before.
    let other = s.user("sky@example.com").await;
    let other_key = keys::session(&other.session_id());
    assert!(s.core().cache.get(&other_key).await.expect("get").is_some());
    s.stop().await;
}

/// `create-admin` promoting a signed-in user (its cached user entry says USER) is seen on
/// that user's very next request when the cache is Redis, which the command shares with
/// the service. (The embedded in-process cache lives in the serving process only.)
#[tokio::test]
async fn create_admin_promotion_is_seen_on_the_next_request_with_redis() {
    if redis_url().is_none() {
        return;
    }
    let s = TestApp::start().await;
    let token = s.user("promo@example.com").await;
    assert_eq!(token.get("/api/v1/users").await.status, 403);
    origin_api::create_admin(&s.config, "promo@example.com", PASSWORD.into())
        .await
        .expect("promote");
    let r = token.get("/api/v1/users").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        token.get("/api/v1/auth/me").await.body["user"]["role"],
        "ADMIN"
    );
    s.stop().await;
}

async fn list(admin: &Client, query: &str) -> Resp {
    admin.get(&format!("/api/v1/users{query}")).await
}

#[tokio::test]
async fn list_pagination_search_and_cache_invalidation() {
    let s = TestApp::start().await;
    let admin = s.admin("admin@example.com").await;
    for i in 0..24 {
        s.clock.advance(std::time::Duration::from_secs(1));
        let name = if i % 2 == 0 { "Sam Even" } else { "Odd One" };
        let r = s.anon().post("/api/v1/auth/register", json!({"email": format!("member{i:02}@Example.com"), "password": PASSWORD, "name": name}))
            .await;
        assert_eq!(r.status, 201);
    }
    let r = list(&admin, "").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["pagination"],
        json!({"page": 1, "pageSize": 20, "total": 25, "totalPages": 2, "hasNext": true, "hasPrev": false})
    );
    let items = r.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 20);
    assert_eq!(items[0]["email"], "member23@example.com", "newest first");
    for f in ["id", "email", "name", "role", "createdAt"] {
        assert!(items[0].get(f).is_some());
    }
    assert!(!r.body.to_string().contains("argon2"));

    let r = list(&admin, "?page=2").await;
    assert_eq!(r.body["items"].as_array().expect("items").len(), 5);
    assert_eq!(r.body["pagination"]["hasPrev"], true);
    assert_eq!(r.body["pagination"]["hasNext"], false);
    assert_eq!(
        list(&admin, "?page=0&pageSize=0").await.body["pagination"]["pageSize"],
        1
    );
    assert_eq!(
        list(&admin, "?page=0&pageSize=0").await.body["pagination"]["page"],
        1
    );
    assert_eq!(
        list(&admin, "?pageSize=1000").await.body["pagination"]["pageSize"],
        100
    );
    assert_eq!(
        list(&admin, "?page=abc&pageSize=xyz").await.body["pagination"],
        json!({"page": 1, "pageSize": 20, "total": 25, "totalPages": 2, "hasNext": true, "hasPrev": false})
    );
    assert_eq!(
        list(&admin, "?page=9").await.body["items"]
            .as_array()
            .expect("items")
            .len(),
        0
    );

    // Search: trimmed, case-insensitive substring of email or name, same on both databases.
    assert_eq!(
        list(&admin, "?search=%20MEMBER1%20").await.body["pagination"]["total"],
        10
    );
    assert_eq!(
        list(&admin, "?search=sam%20even").await.body["pagination"]["total"],
        12
    );
    assert_eq!(
        list(&admin, "?search=ODD").await.body["pagination"]["total"],
        12
    );
    assert_eq!(
        list(&admin, "?search=example.COM").await.body["pagination"]["total"],
        25
    );
    assert_eq!(
        list(&admin, "?search=%25").await.body["pagination"]["total"],
        0
    );
    assert_eq!(
        list(&admin, "?search=nobody-here").await.body["pagination"]["total"],
        0
    );
    // NUL cannot be sent to Postgres (once a 500); it matches nothing on either database.
    let r = list(&admin, "?search=a%00b").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["pagination"]["total"], 0);
    // A page far past the end is empty, not an overflow (once a panic in debug builds).
    let r = list(&admin, "?page=9223372036854775807&pageSize=100").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["items"], json!([]));
    assert_eq!(r.body["pagination"]["total"], 25);

    // The cached page is invalidated by a write.
    let before = list(&admin, "?search=member05").await;
    assert_eq!(before.body["items"][0]["role"], "USER");
    let id = before.body["items"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = admin
        .req(Method::PATCH, &format!("/api/v1/users/{id}"))
        .json(json!({"role": "ADMIN"}))
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        list(&admin, "?search=member05").await.body["items"][0]["role"],
        "ADMIN"
    );
    s.register("member99@example.com").await;
    assert_eq!(list(&admin, "").await.body["pagination"]["total"], 26);
    s.stop().await;
}
