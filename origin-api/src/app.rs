//! The service's shared state: configuration, stores, cache, clock, pools and metrics,
//! built once at start-up and handed to every request.

use std::sync::Arc;
use std::time::Duration;

use crate::audit::Audit;
use crate::cache::{Cache, CacheError, FaultSwitch, FaultyCache, MemoryCache, RedisCache};
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::password::Passwords;
use crate::ratelimit::RateLimiter;
use crate::store::Store;

pub struct App {
    pub config: Config,
    pub store: Store,
    pub cache: Arc<dyn Cache>,
    redis: Option<Arc<RedisCache>>,
    pub clock: Arc<dyn Clock>,
    pub passwords: Passwords,
    pub metrics: Arc<Metrics>,
    pub limiter: RateLimiter,
    pub audit: Audit,
    pub user_agents: woothee::parser::Parser,
}

/// Start-up options beyond the configuration (tests inject a clock and cache faults).
#[derive(Clone)]
pub struct Options {
    pub clock: Arc<dyn Clock>,
    /// When set, the cache is wrapped so the switch can make it fail on demand.
    pub cache_faults: Option<FaultSwitch>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(crate::clock::SystemClock),
            cache_faults: None,
        }
    }
}

impl App {
    /// Connects the database (applying migrations) and the cache.
    pub async fn start(config: Config, options: Options) -> anyhow::Result<Arc<App>> {
        let metrics = Arc::new(Metrics::new());
        let store = Store::connect(&config.database_url, metrics.db_queries.clone())
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot open the database: {}", crate::error::short(&e))
            })?;
        store.migrate().await.map_err(|e| {
            anyhow::anyhow!("cannot migrate the database: {}", crate::error::short(&e))
        })?;
        let (cache, redis): (Arc<dyn Cache>, _) = match &config.redis_url {
            Some(url) => {
                let redis = Arc::new(
                    RedisCache::connect(url, metrics.cache_round_trips.clone())
                        .await
                        .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?,
                );
                (redis.clone(), Some(redis))
            }
            None => (Arc::new(MemoryCache::new(options.clock.clone())), None),
        };
        let cache: Arc<dyn Cache> = match options.cache_faults {
            Some(switch) => Arc::new(FaultyCache::new(cache, switch)),
            None => cache,
        };
        let passwords = Passwords::new(metrics.password_queue.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot prepare password hashing: {e}"))?;
        let audit = Audit::new(store.clone(), options.clock.clone(), metrics.clone());
        let limiter = RateLimiter::new(cache.clone(), options.clock.clone(), metrics.clone());
        Ok(Arc::new(App {
            config,
            store,
            cache,
            redis,
            clock: options.clock,
            passwords,
            metrics,
            limiter,
            audit,
            user_agents: woothee::parser::Parser::new(),
        }))
    }

    /// Deletes cache entries; when the cache cannot, counts the failure and retries in the
    /// background until it answers or the entries have expired on their own.
    pub fn evict(self: &Arc<Self>, keys: Vec<String>) -> impl Future<Output = ()> + Send + 'static {
        self.write_cache(CacheWrite::Evict(keys))
    }

    /// Evicts revoked sessions' entries and leaves tombstones that stop a concurrent
    /// backfill from writing them back ([`Cache::revoke_sessions`]); retried in the
    /// background like [`App::evict`].
    pub fn evict_revoked(
        self: &Arc<Self>,
        hashes: Vec<String>,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.write_cache(CacheWrite::Revoke(hashes))
    }

    /// Evicts a user's entry after a write to the user and marks it changed for
    /// [`crate::session::USER_CHANGED_TTL`], so a request that read the row before the
    /// write cannot cache the old record again ([`Cache::put_user`]); retried in the
    /// background like [`App::evict`].
    pub fn user_changed(
        self: &Arc<Self>,
        user_id: String,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.write_cache(CacheWrite::UsersChanged(vec![user_id]))
    }

    /// How long a tombstone outlives its revoke: longer than any request that read the
    /// row before the revoke could take to write its entry.
    pub fn tombstone_ttl(&self) -> Duration {
        self.config.session_cache_ttl.max(Duration::from_secs(60))
    }

    fn write_cache(
        self: &Arc<Self>,
        write: CacheWrite,
    ) -> impl Future<Output = ()> + Send + 'static {
        let app = self.clone();
        async move {
            if write.is_empty() {
                return;
            }
            if let Err(e) = write.apply(&app).await {
                app.metrics.evict_failures.increment(1);
                tracing::warn!(error = %e, count = write.len(), "cache eviction failed; retrying in the background");
                tokio::spawn(retry_cache_write(app.clone(), write));
            }
        }
    }

    /// Closes connections.
    pub async fn close(&self) {
        if let Some(redis) = &self.redis {
            redis.quit().await;
        }
        self.store.clone().close().await;
    }
}

/// A cache write that must happen eventually (an eviction), retried when it fails.
enum CacheWrite {
    /// Delete these keys.
    Evict(Vec<String>),
    /// Tombstone and evict these sessions (storage hashes).
    Revoke(Vec<String>),
    /// Mark these users changed and evict their entries.
    UsersChanged(Vec<String>),
}

impl CacheWrite {
    fn len(&self) -> usize {
        match self {
            CacheWrite::Evict(v) | CacheWrite::Revoke(v) | CacheWrite::UsersChanged(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn apply(&self, app: &App) -> Result<(), CacheError> {
        match self {
            CacheWrite::Evict(keys) => app.cache.del(keys).await,
            CacheWrite::UsersChanged(ids) => {
                app.cache
                    .users_changed(ids, crate::session::USER_CHANGED_TTL)
                    .await
            }
            CacheWrite::Revoke(hashes) => {
                app.cache.revoke_sessions(hashes, app.tombstone_ttl()).await
            }
        }
    }
}

async fn retry_cache_write(app: Arc<App>, write: CacheWrite) {
    let give_up =
        tokio::time::Instant::now() + app.config.session_cache_ttl.max(Duration::from_secs(1));
    let mut delay = Duration::from_millis(100);
    loop {
        tokio::time::sleep(delay).await;
        match write.apply(&app).await {
            Ok(()) => return,
            Err(CacheError(_)) if tokio::time::Instant::now() >= give_up => {
                tracing::warn!(
                    count = write.len(),
                    "cache eviction abandoned; entries expire by their TTL"
                );
                return;
            }
            Err(_) => {
                app.metrics.evict_failures.increment(1);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
