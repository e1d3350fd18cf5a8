//! A revoke racing the cache backfill of concurrent verifies of the same session: a
//! verify that read the row just before the revoke deleted it must not write the session
//! back into the cache after the revoke evicted it (found by the reliability suite's
//! revoke-race scenario: 2 of 20 revoked sessions were served from the cache again). The
//! revoke leaves a tombstone that makes such a late write a no-op; these tests run on the
//! cache the environment selects (in-process, or Redis with `REDIS_URL`).

mod common;

use common::{Server, segment};

fn session_id(token: &str) -> String {
    let sid = segment(token, 1)["sid"].as_str().expect("sid").to_owned();
    shared::SessionId::parse(&sid)
        .expect("session id form")
        .storage_hash()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verifies_racing_a_revoke_never_bring_the_session_back() {
    let s = Server::start().await;
    let email = "race@example.com";
    let actor = s.user(email).await;
    let cache = s.app().cache.clone();
    for round in 0..40 {
        let target = s.login(email).await;
        let id = session_id(&target);
        let key = format!("v1:session:{id}");
        // A cold entry: every verify below reads the row and backfills the cache.
        cache.del(std::slice::from_ref(&key)).await.expect("del");
        let verifies: Vec<_> = (0..16)
            .map(|_| {
                let http = s.http.clone();
                let url = format!("{}/api/v1/auth/me", s.base);
                let cookie = format!("__Host-session={target}");
                tokio::spawn(async move {
                    http.get(url)
                        .header("cookie", cookie)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                })
            })
            .collect();
        let revoke = s
            .call(
                "DELETE",
                &format!("/api/v1/account/sessions/{id}"),
                Some(&actor),
                None,
                &[],
            )
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
        let after = s.get("/api/v1/auth/me", Some(&target)).await;
        assert_eq!(after.status, 401, "round {round}: revoked session accepted");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_late_backfill_of_a_revoked_session_writes_nothing() {
    let s = Server::start().await;
    let email = "tombstone@example.com";
    let actor = s.user(email).await;
    let target = s.login(email).await;
    let other = s.login(email).await;
    let id = session_id(&target);
    let key = format!("v1:session:{id}");
    let cache = s.app().cache.clone();
    let entry = cache
        .get(&key)
        .await
        .expect("get")
        .expect("entry cached at login");
    let ttl = std::time::Duration::from_secs(60);

    let revoke = s
        .call(
            "DELETE",
            &format!("/api/v1/account/sessions/{id}"),
            Some(&actor),
            None,
            &[],
        )
        .await;
    assert_eq!(revoke.status, 200, "{:?}", revoke.body);
    assert_eq!(cache.get(&key).await.expect("get"), None, "entry evicted");

    // What a verify or refresh that read the row before the delete would write now.
    for only_if_absent in [true, false] {
        let written = cache
            .put_session(&id, &entry, ttl, only_if_absent)
            .await
            .expect("put_session");
        assert!(
            !written,
            "written over the tombstone (only_if_absent {only_if_absent})"
        );
        assert_eq!(cache.get(&key).await.expect("get"), None);
    }
    let after = s.get("/api/v1/auth/me", Some(&target)).await;
    assert_eq!(after.status, 401, "revoked session accepted");

    // Sessions never revoked are written as before: IfAbsent only where no entry is.
    let live = session_id(&other);
    let live_key = format!("v1:session:{live}");
    let live_entry = cache.get(&live_key).await.expect("get").expect("cached");
    assert!(
        !cache
            .put_session(&live, &live_entry, ttl, true)
            .await
            .expect("put_session"),
        "an existing entry is kept by a backfill"
    );
    cache
        .del(std::slice::from_ref(&live_key))
        .await
        .expect("del");
    assert!(
        cache
            .put_session(&live, &live_entry, ttl, true)
            .await
            .expect("put_session"),
        "a backfill writes a missing entry"
    );
    assert!(
        cache
            .put_session(&live, &live_entry, ttl, false)
            .await
            .expect("put_session"),
        "a refresh replaces the entry"
    );
    assert_eq!(s.get("/api/v1/auth/me", Some(&other)).await.status, 200);
    s.stop().await;
}
