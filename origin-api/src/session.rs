//! The session lifecycle as plain async functions over the stores: register, login,
//! verify (cache-aside) with the sliding refresh, revoke (one, others, all), password
//! change and profile update. No HTTP here: handlers call these and shape the answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::SessionId;

use crate::app::App;
use crate::audit::{Action, Client};
use crate::cache::keys;
use crate::clock::rfc3339;
use crate::error::{ApiError, ApiResult};
use crate::store::{WriteError, session, user};

/// How long a user entry stays in the cache.
pub const USER_CACHE_TTL: Duration = Duration::from_secs(300);
/// How long a user write keeps older reads of the user out of the cache.
pub const USER_CHANGED_TTL: Duration = Duration::from_secs(30);

/// `now` without sub-second digits: cookies carry whole seconds, so rows and cache do too.
pub fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn secs_between(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    u64::try_from((to - from).num_seconds()).unwrap_or(0)
}

fn unix(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

/// The user as the cache and the API see it (never the password hash). The API's `user`
/// omits `updatedAt`; `profile` includes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&user::Model> for UserRecord {
    fn from(u: &user::Model) -> Self {
        UserRecord {
            id: u.id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.clone(),
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

/// The contract's `user` object, borrowed from a [`UserRecord`]: serialized straight to bytes
/// on the verify path (`GET /auth/me`), where building a `serde_json::Value` first was a
/// measurable share of the request (BENCHMARKS.md).
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub role: &'a str,
    pub created_at: &'a str,
}

impl UserRecord {
    /// The contract's `user` object, borrowed.
    pub fn view(&self) -> UserView<'_> {
        UserView {
            id: &self.id,
            email: &self.email,
            name: self.name.as_deref(),
            role: &self.role,
            created_at: &self.created_at,
        }
    }

    /// The contract's `user` object.
    pub fn user_json(&self) -> serde_json::Value {
        serde_json::to_value(self.view()).unwrap_or_default()
    }

    /// The contract's `profile` object.
    pub fn profile_json(&self) -> serde_json::Value {
        let mut v = self.user_json();
        v["updatedAt"] = json!(self.updated_at);
        v
    }

    pub fn is_admin(&self) -> bool {
        self.role == "ADMIN"
    }
}

/// The cache's session entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionEntry {
    user_id: String,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

/// A cookie to send: the signed token and its `Max-Age`.
#[derive(Clone, Debug)]
pub struct Issued {
    pub token: String,
    pub max_age: u64,
}

/// A verified, live session.
#[derive(Clone, Debug)]
pub struct Authed {
    /// The session's storage hash (the API's session `id`).
    pub session_id: String,
    pub user: UserRecord,
    pub expires_at: DateTime<Utc>,
    /// Set when this request slid the session: the re-issued cookie.
    pub reissued: Option<Issued>,
}

/// Normalises an email for storage and comparison: trimmed, lower-cased.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A plausible email: one `@`, non-empty local part, a dotted domain, no spaces, ≤ 254.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Caches a user record read from the database at `read_at`. Written only if no write to
/// the user happened since (the change marker, [`crate::cache::Cache::put_user`]); a read
/// older than half the marker's life is not written at all, so the marker always covers
/// the time between a read and its write.
async fn cache_user(app: &App, record: &UserRecord, read_at: Instant) {
    if read_at.elapsed() >= USER_CHANGED_TTL / 2 {
        return;
    }
    if let Ok(value) = serde_json::to_string(record) {
        let _ = app.cache.put_user(&record.id, &value, USER_CACHE_TTL).await;
    }
}

/// How a session entry is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Replace any entry (a new session, a refresh).
    Replace,
    /// Only where there is none (a backfill after a miss: concurrent misses of one session
    /// write once).
    IfAbsent,
}

