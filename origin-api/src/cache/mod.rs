//! The cache behind one small trait, with two implementations of the same semantics:
//! Redis (fred) when `REDIS_URL` is set, an in-process TTL store otherwise. Keys and values
//! are exactly DESIGN.md's table; never `KEYS`/`SCAN`.

mod memory;
mod redis;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

pub use memory::MemoryCache;
pub use redis::RedisCache;

/// The cache could not answer (Redis unreachable, timed out, ...). Callers degrade: no
/// request fails because of the cache alone.
#[derive(Debug, thiserror::Error)]
#[error("cache unavailable: {0}")]
pub struct CacheError(pub String);

/// Key layout (`v1:` is the format version of keys and values).
pub mod keys {
    pub const USER_PREFIX: &str = "v1:user:";
    pub const USERS_VERSION: &str = "v1:users:_ver";
    pub const CLEANUP_LOCK: &str = "v1:lock:cleanup";

    pub fn session(hash: &str) -> String {
        format!("v1:session:{hash}")
    }

    /// A revoked session's tombstone: while it lives, no session entry is written for the
    /// hash again (beyond DESIGN.md's table; see [`super::Cache::revoke_sessions`]).
    pub fn revoked(hash: &str) -> String {
        format!("v1:revoked:{hash}")
    }

    pub fn user(id: &str) -> String {
        format!("{USER_PREFIX}{id}")
    }

    /// Set for a short while after a user write: no entry read from the database before
    /// the write may be cached meanwhile (see [`super::Cache::put_user`]).
    pub fn user_changed(id: &str) -> String {
        format!("v1:user-changed:{id}")
    }

    pub fn users_page(version: i64, page: u64, size: u64, search: &str) -> String {
        format!("v1:users:{version}:{page}:{size}:{search}")
    }

    pub fn rate_limit(bucket: &str, id: &str) -> String {
        format!("v1:rl:{bucket}:{id}")
    }
}

