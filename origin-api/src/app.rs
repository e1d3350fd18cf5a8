//! The composition root: builds every part of the service from the configuration (the
//! store, the caches, the hashing pool, the limiter, the audit log, the background tracker)
//! into a [`Core`], starts and stops the periodic jobs, and closes everything at the end.
//! No behaviour of its own.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;

use crate::background::Background;
use crate::cache::{
    Cache, FaultSwitch, FaultyCache, MemoryCache, RedisCache, SessionCache, UsersListCache,
};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::audit::Audit;
use crate::domain::core::{Core, Policy};
use crate::domain::error::short;
use crate::gateway::Gateway;
use crate::http::pages::Pages;
use crate::http::state::{self, AppState};
use crate::http::upstream::Upstream;
use crate::metrics::Metrics;
use crate::passwords::{Passwords, PoolMetrics};
use crate::ratelimit::RateLimiter;
use crate::store::Store;

/// How often histogram samples are folded into buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// How often the pending last-use touches are written (one query per flush, however many
/// sessions were used; BENCHMARKS.md measured one UPDATE per session at 0.04 queries per
/// warm verify, queueing for the pool).
const TOUCH_FLUSH: Duration = Duration::from_secs(1);
/// How long shutdown waits for background work (audit rows, evictions) to finish.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

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
            clock: Arc::new(SystemClock),
            cache_faults: None,
        }
    }
}

/// The built service.
pub struct App {
    pub core: Arc<Core>,
    pub config: Arc<Config>,
    pub gateway: Arc<Gateway>,
    pages: Arc<Pages>,
    upstream: Option<Arc<Upstream>>,
    redis: Option<Arc<RedisCache>>,
}

/// Opens the database and applies pending migrations.
pub async fn open_store(config: &Config, metrics: &Metrics) -> anyhow::Result<Store> {
    let store = Store::connect(&config.database_url, metrics.db_queries.clone())
        .await
        .map_err(|e| anyhow!("cannot open the database: {}", short(&e)))?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow!("cannot migrate the database: {}", short(&e)))?;
    Ok(store)
}

impl App {
    /// Connects the database (applying migrations) and the cache, and starts the hashing
    /// pool. Periodic jobs start with [`App::start_jobs`].
    pub async fn start(config: Config, options: Options) -> anyhow::Result<App> {
        let metrics = Arc::new(Metrics::new());
        let store = open_store(&config, &metrics).await?;
        let (cache, redis): (Arc<dyn Cache>, _) = match &config.redis_url {
            Some(url) => {
                let redis = Arc::new(
                    RedisCache::connect(url, metrics.cache_round_trips.clone())
                        .await
                        .map_err(|e| anyhow!("REDIS_URL: {e}"))?,
                );
                (redis.clone(), Some(redis))
            }
            None => (
                Arc::new(MemoryCache::new(
                    options.clock.clone(),
                    config.memory_cache_capacity,
                )),
                None,
            ),
        };
        let cache: Arc<dyn Cache> = match options.cache_faults {
            Some(switch) => Arc::new(FaultyCache::new(cache, switch)),
            None => cache,
        };
        let background = Background::new();
        let shared = config.caches_sessions().then(|| cache.clone());
        let sessions = SessionCache::new(
            shared.clone(),
            background.clone(),
            metrics.evict_failures.clone(),
            config.session_cache_ttl,
        );
        let passwords = Passwords::new(
            config.password_queue_max,
            PoolMetrics {
                depth: metrics.password_queue.clone(),
                rejected: metrics.password_rejections.clone(),
                abandoned: metrics.password_abandoned.clone(),
            },
        )
        .await
        .map_err(|e| anyhow!("cannot prepare password hashing: {e}"))?;
        let core = Core {
            audit: Audit::new(
                store.clone(),
                options.clock.clone(),
                metrics.clone(),
                background.clone(),
            ),
            limiter: RateLimiter::new(cache.clone(), options.clock.clone(), metrics.clone()),
            users_list: UsersListCache::new(shared),
            recently_touched: moka::sync::Cache::builder()
                .max_capacity(config.memory_cache_capacity)
                .time_to_live(config.session_touch_interval)
                .build(),
            pending_touches: std::sync::Mutex::default(),
            policy: Policy::from_config(&config),
            user_agents: woothee::parser::Parser::new(),
            clock: options.clock,
            store,
            cache,
            sessions,
            passwords,
            metrics,
            background,
        };
        Ok(App {
            core: Arc::new(core),
            gateway: Arc::new(Gateway::from_config(&config)),
            upstream: match &config.upstream {
                Some(u) => Some(Arc::new(Upstream::new(u)?)),
                None => None,
            },
            pages: Arc::new(Pages::new(&config.mount)),
            config: Arc::new(config),
            redis,
        })
    }

    /// What the HTTP layer works with.
    pub fn state(&self) -> AppState {
        AppState::new(state::Parts {
            core: self.core.clone(),
            config: self.config.clone(),
            gateway: self.gateway.clone(),
            pages: self.pages.clone(),
            upstream: self.upstream.clone(),
        })
    }

    /// Starts the periodic jobs (expired-session cleanup, the gateway's watcher, metrics
    /// upkeep, last-use touches); they end when [`App::close`] begins (the touches after one
    /// last flush).
    pub fn start_jobs(&self) {
        let core = self.core.clone();
        let stop = core.background.stopping();
        core.background
            .spawn(crate::cleanup::periodic(core.clone(), stop.clone()));
        core.background
            .spawn(self.gateway.watcher.clone().run(core.clone(), stop.clone()));
        let touches = core.clone();
        let touches_stop = stop.clone();
        core.background.spawn(async move {
            let mut ticker = tokio::time::interval(TOUCH_FLUSH);
            loop {
                tokio::select! {
                    _ = ticker.tick() => crate::domain::sessions::flush_touches(&touches).await,
                    () = touches_stop.cancelled() => {
                        crate::domain::sessions::flush_touches(&touches).await;
                        return;
                    }
                }
            }
        });
        let metrics = core.metrics.clone();
        core.background.spawn(async move {
            let mut ticker = tokio::time::interval(METRICS_UPKEEP);
            loop {
                tokio::select! {
                    _ = ticker.tick() => metrics.upkeep(),
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    /// Finishes background work (bounded), then closes connections.
    pub async fn close(&self) {
        if !self.core.background.drain(DRAIN_DEADLINE).await {
            tracing::warn!(
                tasks = self.core.background.len(),
                "background work still running at shutdown"
            );
        }
        if let Some(redis) = &self.redis {
            redis.quit().await;
        }
        self.core.store.clone().close().await;
    }
}