/// Writes the session entry read (or written) in the database at `read_at`. Never after a
/// revoke: a request that read the row just before a revoke
/// deleted it finds the revoke's tombstone and writes nothing (the reliability suite's
/// revoke-race scenario caught such a write serving a revoked session until its entry
/// expired). A read older than half the tombstone's life is not written at all, so the
/// tombstone always covers the time between a read and its write.
async fn cache_session(
    app: &App,
    hash: &str,
    entry: &SessionEntry,
    now: DateTime<Utc>,
    write: Write,
    read_at: Instant,
) {
    let left = (entry.expires_at - now).to_std().unwrap_or_default();
    let ttl = left.min(app.config.session_cache_ttl);
    if ttl.is_zero() || read_at.elapsed() >= app.tombstone_ttl() / 2 {
        return;
    }
    if let Ok(value) = serde_json::to_string(entry) {
        let _ = app
            .cache
            .put_session(hash, &value, ttl, write == Write::IfAbsent)
            .await;
    }
}

/// Drops the user's cache entry, marking the user changed so no older read is cached
/// again, and bumps the users-list version (every user write).
pub async fn invalidate_user(app: &Arc<App>, user_id: &str) {
    app.user_changed(user_id.to_owned()).await;
    if let Err(e) = app.cache.incr(keys::USERS_VERSION).await {
        tracing::warn!(error = %e, "users list version bump failed; pages expire within 30 s");
    }
}

/// Creates a USER account.
pub async fn register(
    app: &Arc<App>,
    client: &Client,
    email: String,
    password: String,
    name: Option<String>,
) -> ApiResult<UserRecord> {
    let hash = app.passwords.hash(password).await?;
    let now = whole_seconds(app.clock.now());
    let model = user::Model {
        id: uuid::Uuid::now_v7().to_string(),
        email,
        name,
        password_hash: hash,
        role: "USER".into(),
        created_at: now,
        updated_at: now,
    };
    let model = match app.store.insert_user(model).await {
        Ok(m) => m,
        Err(WriteError::Duplicate) => {
            return Err(ApiError::Conflict("Email already registered".into()));
        }
        Err(WriteError::Db(e)) => return Err(e.into()),
    };
    if let Err(e) = app.cache.incr(keys::USERS_VERSION).await {
        tracing::warn!(error = %e, "users list version bump failed");
    }
    app.audit
        .record(Some(&model.id), Action::Register, client, json!({}));
    Ok(UserRecord::from(&model))
}

