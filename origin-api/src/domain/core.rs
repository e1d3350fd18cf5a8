//! What every domain operation needs, built once by the composition root (`app.rs`):
//! storage, the caches, the password pool, the rate limiter, the audit log, the clock,
//! the metrics, the background tracker and the session policy. Plain data: the behaviour
//! lives in the operations that take a `&Core`.

use std::sync::Arc;
use std::time::Duration;

use shared::KeyRing;

use crate::background::Background;
use crate::cache::{Cache, SessionCache, UsersListCache};
use crate::clock::Clock;
use crate::config::{Config, RateLimits};
use crate::domain::audit::Audit;
use crate::metrics::Metrics;
use crate::passwords::Passwords;
use crate::ratelimit::RateLimiter;
use crate::store::Store;

/// The session rules of the configuration.
#[derive(Clone)]
pub struct Policy {
    pub keys: KeyRing,
    pub cookie_secure: bool,
    pub session_ttl: Duration,
    pub session_max_age: Duration,
    pub max_sessions_per_user: u32,
    pub touch_interval: Duration,
    pub cleanup_interval: Duration,
    pub limits: RateLimits,
}

impl Policy {
    pub fn from_config(config: &Config) -> Policy {
        Policy {
            keys: config.keys.clone(),
            cookie_secure: config.cookie_secure,
            session_ttl: config.session_ttl,
            session_max_age: config.session_max_age,
            max_sessions_per_user: config.max_sessions_per_user,
            touch_interval: config.session_touch_interval,
            cleanup_interval: config.cleanup_interval,
            limits: config.rate_limits.clone(),
        }
    }
}

pub struct Core {
    pub store: Store,
    /// The raw cache (rate limits and the cleanup lock use it directly).
    pub cache: Arc<dyn Cache>,
    pub sessions: SessionCache,
    pub users_list: UsersListCache,
    pub passwords: Passwords,
    pub limiter: RateLimiter,
    pub audit: Audit,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub background: Background,
    pub policy: Policy,
    pub user_agents: woothee::parser::Parser,
    /// Sessions whose last use this instance recorded within `touch_interval` (bounded;
    /// see `sessions::touch`).
    pub recently_touched: moka::sync::Cache<String, ()>,
    /// Sessions used since the last flush of last-use touches (see
    /// `sessions::flush_touches`).
    pub pending_touches: std::sync::Mutex<Vec<String>>,
}
