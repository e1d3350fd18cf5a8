//! Session entries in the cache, and the protocol that keeps them true.
//!
//! An entry (`v1:s:{<hash>}`) carries the session's expiry and a snapshot of its user, so
//! a warm verify is one `GET`. Two guards keep stale data out:
//!
//! - **Revocation**: a revoke writes the tombstone `v1:revoked:{<hash>}` and deletes the
//!   entry in one atomic step (same hash slot), and every entry write is a script that
//!   refuses while the tombstone lives. A request that read the row just before the
//!   revoke cannot write it back (the reliability suite's revoke-race scenario caught such
//!   a write serving a revoked session until its entry expired).
//! - **User writes** (role, profile, password, delete): the writer sets the change marker
//!   `v1:user-changed:{<id>}` and then deletes every entry of the user (ids from the
//!   database). The marker lives in the user's slot, not the session's, so it cannot be
//!   checked atomically with the write; instead every entry writer reads the marker
//!   *after* its write and takes the entry back when the marker is there. That is enough:
//!   a writer whose check comes before the marker was set wrote before the user write's
//!   deletes (which then remove the entry: its row existed before the write); a writer
//!   whose check comes after sees the marker. So while a marker lives, no entry of that
//!   user stays written, and a role change is seen on the very next request.
//!
//! Both guards only cover writes whose read is younger than the guard's life, so a read
//! older than half the shortest guard is never written. Evictions that fail are retried
//! in the background until Redis answers or the entries have expired on their own; until
//! an eviction has landed, this instance reads its sessions from the database, so a
//! revoked session is never served from an entry that survived a Redis outage (the
//! cluster test caught one served right after a failed master came back).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use metrics::Counter;
use serde::{Deserialize, Serialize};

use super::{Cache, CacheError, keys};
use crate::background::{Attempt, Background};
use crate::domain::types::{SessionHash, User, UserId};

/// How long a user write keeps entries of that user out of the cache.
pub const USER_CHANGED_TTL: Duration = Duration::from_secs(30);

/// The cached session: `{userId, expiresAt, createdAt, user}` (never the password hash).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEntry {
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub user: User,
}

/// What the cache knows of a session.
pub enum Lookup {
    Hit(SessionEntry),
    Miss,
    /// The cache could not answer: ask the database.
    Unavailable(CacheError),
    /// Sessions are not cached in this configuration (several instances on Postgres without
    /// Redis would otherwise each keep their own copy).
    Disabled,
}

/// How an entry is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Replace any entry (a new session, a refresh).
    Replace,
    /// Only where there is none (a backfill after a miss: concurrent misses write once).
    IfAbsent,
}

pub struct SessionCache {
    cache: Option<Arc<dyn Cache>>,
    unsettled: Arc<Unsettled>,
    background: Background,
    evict_failures: Counter,
    entry_ttl: Duration,
    tombstone_ttl: Duration,
}

/// A cache write that must eventually happen, retried while it fails.
#[derive(Clone)]
enum Eviction {
    Revoke(Vec<SessionHash>),
    UserChanged(UserId, Vec<SessionHash>),
    Delete(Vec<String>),
}

