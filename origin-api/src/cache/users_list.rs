//! The admin users list, one cached page per `(version, page, size, search)`: a user write
//! bumps `v1:users:_ver` (`INCR`), which makes every cached page unreachable at once
//! without `KEYS`/`SCAN`; old pages expire within 30 s.

use std::sync::Arc;
use std::time::Duration;

use super::{Cache, keys};

const PAGE_TTL: Duration = Duration::from_secs(30);

pub struct UsersListCache {
    cache: Option<Arc<dyn Cache>>,
}

/// Where a page would be cached.
pub struct PageSlot(String);

impl UsersListCache {
    /// `cache` `None`: pages are not cached (several instances without a shared cache).
    pub fn new(cache: Option<Arc<dyn Cache>>) -> UsersListCache {
        UsersListCache { cache }
    }

    /// The cached page and, on a miss, where to store it; `None` for both when the cache is
    /// off or unavailable (the page is then read and not stored).
    pub async fn get(
        &self,
        page: u64,
        size: u64,
        search: &str,
    ) -> (Option<String>, Option<PageSlot>) {
        let Some(cache) = &self.cache else {
            return (None, None);
        };
        let version = match cache.get(keys::USERS_VERSION).await {
            Ok(v) => v.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0),
            Err(_) => return (None, None),
        };
        let key = keys::users_page(version, page, size, search);
        match cache.get(&key).await {
            Ok(Some(hit)) => (Some(hit), None),
            Ok(None) => (None, Some(PageSlot(key))),
            Err(_) => (None, None),
        }
    }

    pub async fn put(&self, slot: PageSlot, value: &str) {
        if let Some(cache) = &self.cache {
            let _ = cache.set(&slot.0, value, Some(PAGE_TTL)).await;
        }
    }

    /// A user was created, changed or deleted.
    pub async fn changed(&self) {
        if let Some(cache) = &self.cache
            && let Err(e) = cache.incr(keys::USERS_VERSION).await
        {
            tracing::warn!(error = %e, "users list version bump failed; pages expire within 30 s");
        }
    }
}
