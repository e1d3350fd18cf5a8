//! The session lifecycle driven directly, without HTTP: a core on SQLite and the
//! in-process cache, its clock moved by hand.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::app::{App, Options};
use crate::clock::{Clock, ManualClock};
use crate::config::Config;
use crate::domain::accounts;
use crate::domain::admin;
use crate::domain::core::Core;
use crate::domain::error::DomainError;
use crate::domain::sessions::{self, Revoked, Session};
use crate::domain::types::{Client, Email, Password, Role, SessionHash};
use crate::ratelimit::Decision;

const PASSWORD: &str = "correct horse battery";

struct Lifecycle {
    app: App,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Lifecycle {
    async fn new() -> Lifecycle {
        let dir = tempfile::tempdir().expect("dir");
        let vars: HashMap<String, String> = [
            ("DATA_DIR", dir.path().to_str().expect("utf-8")),
            (
                "SESSION_KEYS",
                "k1:c2Vzc2lvbmdhdGUtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyEh",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = Config::from_map(&vars).expect("config");
        let clock = Arc::new(ManualClock::new());
        let app = App::start(
            config,
            Options {
                clock: clock.clone(),
                cache_faults: None,
            },
        )
        .await
        .expect("app");
        Lifecycle {
            app,
            clock,
            _dir: dir,
        }
    }

    fn core(&self) -> &Arc<Core> {
        &self.app.core
    }

    async fn register(&self, email: &str) {
        accounts::register(
            self.core(),
            &Client::local(),
            Email::parse(email).expect("email"),
            Password::new_password("password", PASSWORD.into()).expect("password"),
            None,
        )
        .await
        .expect("register");
    }

    /// Logs in; returns the session id the cookie would carry.
    async fn login(&self, email: &str, password: &str) -> Result<shared::SessionId, DomainError> {
        let gate = Decision::unlimited();
        let outcome = sessions::login(
            self.core(),
            &Client::local(),
            gate,
            email,
            Password::offered("password", password.into()).expect("password"),
            None,
        )
        .await;
        let (_, issued) = outcome.result?;
        let verified = shared::verify(
            &self.core().policy.keys,
            &issued.token,
            self.clock.now_unix(),
        )
        .expect("a signed cookie");
        Ok(verified.sid)
    }

    async fn live(&self, sid: &shared::SessionId) -> Option<Session> {
        sessions::authenticate(self.core(), sid)
            .await
            .expect("authenticate")
    }
}

#[tokio::test]
async fn login_authenticate_refresh_and_revoke() {
    let l = Lifecycle::new().await;
    l.register("ann@example.com").await;
    assert!(matches!(
        l.login("ann@example.com", "wrong password").await,
        Err(DomainError::InvalidCredentials)
    ));
    assert!(matches!(
        l.login("nobody@example.com", PASSWORD).await,
        Err(DomainError::InvalidCredentials)
    ));
    let sid = l.login("ann@example.com", PASSWORD).await.expect("login");
    let session = l.live(&sid).await.expect("live");
    assert_eq!(session.user.email.as_str(), "ann@example.com");
    assert_eq!(session.user.role, Role::User);
    assert!(
        session.reissued.is_none(),
        "a fresh session is not refreshed"
    );

    // Past half of SESSION_TTL (7 d): refreshed to a full TTL, once.
    l.clock.advance(Duration::from_secs(4 * 86_400));
    let refreshed = l.live(&sid).await.expect("live");
    let issued = refreshed.reissued.expect("re-issued");
    assert_eq!(issued.max_age, 7 * 86_400);

    // Revoked: not live on the very next check.
    let other = l.login("ann@example.com", PASSWORD).await.expect("login");
    let hash = SessionHash::of(&other);
    assert!(
        l.core()
            .store
            .delete_session(hash.as_str())
            .await
            .expect("delete")
    );
    sessions::revoke_sessions(
        l.core(),
        &Client::local(),
        Revoked::ByOwner {
            owner: &session.user.id,
        },
        vec![hash],
    )
    .await;
    assert!(l.live(&other).await.is_none());
    assert!(l.live(&sid).await.is_some());

    // Expired: refused at once.
    l.clock.advance(Duration::from_secs(8 * 86_400));
    assert!(l.live(&sid).await.is_none());
    l.app.close().await;
}

#[tokio::test]
async fn a_password_change_ends_every_other_session_and_the_old_password() {
    let l = Lifecycle::new().await;
    l.register("bo@example.com").await;
    let keep = l.login("bo@example.com", PASSWORD).await.expect("login");
    let other = l.login("bo@example.com", PASSWORD).await.expect("login");
    let session = l.live(&keep).await.expect("live");
    let revoked = accounts::change_password(
        l.core(),
        &Client::local(),
        &session,
        Password::offered("currentPassword", PASSWORD.into()).expect("pw"),
        Password::new_password("newPassword", "a brand new secret".into()).expect("pw"),
    )
    .await
    .expect("changed");
    assert_eq!(revoked, 1);
    assert!(l.live(&other).await.is_none());
    assert!(l.live(&keep).await.is_some());
    assert!(l.login("bo@example.com", PASSWORD).await.is_err());
    assert!(
        l.login("bo@example.com", "a brand new secret")
            .await
            .is_ok()
    );
    l.app.close().await;
}

#[tokio::test]
async fn a_role_change_is_seen_on_the_next_authentication() {
    let l = Lifecycle::new().await;
    accounts::create_admin(
        l.core(),
        Email::parse("root@example.com").expect("email"),
        Password::new_password("password", PASSWORD.into()).expect("pw"),
    )
    .await
    .expect("admin");
    l.register("cy@example.com").await;
    let admin_sid = l.login("root@example.com", PASSWORD).await.expect("login");
    let user_sid = l.login("cy@example.com", PASSWORD).await.expect("login");
    let admin_session = l.live(&admin_sid).await.expect("admin");
    let user = l.live(&user_sid).await.expect("user").user;
    admin::change_role(
        l.core(),
        &Client::local(),
        &admin_session,
        &user.id,
        Role::Admin,
    )
    .await
    .expect("promoted");
    assert_eq!(
        l.live(&user_sid).await.expect("live").user.role,
        Role::Admin
    );
    // The last ADMIN cannot be demoted... but there are two now; demote the first.
    admin::change_role(
        l.core(),
        &Client::local(),
        &admin_session,
        &admin_session.user.id,
        Role::User,
    )
    .await
    .expect("demoted");
    // The demoted one is no longer an ADMIN for the next write.
    let stale = l.live(&admin_sid).await.expect("live");
    assert_eq!(stale.user.role, Role::User);
    assert!(matches!(
        admin::delete_user(l.core(), &Client::local(), &admin_session, &user.id).await,
        Err(DomainError::Forbidden(_))
    ));
    l.app.close().await;
}

/// Regression (bench_watch): the watcher's re-check did not write a missed entry back, so a
/// connection held past `SESSION_CACHE_TTL` was checked against the database every period.
#[tokio::test]
async fn still_live_backfills_a_missed_entry() {
    let l = Lifecycle::new().await;
    l.register("held@example.com").await;
    let sid = l.login("held@example.com", PASSWORD).await.expect("login");
    let hash = SessionHash::of(&sid);
    l.core().sessions.evict(&hash).await;
    assert!(matches!(
        l.core().sessions.get(&hash).await,
        crate::cache::Lookup::Miss
    ));
    let role = sessions::still_live(l.core(), &sid)
        .await
        .expect("still live");
    assert_eq!(role, Some(Role::User));
    assert!(
        matches!(
            l.core().sessions.get(&hash).await,
            crate::cache::Lookup::Hit(_)
        ),
        "the entry is back in the cache"
    );
    l.app.close().await;
}
