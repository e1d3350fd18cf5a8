//! The session lifecycle: login, authenticate (cache, then database) with the sliding
//! refresh and the last-use touch, logout, the sessions list, and revocation. Every revoke
//! goes through [`revoke_sessions`]: count, tombstone and evict, audit.
//!
//! No HTTP here: the caller hands in the session ids its cookies carried and gets back
//! domain values (and the cookie to re-issue, as a signed token and its lifetime).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use shared::SessionId;

use crate::cache::{Lookup, SessionEntry, Write};
use crate::clock::whole_seconds;
use crate::domain::audit::Action;
use crate::domain::core::Core;
use crate::domain::error::{DomainError, DomainResult, short};
use crate::domain::types::{Client, Password, Role, SessionHash, User, UserId};
use crate::ratelimit::{Bucket, Decision};
use crate::store::session;

/// A cookie to send: the signed token and its `Max-Age`.
#[derive(Clone, Debug)]
pub struct Issued {
    pub token: String,
    pub max_age: u64,
}

/// A verified, live session.
#[derive(Clone, Debug)]
pub struct Session {
    pub hash: SessionHash,
    pub user: User,
    pub expires_at: DateTime<Utc>,
    /// Set when this request slid the session: the cookie to re-issue.
    pub reissued: Option<Issued>,
}

/// One item of the sessions list.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub hash: SessionHash,
    pub current: bool,
    pub ip_address: Option<String>,
    pub browser: Option<String>,
    pub os: Option<String>,
    pub device_type: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Why sessions end; decides what the audit log records.
