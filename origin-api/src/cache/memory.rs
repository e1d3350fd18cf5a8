//! The in-process cache of the embedded default: a mutex-guarded map with per-entry expiry
//! read from the service clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::{Cache, CacheError, keys, user_id_of};
use crate::clock::Clock;

struct Entry {
    value: String,
    expires_at: Option<DateTime<Utc>>,
}

pub struct MemoryCache {
    clock: Arc<dyn Clock>,
    map: Mutex<HashMap<String, Entry>>,
}

const SWEEP_AT: usize = 10_000;

impl MemoryCache {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryCache {
            clock,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>, DateTime<Utc>) -> T) -> T {
        let now = self.clock.now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= SWEEP_AT {
            map.retain(|_, e| e.expires_at.is_none_or(|t| t > now));
        }
        f(&mut map, now)
    }
}

fn live<'a>(map: &'a HashMap<String, Entry>, key: &str, now: DateTime<Utc>) -> Option<&'a Entry> {
    map.get(key)
        .filter(|e| e.expires_at.is_none_or(|t| t > now))
}

fn deadline(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX)
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        Ok(self.with(|map, now| live(map, key, now).map(|e| e.value.clone())))
    }

    async fn get_session_and_user(
        &self,
        session_key: &str,
    ) -> Result<(Option<String>, Option<String>), CacheError> {
        Ok(self.with(|map, now| {
            let Some(session) = live(map, session_key, now).map(|e| e.value.clone()) else {
                return (None, None);
            };
            let user = user_id_of(&session)
                .and_then(|id| live(map, &keys::user(&id), now).map(|e| e.value.clone()));
            (Some(session), user)
        }))
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), CacheError> {
        self.with(|map, now| {
            map.insert(
                key.to_owned(),
                Entry {
                    value: value.to_owned(),
                    expires_at: ttl.map(|ttl| deadline(now, ttl)),
                },
            )
        });
        Ok(())
    }

    async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, CacheError> {
        Ok(self.with(|map, now| {
            if live(map, key, now).is_some() {
                return false;
            }
            map.insert(
                key.to_owned(),
                Entry {
                    value: value.to_owned(),
                    expires_at: Some(deadline(now, ttl)),
                },
            );
            true
        }))
    }

    async fn set_unless_guarded(
        &self,
        key: &str,
        guard: &str,
        value: &str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> Result<bool, CacheError> {
        Ok(self.with(|map, now| {
            if live(map, guard, now).is_some() || (only_if_absent && live(map, key, now).is_some())
            {
                return false;
            }
            map.insert(
                key.to_owned(),
                Entry {
                    value: value.to_owned(),
                    expires_at: Some(deadline(now, ttl)),
                },
            );
            true
        }))
    }

    async fn guard_and_delete(
        &self,
        pairs: &[(String, String)],
        guard_ttl: Duration,
    ) -> Result<(), CacheError> {
        self.with(|map, now| {
            for (guard, key) in pairs {
                map.remove(key);
                map.insert(
                    guard.clone(),
                    Entry {
                        value: "1".to_owned(),
                        expires_at: Some(deadline(now, guard_ttl)),
                    },
                );
            }
        });
        Ok(())
    }

    async fn del(&self, keys: &[String]) -> Result<(), CacheError> {
        self.with(|map, _| {
            for key in keys {
                map.remove(key);
            }
        });
        Ok(())
    }

    async fn incr(&self, key: &str) -> Result<i64, CacheError> {
        self.with(|map, now| {
            let (current, expires_at) = match live(map, key, now) {
                Some(e) => (
                    e.value
                        .parse::<i64>()
                        .map_err(|_| CacheError("value is not an integer".into()))?,
                    e.expires_at,
                ),
                None => (0, None),
            };
            let next = current.saturating_add(1);
            map.insert(
                key.to_owned(),
                Entry {
                    value: next.to_string(),
                    expires_at,
                },
            );
            Ok(next)
        })
    }

    async fn hit_window(&self, key: &str, window: Duration) -> Result<(u64, Duration), CacheError> {
        Ok(self.with(|map, now| {
            let (count, expires_at) = match live(map, key, now) {
                Some(e) => (
                    e.value.parse::<u64>().unwrap_or(0).saturating_add(1),
                    e.expires_at.unwrap_or_else(|| deadline(now, window)),
                ),
                None => (1, deadline(now, window)),
            };
            map.insert(
                key.to_owned(),
                Entry {
                    value: count.to_string(),
                    expires_at: Some(expires_at),
                },
            );
            (count, (expires_at - now).to_std().unwrap_or_default())
        }))
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
