//! What the server acknowledged: users, every session a 200 login handed out, every
//! revoke answered 200, every login refused with 401. The database audit compares the
//! tables against this record after each scenario.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// A registered account.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password: String,
}

/// Where a session stands as far as the client knows.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessState {
    /// A revoke of it was sent at this time.
    pub revoke_sent: Option<Instant>,
    /// A revoke of it was answered 200 at this time.
    pub revoked: Option<Instant>,
    /// A revoke of it got no clear answer (5xx, connection lost): either outcome is valid.
    pub uncertain: bool,
}

/// A session handed out by a 200 login.
#[derive(Debug)]
pub struct Sess {
    pub user: usize,
    pub token: String,
    pub hash: String,
    pub scenario: String,
    /// When the login's answer arrived.
    pub acked: Instant,
    pub state: Mutex<SessState>,
}

impl Sess {
    pub fn state(&self) -> SessState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn update(&self, f: impl FnOnce(&mut SessState)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Neither revoked nor being revoked.
    pub fn live(&self) -> bool {
        let s = self.state();
        s.revoke_sent.is_none() && s.revoked.is_none() && !s.uncertain
    }
}

/// A revoke answered 200.
#[derive(Clone, Debug)]
pub struct Revoke {
    pub hash: String,
    pub scenario: String,
    /// When the revoke's answer arrived.
    pub acked: Instant,
}

/// How long before a SIGKILL an acknowledged operation's audit write may still have been
/// in flight (it follows the answer by well under a millisecond when the host is idle).
pub const KILL_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Default)]
pub struct Ledger {
    users: RwLock<Vec<User>>,
    sessions: Mutex<Vec<Arc<Sess>>>,
    by_user: Mutex<HashMap<usize, Vec<Arc<Sess>>>>,
    revokes: Mutex<Vec<Revoke>>,
    failed_logins: Mutex<HashMap<usize, u64>>,
    kills: Mutex<Vec<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ledger {
    pub fn add_user(&self, user: User) -> usize {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        users.push(user);
        users.len() - 1
    }

    pub fn user(&self, i: usize) -> User {
        self.users.read().unwrap_or_else(|e| e.into_inner())[i].clone()
    }

    pub fn users(&self) -> Vec<User> {
        self.users.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records a 200 login; `None` when the token carries no session id (a bug).
    pub fn add_session(&self, user: usize, token: String, scenario: &str) -> Option<Arc<Sess>> {
        let hash = testkit::keys::session_hash(&token)?;
        let sess = Arc::new(Sess {
            user,
            token,
            hash,
            scenario: scenario.to_owned(),
            acked: Instant::now(),
            state: Mutex::new(SessState::default()),
        });
        lock(&self.sessions).push(sess.clone());
        lock(&self.by_user)
            .entry(user)
            .or_default()
            .push(sess.clone());
        Some(sess)
    }

    pub fn sessions(&self) -> Vec<Arc<Sess>> {
        lock(&self.sessions).clone()
    }

    pub fn sessions_of(&self, user: usize) -> Vec<Arc<Sess>> {
        lock(&self.by_user).get(&user).cloned().unwrap_or_default()
    }

    pub fn add_revoke(&self, sess: &Sess, scenario: &str) {
        sess.update(|s| s.revoked = Some(Instant::now()));
        lock(&self.revokes).push(Revoke {
            hash: sess.hash.clone(),
            scenario: scenario.to_owned(),
            acked: Instant::now(),
        });
    }

    pub fn revokes(&self) -> Vec<Revoke> {
        lock(&self.revokes).clone()
    }

    /// The origin was SIGKILLed at `at`.
    pub fn add_kill(&self, at: Instant) {
        lock(&self.kills).push(at);
    }

    /// Answered within [`KILL_WINDOW`] before a SIGKILL: its audit row, written just after
    /// the answer (off the request path, DESIGN.md), may have died with the process.
    pub fn cut_by_kill(&self, acked: Instant) -> bool {
        lock(&self.kills)
            .iter()
            .any(|k| acked <= *k && k.saturating_duration_since(acked) <= KILL_WINDOW)
    }

    pub fn add_failed_login(&self, user: usize) {
        *lock(&self.failed_logins).entry(user).or_default() += 1;
    }

    pub fn failed_logins(&self) -> HashMap<usize, u64> {
        lock(&self.failed_logins).clone()
    }
}

/// A small xorshift generator (traffic choices need speed, not quality).
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        Rng(u64::from_le_bytes(b) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// A client address for `X-Forwarded-For`, unique enough to stay under the per-IP
    /// login limit.
    pub fn ip(&mut self) -> String {
        let x = self.next();
        format!(
            "10.{}.{}.{}",
            (x >> 16) & 0xff,
            (x >> 8) & 0xff,
            (x & 0xff).max(1)
        )
    }
}