pub enum Revoked<'a> {
    /// The owner logged out.
    Logout { owner: &'a UserId },
    /// The owner revoked one of their other sessions.
    ByOwner { owner: &'a UserId },
    /// The owner revoked all their other sessions.
    Others { owner: &'a UserId },
    /// A login presented this still-live session: login never keeps one.
    Relogin { owner: &'a UserId },
    /// A login went beyond `MAX_SESSIONS_PER_USER`: the least recently used ones.
    Limit { owner: &'a UserId },
    /// An ADMIN revoked every session of a user.
    ByAdmin {
        actor: &'a UserId,
        target: &'a UserId,
    },
    /// The password changed (audited as the password change).
    PasswordChanged,
    /// The user was deleted (audited as the deletion).
    UserDeleted,
}

/// What a login attempt produced: the rate-limit state for the answer's headers, and the
/// outcome.
pub struct LoginOutcome {
    pub limits: Decision,
    pub result: DomainResult<(User, Issued)>,
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn unix(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

fn issue(
    core: &Arc<Core>,
    sid: &SessionId,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Issued {
    Issued {
        token: shared::sign(&core.policy.keys, sid, unix(now), unix(expires_at)),
        max_age: u64::try_from((expires_at - now).num_seconds()).unwrap_or(0),
    }
}

/// The first token that verifies, as a session id.
pub fn session_id<'a>(
    core: &Arc<Core>,
    tokens: impl IntoIterator<Item = &'a str>,
) -> Option<SessionId> {
    let now = core.clock.now_unix();
    tokens
        .into_iter()
        .find_map(|token| shared::verify(&core.policy.keys, token, now).ok())
        .map(|v| v.sid)
}

/// Which login attempts the per-account bucket remembers as coming from the account's
/// owner: an address that logged in to it before.
fn known_client(email: &str, client: &Client) -> String {
    format!("{email} {}", client.rate_key)
}

/// Checks the credentials and opens a new session (a fresh id every time). `gate` is the
/// per-IP decision the caller already counted ([`crate::domain::limits::login`]). The per-account bucket
/// counts failed attempts only, and while it is full only addresses that logged in to the
/// account before get through: a stranger's flood of wrong passwords cannot lock the owner
/// out of their usual device. A session presented with the login is revoked.
pub async fn login(
    core: &Arc<Core>,
    client: &Client,
    gate: Decision,
    email: &str,
    password: Password,
    presented: Option<SessionId>,
) -> LoginOutcome {
    let account = Bucket::new("login-account", email, core.policy.limits.login_account);
    let state = core.limiter.peek(&account).await;
    let mut decision = gate.with(state);
    if !state.allowed
        && !core
            .limiter
            .remembers("login-known", &known_client(email, client))
            .await
    {
        return LoginOutcome {
            result: Err(DomainError::RateLimited {
                retry_after: decision.retry_after.unwrap_or(1),
            }),
            limits: decision,
        };
    }
    let result = check_and_open(core, client, email, password).await;
    match &result {
        Err(DomainError::InvalidCredentials) => {
            decision = gate.with(core.limiter.count(&account).await);
        }
        Ok((user, _)) => {
            core.limiter
                .remember(
                    "login-known",
                    &known_client(email, client),
                    core.policy.session_max_age,
                )
                .await;
            if let Some(presented) = presented {
                let _ = user;
                end_presented(core, client, &presented).await;
            }
        }
        Err(_) => {}
    }
    LoginOutcome {
        limits: decision,
        result,
    }
}

async fn check_and_open(
    core: &Arc<Core>,
    client: &Client,
    email: &str,
    password: Password,
) -> DomainResult<(User, Issued)> {
    let found = core.store.user_by_email(email).await?;
    let read_at = Instant::now();
    let stored = found.as_ref().map(|u| u.password_hash.clone());
    let checked = core.passwords.verify(password.clone(), stored).await?;
    let user_row = match found {
        Some(user) if checked.ok => user,
        found => {
            let reason = if found.is_some() {
                "wrong_password"
            } else {
                "unknown_email"
            };
            let id = found.map(|u| UserId::from_stored(u.id));
            core.audit.record(
                id.as_ref(),
                Action::LoginFailed,
                client,
                json!({ "reason": reason }),
            );
            return Err(DomainError::InvalidCredentials);
        }
    };
    let user = user_row.to_user();
    if checked.needs_rehash {
        rehash_later(core, &user.id, user_row.password_hash.clone(), password);
    }

    let now = whole_seconds(core.clock.now());
    let sid = SessionId::generate();
    let hash = SessionHash::of(&sid);
    let expires_at =
        (now + delta(core.policy.session_ttl)).min(now + delta(core.policy.session_max_age));
    let device = client
        .user_agent
        .as_deref()
        .and_then(|ua| core.user_agents.parse(ua));
    let known = |s: &str| (!s.is_empty() && s != "UNKNOWN").then(|| s.to_owned());
    let row = session::Model {
        id: hash.as_str().to_owned(),
        user_id: user.id.as_str().to_owned(),
        created_at: now,
        last_used_at: now,
        expires_at,
        ip_address: Some(client.ip.to_string()),
        user_agent: client.user_agent.clone(),
        browser: device.as_ref().and_then(|d| known(d.name)),
        os: device.as_ref().and_then(|d| known(d.os)),
        device_type: device.as_ref().and_then(|d| known(d.category)),
    };
    // Only while the password checked is still the user's: a password change or a
    // deletion racing this login wins.
    if !core
        .store
        .insert_session_checked(row, &user_row.password_hash)
        .await?
    {
        return Err(DomainError::InvalidCredentials);
    }
    enforce_session_limit(core, client, &user.id).await;
    let entry = SessionEntry {
        user_id: user.id.clone(),
        expires_at,
        created_at: now,
        user: user.clone(),
    };
    // The user was read before hashing: when the hash queue held the login long enough
    // that the snapshot may predate a write, `put` skips it (the first verify reads fresh).
    core.sessions
        .put(&hash, &entry, now, Write::Replace, read_at)
        .await;
    core.audit.record(
        Some(&user.id),
        Action::Login,
        client,
        json!({ "sessionId": hash.as_str() }),
    );
    let issued = issue(core, &sid, now, expires_at);
    Ok((user, issued))
}

/// Stores a hash with today's parameters after a login proved the password, in the
/// background, unless the password changed meanwhile.
fn rehash_later(core: &Arc<Core>, user: &UserId, old: String, password: Password) {
    let task_core = core.clone();
    let id = user.as_str().to_owned();
    core.background.spawn(async move {
        match task_core.passwords.hash(password).await {
            Ok(hash) => {
                if let Err(e) = task_core.store.rehash_password(&id, &old, hash).await {
                    tracing::warn!(error = %short(&e), "password rehash not stored");
                }
            }
            Err(e) => tracing::warn!(error = %e, "password rehash failed"),
        }
    });
}

/// Revokes the user's least recently used sessions beyond `MAX_SESSIONS_PER_USER`.
async fn enforce_session_limit(core: &Arc<Core>, client: &Client, user: &UserId) {
    match core
        .store
        .evict_beyond(user.as_str(), core.policy.max_sessions_per_user)
        .await
    {
        Ok(evicted) => {
            let hashes = evicted.into_iter().map(SessionHash::from_stored).collect();
            revoke_sessions(core, client, Revoked::Limit { owner: user }, hashes).await;
        }
        Err(e) => {
            tracing::warn!(error = %short(&e), "session limit not enforced on this login");
        }
    }
}

/// Ends the session a login request presented, if it is still live.
async fn end_presented(core: &Arc<Core>, client: &Client, presented: &SessionId) {
    let hash = SessionHash::of(presented);
    let now = whole_seconds(core.clock.now());
    let owner = match core.store.session_with_user(hash.as_str(), now).await {
        Ok(Some((row, _))) => UserId::from_stored(row.user_id),
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %short(&e), "presented session not revoked at login");
            return;
        }
    };
    match core.store.delete_session(hash.as_str()).await {
        Ok(true) => {
            revoke_sessions(core, client, Revoked::Relogin { owner: &owner }, vec![hash]).await;
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %short(&e), "presented session not revoked at login"),
    }
}

/// Verifies a session: cache, then database. `Ok(None)` means "no live session".
pub async fn authenticate(core: &Arc<Core>, sid: &SessionId) -> DomainResult<Option<Session>> {
    let hash = SessionHash::of(sid);
    let now = whole_seconds(core.clock.now());
    match core.sessions.get(&hash).await {
        Lookup::Hit(entry) => {
            core.metrics.cache_hits.increment(1);
            if entry.expires_at <= now {
                core.sessions.evict(&hash).await;
                return Ok(None);
            }
            touch(core, &hash, now, None);
            Ok(Some(live(core, sid, hash, entry, now)))
        }
        Lookup::Miss => {
            core.metrics.cache_misses.increment(1);
            from_database(core, sid, hash, now, true).await
        }
        Lookup::Unavailable(e) => {
            core.metrics.db_fallbacks.increment(1);
            tracing::debug!(error = %e, "session cache unavailable; asking the database");
            from_database(core, sid, hash, now, false).await
        }
        Lookup::Disabled => from_database(core, sid, hash, now, false).await,
    }
}

/// Whether a session still lives, and its user's role now, without the request-side
/// effects of [`authenticate`] (no refresh, no touch): for re-checking long-lived
/// connections. A miss is backfilled as [`authenticate`] backfills it, so a connection held
/// past `SESSION_CACHE_TTL` is checked from the cache again, not from the database on every
/// period. `Err` when neither the cache nor the database can tell.
pub async fn still_live(core: &Arc<Core>, sid: &SessionId) -> DomainResult<Option<Role>> {
    let hash = SessionHash::of(sid);
    let now = whole_seconds(core.clock.now());
    let backfill = match core.sessions.get(&hash).await {
        Lookup::Hit(entry) => return Ok((entry.expires_at > now).then_some(entry.user.role)),
        Lookup::Miss => true,
        Lookup::Unavailable(_) | Lookup::Disabled => false,
    };
    Ok(read_entry(core, &hash, now, backfill)
        .await?
        .map(|(entry, _)| entry.user.role))
}

async fn from_database(
    core: &Arc<Core>,
    sid: &SessionId,
    hash: SessionHash,
    now: DateTime<Utc>,
    backfill: bool,
) -> DomainResult<Option<Session>> {
    let Some((entry, last_used)) = read_entry(core, &hash, now, backfill).await? else {
        return Ok(None);
    };
    touch(core, &hash, now, Some(last_used));
    Ok(Some(live(core, sid, hash, entry, now)))
}

/// The session and its user from the database (one query), written back to the cache
/// with `backfill` (refused while a revoke's tombstone or a user change marker lives);
/// with the row's last use.
async fn read_entry(
    core: &Arc<Core>,
    hash: &SessionHash,
    now: DateTime<Utc>,
    backfill: bool,
) -> DomainResult<Option<(SessionEntry, DateTime<Utc>)>> {
    let Some((row, user)) = core.store.session_with_user(hash.as_str(), now).await? else {
        return Ok(None);
    };
    let read_at = Instant::now();
    let entry = SessionEntry {
        user_id: UserId::from_stored(row.user_id.clone()),
        expires_at: row.expires_at,
        created_at: row.created_at,
        user: user.to_user(),
    };
    if backfill {
        core.sessions
            .put(hash, &entry, now, Write::IfAbsent, read_at)
            .await;
    }
    Ok(Some((entry, row.last_used_at)))
}

fn live(
    core: &Arc<Core>,
    sid: &SessionId,
    hash: SessionHash,
    entry: SessionEntry,
    now: DateTime<Utc>,
) -> Session {
    let reissued = refresh(core, sid, &hash, &entry, now);
    Session {
        hash,
        expires_at: entry.expires_at,
        user: entry.user,
        reissued,
    }
}

/// Records a use of the session (`lastUsedAt`) at most once per `SESSION_TOUCH_INTERVAL`,
/// off the request path: this instance remembers which sessions it touched within the
/// interval (a bounded in-process set) and queues the others for [`flush_touches`], which
/// writes them all in one conditional query, so several instances still write a session's
/// row at most once per interval. `last_used` is the row's value when the caller read it.
fn touch(
    core: &Arc<Core>,
    hash: &SessionHash,
    now: DateTime<Utc>,
    last_used: Option<DateTime<Utc>>,
) {
    let since = now - delta(core.policy.touch_interval);
    if last_used.is_some_and(|t| t >= since) || core.recently_touched.contains_key(hash.as_str()) {
        return;
    }
    core.recently_touched.insert(hash.as_str().to_owned(), ());
    let mut pending = core
        .pending_touches
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // Best effort: beyond this many sessions between two flushes, uses go unrecorded
    // until their next touch.
    if pending.len() < MAX_PENDING_TOUCHES {
        pending.push(hash.as_str().to_owned());
    }
}

/// At most this many sessions wait for one flush of touches.
const MAX_PENDING_TOUCHES: usize = 100_000;
/// Sessions per touch query.
const TOUCH_BATCH: usize = 1_000;

/// Writes the queued last-use touches: one conditional `UPDATE` per 1,000 sessions (a row
/// already touched within the interval, by this instance or another, is left alone).
/// Called every second by the app's periodic jobs, and once more at shutdown.
pub async fn flush_touches(core: &Arc<Core>) {
    let pending = std::mem::take(
        &mut *core
            .pending_touches
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    if pending.is_empty() {
        return;
    }
    let now = whole_seconds(core.clock.now());
    let since = now - delta(core.policy.touch_interval);
    for batch in pending.chunks(TOUCH_BATCH) {
        core.metrics.touch_batches.increment(1);
        match core.store.touch_sessions(batch, now, since).await {
            Ok(written) => core.metrics.touches.increment(written),
            Err(e) => tracing::debug!(error = %short(&e), "last use not recorded"),
        }
    }
}

/// The sliding refresh: past half of `SESSION_TTL`, extend to a full TTL (capped by
/// `SESSION_MAX_AGE`) with a conditional update run off the response path, and re-issue
/// the cookie now.
fn refresh(
    core: &Arc<Core>,
    sid: &SessionId,
    hash: &SessionHash,
    entry: &SessionEntry,
    now: DateTime<Utc>,
) -> Option<Issued> {
    let half = delta(core.policy.session_ttl / 2);
    if entry.expires_at - now >= half {
        return None;
    }
    let new_expires = (now + delta(core.policy.session_ttl))
        .min(entry.created_at + delta(core.policy.session_max_age));
    if new_expires <= entry.expires_at {
        return None;
    }
    let mark = now + half;
    let read_at = Instant::now();
    let entry = SessionEntry {
        expires_at: new_expires,
        ..entry.clone()
    };
    let hash = hash.clone();
    let task_core = core.clone();
    core.background.spawn(async move {
        let core = task_core;
        match core
            .store
            .extend_session(hash.as_str(), new_expires, now, mark)
            .await
        {
            Ok(true) => {
                core.sessions
                    .put(&hash, &entry, now, Write::Replace, read_at)
                    .await;
                core.metrics.refreshes.increment(1);
            }
            Ok(false) => {}
            Err(e) => {
                core.metrics.refresh_failures.increment(1);
                tracing::warn!(error = %short(&e), "session refresh not written");
            }
        }
        core.metrics.refresh_attempts.increment(1);
    });
    Some(issue(core, sid, now, new_expires))
}

/// Ends the session named by the cookie, if any (logout works with or without one).
pub async fn logout(
    core: &Arc<Core>,
    client: &Client,
    presented: Option<&SessionId>,
) -> DomainResult<()> {
    let Some(sid) = presented else {
        return Ok(());
    };
    let hash = SessionHash::of(sid);
    let now = whole_seconds(core.clock.now());
    let owner = core
        .store
        .session_with_user(hash.as_str(), now)
        .await?
        .map(|(s, _)| UserId::from_stored(s.user_id));
    let deleted = core.store.delete_session(hash.as_str()).await?;
    match (&owner, deleted) {
        (Some(owner), true) => {
            revoke_sessions(core, client, Revoked::Logout { owner }, vec![hash]).await;
        }
        // Gone already (or expired): make sure no entry survives either way.
        _ => core.sessions.revoke(vec![hash]).await,
    }
    Ok(())
}

/// The caller's live sessions, most recently used first.
pub async fn list(core: &Arc<Core>, session: &Session) -> DomainResult<Vec<SessionInfo>> {
    let now = whole_seconds(core.clock.now());
    let rows = core
        .store
        .live_sessions(session.user.id.as_str(), now)
        .await?;
    Ok(rows
        .into_iter()
        .map(|s| SessionInfo {
            current: s.id == session.hash.as_str(),
            hash: SessionHash::from_stored(s.id),
            ip_address: s.ip_address,
            browser: s.browser,
            os: s.os,
            device_type: s.device_type,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
        })
        .collect())
}

/// Revokes one of the caller's other sessions. Unknown and foreign ids get the same answer.
pub async fn revoke_one(
    core: &Arc<Core>,
    client: &Client,
    session: &Session,
    id: &str,
) -> DomainResult<()> {
    if id == session.hash.as_str() {
        return Err(DomainError::Refused(
            "This is the current session; use logout",
        ));
    }
    let not_yours = DomainError::Forbidden("Forbidden");
    let Some(hash) = SessionHash::parse(id) else {
        return Err(not_yours);
    };
    if !core
        .store
        .delete_session_of(hash.as_str(), session.user.id.as_str())
        .await?
    {
        return Err(not_yours);
    }
    let owner = &session.user.id;
    revoke_sessions(core, client, Revoked::ByOwner { owner }, vec![hash]).await;
    Ok(())
}

/// Revokes the caller's other sessions; returns how many.
pub async fn revoke_others(
    core: &Arc<Core>,
    client: &Client,
    session: &Session,
) -> DomainResult<usize> {
    let ids = core
        .store
        .delete_sessions_of(session.user.id.as_str(), Some(session.hash.as_str()))
        .await?;
    let hashes: Vec<SessionHash> = ids.into_iter().map(SessionHash::from_stored).collect();
    let n = hashes.len();
    let owner = &session.user.id;
    revoke_sessions(core, client, Revoked::Others { owner }, hashes).await;
    Ok(n)
}

/// The one revoke sequence, after the rows are deleted: count, tombstone and evict the
/// cache entries (retried in the background when the cache fails), audit.
pub async fn revoke_sessions(
    core: &Arc<Core>,
    client: &Client,
    why: Revoked<'_>,
    hashes: Vec<SessionHash>,
) {
    let n = hashes.len();
    core.metrics.revocations.increment(n as u64);
    let ids: Vec<String> = hashes.iter().map(|h| h.as_str().to_owned()).collect();
    core.sessions.revoke(hashes).await;
    let audit = |user: &UserId, action: Action, metadata: serde_json::Value| {
        core.audit.record(Some(user), action, client, metadata);
    };
    match why {
        Revoked::Logout { owner } => {
            for id in &ids {
                audit(owner, Action::Logout, json!({ "sessionId": id }));
            }
        }
        Revoked::ByOwner { owner } | Revoked::Relogin { owner } | Revoked::Limit { owner } => {
            let reason = match why {
                Revoked::ByOwner { .. } => "user",
                Revoked::Relogin { .. } => "relogin",
                _ => "limit",
            };
            for id in &ids {
                audit(
                    owner,
                    Action::SessionRevoke,
                    json!({ "sessionId": id, "reason": reason }),
                );
            }
        }
        Revoked::Others { owner } => audit(
            owner,
            Action::SessionRevoke,
            json!({ "reason": "others", "revoked": n }),
        ),
        Revoked::ByAdmin { actor, target } => audit(
            actor,
            Action::SessionRevoke,
            json!({ "reason": "admin", "targetUserId": target.as_str(), "revoked": n }),
        ),
        Revoked::PasswordChanged | Revoked::UserDeleted => {}
    }
}

/// After a write to the user: every cached session of theirs is dropped and kept out while
/// the change marker lives, and the users list moves to a new version.
pub async fn user_changed(core: &Arc<Core>, user: &UserId) {
    let sessions = match core.store.session_ids_of(user.as_str()).await {
        Ok(ids) => ids.into_iter().map(SessionHash::from_stored).collect(),
        // The marker alone still stops new writes; existing entries expire by their TTL.
        Err(e) => {
            tracing::warn!(error = %short(&e), "sessions of a changed user not listed; their entries expire by TTL");
            Vec::new()
        }
    };
    core.sessions.user_changed(user, sessions).await;
    core.users_list.changed().await;
}