/// Checks the credentials and opens a new session (a fresh id every time).
pub async fn login(
    app: &Arc<App>,
    client: &Client,
    email: &str,
    password: String,
) -> ApiResult<(UserRecord, Issued)> {
    let found = app.store.user_by_email(email).await?;
    let read_at = Instant::now();
    let checked = app
        .passwords
        .verify(
            password.clone(),
            found.as_ref().map(|u| u.password_hash.clone()),
        )
        .await?;
    let user = match found {
        Some(user) if checked.ok => user,
        found => {
            let reason = if found.is_some() {
                "wrong_password"
            } else {
                "unknown_email"
            };
            app.audit.record(
                found.as_ref().map(|u| u.id.as_str()),
                Action::LoginFailed,
                client,
                json!({ "reason": reason }),
            );
            return Err(ApiError::InvalidCredentials);
        }
    };
    if checked.needs_rehash {
        let app2 = app.clone();
        let id = user.id.clone();
        tokio::spawn(async move {
            match app2.passwords.hash(password).await {
                Ok(hash) => {
                    let now = whole_seconds(app2.clock.now());
                    if let Err(e) = app2.store.set_password_hash(&id, hash, now).await {
                        tracing::warn!(error = %crate::error::short(&e), "password rehash not stored");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "password rehash failed"),
            }
        });
    }

    let now = whole_seconds(app.clock.now());
    let sid = SessionId::generate();
    let hash = sid.storage_hash();
    let expires_at =
        (now + delta(app.config.session_ttl)).min(now + delta(app.config.session_max_age));
    let device = client
        .user_agent
        .as_deref()
        .and_then(|ua| app.user_agents.parse(ua));
    let known = |s: &str| (!s.is_empty() && s != "UNKNOWN").then(|| s.to_owned());
    let row = session::Model {
        id: hash.clone(),
        user_id: user.id.clone(),
        created_at: now,
        last_used_at: now,
        expires_at,
        ip_address: client.ip.clone(),
        user_agent: client.user_agent.clone(),
        browser: device.as_ref().and_then(|d| known(d.name)),
        os: device.as_ref().and_then(|d| known(d.os)),
        device_type: device.as_ref().and_then(|d| known(d.category)),
    };
    app.store.insert_session(row).await?;

    let evicted = app
        .store
        .evict_beyond(&user.id, app.config.max_sessions_per_user)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %crate::error::short(&e), "session limit not enforced on this login");
            Vec::new()
        });
    if !evicted.is_empty() {
        app.metrics.revocations.increment(evicted.len() as u64);
        app.evict_revoked(evicted.clone()).await;
        for id in &evicted {
            app.audit.record(
                Some(&user.id),
                Action::SessionRevoke,
                client,
                json!({ "sessionId": id, "reason": "limit" }),
            );
        }
    }

    let record = UserRecord::from(&user);
    let entry = SessionEntry {
        user_id: user.id.clone(),
        expires_at,
        created_at: now,
    };
    cache_session(app, &hash, &entry, now, Write::Replace, Instant::now()).await;
    // Read before hashing: skipped when the hash queue held the login long enough that
    // the record may predate a write (the first verify then caches a fresh one).
    cache_user(app, &record, read_at).await;
    let token = shared::sign(&app.config.keys, &sid, unix(now), unix(expires_at));
    app.audit.record(
        Some(&user.id),
        Action::Login,
        client,
        json!({ "sessionId": hash }),
    );
    Ok((
        record,
        Issued {
            token,
            max_age: secs_between(now, expires_at),
        },
    ))
}

/// The first cookie value in the `Cookie` header that verifies, as a session id.
pub fn session_from_cookies(app: &App, cookie_header: Option<&str>) -> Option<SessionId> {
    let header = cookie_header?;
    let name = shared::cookie::cookie_name(app.config.cookie_secure);
    let now = app.clock.now_unix();
    shared::cookie::cookie_values(header, name)
        .find_map(|token| shared::verify(&app.config.keys, token, now).ok())
        .map(|v| v.sid)
}

/// Verifies the request's session: cookie signature, then cache, then database. `Ok(None)`
/// means "no valid session" (401 where one is required).
pub async fn authenticate(
    app: &Arc<App>,
    cookie_header: Option<&str>,
) -> ApiResult<Option<Authed>> {
    let Some(sid) = session_from_cookies(app, cookie_header) else {
        return Ok(None);
    };
    let hash = sid.storage_hash();
    let now = whole_seconds(app.clock.now());
    let key = keys::session(&hash);

    let cached = match app.cache.get_session_and_user(&key).await {
        Ok((Some(s), Some(u))) => {
            match (
                serde_json::from_str::<SessionEntry>(&s),
                serde_json::from_str::<UserRecord>(&u),
            ) {
                (Ok(entry), Ok(user)) if user.id == entry.user_id => Some((entry, user)),
                _ => None,
            }
        }
        Ok(_) => None,
        Err(e) => {
            app.metrics.db_fallbacks.increment(1);
            tracing::debug!(error = %e, "session cache unavailable; asking the database");
            return from_database(app, &sid, hash, now, false).await;
        }
    };
    match cached {
        Some((entry, user)) => {
            app.metrics.cache_hits.increment(1);
            if entry.expires_at <= now {
                app.evict(vec![key]).await;
                return Ok(None);
            }
            let reissued = maybe_refresh(app, &sid, &hash, &entry, now);
            Ok(Some(Authed {
                session_id: hash,
                user,
                expires_at: entry.expires_at,
                reissued,
            }))
        }
        None => {
            app.metrics.cache_misses.increment(1);
            from_database(app, &sid, hash, now, true).await
        }
    }
}

