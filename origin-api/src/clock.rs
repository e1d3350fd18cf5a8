//! The one source of "now" for the service, injectable so tests can move time forward.

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

/// Tells the current time. Every `now` in the service comes from here.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// Unix seconds (never negative).
    fn now_unix(&self) -> u64 {
        u64::try_from(self.now().timestamp()).unwrap_or(0)
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The wall clock shifted by an offset that only grows: tests call [`ManualClock::advance`].
#[derive(Debug, Default)]
pub struct ManualClock {
    offset: Mutex<TimeDelta>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let by = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        let mut offset = self.offset.lock().unwrap_or_else(|e| e.into_inner());
        *offset = offset.checked_add(&by).unwrap_or(TimeDelta::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = *self.offset.lock().unwrap_or_else(|e| e.into_inner());
        Utc::now() + offset
    }
}

/// RFC 3339 in UTC with whole seconds, e.g. `2026-11-22T13:00:00Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `t` without sub-second digits: cookies carry whole seconds, so rows and cache do too.
pub fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    t.with_nanosecond(0).unwrap_or(t)
}
