//! A revoke racing the cache backfill of concurrent verifies of the same session: a
//! verify that read the row just before the revoke deleted it must not write the session
//! back into the cache after the revoke evicted it (found by the reliability suite's
//! revoke-race scenario: 2 of 20 revoked sessions were served from the cache again). The
//! revoke leaves a tombstone that makes such a late write a no-op; these tests run on the
//! cache the environment selects (in-process, or Redis with `REDIS_URL`).

use origin_api::cache::{Lookup, Write, keys};
use origin_api::domain::types::SessionHash;

use crate::support::{Client, Clock, Method, TestApp};

fn hash_of(client: &Client) -> SessionHash {
    SessionHash::parse(&client.session_id()).expect("session id form")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verifies_racing_a_revoke_never_bring_the_session_back() {
    let s = TestApp::start().await;
    let email = "race@example.com";
    let actor = s.user(email).await;
    let cache = s.core().cache.clone();
    for round in 0..40 {
        let target = s.login(email).await;
        let id = target.session_id();
        let key = keys::session(&id);
        // A cold entry: every verify below reads the row and backfills the cache.
        cache.del(std::slice::from_ref(&key)).await.expect("del");
        let verifies: Vec<_> = (0..16)
            .map(|_| {
                let http = s.http.clone();
                let url = format!("{}/api/v1/auth/me", s.base);
                let cookie = format!("__Host-session={}", target.token());
                tokio::spawn(async move {
                    http.get(url)
                        .header("cookie", cookie)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                })
            })
            .collect();
        let revoke = actor
            .req(Method::DELETE, &format!("/api/v1/account/sessions/{id}"))
            .send()
            .await;
        assert_eq!(revoke.status, 200, "round {round}: {:?}", revoke.body);
        for v in verifies {
            let status = v.await.expect("task").expect("verify");
            assert!(status == 200 || status == 401, "round {round}: {status}");
        }
        assert_eq!(
            cache.get(&key).await.expect("get"),
            None,
            "round {round}: the revoked session is back in the cache"
        );
        let after = target.get("/api/v1/auth/me").await;
        assert_eq!(after.status, 401, "round {round}: revoked session accepted");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_late_backfill_of_a_revoked_session_writes_nothing() {
    let s = TestApp::start().await;
    let email = "tombstone@example.com";
    let actor = s.user(email).await;
    let target = s.login(email).await;
    let other = s.login(email).await;
    let id = target.session_id();
    let key = keys::session(&id);
    let cache = s.core().cache.clone();
    let sessions = &s.core().sessions;
    let Lookup::Hit(entry) = sessions.get(&hash_of(&target)).await else {
        panic!("entry cached at login")
    };

    let revoke = actor
        .delete(&format!("/api/v1/account/sessions/{id}"))
        .await;
    assert_eq!(revoke.status, 200, "{:?}", revoke.body);
    assert_eq!(cache.get(&key).await.expect("get"), None, "entry evicted");

    // What a verify or refresh that read the row before the delete would write now.
    let now = s.clock.now();
    for write in [Write::IfAbsent, Write::Replace] {
        sessions
            .put(
                &hash_of(&target),
                &entry,
                now,
                write,
                std::time::Instant::now(),
            )
            .await;
        assert_eq!(
            cache.get(&key).await.expect("get"),
            None,
            "written over the tombstone ({write:?})"
        );
    }
    let after = target.me().await;
    assert_eq!(after.status, 401, "revoked session accepted");

    // Sessions never revoked are written as before: IfAbsent only where no entry is.
    let live = hash_of(&other);
    let live_key = keys::session(live.as_str());
    let Lookup::Hit(mut live_entry) = sessions.get(&live).await else {
        panic!("cached")
    };
    let original = cache.get(&live_key).await.expect("get");
    live_entry.user.name = Some("Changed".into());
    sessions
        .put(
            &live,
            &live_entry,
            now,
            Write::IfAbsent,
            std::time::Instant::now(),
        )
        .await;
    assert_eq!(
        cache.get(&live_key).await.expect("get"),
        original,
        "an existing entry is kept by a backfill"
    );
    cache
        .del(std::slice::from_ref(&live_key))
        .await
        .expect("del");
    sessions
        .put(
            &live,
            &live_entry,
            now,
            Write::IfAbsent,
            std::time::Instant::now(),
        )
        .await;
    assert!(
        cache.get(&live_key).await.expect("get").is_some(),
        "a backfill writes a missing entry"
    );
    live_entry.user.name = Some("Refreshed".into());
    sessions
        .put(
            &live,
            &live_entry,
            now,
            Write::Replace,
            std::time::Instant::now(),
        )
        .await;
    let Lookup::Hit(replaced) = sessions.get(&live).await else {
        panic!("cached")
    };
    assert_eq!(
        replaced.user.name.as_deref(),
        Some("Refreshed"),
        "a refresh replaces the entry"
    );
    assert_eq!(other.me().await.status, 200);
    s.stop().await;
}
