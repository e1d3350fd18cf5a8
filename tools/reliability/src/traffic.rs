//! Mixed background traffic while a fault happens: verifies of known sessions, logins
//! and revokes, each answer recorded with what the client knew when it sent the request
//! (so "a revoked session was accepted" and "a live session was refused" are findable).

use std::ops::Range;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use testkit::{Api, Reply};

use crate::ledger::{Ledger, Rng, Sess};
use crate::report::Tally;
use crate::status_key;

/// How much traffic of each kind.
#[derive(Clone, Debug)]
pub struct Mix {
    pub users: Range<usize>,
    pub verify_workers: usize,
    pub login_workers: usize,
    pub revoke_workers: usize,
    /// Pause between two requests of one verify worker.
    pub verify_pace: Duration,
    /// Pause between two requests of one login or revoke worker.
    pub write_pace: Duration,
}

/// One answer of the background traffic.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: &'static str,
    pub status: String,
    pub retry_after: bool,
    pub sent: Instant,
    /// From sending to the answer (or the transport error).
    pub took: Duration,
    /// Verify of a session whose revoke had been acknowledged this long before sending.
    pub revoked_for: Option<Duration>,
    /// Verify of a session the client believed live: no revoke of it sent before the
    /// answer arrived.
    pub believed_live: bool,
}

pub struct Recorder {
    /// When the traffic started.
    pub started: Instant,
    pub tally: Tally,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    fn push(&self, e: Event) {
        self.tally.add(e.kind, &e.status);
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(e);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

pub struct Running {
    stop: Arc<AtomicBool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
    pub rec: Arc<Recorder>,
}

impl Running {
    /// Stops the workers and waits for their last requests.
    pub async fn stop(self) -> Arc<Recorder> {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            let _ = h.await;
        }
        self.rec
    }
}

fn retry_after<T>(r: &Result<Reply<T>, testkit::api::reqwest::Error>) -> bool {
    r.as_ref().is_ok_and(|reply| reply.retry_after().is_some())
}

/// Starts the workers.
pub fn start(api: &Api, ledger: &Arc<Ledger>, mix: Mix, scenario: &str) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let rec = Arc::new(Recorder {
        started: Instant::now(),
        tally: Tally::default(),
        events: Mutex::default(),
    });
    let mut handles = Vec::new();
    for _ in 0..mix.verify_workers {
        handles.push(tokio::spawn(verify_worker(
            api.clone(),
            ledger.clone(),
            mix.clone(),
            stop.clone(),
            rec.clone(),
        )));
    }
    for _ in 0..mix.login_workers {
        handles.push(tokio::spawn(login_worker(
            api.clone(),
            ledger.clone(),
            mix.clone(),
            stop.clone(),
            rec.clone(),
            scenario.to_owned(),
        )));
    }
    for _ in 0..mix.revoke_workers {
        handles.push(tokio::spawn(revoke_worker(
            api.clone(),
            ledger.clone(),
            mix.clone(),
            stop.clone(),
            rec.clone(),
            scenario.to_owned(),
        )));
    }
    Running { stop, handles, rec }
}

fn pick_session(ledger: &Ledger, users: &Range<usize>, rng: &mut Rng) -> Option<Arc<Sess>> {
    for _ in 0..8 {
        let user = users.start + rng.below(users.len());
        let sessions = ledger.sessions_of(user);
        if !sessions.is_empty() {
            return Some(sessions[rng.below(sessions.len())].clone());
        }
    }
    None
}

