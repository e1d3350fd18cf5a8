//! Fixed-window rate limits kept in the cache (`v1:rl:<bucket>:{<id>}`, one atomic round
//! trip per bucket), with a bounded per-process limiter taking over while the cache is
//! unavailable, so login is neither opened to brute force nor shut down.
//!
//! Buckets are counted in order and counting stops at the first that refuses: a request an
//! earlier bucket refused creates no counter in a later one (a flood of refused logins
//! once created a per-email counter each). A bucket can also be checked without counting
//! and counted later ([`RateLimiter::peek`], [`RateLimiter::count`]): the per-account login
//! bucket counts failures only.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Cache, CacheError, MemoryCache, keys};
use crate::clock::Clock;
use crate::config::Limit;
use crate::metrics::Metrics;

/// How many windows the per-process fallback keeps at most.
const LOCAL_CAPACITY: u64 = 100_000;

/// One bucket for one identifier.
#[derive(Clone, Debug)]
pub struct Bucket {
    pub name: &'static str,
    pub id: String,
    pub limit: Limit,
}

impl Bucket {
    pub fn new(name: &'static str, id: impl Into<String>, limit: Limit) -> Bucket {
        Bucket {
            name,
            id: id.into(),
            limit,
        }
    }

    fn key(&self) -> String {
        keys::rate_limit(self.name, &self.id)
    }
}

/// One bucket's state for this request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub bucket: &'static str,
    pub limit: u32,
    pub remaining: u32,
    /// Whole seconds until the window ends (at least 1 when refused).
    pub retry_after: u64,
    pub allowed: bool,
}

/// The verdict over the buckets of a request.
#[derive(Clone, Copy, Debug)]
pub struct Decision {
    /// The bucket with the fewest requests left (its values go into the headers).
    pub tightest: Verdict,
    /// Set when refused: whole seconds to wait.
    pub retry_after: Option<u64>,
}

impl Decision {
    /// A decision with no bucket (nothing limits the request).
    pub fn unlimited() -> Decision {
        Decision {
            tightest: Verdict {
                bucket: "none",
                limit: 0,
                remaining: 0,
                retry_after: 0,
                allowed: true,
            },
            retry_after: None,
        }
    }

    /// Folds another bucket's verdict in.
    pub fn with(mut self, v: Verdict) -> Decision {
        if (v.remaining, v.allowed) < (self.tightest.remaining, self.tightest.allowed) {
            self.tightest = v;
        }
        if !v.allowed {
            self.retry_after = Some(self.retry_after.unwrap_or(0).max(v.retry_after));
        }
        self
    }

    fn of(v: Verdict) -> Decision {
        Decision {
            tightest: v,
            retry_after: (!v.allowed).then_some(v.retry_after),
        }
    }
}

pub struct RateLimiter {
    cache: Arc<dyn Cache>,
    local: MemoryCache,
    metrics: Arc<Metrics>,
}

fn whole_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

fn verdict(bucket: &Bucket, count: u64, left: Duration) -> Verdict {
    let max = u64::from(bucket.limit.max);
    Verdict {
        bucket: bucket.name,
        limit: bucket.limit.max,
        remaining: u32::try_from(max.saturating_sub(count)).unwrap_or(0),
        retry_after: whole_secs(left),
        allowed: count <= max,
    }
}

impl RateLimiter {
    pub fn new(cache: Arc<dyn Cache>, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Self {
        RateLimiter {
            cache,
            local: MemoryCache::new(clock, LOCAL_CAPACITY),
            metrics,
        }
    }

    fn fallback(&self, e: &CacheError, bucket: &Bucket) {
        self.metrics.rate_limit_fallbacks.increment(1);
        tracing::warn!(error = %e, bucket = bucket.name, "rate limiter falling back to the per-process window");
    }

    /// Counts this request in each bucket, in order, until one refuses (refused requests
    /// count in the refusing bucket; later buckets are not touched).
    pub async fn hit(&self, buckets: &[Bucket]) -> Decision {
        let mut decision: Option<Decision> = None;
        for bucket in buckets {
            let v = self.count(bucket).await;
            decision = Some(match decision {
                None => Decision::of(v),
                Some(d) => d.with(v),
            });
            if !v.allowed {
                break;
            }
        }
        decision.unwrap_or_else(Decision::unlimited)
    }

    /// Counts one hit in `bucket`.
    pub async fn count(&self, bucket: &Bucket) -> Verdict {
        let key = bucket.key();
        let (count, left) = match self.cache.hit_window(&key, bucket.limit.window).await {
            Ok(hit) => hit,
            Err(e) => {
                self.fallback(&e, bucket);
                self.local
                    .hit_window(&key, bucket.limit.window)
                    .await
                    .unwrap_or((1, bucket.limit.window))
            }
        };
        let v = verdict(bucket, count, left);
        if !v.allowed {
            self.metrics.rate_limited(bucket.name);
        }
        v
    }

    /// `bucket`'s state, refusing once it is full, without counting this request.
    pub async fn peek(&self, bucket: &Bucket) -> Verdict {
        let key = bucket.key();
        let (count, left) = match self.cache.peek_window(&key).await {
            Ok(state) => state,
            Err(e) => {
                self.fallback(&e, bucket);
                self.local
                    .peek_window(&key)
                    .await
                    .unwrap_or((0, Duration::ZERO))
            }
        };
        // The next hit would be number `count + 1`.
        let v = verdict(bucket, count.saturating_add(1), left);
        if !v.allowed {
            self.metrics.rate_limited(bucket.name);
        }
        Verdict {
            // What is left after this request, as `hit` would report it.
            remaining: v.remaining,
            ..v
        }
    }

    /// A marker that lives for `ttl` (e.g. "this client logged in to this account").
    pub async fn remember(&self, bucket: &'static str, id: &str, ttl: Duration) {
        let key = keys::rate_limit(bucket, id);
        if self.cache.set(&key, "1", Some(ttl)).await.is_err() {
            let _ = self.local.set(&key, "1", Some(ttl)).await;
        }
    }

    /// Whether a [`RateLimiter::remember`] marker lives.
    pub async fn remembers(&self, bucket: &'static str, id: &str) -> bool {
        let key = keys::rate_limit(bucket, id);
        match self.cache.get(&key).await {
            Ok(v) => v.is_some(),
            Err(_) => matches!(self.local.get(&key).await, Ok(Some(_))),
        }
    }
}

/// The per-IP bucket identifier of an address: IPv4 (and IPv4-mapped IPv6) by address,
/// IPv6 by its network of `prefix` bits, since one client commonly holds a whole /64 and
/// would otherwise get unlimited buckets.
pub fn ip_key(ip: std::net::IpAddr, ipv6_prefix: u8) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let prefix = ipv6_prefix.min(128);
            let bits = u128::from(v6);
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            format!("{}/{prefix}", std::net::Ipv6Addr::from(bits & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_keyed_by_their_network() {
        let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: std::net::IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a, 64), "2001:db8:1:2::/64");
        assert_eq!(ip_key(a, 64), ip_key(b, 64));
        assert_ne!(ip_key(a, 64), ip_key(c, 64));
        assert_eq!(ip_key(a, 128), "2001:db8:1:2:aaaa::1/128");
        assert_eq!(ip_key(a, 48), ip_key(c, 48));
        assert_eq!(ip_key("10.1.2.3".parse().unwrap(), 64), "10.1.2.3");
        assert_eq!(ip_key("::ffff:10.1.2.3".parse().unwrap(), 64), "10.1.2.3");
        assert_eq!(ip_key(a, 0), "::/0");
    }
}
