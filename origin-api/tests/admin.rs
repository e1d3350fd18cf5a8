//! The contract's Users table (ADMIN only): RBAC, list with search and pagination (and its
//! cache), role change, delete, revoke a user's sessions, IDOR attempts.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn rbac_401_then_403() {
    let s = Server::start().await;
    let user = s.user("user@example.com").await;
    let uid = s.user_id(&user).await;
    for (method, path) in [
        ("GET", "/api/v1/users".to_owned()),
        ("PATCH", format!("/api/v1/users/{uid}")),
        ("DELETE", format!("/api/v1/users/{uid}")),
        ("DELETE", format!("/api/v1/users/{uid}/sessions")),
    ] {
        let body = (method == "PATCH").then(|| json!({"role": "ADMIN"}));
        let anon = s.call(method, &path, None, body.clone(), &[]).await;
        assert_eq!(anon.status, 401, "{method} {path}");
        let r = s.call(method, &path, Some(&user), body, &[]).await;
        assert_eq!(r.status, 403, "{method} {path}");
        assert!(r.body["error"].is_string());
    }
    // The USER did not promote themselves.
    assert_eq!(
        s.get("/api/v1/auth/me", Some(&user)).await.body["user"]["role"],
        "USER"
    );
    s.stop().await;
}

#[tokio::test]
async fn role_change_and_deletion_take_effect_on_the_next_request() {
    let s = Server::start().await;
    let admin = s.admin("root@example.com").await;
    let admin_id = s.user_id(&admin).await;
    let user = s.user("quinn@example.com").await;
    let uid = s.user_id(&user).await;
    assert_eq!(s.get("/api/v1/users", Some(&user)).await.status, 403);

    let r = s
        .call(
            "PATCH",
            &format!("/api/v1/users/{uid}"),
            Some(&admin),
            Some(json!({"role": "ADMIN"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["user"]["role"], "ADMIN");
    assert_eq!(s.get("/api/v1/users", Some(&user)).await.status, 200);
    let r = s
        .call(
            "PATCH",
            &format!("/api/v1/users/{uid}"),
            Some(&admin),
            Some(json!({"role": "USER"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(s.get("/api/v1/users", Some(&user)).await.status, 403);

    // Failures: 422 bad role, 400 unreadable, 404 unknown, 409 last ADMIN.
    let path = format!("/api/v1/users/{uid}");
    assert_eq!(
        s.call(
            "PATCH",
            &path,
            Some(&admin),
            Some(json!({"role": "ROOT"})),
            &[]
        )
        .await
        .status,
        422
    );
    assert_eq!(
        s.call("PATCH", &path, Some(&admin), Some(json!({})), &[])
            .await
            .status,
        422
    );
    let r = s
        .call(
            "PATCH",
            &path,
            Some(&admin),
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = s
        .call(
            "PATCH",
            "/api/v1/users/no-such-user",
            Some(&admin),
            Some(json!({"role": "ADMIN"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
    let r = s
        .call(
            "PATCH",
            &format!("/api/v1/users/{admin_id}"),
            Some(&admin),
            Some(json!({"role": "USER"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        s.get("/api/v1/auth/me", Some(&admin)).await.body["user"]["role"],
        "ADMIN"
    );

    // Deletion: own account 400, unknown 404, then the user's sessions die at once.
    assert_eq!(
        s.call(
            "DELETE",
            &format!("/api/v1/users/{admin_id}"),
            Some(&admin),
            None,
            &[]
        )
        .await
        .status,
        400
    );
    assert_eq!(
        s.call(
            "DELETE",
            "/api/v1/users/no-such-user",
            Some(&admin),
            None,
            &[]
        )
        .await
        .status,
        404
    );
    assert_eq!(s.get("/api/v1/auth/me", Some(&user)).await.status, 200);
    let r = s.call("DELETE", &path, Some(&admin), None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"ok": true}));
    assert_eq!(s.get("/api/v1/auth/me", Some(&user)).await.status, 401);
    assert_eq!(s.login_as("quinn@example.com", PASSWORD).await.status, 401);
    assert_eq!(
        s.call("DELETE", &path, Some(&admin), None, &[])
            .await
            .status,
        404
    );
    assert!(
        s.app()
            .cache
            .get(&format!("v1:user:{uid}"))
            .await
            .expect("cache")
            .is_none()
    );
    s.stop().await;
}

#[tokio::test]
async fn admin_revokes_a_users_sessions() {
    let s = Server::start().await;
    let admin = s.admin("boss@example.com").await;
    let a = s.user("rae@example.com").await;
    let b = s.login("rae@example.com").await;
    let uid = s.user_id(&a).await;
    let r = s
        .call(
            "DELETE",
            &format!("/api/v1/users/{uid}/sessions"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"ok": true, "revoked": 2}));
    assert_eq!(s.get("/api/v1/auth/me", Some(&a)).await.status, 401);
    assert_eq!(s.get("/api/v1/auth/me", Some(&b)).await.status, 401);
    assert_eq!(
        s.call(
            "DELETE",
            "/api/v1/users/nobody/sessions",
            Some(&admin),
            None,
            &[]
        )
        .await
        .status,
        404
    );
    s.audit_item(&admin, |i| {
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
    let s = Server::start().await;
    let admin = s.admin("boss@example.com").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let token = s.user(&format!("racer{i}@example.com")).await;
        ids.push(s.user_id(&token).await);
    }
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for round in 0..6 {
            let http = s.http.clone();
            let url = format!("{}/api/v1/users/{id}", s.base);
            let cookie = format!("__Host-session={admin}");
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

/// A verify that read the user row just before a role change must not put the old role
/// back into the cache after the change evicted it: the write marks the user changed and
/// the cache refuses older reads meanwhile (on the in-process cache or Redis, as the
/// environment selects).
#[tokio::test]
async fn a_user_record_read_before_a_role_change_is_not_cached_after_it() {
    let s = Server::start().await;
    let admin = s.admin("chief@example.com").await;
    let user = s.user("riley@example.com").await;
    let uid = s.user_id(&user).await;
    let cache = s.app().cache.clone();
    let key = format!("v1:user:{uid}");
    let before = cache.get(&key).await.expect("get").expect("user cached");
    assert!(before.contains(r#""role":"USER""#), "{before}");

    let r = s
        .call(
            "PATCH",
            &format!("/api/v1/users/{uid}"),
            Some(&admin),
            Some(json!({"role": "ADMIN"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(cache.get(&key).await.expect("get"), None, "entry evicted");

    // What a verify that read the row before the change would write now.
    let written = cache
        .put_user(&uid, &before, std::time::Duration::from_secs(300))
        .await
        .expect("put_user");
    assert!(!written, "the old record was cached after the role change");
    assert_eq!(cache.get(&key).await.expect("get"), None);
    assert_eq!(
        s.get("/api/v1/auth/me", Some(&user)).await.body["user"]["role"],
        "ADMIN"
    );
    assert_eq!(s.get("/api/v1/users", Some(&user)).await.status, 200);

    // Another user's fresh record is cached as before.
    let other = s.user("sky@example.com").await;
    let other_id = s.user_id(&other).await;
    let other_key = format!("v1:user:{other_id}");
    let record = cache.get(&other_key).await.expect("get").expect("cached");
    cache
        .del(std::slice::from_ref(&other_key))
        .await
        .expect("del");
    assert!(
        cache
            .put_user(&other_id, &record, std::time::Duration::from_secs(300))
            .await
            .expect("put_user")
    );
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
    let s = Server::start().await;
    let token = s.user("promo@example.com").await;
    assert_eq!(s.get("/api/v1/users", Some(&token)).await.status, 403);
    origin_api::create_admin(&s.config, "promo@example.com", PASSWORD.into())
        .await
        .expect("promote");
    let r = s.get("/api/v1/users", Some(&token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        s.get("/api/v1/auth/me", Some(&token)).await.body["user"]["role"],
        "ADMIN"
    );
    s.stop().await;
}

async fn list(s: &Server, admin: &str, query: &str) -> Resp {
    s.get(&format!("/api/v1/users{query}"), Some(admin)).await
}

#[tokio::test]
async fn list_pagination_search_and_cache_invalidation() {
    let s = Server::start().await;
    let admin = s.admin("admin@example.com").await;
    for i in 0..24 {
        s.clock.advance(std::time::Duration::from_secs(1));
        let name = if i % 2 == 0 { "Sam Even" } else { "Odd One" };
        let r = s
            .post("/api/v1/auth/register", None, json!({"email": format!("member{i:02}@Example.com"), "password": PASSWORD, "name": name}))
            .await;
        assert_eq!(r.status, 201);
    }
    let r = list(&s, &admin, "").await;
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

    let r = list(&s, &admin, "?page=2").await;
    assert_eq!(r.body["items"].as_array().expect("items").len(), 5);
    assert_eq!(r.body["pagination"]["hasPrev"], true);
    assert_eq!(r.body["pagination"]["hasNext"], false);
    assert_eq!(
        list(&s, &admin, "?page=0&pageSize=0").await.body["pagination"]["pageSize"],
        1
    );
    assert_eq!(
        list(&s, &admin, "?page=0&pageSize=0").await.body["pagination"]["page"],
        1
    );
    assert_eq!(
        list(&s, &admin, "?pageSize=1000").await.body["pagination"]["pageSize"],
        100
    );
    assert_eq!(
        list(&s, &admin, "?page=abc&pageSize=xyz").await.body["pagination"],
        json!({"page": 1, "pageSize": 20, "total": 25, "totalPages": 2, "hasNext": true, "hasPrev": false})
    );
    assert_eq!(
        list(&s, &admin, "?page=9").await.body["items"]
            .as_array()
            .expect("items")
            .len(),
        0
    );

    // Search: trimmed, case-insensitive substring of email or name, same on both databases.
    assert_eq!(
        list(&s, &admin, "?search=%20MEMBER1%20").await.body["pagination"]["total"],
        10
    );
    assert_eq!(
        list(&s, &admin, "?search=sam%20even").await.body["pagination"]["total"],
        12
    );
    assert_eq!(
        list(&s, &admin, "?search=ODD").await.body["pagination"]["total"],
        12
    );
    assert_eq!(
        list(&s, &admin, "?search=example.COM").await.body["pagination"]["total"],
        25
    );
    assert_eq!(
        list(&s, &admin, "?search=%25").await.body["pagination"]["total"],
        0
    );
    assert_eq!(
        list(&s, &admin, "?search=nobody-here").await.body["pagination"]["total"],
        0
    );
    // NUL cannot be sent to Postgres (once a 500); it matches nothing on either database.
    let r = list(&s, &admin, "?search=a%00b").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["pagination"]["total"], 0);
    // A page far past the end is empty, not an overflow (once a panic in debug builds).
    let r = list(&s, &admin, "?page=9223372036854775807&pageSize=100").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["items"], json!([]));
    assert_eq!(r.body["pagination"]["total"], 25);

    // The cached page is invalidated by a write.
    let before = list(&s, &admin, "?search=member05").await;
    assert_eq!(before.body["items"][0]["role"], "USER");
    let id = before.body["items"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = s
        .call(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(&admin),
            Some(json!({"role": "ADMIN"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        list(&s, &admin, "?search=member05").await.body["items"][0]["role"],
        "ADMIN"
    );
    s.register("member99@example.com").await;
    assert_eq!(list(&s, &admin, "").await.body["pagination"]["total"], 26);
    s.stop().await;
}