async fn verify_worker(
    api: Api,
    ledger: Arc<Ledger>,
    mix: Mix,
    stop: Arc<AtomicBool>,
    rec: Arc<Recorder>,
) {
    let mut rng = Rng::new();
    while !stop.load(Ordering::SeqCst) {
        let Some(sess) = pick_session(&ledger, &mix.users, &mut rng) else {
            tokio::time::sleep(mix.verify_pace).await;
            continue;
        };
        let before = sess.state();
        let sent = Instant::now();
        let r = api.me(&sess.token).await;
        // A revoke sent while this verify was in flight may be served first (both orders
        // are correct), so "live" must hold from sending until the answer arrived.
        let after = sess.state();
        rec.push(Event {
            kind: "verify",
            status: status_key(&r),
            retry_after: retry_after(&r),
            sent,
            took: sent.elapsed(),
            revoked_for: before.revoked.map(|t| sent.saturating_duration_since(t)),
            believed_live: [&before, &after]
                .iter()
                .all(|s| s.revoke_sent.is_none() && s.revoked.is_none() && !s.uncertain),
        });
        tokio::time::sleep(mix.verify_pace).await;
    }
}

async fn login_worker(
    api: Api,
    ledger: Arc<Ledger>,
    mix: Mix,
    stop: Arc<AtomicBool>,
    rec: Arc<Recorder>,
    scenario: String,
) {
    let mut rng = Rng::new();
    while !stop.load(Ordering::SeqCst) {
        let idx = mix.users.start + rng.below(mix.users.len());
        let user = ledger.user(idx);
        // Keep each account under MAX_SESSIONS_PER_USER (20): skip accounts near it.
        if ledger.sessions_of(idx).iter().filter(|s| s.live()).count() >= 12 {
            tokio::time::sleep(mix.write_pace).await;
            continue;
        }
        let sent = Instant::now();
        let r = api
            .from_ip(&rng.ip())
            .login(&user.email, &user.password)
            .await;
        if let Ok(reply) = &r
            && reply.status == 200
            && let Some(token) = reply.token()
        {
            ledger.add_session(idx, token, &scenario);
        }
        rec.push(Event {
            kind: "login",
            status: status_key(&r),
            retry_after: retry_after(&r),
            sent,
            took: sent.elapsed(),
            revoked_for: None,
            believed_live: false,
        });
        tokio::time::sleep(mix.write_pace).await;
    }
}

async fn revoke_worker(
    api: Api,
    ledger: Arc<Ledger>,
    mix: Mix,
    stop: Arc<AtomicBool>,
    rec: Arc<Recorder>,
    scenario: String,
) {
    let mut rng = Rng::new();
    while !stop.load(Ordering::SeqCst) {
        let idx = mix.users.start + rng.below(mix.users.len());
        let live: Vec<Arc<Sess>> = ledger
            .sessions_of(idx)
            .into_iter()
            .filter(|s| s.live())
            .collect();
        if live.len() < 3 {
            tokio::time::sleep(mix.write_pace).await;
            continue;
        }
        // The newest revokes the oldest, like a user cleaning up old devices.
        let (actor, target) = (&live[live.len() - 1], &live[0]);
        let sent = Instant::now();
        target.update(|s| s.revoke_sent = Some(sent));
        let r = api.revoke(&actor.token, &target.hash).await;
        match &r {
            Ok(reply) if reply.status == 200 => ledger.add_revoke(target, &scenario),
            _ => target.update(|s| s.uncertain = true),
        }
        rec.push(Event {
            kind: "revoke",
            status: status_key(&r),
            retry_after: retry_after(&r),
            sent,
            took: sent.elapsed(),
            revoked_for: None,
            believed_live: false,
        });
        tokio::time::sleep(mix.write_pace).await;
    }
}

/// Verifies of sessions whose revoke had been acknowledged at least `after` before the
/// request, answered 200 anyway.
pub fn revoked_accepted(events: &[Event], after: Duration) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.kind == "verify" && e.status == "200")
        .filter(|e| e.revoked_for.is_some_and(|d| d >= after))
        .collect()
}

/// 5xx answers without `Retry-After`, and every 500.
pub fn bad_5xx(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.status.starts_with('5'))
        .filter(|e| e.status != "503" || !e.retry_after)
        .collect()
}
