//! Work that runs off the request path (audit rows, cache evictions, the sliding refresh's
//! write, last-use touches, rehashes): spawned through one [`Background`], so shutdown can
//! wait for it, and retried with backoff where it must eventually happen.
//!
//! Shutdown first stops new requests, then [`Background::drain`] cancels the retry loops'
//! waits (each makes one last attempt) and waits, up to a deadline, for every task.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The tracker of background tasks.
#[derive(Clone, Debug, Default)]
pub struct Background {
    tasks: TaskTracker,
    stopping: CancellationToken,
}

/// One attempt of a retried operation.
pub enum Attempt<E> {
    Done,
    /// Failed in a way worth retrying (a dependency is down).
    Retry(E),
    /// Failed for good.
    GiveUp(E),
}

impl Background {
    pub fn new() -> Background {
        Background::default()
    }

    /// Runs `task` in the background, tracked.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Runs `attempt` until it is done or gives up, waiting 100 ms doubling to 5 s between
    /// attempts, for at most `for_at_most`, in the background. `on_failure` hears every
    /// failed attempt (`true` for the last one). While shutting down there is no more
    /// waiting: one last attempt is made and its outcome final.
    pub fn retry<E, F, Fut>(
        &self,
        for_at_most: Duration,
        mut attempt: F,
        mut on_failure: impl FnMut(&E, bool) + Send + 'static,
    ) where
        E: Send + 'static,
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Attempt<E>> + Send,
    {
        let stopping = self.stopping.clone();
        self.spawn(async move {
            let give_up = tokio::time::Instant::now() + for_at_most;
            let mut delay = Duration::from_millis(100);
            loop {
                let last = stopping.is_cancelled() || tokio::time::Instant::now() >= give_up;
                match attempt().await {
                    Attempt::Done => return,
                    Attempt::GiveUp(e) => return on_failure(&e, true),
                    Attempt::Retry(e) => {
                        on_failure(&e, last);
                        if last {
                            return;
                        }
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stopping.cancelled() => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
    }

    /// Cancelled when shutdown begins: periodic jobs end on it.
    pub fn stopping(&self) -> CancellationToken {
        self.stopping.clone()
    }

    /// Stops retry waits and waits for every task, at most `deadline`. True when all
    /// finished.
    pub async fn drain(&self, deadline: Duration) -> bool {
        self.stopping.cancel();
        self.tasks.close();
        tokio::time::timeout(deadline, self.tasks.wait())
            .await
            .is_ok()
    }

    /// How many tasks are running (for tests and logs).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn retries_until_done_and_drains() {
        let bg = Background::new();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        bg.retry(
            Duration::from_secs(10),
            move || {
                let c = c.clone();
                async move {
                    if c.fetch_add(1, Ordering::SeqCst) < 2 {
                        Attempt::Retry("down")
                    } else {
                        Attempt::Done
                    }
                }
            },
            |_, _| {},
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(bg.drain(Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn drain_makes_one_last_attempt_instead_of_waiting() {
        let bg = Background::new();
        let calls = Arc::new(AtomicU32::new(0));
        let finals = Arc::new(AtomicU32::new(0));
        let (c, f) = (calls.clone(), finals.clone());
        bg.retry(
            Duration::from_secs(300),
            move || {
                let c = c.clone();
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    Attempt::Retry("down")
                }
            },
            move |_, last| {
                if last {
                    f.fetch_add(1, Ordering::SeqCst);
                }
            },
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            bg.drain(Duration::from_secs(2)).await,
            "drain waited for backoff"
        );
        assert_eq!(finals.load(Ordering::SeqCst), 1);
        assert!(calls.load(Ordering::SeqCst) >= 2);
    }
}
