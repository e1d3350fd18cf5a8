//! Long-lived connections to the app (WebSockets, responses still streaming) and the
//! periodic re-check that closes them when their session ends.
//!
//! Every [`RECHECK`] the watcher asks, once per distinct session, whether the session still
//! lives and what its user's role is now, through the same path a request takes (the
//! cache, then the database), and cancels every connection of a session that was revoked,
//! expired or whose user was deleted, and every connection whose rule its user no longer
//! satisfies. Because the answer comes from the shared cache or the database, a revoke made
//! through any instance closes the connections held by every instance within one period
//! (the contract's bound is 5 s). A session the check cannot answer for (both stores down)
//! keeps its connections: the next period asks again.
//!
//! Alternatives weighed (`bench_watch`, 10,000 watched sessions; BENCHMARKS.md, *Closing
//! revoked connections*): this re-check costs 5,000 `GET`/s, 0.09 client cores and 0.05
//! Redis cores one `GET` at a time (0.04 and 0.01 with 64 in flight, as a pass now asks),
//! and sees a revoke in
//! 1.2 s median, 2.0 s max. Redis pub/sub of revocations is ~free at idle and sees a revoke
//! in 0.5 ms, but only what is published: expiries, role changes and user deletes need more
//! machinery, and a subscriber that reconnects has lost messages and must sweep every
//! session anyway (10,000 `GET`s). Keyspace notifications need server configuration, are
//! node-local in Cluster, report entries rather than sessions (each event still needs this
//! check) and cost every instance every session write of the deployment (9,500 discarded
//! messages/s under 5,000 writes/s). Neither covers Postgres-only deployments; pub/sub
//! could be added on top of this pass to shorten the revoke latency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use shared::SessionId;
use shared::rules::Policy;
use tokio_util::sync::CancellationToken;

use crate::domain::core::Core;
use crate::domain::sessions;
use crate::domain::types::Role;

/// How often open connections' sessions are checked.
pub const RECHECK: Duration = Duration::from_secs(2);
/// Sessions checked at once during a pass.
const CHECKS_IN_FLIGHT: usize = 64;

fn rule_role(role: Role) -> shared::rules::Role {
    match role {
        Role::Admin => shared::rules::Role::Admin,
        Role::User => shared::rules::Role::User,
    }
}

struct Watched {
    sid: SessionId,
    /// `sid`'s storage hash, computed once: a pass compares it for every connection.
    hash: String,
    policy: Policy,
    closed: CancellationToken,
}

/// The open long-lived connections of this instance.
#[derive(Default)]
pub struct Watcher {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Watched>>,
}

/// A registration: cancelled when the session ends; deregisters on drop.
pub struct Watch {
    id: u64,
    watcher: Arc<Watcher>,
    pub closed: CancellationToken,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.watcher.lock().remove(&self.id);
    }
}

impl Watcher {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Watched>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches a connection of session `sid` allowed by `policy`.
    pub fn watch(self: &Arc<Self>, sid: SessionId, policy: Policy) -> Watch {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let closed = CancellationToken::new();
        self.lock().insert(
            id,
            Watched {
                hash: sid.storage_hash(),
                sid,
                policy,
                closed: closed.clone(),
            },
        );
        Watch {
            id,
            watcher: self.clone(),
            closed,
        }
    }

    /// How many connections are watched.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One pass: checks every distinct session once; returns how many connections it
    /// closed.
    pub async fn recheck(&self, core: &Arc<Core>) -> usize {
        let sessions: HashMap<String, SessionId> = self
            .lock()
            .values()
            .map(|w| (w.hash.clone(), w.sid.clone()))
            .collect();
        // Each distinct session asked once; then one pass over the connections (not one
        // per session: with thousands of connections that was quadratic).
        // Up to CHECKS_IN_FLIGHT at once, so the cache's client pipelines them (bench_watch:
        // a pass over 10,000 sessions in 62 ms instead of 287 ms one at a time, with half
        // the client CPU and a quarter of Redis's).
        let verdicts: HashMap<String, Option<shared::rules::Role>> =
            futures_util::stream::iter(sessions)
                .map(|(hash, sid)| async move {
                    match sessions::still_live(core, &sid).await {
                        Ok(role) => Some((hash, role.map(rule_role))),
                        // Cannot tell: ask again next period.
                        Err(_) => None,
                    }
                })
                .buffer_unordered(CHECKS_IN_FLIGHT)
                .filter_map(std::future::ready)
                .collect()
                .await;
        let mut closed = 0;
        for w in self.lock().values() {
            let Some(&role) = verdicts.get(&w.hash) else {
                continue;
            };
            if w.closed.is_cancelled() {
                continue;
            }
            let keep = role.is_some_and(|r| w.policy == Policy::Public || w.policy.admits(r));
            if !keep {
                w.closed.cancel();
                closed += 1;
            }
        }
        closed
    }

    /// The periodic re-check, until `stop`.
    pub async fn run(self: Arc<Self>, core: Arc<Core>, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(RECHECK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => return,
            }
            if self.is_empty() {
                continue;
            }
            let closed = self.recheck(&core).await;
            if closed > 0 {
                core.metrics.connections_closed.increment(closed as u64);
                tracing::info!(closed, "long-lived connections closed: their session ended");
            }
        }
    }
}
