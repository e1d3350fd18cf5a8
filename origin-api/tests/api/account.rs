//! The contract's Account table: profile, password change, sessions and audit.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn profile_read_and_update() {
    let s = TestApp::start().await;
    let token = s.user("kim@example.com").await;
    let other = s.user("lee@example.com").await;
    assert_eq!(s.anon().get("/api/v1/account").await.status, 401);
    let r = token.get("/api/v1/account").await;
    assert_eq!(r.status, 200);
    let p = &r.body["profile"];
    for f in ["id", "email", "name", "role", "createdAt", "updatedAt"] {
        assert!(p.get(f).is_some(), "{f}");
    }

    s.clock.advance(std::time::Duration::from_secs(5));
    // An email change needs the current password (ASVS 7.5.1): missing or wrong → 403.
    for body in [
        json!({"name": "Mallory", "email": "thief@example.com"}),
        json!({"email": "thief@example.com", "currentPassword": "not the password"}),
    ] {
        let r = token.patch("/api/v1/account", body.clone()).await;
        assert_eq!(r.status, 403, "{body}: {:?}", r.body);
        assert!(r.body["error"].is_string());
    }
    assert_eq!(token.me().await.body["user"]["email"], "kim@example.com");
    let r = token
        .patch(
            "/api/v1/account",
            json!({"name": "  Kim K ", "email": "KIM2@example.com", "currentPassword": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["profile"]["name"], "Kim K");
    assert_eq!(r.body["profile"]["email"], "kim2@example.com");
    assert_ne!(r.body["profile"]["updatedAt"], p["updatedAt"]);
    // The very next request sees it (the cached user entry was invalidated).
    let me = token.get("/api/v1/auth/me").await;
    assert_eq!(me.body["user"]["email"], "kim2@example.com");
    // name: null clears it.
    let r = token
        .req(Method::PATCH, "/api/v1/account")
        .json(json!({"name": null}))
        .send()
        .await;
    assert!(r.body["profile"]["name"].is_null());
    // Taken email → 409 (from the unique constraint); invalid → 422; wrong type → 422.
    let r = other
        .patch(
            "/api/v1/account",
            json!({"email": "kim2@example.com", "currentPassword": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 409);
    for body in [
        json!({"email": "nope"}),
        json!({"name": 3}),
        json!({"email": null}),
    ] {
        let r = other
            .req(Method::PATCH, "/api/v1/account")
            .json(body.clone())
            .send()
            .await;
        assert_eq!(r.status, 422, "{body}");
    }
    let r = s
        .anon()
        .req(Method::PATCH, "/api/v1/account")
        .json(json!({"name": "x"}))
        .send()
        .await;
    assert_eq!(r.status, 401);
    let r = other
        .req(Method::PATCH, "/api/v1/account")
        .header("content-type", "application/json")
        .send()
        .await;
    assert_eq!(r.status, 400);
    // Old email no longer logs in; new one does.
    assert_eq!(s.login_as("kim@example.com", PASSWORD).await.status, 401);
    assert_eq!(s.login_as("kim2@example.com", PASSWORD).await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn password_change_revokes_others() {
    let s = TestApp::start().await;
    let a = s.user("max@example.com").await;
    let b = s.login("max@example.com").await;
    let c = s.login("max@example.com").await;
    let path = "/api/v1/account/password";
    let r = a
        .post(
            path,
            json!({"currentPassword": "wrong one", "newPassword": "new password 1"}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.body["error"].is_string());
    let r = a
        .post(
            path,
            json!({"currentPassword": PASSWORD, "newPassword": "short"}),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = a
        .post(
            path,
            json!({"currentPassword": PASSWORD, "newPassword": "z".repeat(2000)}),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = a.post(path, json!({"currentPassword": PASSWORD})).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        s.anon()
            .post(
                path,
                json!({"currentPassword": PASSWORD, "newPassword": "new password 1"})
            )
            .await
            .status,
        401
    );
    let r = a
        .post(
            path,
            json!({"currentPassword": PASSWORD, "newPassword": "new password 1"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"ok": true, "revoked": 2}));
    assert_eq!(b.get("/api/v1/auth/me").await.status, 401);
    assert_eq!(c.get("/api/v1/auth/me").await.status, 401);
    assert_eq!(a.get("/api/v1/auth/me").await.status, 200);
    assert_eq!(s.login_as("max@example.com", PASSWORD).await.status, 401);
    assert_eq!(
        s.login_as("max@example.com", "new password 1").await.status,
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn sessions_list_revoke_one_and_others_with_idor() {
    // No last-use writes during the test: the order asserted below is by login time (the
    // manual clock also moves with real time, so a touch could land mid-test).
    let s = TestApp::start_with(&[("SESSION_TOUCH_INTERVAL", "1h")]).await;
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    s.register("ned@example.com").await;
    let first = s.with_token(
        &s.anon()
            .req(Method::POST, "/api/v1/auth/login")
            .json(json!({"email": "ned@example.com", "password": PASSWORD}))
            .header("user-agent", ua)
            .send()
            .await
            .cookie()
            .expect("cookie"),
    );
    s.clock.advance(std::time::Duration::from_secs(30));
    let second = s.login("ned@example.com").await;
    s.clock.advance(std::time::Duration::from_secs(30));
    let third = s.login("ned@example.com").await;
    let mallory = s.user("mallory@example.com").await;

    let r = first.get("/api/v1/account/sessions").await;
    assert_eq!(r.status, 200);
    let list = r.body["sessions"].as_array().expect("list").clone();
    assert_eq!(list.len(), 3);
    let mine = list.iter().find(|x| x["current"] == true).expect("current");
    assert_eq!(mine["browser"], "Chrome");
    assert_eq!(mine["os"], "Windows 10");
    assert_eq!(mine["deviceType"], "pc");
    assert_eq!(mine["ipAddress"], "127.0.0.1");
    for f in ["id", "createdAt", "lastUsedAt", "expiresAt"] {
        assert!(mine[f].is_string(), "{f}");
    }
    assert_eq!(list.iter().filter(|x| x["current"] == true).count(), 1);
    // Most recently used first: the first login is last.
    assert_eq!(list.last().expect("last")["id"], mine["id"]);
    assert_eq!(s.anon().get("/api/v1/account/sessions").await.status, 401);

    let my_id = mine["id"].as_str().expect("id").to_owned();
    // Most recently used first: third, second, then the caller's own.
    assert_eq!(list[0]["current"], false);
    let second_id = list[1]["id"].as_str().expect("id").to_owned();
    assert_ne!(second_id, my_id);
    // Own current session → 400.
    let r = first
        .req(Method::DELETE, &format!("/api/v1/account/sessions/{my_id}"))
        .send()
        .await;
    assert_eq!(r.status, 400);
    // Another user's session and an unknown id → the same 403.
    let foreign = mallory
        .req(
            Method::DELETE,
            &format!("/api/v1/account/sessions/{second_id}"),
        )
        .send()
        .await;
    let unknown = mallory
        .req(
            Method::DELETE,
            "/api/v1/account/sessions/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .send()
        .await;
    assert_eq!(foreign.status, 403);
    assert_eq!(unknown.status, 403);
    assert_eq!(foreign.body, unknown.body);
    assert_eq!(second.get("/api/v1/auth/me").await.status, 200);
    assert_eq!(
        s.anon()
            .req(
                Method::DELETE,
                &format!("/api/v1/account/sessions/{second_id}")
            )
            .send()
            .await
            .status,
        401
    );

    // Revoke one: the other device is refused on its very next request.
    let r = first
        .req(
            Method::DELETE,
            &format!("/api/v1/account/sessions/{second_id}"),
        )
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"ok": true}));
    let (a, b) = tokio::join!(second.get("/api/v1/auth/me"), third.get("/api/v1/auth/me"));
    assert_eq!((a.status, b.status), (401, 200));

    // Revoke all others.
    let r = first
        .req(Method::DELETE, "/api/v1/account/sessions")
        .send()
        .await;
    assert_eq!(r.body, json!({"ok": true, "revoked": 1}));
    assert_eq!(third.get("/api/v1/auth/me").await.status, 401);
    assert_eq!(first.get("/api/v1/auth/me").await.status, 200);
    assert_eq!(
        s.anon()
            .req(Method::DELETE, "/api/v1/account/sessions")
            .send()
            .await
            .status,
        401
    );
    s.stop().await;
}

#[tokio::test]
async fn audit_log_own_events_newest_first_paginated() {
    let s = TestApp::start().await;
    s.register("ola@example.com").await;
    assert_eq!(
        s.login_as("ola@example.com", "bad password").await.status,
        401
    );
    let token = s.login("ola@example.com").await;
    let _ = token
        .req(Method::PATCH, "/api/v1/account")
        .json(json!({"name": "Ola"}))
        .send()
        .await;
    let other = s.user("pat@example.com").await;
    let items = token.audit_items(4).await;
    let actions: Vec<&str> = items
        .iter()
        .map(|i| i["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        ["profile_update", "login", "login_failed", "register"]
    );
    let item = &items[1];
    for f in ["ipAddress", "userAgent", "metadata", "createdAt"] {
        assert!(item.get(f).is_some(), "{f}");
    }
    assert_eq!(item["ipAddress"], "127.0.0.1");
    let r = token.get("/api/v1/account/audit?page=2&pageSize=1").await;
    assert_eq!(r.body["items"][0]["action"], "login");
    assert_eq!(
        r.body["pagination"],
        json!({"page": 2, "pageSize": 1, "total": 4, "totalPages": 4, "hasNext": true, "hasPrev": true})
    );
    // A page far past the end is empty, not an overflow (once a panic in debug builds).
    let r = token
        .get("/api/v1/account/audit?page=9223372036854775807&pageSize=100")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["items"], json!([]));
    assert_eq!(r.body["pagination"]["page"], 9_223_372_036_854_775_807u64);
    assert_eq!(r.body["pagination"]["hasNext"], false);
    // Only own events.
    let theirs = other.audit_items(2).await;
    assert!(
        theirs
            .iter()
            .all(|i| i["action"] == "register" || i["action"] == "login")
    );
    assert_eq!(s.anon().get("/api/v1/account/audit").await.status, 401);
    s.stop().await;
}
