//! Deleting expired sessions: the periodic in-process job (one instance per interval, by a
//! fixed-window counter in the cache, and on Postgres under an advisory lock) and the
//! on-demand run used by the cron endpoint and `origin-api cleanup`.

use std::sync::Arc;

use crate::cache::keys;
use crate::clock::whole_seconds;
use crate::domain::core::Core;
use crate::domain::error::{DomainResult, short};

/// Deletes every expired session now; returns how many.
pub async fn run_once(core: &Core) -> DomainResult<u64> {
    let now = whole_seconds(core.clock.now());
    let deleted = core.store.delete_expired(now).await?;
    core.metrics.cleanup_deleted.increment(deleted);
    Ok(deleted)
}

/// The periodic job; returns when `stop` is cancelled.
pub async fn periodic(core: Arc<Core>, stop: tokio_util::sync::CancellationToken) {
    let interval = core.policy.cleanup_interval;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        // Only one instance per interval: the first to count in the interval's window runs
        // the job (DESIGN.md's `v1:rl:<bucket>:{<id>}` fixed-window counter; no other key).
        match core
            .cache
            .hit_window(&keys::cleanup_window(), interval)
            .await
        {
            Ok((count, _)) if count > 1 => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "cleanup lock unavailable; relying on the database lock")
            }
        }
        let now = whole_seconds(core.clock.now());
        match core.store.delete_expired_exclusive(now).await {
            Ok(Some(n)) => {
                core.metrics.cleanup_deleted.increment(n);
                tracing::info!(deleted = n, "expired sessions cleaned up");
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %short(&e), "cleanup failed"),
        }
    }
}
