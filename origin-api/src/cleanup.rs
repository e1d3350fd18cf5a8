//! Deleting expired sessions: the periodic in-process job (one instance per interval, by a
//! cache lock with expiry, and on Postgres under an advisory lock) and the on-demand run
//! used by the cron endpoint and `origin-api cleanup`.

use std::sync::Arc;

use crate::app::App;
use crate::cache::keys;
use crate::error::ApiResult;
use crate::session::whole_seconds;

/// Deletes every expired session now; returns how many.
pub async fn run_once(app: &App) -> ApiResult<u64> {
    let now = whole_seconds(app.clock.now());
    let deleted = app.store.delete_expired(now).await?;
    app.metrics.cleanup_deleted.increment(deleted);
    Ok(deleted)
}

/// The periodic job; returns when `stop` fires.
pub async fn periodic(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let interval = app.config.cleanup_interval;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        // Only one instance per interval: the lock expires with the interval.
        match app.cache.set_nx(keys::CLEANUP_LOCK, "1", interval).await {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                tracing::debug!(error = %e, "cleanup lock unavailable; relying on the database lock")
            }
        }
        let now = whole_seconds(app.clock.now());
        match app.store.delete_expired_exclusive(now).await {
            Ok(Some(n)) => {
                app.metrics.cleanup_deleted.increment(n);
                tracing::info!(deleted = n, "expired sessions cleaned up");
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %crate::error::short(&e), "cleanup failed"),
        }
    }
}