impl SessionCache {
    /// `cache` `None` disables session caching. `entry_ttl` is `SESSION_CACHE_TTL`.
    pub fn new(
        cache: Option<Arc<dyn Cache>>,
        background: Background,
        evict_failures: Counter,
        entry_ttl: Duration,
    ) -> SessionCache {
        SessionCache {
            cache,
            unsettled: Arc::default(),
            background,
            evict_failures,
            entry_ttl,
            // Longer than any request that read the row before the revoke could take to
            // write its entry.
            tombstone_ttl: entry_ttl.max(Duration::from_secs(60)),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// The entry of session `hash`.
    pub async fn get(&self, hash: &SessionHash) -> Lookup {
        let Some(cache) = &self.cache else {
            return Lookup::Disabled;
        };
        let key = keys::session(hash.as_str());
        if self.unsettled.holds(&key) {
            return Lookup::Unavailable(CacheError("an eviction of this entry is pending".into()));
        }
        match cache.get(&key).await {
            Ok(Some(text)) => match serde_json::from_str::<SessionEntry>(&text) {
                Ok(entry) if entry.user.id == entry.user_id => Lookup::Hit(entry),
                _ => Lookup::Miss,
            },
            Ok(None) => Lookup::Miss,
            Err(e) => Lookup::Unavailable(e),
        }
    }

    /// Writes the entry of a session read from (or written to) the database at `read_at`,
    /// unless it was revoked or its user changed since (see the module docs). Failures are
    /// harmless: the next verify reads the database.
    pub async fn put(
        &self,
        hash: &SessionHash,
        entry: &SessionEntry,
        now: DateTime<Utc>,
        write: Write,
        read_at: Instant,
    ) {
        let Some(cache) = &self.cache else { return };
        let life = (entry.expires_at - now).to_std().unwrap_or_default();
        let ttl = life.min(self.entry_ttl);
        let guard_life = self.tombstone_ttl.min(USER_CHANGED_TTL);
        if ttl.is_zero() || read_at.elapsed() >= guard_life / 2 {
            return;
        }
        let Ok(value) = serde_json::to_string(entry) else {
            return;
        };
        let key = keys::session(hash.as_str());
        let written = cache
            .set_unless_guarded(
                &key,
                &keys::revoked(hash.as_str()),
                &value,
                ttl,
                write == Write::IfAbsent,
            )
            .await;
        if !matches!(written, Ok(true)) {
            return;
        }
        let marker = cache.get(&keys::user_changed(entry.user_id.as_str())).await;
        if !matches!(marker, Ok(None)) {
            // The user changed (or we cannot tell): take the entry back.
            self.run(Eviction::Delete(vec![key])).await;
        }
    }

    /// Tombstones the sessions and deletes their entries.
    pub async fn revoke(&self, hashes: Vec<SessionHash>) {
        if !hashes.is_empty() {
            self.run(Eviction::Revoke(hashes)).await;
        }
    }

    /// After a write to the user: marks the user changed and deletes the entries of its
    /// sessions (`sessions`: every session id of the user, from the database).
    pub async fn user_changed(&self, user: &UserId, sessions: Vec<SessionHash>) {
        self.run(Eviction::UserChanged(user.clone(), sessions))
            .await;
    }

    /// Deletes an entry found expired.
    pub async fn evict(&self, hash: &SessionHash) {
        self.run(Eviction::Delete(vec![keys::session(hash.as_str())]))
            .await;
    }

    /// Applies `eviction` now; when the cache fails, counts it and retries in the
    /// background until it answers or the entries have expired on their own. Until then
    /// the entries are not read ([`SessionCache::get`] answers `Unavailable`).
    async fn run(&self, eviction: Eviction) {
        let Some(cache) = &self.cache else { return };
        let tombstone_ttl = self.tombstone_ttl;
        let hold = self.unsettled.hold(eviction.entry_keys());
        let Err(e) = apply(cache.as_ref(), &eviction, tombstone_ttl).await else {
            return;
        };
        self.evict_failures.increment(1);
        tracing::warn!(error = %e, "cache eviction failed; retrying in the background");
        let cache = cache.clone();
        let failures = self.evict_failures.clone();
        self.background.retry(
            self.entry_ttl.max(Duration::from_secs(1)),
            move || {
                // Released when the retries end, whichever way.
                let _ = &hold;
                let cache = cache.clone();
                let eviction = eviction.clone();
                async move {
                    match apply(cache.as_ref(), &eviction, tombstone_ttl).await {
                        Ok(()) => Attempt::Done,
                        Err(e) => Attempt::Retry(e),
                    }
                }
            },
            move |e: &CacheError, last| {
                failures.increment(1);
                if last {
                    tracing::warn!(error = %e, "cache eviction abandoned; entries expire by their TTL");
                }
            },
        );
    }
}

impl Eviction {
    /// The session entries this eviction removes.
    fn entry_keys(&self) -> Vec<String> {
        match self {
            Eviction::Delete(keys) => keys.clone(),
            Eviction::Revoke(hashes) | Eviction::UserChanged(_, hashes) => {
                hashes.iter().map(|h| keys::session(h.as_str())).collect()
            }
        }
    }
}

/// Entry keys with an eviction under way or waiting for a retry, counted per key.
#[derive(Default)]
struct Unsettled {
    /// Total holds: the map is only locked while some exist (the verify path reads this).
    count: AtomicUsize,
    keys: Mutex<HashMap<String, usize>>,
}

impl Unsettled {
    fn hold(self: &Arc<Self>, keys: Vec<String>) -> Hold {
        let mut map = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        for key in &keys {
            *map.entry(key.clone()).or_default() += 1;
        }
        self.count.fetch_add(keys.len(), Ordering::SeqCst);
        Hold {
            unsettled: self.clone(),
            keys,
        }
    }

    fn holds(&self, key: &str) -> bool {
        self.count.load(Ordering::SeqCst) > 0
            && self
                .keys
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(key)
    }
}

/// Keeps its keys unsettled until dropped.
struct Hold {
    unsettled: Arc<Unsettled>,
    keys: Vec<String>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut map = self
            .unsettled
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
        self.unsettled
            .count
            .fetch_sub(self.keys.len(), Ordering::SeqCst);
    }
}

/// Applies `eviction`; done only once its writes will survive a failover.
async fn apply(
    cache: &dyn Cache,
    eviction: &Eviction,
    tombstone_ttl: Duration,
) -> Result<(), CacheError> {
    write(cache, eviction, tombstone_ttl).await?;
    cache.replicated().await
}

async fn write(
    cache: &dyn Cache,
    eviction: &Eviction,
    tombstone_ttl: Duration,
) -> Result<(), CacheError> {
    match eviction {
        Eviction::Delete(keys) => cache.del(keys).await,
        Eviction::Revoke(hashes) => {
            let pairs: Vec<(String, String)> = hashes
                .iter()
                .map(|h| (keys::revoked(h.as_str()), keys::session(h.as_str())))
                .collect();
            let revokes = pairs
                .iter()
                .map(|(guard, entry)| cache.guard_and_delete(guard, entry, tombstone_ttl));
            futures_util::future::join_all(revokes)
                .await
                .into_iter()
                .collect()
        }
        Eviction::UserChanged(user, sessions) => {
            cache
                .set(
                    &keys::user_changed(user.as_str()),
                    "1",
                    Some(USER_CHANGED_TTL),
                )
                .await?;
            let entries: Vec<String> = sessions.iter().map(|h| keys::session(h.as_str())).collect();
            cache.del(&entries).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{FaultSwitch, FaultyCache, MemoryCache};
    use crate::clock::SystemClock;

    #[test]
    fn holds_count_per_key_and_go_with_the_last_one() {
        let unsettled = Arc::new(Unsettled::default());
        let a = unsettled.hold(vec!["k1".into(), "k2".into()]);
        let b = unsettled.hold(vec!["k1".into()]);
        assert!(unsettled.holds("k1") && unsettled.holds("k2") && !unsettled.holds("k3"));
        drop(a);
        assert!(unsettled.holds("k1") && !unsettled.holds("k2"));
        drop(b);
        assert!(!unsettled.holds("k1"));
        assert_eq!(unsettled.count.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_failed_eviction_holds_its_entry_until_the_retry_lands() {
        let switch = FaultSwitch::new();
        let memory: Arc<dyn Cache> = Arc::new(MemoryCache::new(Arc::new(SystemClock), 100));
        let cache: Arc<dyn Cache> = Arc::new(FaultyCache::new(memory.clone(), switch.clone()));
        let sessions = SessionCache::new(
            Some(cache),
            Background::new(),
            Counter::noop(),
            Duration::from_secs(60),
        );
        let hash = SessionHash::parse("Q2hhbmdlIG1lIGlmIHlvdSBjYW4gcmVhZCB0aGlzISE").expect("hash");
        let key = keys::session(hash.as_str());
        memory.set(&key, "stale", None).await.expect("set");

        switch.fail(true);
        sessions.evict(&hash).await;
        assert!(sessions.unsettled.holds(&key), "held while the retries run");
        switch.fail(false);
        // The retry deletes the entry and lets go of it.
        for _ in 0..200 {
            if !sessions.unsettled.holds(&key) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sessions.unsettled.count.load(Ordering::SeqCst), 0);
        assert_eq!(memory.get(&key).await.expect("get"), None);
        assert!(matches!(sessions.get(&hash).await, Lookup::Miss));
    }
}
