//! The cache behind one small trait of single-slot primitives, with two implementations
//! of the same semantics: Redis (fred; standalone, Cluster or Sentinel) when `REDIS_URL`
//! is set, a bounded in-process store otherwise. On top of it, [`SessionCache`] owns the
//! session entries and their tombstone / change-marker protocol, and [`UsersListCache`]
//! the admin users pages.
//!
//! Keys follow DESIGN.md's table exactly ([`keys`]). Every operation touches one key or
//! keys of one hash slot (`{…}` hash tags), so every one runs unchanged on Redis Cluster;
//! no script reads a key it was not given; never `KEYS`/`SCAN`.

mod breaker;
mod memory;
mod redis;
mod session_cache;
mod users_list;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

pub use memory::MemoryCache;
pub use redis::RedisCache;
pub use session_cache::{Lookup, SessionCache, SessionEntry, Write};
pub use users_list::UsersListCache;

/// The cache could not answer (Redis unreachable, timed out, ...). Callers degrade: no
/// request fails because of the cache alone.
#[derive(Debug, thiserror::Error)]
#[error("cache unavailable: {0}")]
pub struct CacheError(pub String);

/// Key layout (`v1:` is the format version of keys and values). The part in braces is the
/// Redis Cluster hash tag: a session's entry and tombstone share a slot.
pub mod keys {
    pub const USERS_VERSION: &str = "v1:users:_ver";

    /// A session's entry (the user snapshot inside).
    pub fn session(hash: &str) -> String {
        format!("v1:s:{{{hash}}}")
    }

    /// A revoked session's tombstone: while it lives, no entry is written for the hash.
    pub fn revoked(hash: &str) -> String {
        format!("v1:revoked:{{{hash}}}")
    }

    /// Set for a while after a user write: no entry read before the write may stay.
    pub fn user_changed(id: &str) -> String {
        format!("v1:user-changed:{{{id}}}")
    }

    pub fn users_page(version: i64, page: u64, size: u64, search: &str) -> String {
        format!("v1:users:{version}:{page}:{size}:{search}")
    }

    pub fn rate_limit(bucket: &str, id: &str) -> String {
        format!("v1:rl:{bucket}:{{{id}}}")
    }

    /// The periodic clean-up's window: the instance that counts first in an interval runs
    /// the job.
    pub fn cleanup_window() -> String {
        rate_limit("cleanup", "periodic")
    }
}

/// A key/value cache with TTLs and counters. Every method touches one key, or (the
/// guarded writes) two keys of one hash slot, atomically, in one round trip.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError>;

    /// Sets `key`; `ttl` `None` keeps it until deleted.
    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), CacheError>;

    /// Sets `key` unless `guard` exists and, with `only_if_absent`, unless `key` exists.
    /// `key` and `guard` share a hash slot. True when written.
    async fn set_unless_guarded(
        &self,
        key: &str,
        guard: &str,
        value: &str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> Result<bool, CacheError>;

    /// Sets `guard` for `guard_ttl` and deletes `key` (one hash slot), atomically.
    async fn guard_and_delete(
        &self,
        guard: &str,
        key: &str,
        guard_ttl: Duration,
    ) -> Result<(), CacheError>;

    /// Deletes each key (one command per key: they may live in different slots).
    async fn del(&self, keys: &[String]) -> Result<(), CacheError>;

    /// Atomic increment (absent counts as 0), no expiry.
    async fn incr(&self, key: &str) -> Result<i64, CacheError>;

    /// Fixed-window hit: increments `key`, starting its `window` expiry on the first hit.
    /// Returns the count and the time left in the window.
    async fn hit_window(&self, key: &str, window: Duration) -> Result<(u64, Duration), CacheError>;

    /// A fixed window's count and time left, without counting.
    async fn peek_window(&self, key: &str) -> Result<(u64, Duration), CacheError>;

    async fn ping(&self) -> Result<(), CacheError>;

    /// Whether this cache's writes so far will survive a failover. Where the deployment
    /// fails over to replicas (Redis Sentinel): Ok while the server that took them has a
    /// replica in sync, an error on a master left without one (such as a master being
    /// demoted: its writes are about to be dropped). Elsewhere Ok at once.
    async fn replicated(&self) -> Result<(), CacheError> {
        Ok(())
    }

    /// Short name for logs and `/readyz`.
    fn kind(&self) -> &'static str;

    /// How many entries the cache holds, when that is cheap to know (the in-process
    /// cache; `None` for Redis). For tests and diagnostics: the bound is the point.
    fn len_hint(&self) -> Option<u64> {
        None
    }
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
    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), CacheError> {
        self.check()?;
        self.inner.set(key, value, ttl).await
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
        guard: &str,
        key: &str,
        guard_ttl: Duration,
    ) -> Result<(), CacheError> {
        self.check()?;
        self.inner.guard_and_delete(guard, key, guard_ttl).await
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
    async fn peek_window(&self, key: &str) -> Result<(u64, Duration), CacheError> {
        self.check()?;
        self.inner.peek_window(key).await
    }
    async fn ping(&self) -> Result<(), CacheError> {
        self.check()?;
        self.inner.ping().await
    }
    async fn replicated(&self) -> Result<(), CacheError> {
        self.check()?;
        self.inner.replicated().await
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn len_hint(&self) -> Option<u64> {
        self.inner.len_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::keys;

    /// Redis Cluster hashes only the part between the first `{` and the next `}`.
    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').expect("tag");
        let close = key[open + 1..].find('}').expect("close") + open + 1;
        &key[open + 1..close]
    }

    #[test]
    fn a_sessions_entry_and_tombstone_share_a_slot() {
        let hash = "Q2hhbmdlIG1lIGlmIHlvdSBjYW4gcmVhZCB0aGlzISE";
        assert_eq!(keys::session(hash), format!("v1:s:{{{hash}}}"));
        assert_eq!(hash_tag(&keys::session(hash)), hash);
        assert_eq!(hash_tag(&keys::revoked(hash)), hash);
        assert_eq!(hash_tag(&keys::user_changed("u1")), "u1");
        assert_eq!(
            keys::rate_limit("login", "10.0.0.1"),
            "v1:rl:login:{10.0.0.1}"
        );
    }
}