async fn from_database(
    app: &Arc<App>,
    sid: &SessionId,
    hash: String,
    now: DateTime<Utc>,
    backfill: bool,
) -> ApiResult<Option<Authed>> {
    let Some((row, user)) = app.store.session_with_user(&hash, now).await? else {
        return Ok(None);
    };
    let read_at = Instant::now();
    let entry = SessionEntry {
        user_id: user.id.clone(),
        expires_at: row.expires_at,
        created_at: row.created_at,
    };
    let record = UserRecord::from(&user);
    if backfill {
        cache_session(app, &hash, &entry, now, Write::IfAbsent, read_at).await;
        cache_user(app, &record, read_at).await;
    }
    let reissued = maybe_refresh(app, sid, &hash, &entry, now);
    Ok(Some(Authed {
        session_id: hash,
        user: record,
        expires_at: entry.expires_at,
        reissued,
    }))
}

/// The sliding refresh: past half of `SESSION_TTL`, extend to a full TTL (capped by
/// `SESSION_MAX_AGE`) with a conditional update run off the response path, and re-issue
/// the cookie now.
fn maybe_refresh(
    app: &Arc<App>,
    sid: &SessionId,
    hash: &str,
    entry: &SessionEntry,
    now: DateTime<Utc>,
) -> Option<Issued> {
    let half = delta(app.config.session_ttl / 2);
    if entry.expires_at - now >= half {
        return None;
    }
    let new_expires = (now + delta(app.config.session_ttl))
        .min(entry.created_at + delta(app.config.session_max_age));
    if new_expires <= entry.expires_at {
        return None;
    }
    let mark = now + half;
    let app2 = app.clone();
    let hash = hash.to_owned();
    let entry = SessionEntry {
        expires_at: new_expires,
        ..entry.clone()
    };
    tokio::spawn(async move {
        match app2
            .store
            .extend_session(&hash, new_expires, now, mark)
            .await
        {
            Ok(true) => {
                cache_session(&app2, &hash, &entry, now, Write::Replace, Instant::now()).await;
                app2.metrics.refreshes.increment(1);
            }
            Ok(false) => {}
            Err(e) => {
                app2.metrics.refresh_failures.increment(1);
                tracing::warn!(error = %crate::error::short(&e), "session refresh not written");
            }
        }
        app2.metrics.refresh_attempts.increment(1);
    });
    Some(Issued {
        token: shared::sign(&app.config.keys, sid, unix(now), unix(new_expires)),
        max_age: secs_between(now, new_expires),
    })
}

/// Ends the session named by the cookie, if any (logout works with or without one).
pub async fn logout(app: &Arc<App>, client: &Client, cookie_header: Option<&str>) -> ApiResult<()> {
    let Some(sid) = session_from_cookies(app, cookie_header) else {
        return Ok(());
    };
    let hash = sid.storage_hash();
    let now = whole_seconds(app.clock.now());
    let owner = app
        .store
        .session_with_user(&hash, now)
        .await?
        .map(|(s, _)| s.user_id);
    if app.store.delete_session(&hash).await? {
        app.metrics.revocations.increment(1);
    }
    app.evict_revoked(vec![hash.clone()]).await;
    if let Some(user_id) = owner {
        app.audit.record(
            Some(&user_id),
            Action::Logout,
            client,
            json!({ "sessionId": hash }),
        );
    }
    Ok(())
}

/// One item of the sessions list.
pub fn session_json(s: &session::Model, current: &str) -> serde_json::Value {
    json!({
        "id": s.id,
        "current": s.id == current,
        "ipAddress": s.ip_address,
        "browser": s.browser,
        "os": s.os,
        "deviceType": s.device_type,
        "createdAt": rfc3339(s.created_at),
        "lastUsedAt": rfc3339(s.last_used_at),
        "expiresAt": rfc3339(s.expires_at),
    })
}

/// The caller's live sessions, most recently used first.
pub async fn list_sessions(app: &App, authed: &Authed) -> ApiResult<Vec<serde_json::Value>> {
    let now = whole_seconds(app.clock.now());
    let rows = app.store.live_sessions(&authed.user.id, now).await?;
    Ok(rows
        .iter()
        .map(|s| session_json(s, &authed.session_id))
        .collect())
}

