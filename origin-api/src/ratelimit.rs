//! Fixed-window rate limits kept in the cache (`v1:rl:<bucket>:<id>`, one atomic round trip
//! per bucket), with a per-process limiter taking over while the cache is unavailable, so
//! login is neither opened to brute force nor shut down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::cache::{Cache, keys};
use crate::clock::Clock;
use crate::config::Limit;
use crate::metrics::Metrics;

/// One bucket's verdict for this request.
#[derive(Clone, Copy, Debug)]
pub struct Verdict {
    pub bucket: &'static str,
    pub limit: u32,
    pub remaining: u32,
    pub retry_after: Duration,
    pub allowed: bool,
}

/// The verdict over all buckets of a route.
#[derive(Clone, Copy, Debug)]
pub struct Decision {
    /// The bucket with the fewest requests left (its values go into the headers).
    pub tightest: Verdict,
    /// Whole seconds to wait when refused.
    pub retry_after_secs: Option<u64>,
}

pub struct RateLimiter {
    cache: Arc<dyn Cache>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    local: Mutex<HashMap<String, (u64, DateTime<Utc>)>>,
}

impl RateLimiter {
    pub fn new(cache: Arc<dyn Cache>, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Self {
        RateLimiter {
            cache,
            clock,
            metrics,
            local: Mutex::new(HashMap::new()),
        }
    }

    /// Counts this request in every `(bucket, identifier, limit)` (refused requests count
    /// too) and decides.
    pub async fn check(&self, buckets: &[(&'static str, String, Limit)]) -> Decision {
        let mut verdicts = Vec::with_capacity(buckets.len());
        for (bucket, id, limit) in buckets {
            let key = keys::rate_limit(bucket, id);
            let (count, left) = match self.cache.hit_window(&key, limit.window).await {
                Ok(hit) => hit,
                Err(e) => {
                    self.metrics.rate_limit_fallbacks.increment(1);
                    tracing::warn!(error = %e, bucket, "rate limiter falling back to the per-process window");
                    self.local_hit(&key, limit.window)
                }
            };
            let allowed = count <= u64::from(limit.max);
            verdicts.push(Verdict {
                bucket,
                limit: limit.max,
                remaining: u32::try_from(u64::from(limit.max).saturating_sub(count)).unwrap_or(0),
                retry_after: left,
                allowed,
            });
        }
        let tightest = verdicts
            .iter()
            .copied()
            .min_by_key(|v| (v.remaining, v.allowed))
            .unwrap_or(Verdict {
                bucket: "none",
                limit: 0,
                remaining: 0,
                retry_after: Duration::ZERO,
                allowed: true,
            });
        let refused: Vec<&Verdict> = verdicts.iter().filter(|v| !v.allowed).collect();
        for v in &refused {
            self.metrics.rate_limited(v.bucket);
        }
        let retry_after_secs = refused
            .iter()
            .map(|v| v.retry_after.as_secs() + u64::from(v.retry_after.subsec_nanos() > 0))
            .max()
            .map(|s| s.max(1));
        Decision {
            tightest,
            retry_after_secs,
        }
    }

    fn local_hit(&self, key: &str, window: Duration) -> (u64, Duration) {
        let now = self.clock.now();
        let mut map = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (_, end)| *end > now);
        }
        let entry = map.entry(key.to_owned()).or_insert((
            0,
            now + TimeDelta::from_std(window).unwrap_or(TimeDelta::MAX),
        ));
        if entry.1 <= now {
            *entry = (
                0,
                now + TimeDelta::from_std(window).unwrap_or(TimeDelta::MAX),
            );
        }
        entry.0 += 1;
        (entry.0, (entry.1 - now).to_std().unwrap_or_default())
    }
}