/// A key/value cache with TTLs, counters and the two combined operations the service needs
/// in one round trip.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError>;

    /// Reads the session entry at `session_key` and, when it names a `userId`, the user
    /// entry `v1:user:<userId>`, in one round trip.
    async fn get_session_and_user(
        &self,
        session_key: &str,
    ) -> Result<(Option<String>, Option<String>), CacheError>;

    /// Sets `key`; `ttl` `None` keeps it until deleted.
    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), CacheError>;

    /// Sets `key` only if absent; true when set.
    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, CacheError>;

    /// Sets `key` unless `guard` exists and, with `only_if_absent`, unless `key` exists;
    /// atomically, in one round trip. True when written.
    async fn set_unless_guarded(
        &self,
        key: &str,
        guard: &str,
        value: &str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> Result<bool, CacheError>;

    /// For each `(guard, key)`: sets `guard` for `guard_ttl` and deletes `key`; all in one
    /// round trip.
    async fn guard_and_delete(
        &self,
        pairs: &[(String, String)],
        guard_ttl: Duration,
    ) -> Result<(), CacheError>;

    /// Writes the entry of session `hash` unless the session was revoked (its tombstone
    /// is present) and, with `only_if_absent`, unless an entry is there. True when written.
    async fn put_session(
        &self,
        hash: &str,
        value: &str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> Result<bool, CacheError> {
        self.set_unless_guarded(
            &keys::session(hash),
            &keys::revoked(hash),
            value,
            ttl,
            only_if_absent,
        )
        .await
    }

    /// Marks the sessions revoked for `ttl` and deletes their entries, in one round trip.
    ///
    /// A verify or refresh that read a session row just before a revoke deleted it may
    /// write the entry back after the revoke's eviction; the tombstone makes that write
    /// ([`Cache::put_session`]) a no-op, so a revoked session is never served again and
    /// a backfill needs no second look at the database.
    async fn revoke_sessions(&self, hashes: &[String], ttl: Duration) -> Result<(), CacheError> {
        let pairs: Vec<(String, String)> = hashes
            .iter()
            .map(|h| (keys::revoked(h), keys::session(h)))
            .collect();
        self.guard_and_delete(&pairs, ttl).await
    }

    /// Writes a user entry read from the database, unless the user was written since
    /// (its change marker is present): a request that read the row before a role change
    /// cannot put the old role back after the change evicted it.
    async fn put_user(&self, id: &str, value: &str, ttl: Duration) -> Result<bool, CacheError> {
        self.set_unless_guarded(&keys::user(id), &keys::user_changed(id), value, ttl, false)
            .await
    }

    /// Evicts user entries after a write and marks them changed for `ttl` ([`Cache::put_user`]).
    async fn users_changed(&self, ids: &[String], ttl: Duration) -> Result<(), CacheError> {
        let pairs: Vec<(String, String)> = ids
            .iter()
            .map(|id| (keys::user_changed(id), keys::user(id)))
            .collect();
        self.guard_and_delete(&pairs, ttl).await
    }

    async fn del(&self, keys: &[String]) -> Result<(), CacheError>;

    /// Atomic increment (absent counts as 0), no expiry.
    async fn incr(&self, key: &str) -> Result<i64, CacheError>;

    /// Fixed-window hit: increments `key`, starting its `window` expiry on the first hit,
    /// atomically in one round trip. Returns the count and the time left in the window.
    async fn hit_window(&self, key: &str, window: Duration) -> Result<(u64, Duration), CacheError>;

    async fn ping(&self) -> Result<(), CacheError>;

    /// Short name for logs and `/readyz`.
    fn kind(&self) -> &'static str;
}

/// Turns a cache on and off: tests wrap the real cache in [`FaultyCache`] to make it fail
/// on demand.
#[derive(Clone, Debug, Default)]
pub struct FaultSwitch(Arc<AtomicBool>);

impl FaultSwitch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fail(&self, failing: bool) {
        self.0.store(failing, Ordering::SeqCst);
    }

    fn failing(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A cache that fails every call while its [`FaultSwitch`] is on, and otherwise forwards.
pub struct FaultyCache {
    inner: Arc<dyn Cache>,
    switch: FaultSwitch,
}

impl FaultyCache {
    pub fn new(inner: Arc<dyn Cache>, switch: FaultSwitch) -> Self {
        FaultyCache { inner, switch }
    }

    fn check(&self) -> Result<(), CacheError> {
        if self.switch.failing() {
            Err(CacheError("injected fault".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Cache for FaultyCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        self.check()?;
        self.inner.get(key).await
    }
    async fn get_session_and_user(
        &self,
        session_key: &str,
    ) -> Result<(Option<String>, Option<String>), CacheError> {
        self.check()?;
        self.inner.get_session_and_user(session_key).await
    }
    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), CacheError> {
        self.check()?;
        self.inner.set(key, value, ttl).await
    }
    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, CacheError> {
        self.check()?;
        self.inner.set_nx(key, value, ttl).await
    }
    async fn set_unless_guarded(
        &self,
        key: &str,
        guard: &str,
        value: &str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> Result<bool, CacheError> {
        self.check()?;
        self.inner
            .set_unless_guarded(key, guard, value, ttl, only_if_absent)
            .await
    }
    async fn guard_and_delete(
        &self,
        pairs: &[(String, String)],
        guard_ttl: Duration,
    ) -> Result<(), CacheError> {
        self.check()?;
        self.inner.guard_and_delete(pairs, guard_ttl).await
    }
    async fn del(&self, keys: &[String]) -> Result<(), CacheError> {
        self.check()?;
        self.inner.del(keys).await
    }
    async fn incr(&self, key: &str) -> Result<i64, CacheError> {
        self.check()?;
        self.inner.incr(key).await
    }
    async fn hit_window(&self, key: &str, window: Duration) -> Result<(u64, Duration), CacheError> {
        self.check()?;
        self.inner.hit_window(key, window).await
    }
    async fn ping(&self) -> Result<(), CacheError> {
        self.check()?;
        self.inner.ping().await
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

/// The `userId` of a session entry, if it is one.
pub(crate) fn user_id_of(session_json: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        user_id: String,
    }
    serde_json::from_str::<Entry>(session_json)
        .ok()
        .map(|e| e.user_id)
}