/// Revokes one of the caller's other sessions. Unknown and foreign ids get the same 403.
pub async fn revoke_one(
    app: &Arc<App>,
    client: &Client,
    authed: &Authed,
    id: &str,
) -> ApiResult<()> {
    if id == authed.session_id {
        return Err(ApiError::BadRequest(
            "This is the current session; use logout".into(),
        ));
    }
    if !shared::sid::is_session_id_form(id)
        || !app.store.delete_session_of(id, &authed.user.id).await?
    {
        return Err(ApiError::forbidden());
    }
    app.metrics.revocations.increment(1);
    app.evict_revoked(vec![id.to_owned()]).await;
    app.audit.record(
        Some(&authed.user.id),
        Action::SessionRevoke,
        client,
        json!({ "sessionId": id, "reason": "user" }),
    );
    Ok(())
}

/// Revokes every session of `user_id` except `keep`; returns how many.
pub async fn revoke_all(app: &Arc<App>, user_id: &str, keep: Option<&str>) -> ApiResult<usize> {
    let ids = app.store.delete_sessions_of(user_id, keep).await?;
    app.metrics.revocations.increment(ids.len() as u64);
    let n = ids.len();
    app.evict_revoked(ids).await;
    Ok(n)
}

/// Revokes the caller's other sessions.
pub async fn revoke_others(app: &Arc<App>, client: &Client, authed: &Authed) -> ApiResult<usize> {
    let n = revoke_all(app, &authed.user.id, Some(&authed.session_id)).await?;
    app.audit.record(
        Some(&authed.user.id),
        Action::SessionRevoke,
        client,
        json!({ "reason": "others", "revoked": n }),
    );
    Ok(n)
}

/// Changes the password after checking the current one (403 when wrong), and revokes every
/// other session of the user.
pub async fn change_password(
    app: &Arc<App>,
    client: &Client,
    authed: &Authed,
    current: String,
    new: String,
) -> ApiResult<usize> {
    let stored = app
        .store
        .user_by_id(&authed.user.id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let checked = app
        .passwords
        .verify(current, Some(stored.password_hash))
        .await?;
    if !checked.ok {
        return Err(ApiError::Forbidden("Current password is incorrect".into()));
    }
    let hash = app.passwords.hash(new).await?;
    let now = whole_seconds(app.clock.now());
    let revoked = app
        .store
        .change_password(&authed.user.id, hash, now, &authed.session_id)
        .await?;
    invalidate_user(app, &authed.user.id).await;
    let n = revoked.len();
    app.metrics.revocations.increment(n as u64);
    app.evict_revoked(revoked).await;
    app.audit.record(
        Some(&authed.user.id),
        Action::PasswordChange,
        client,
        json!({ "revoked": n }),
    );
    Ok(n)
}

/// Updates name and/or email; the very next request sees the change.
pub async fn update_profile(
    app: &Arc<App>,
    client: &Client,
    authed: &Authed,
    name: Option<Option<String>>,
    email: Option<String>,
) -> ApiResult<UserRecord> {
    let mut fields = Vec::new();
    if name.is_some() {
        fields.push("name");
    }
    if email.is_some() {
        fields.push("email");
    }
    let now = whole_seconds(app.clock.now());
    let updated = match app
        .store
        .update_profile(&authed.user.id, name, email, now)
        .await
    {
        Ok(Some(u)) => u,
        Ok(None) => return Err(ApiError::Unauthorized),
        Err(WriteError::Duplicate) => {
            return Err(ApiError::Conflict("Email already registered".into()));
        }
        Err(WriteError::Db(e)) => return Err(e.into()),
    };
    invalidate_user(app, &updated.id).await;
    app.audit.record(
        Some(&updated.id),
        Action::ProfileUpdate,
        client,
        json!({ "fields": fields }),
    );
    Ok(UserRecord::from(&updated))
}
