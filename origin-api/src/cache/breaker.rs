//! The circuit breaker in front of Redis: after a command fails, calls fail at once for a
//! pause (250 ms, doubling while failures keep coming, at most 5 s), then one call probes
//! and only its success resumes service. A hung server (its connections open and silent:
//! a frozen process, a partition) otherwise makes every request wait for the command
//! timeout before falling back to the database; fred reconnecting does not help while
//! the server still accepts connections. Pure logic on a millisecond clock the caller
//! passes in.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

const FIRST_PAUSE_MS: u64 = 250;
const MAX_PAUSE_MS: u64 = 5_000;
/// A failure this long after the previous trip starts the pauses over.
const STREAK_RESET_MS: u64 = 30_000;

#[derive(Debug, Default)]
pub struct Breaker {
    /// While `now` is below: fail at once. 0: closed.
    open_until: AtomicU64,
    /// A probe is under way (half-open).
    probing: AtomicBool,
    /// Trips in a row (each within `STREAK_RESET_MS` of the previous).
    streak: AtomicU32,
    /// When the last trip happened; 0: never.
    last_trip: AtomicU64,
}

/// How a call was let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    Normal,
    /// The one call after a pause: its outcome closes or re-opens the breaker.
    Probe,
}

impl Breaker {
    /// Whether a call may go to Redis at `now` (ms, never 0).
    pub fn admit(&self, now: u64) -> Option<Pass> {
        let until = self.open_until.load(Ordering::SeqCst);
        if until == 0 {
            return Some(Pass::Normal);
        }
        if now < until {
            return None;
        }
        self.probing
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| Pass::Probe)
    }

    /// The outcome of a call admitted with `pass`.
    pub fn record(&self, pass: Pass, ok: bool, now: u64) {
        match (pass, ok) {
            (Pass::Probe, true) => {
                self.open_until.store(0, Ordering::SeqCst);
                self.probing.store(false, Ordering::SeqCst);
            }
            (Pass::Normal, true) => {}
            (Pass::Normal, false) if now < self.open_until.load(Ordering::SeqCst) => {
                // Already paused by a call that failed alongside.
            }
            (_, false) => self.trip(now),
        }
    }

    /// A probe that ended without an outcome (its caller went away): the next call
    /// after the pause probes instead.
    pub fn abandon(&self, pass: Pass) {
        if pass == Pass::Probe {
            self.probing.store(false, Ordering::SeqCst);
        }
    }

    /// Whether calls currently fail at once.
    #[cfg(test)]
    pub fn is_open(&self, now: u64) -> bool {
        now < self.open_until.load(Ordering::SeqCst)
    }

    fn trip(&self, now: u64) {
        let last = self.last_trip.swap(now, Ordering::SeqCst);
        let streak = if last != 0 && now.saturating_sub(last) < STREAK_RESET_MS {
            self.streak.fetch_add(1, Ordering::SeqCst).saturating_add(1)
        } else {
            self.streak.store(0, Ordering::SeqCst);
            0
        };
        let pause = (FIRST_PAUSE_MS << streak.min(5)).min(MAX_PAUSE_MS);
        self.open_until.store(now + pause, Ordering::SeqCst);
        self.probing.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_pauses_calls_then_one_probe_decides() {
        let b = Breaker::default();
        assert_eq!(b.admit(1), Some(Pass::Normal));
        b.record(Pass::Normal, true, 1);
        assert_eq!(b.admit(2), Some(Pass::Normal));
        b.record(Pass::Normal, false, 10);
        // Paused for 250 ms; failures of calls already under way change nothing.
        assert_eq!(b.admit(11), None);
        b.record(Pass::Normal, false, 20);
        assert_eq!(b.admit(259), None);
        // One probe, the others still fail at once.
        assert_eq!(b.admit(260), Some(Pass::Probe));
        assert_eq!(b.admit(261), None);
        // It fails: a longer pause (500 ms).
        b.record(Pass::Probe, false, 300);
        assert_eq!(b.admit(799), None);
        assert_eq!(b.admit(800), Some(Pass::Probe));
        // It succeeds: closed.
        b.record(Pass::Probe, true, 801);
        assert_eq!(b.admit(802), Some(Pass::Normal));
        assert!(!b.is_open(802));
        // Successes of normal calls never close a paused breaker.
        b.record(Pass::Normal, false, 900);
        b.record(Pass::Normal, true, 901);
        assert_eq!(b.admit(902), None);
    }

    #[test]
    fn pauses_double_up_to_five_seconds_and_start_over_after_a_quiet_spell() {
        let b = Breaker::default();
        let mut now = 1;
        let mut pauses = Vec::new();
        for _ in 0..8 {
            b.record(Pass::Normal, false, now);
            let start = now;
            while b.admit(now).is_none() {
                now += 1;
            }
            pauses.push(now - start);
            b.abandon(Pass::Probe);
        }
        assert_eq!(pauses, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        b.record(Pass::Probe, true, now);
        now += STREAK_RESET_MS;
        b.record(Pass::Normal, false, now);
        assert!(b.is_open(now + 249));
        assert!(!b.is_open(now + 250));
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let b = Breaker::default();
        b.record(Pass::Normal, false, 1);
        assert_eq!(b.admit(300), Some(Pass::Probe));
        assert_eq!(b.admit(301), None);
        b.abandon(Pass::Probe);
        assert_eq!(b.admit(302), Some(Pass::Probe));
    }
}
