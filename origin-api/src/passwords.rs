//! Password hashing with argon2id (m=19456 KiB, t=2, p=1) on a pool of its own threads,
//! one per core, so a login storm queues here instead of stalling the async workers that
//! serve verification.
//!
//! The queue is bounded (`PASSWORD_QUEUE_MAX`): beyond it a job is refused at once
//! ([`DomainError::Busy`], a `503` with `Retry-After`) instead of queueing work that would
//! finish long after its client gave up. A job whose caller has gone (the client hung up,
//! dropping the request) is skipped when its turn comes, and the queue-depth gauge counts
//! a job from its acceptance to its end or its skip, so it stays true.
//!
//! The hashing threads run at a lower scheduling priority (nice 10): when hashing and
//! verification compete for the CPU, verification gets it first, and hashing still takes
//! every idle cycle. On the same threads as everything else, a login storm multiplied
//! warm-verify p99 by six (BENCHMARKS.md).
//!
//! Each hash needs a 19 MiB working area. Every hashing thread keeps one and reuses it,
//! hash after hash: allocating, faulting in and zeroing a fresh area every time cost a third
//! of the hash itself, and resident memory stays bounded by threads × 19 MiB.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use metrics::{Counter, Gauge};
use subtle::ConstantTimeEq;

use crate::domain::error::DomainError;
use crate::domain::types::Password;

/// Seconds a client is asked to wait when the queue is full.
pub const BUSY_RETRY_AFTER: u64 = 2;

const M_COST: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
const SALT_LEN: usize = Salt::RECOMMENDED_LENGTH;
const OUTPUT_LEN: usize = Params::DEFAULT_OUTPUT_LEN;

fn params() -> Params {
    // The parameters are constants within argon2's documented bounds.
    Params::new(M_COST, T_COST, P_COST, None).unwrap_or_default()
}

/// The nice value of the hashing threads.
const HASHING_NICE: i32 = 10;

/// One unit of hashing work, given the thread's working area; `wanted` says whether its
/// caller still waits for it.
struct Job {
    work: Work,
    wanted: Box<dyn Fn() -> bool + Send>,
}

type Work = Box<dyn FnOnce(&mut [Block]) + Send>;

/// The result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub ok: bool,
    /// The stored hash uses other parameters than today's: rehash after a successful login.
    pub needs_rehash: bool,
}

/// The gauges and counters the pool keeps true.
#[derive(Clone)]
pub struct PoolMetrics {
    /// Jobs accepted and not yet finished or skipped.
    pub depth: Gauge,
    /// Jobs refused because the queue was full.
    pub rejected: Counter,
    /// Jobs skipped because their caller had gone.
    pub abandoned: Counter,
}

impl PoolMetrics {
    /// Metrics that go nowhere (command-line use).
    pub fn detached() -> PoolMetrics {
        PoolMetrics {
            depth: Gauge::noop(),
            rejected: Counter::noop(),
            abandoned: Counter::noop(),
        }
    }
}

/// The hashing pool. Its threads end when it is dropped.
pub struct Passwords {
    jobs: SyncSender<Job>,
    metrics: PoolMetrics,
    /// A hash of a random password with today's parameters, verified against when the
    /// email is unknown so both failures cost the same.
    dummy: String,
}

fn internal(e: impl std::fmt::Display) -> DomainError {
    DomainError::Internal(format!("password hashing: {e}"))
}

impl Passwords {
    /// Starts one hashing thread per core with a queue of at most `queue_max` waiting
    /// jobs, and prepares the dummy hash.
    pub async fn new(queue_max: usize, metrics: PoolMetrics) -> Result<Passwords, DomainError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let blocks = params().block_count();
        // The dummy's area is not kept: an idle service holds none.
        let dummy = tokio::task::spawn_blocking(move || {
            let mut random = [0u8; 32];
            getrandom::fill(&mut random).map_err(internal)?;
            hash_now(&random, &mut vec![Block::default(); blocks])
        })
        .await
        .map_err(internal)??;
        let (jobs, receiver) = std::sync::mpsc::sync_channel::<Job>(queue_max.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..cores {
            let receiver = receiver.clone();
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || hashing_thread(&receiver, blocks, &metrics))
                .map_err(internal)?;
        }
        Ok(Passwords {
            jobs,
            metrics,
            dummy,
        })
    }

    /// Runs `job` on a hashing thread, with that thread's working area; refused at once
    /// when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, DomainError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let waiting = Arc::new(done);
        let wanted = {
            let waiting = Arc::downgrade(&waiting);
            Box::new(move || waiting.upgrade().is_some_and(|d| !d.is_closed()))
        };
        let work = Box::new(move |area: &mut [Block]| {
            let value = job(area);
            if let Ok(done) = Arc::try_unwrap(waiting) {
                let _ = done.send(value);
            }
        });
        self.metrics.depth.increment(1.0);
        match self.jobs.try_send(Job { work, wanted }) {
            Ok(()) => result.await.map_err(|_| internal("the hashing job failed")),
            Err(TrySendError::Full(_)) => {
                self.metrics.depth.decrement(1.0);
                self.metrics.rejected.increment(1);
                Err(DomainError::Busy {
                    retry_after: BUSY_RETRY_AFTER,
                })
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.depth.decrement(1.0);
                Err(internal("the pool stopped"))
            }
        }
    }

    /// Hashes a new password (a fresh random salt each time).
    pub async fn hash(&self, password: Password) -> Result<String, DomainError> {
        self.run(move |area| hash_now(password.expose().as_bytes(), area))
            .await?
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no user
    /// (always failing then, after the same work).
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<String>,
    ) -> Result<Checked, DomainError> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy.clone());
        let checked = self
            .run(move |area| check(password.expose().as_bytes(), &hash, area))
            .await?;
        Ok(Checked {
            ok: known && checked.ok,
            needs_rehash: known && checked.ok && checked.needs_rehash,
        })
    }
}

/// A hashing thread: lowers its own priority, then runs jobs until the pool is dropped. Its
/// working area is allocated on the first job and kept. A job whose caller has gone is
/// skipped. A job that panics loses its answer (the caller gets an error), not the thread.
fn hashing_thread(jobs: &Mutex<Receiver<Job>>, blocks: usize, metrics: &PoolMetrics) {
    lower_priority();
    let mut area: Vec<Block> = Vec::new();
    loop {
        let job = match jobs.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        if (job.wanted)() {
            if area.len() < blocks {
                area = vec![Block::default(); blocks];
            }
            let work = job.work;
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| work(&mut area)));
        } else {
            metrics.abandoned.increment(1);
        }
        metrics.depth.decrement(1.0);
    }
}

/// Raises the calling thread's nice value to [`HASHING_NICE`] (Linux: nice is per thread).
/// Raising it needs no privilege; if it fails anyway, hashing runs at normal priority.
#[cfg(target_os = "linux")]
fn lower_priority() {
    const PRIO_PROCESS: std::ffi::c_int = 0;
    unsafe extern "C" {
        fn setpriority(
            which: std::ffi::c_int,
            who: std::ffi::c_uint,
            prio: std::ffi::c_int,
        ) -> std::ffi::c_int;
    }
    // SAFETY: setpriority only changes a scheduling attribute; PRIO_PROCESS with `who` 0
    // names the calling thread on Linux, and HASHING_NICE is within -20..=19.
    unsafe {
        setpriority(PRIO_PROCESS, 0, HASHING_NICE);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// A new argon2id PHC string for `password` with a fresh random salt, computed in `area`.
fn hash_now(password: &[u8], area: &mut [Block]) -> Result<String, DomainError> {
    fn fail(e: impl std::fmt::Display) -> DomainError {
        DomainError::Internal(format!("argon2: {e}"))
    }
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(fail)?;
    let params = params();
    let mut out = [0u8; OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, &salt, &mut out, area)
        .map_err(fail)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(fail)?,
        salt: Some(Salt::new(&salt).map_err(fail)?),
        hash: Some(Output::new(&out).map_err(fail)?),
    };
    Ok(phc.to_string())
}

/// Checks `password` against a stored PHC string with the algorithm, version and parameters
/// it names, in `area` when it is large enough (always, for today's parameters); the
/// outputs are compared in constant time.
fn check(password: &[u8], stored: &str, area: &mut [Block]) -> Checked {
    let failed = Checked {
        ok: false,
        needs_rehash: false,
    };
    let Ok(parsed) = PasswordHash::new(stored) else {
        return failed;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return failed;
    };
    let (Ok(algorithm), Ok(version), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm.as_str()),
        parsed
            .version
            .map_or(Ok(Version::default()), Version::try_from),
        Params::try_from(&parsed),
    ) else {
        return failed;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    let computed = if params.block_count() <= area.len() {
        argon2.hash_password_into_with_memory(password, salt, &mut out, area)
    } else {
        argon2.hash_password_into(password, salt, &mut out)
    };
    let ok = computed.is_ok() && bool::from(out.as_slice().ct_eq(expected.as_bytes()));
    let current = parsed.algorithm.as_str() == "argon2id"
        && parsed.version.is_some_and(|v| v == 0x13)
        && Params::try_from(&parsed)
            .is_ok_and(|p| p.m_cost() == M_COST && p.t_cost() == T_COST && p.p_cost() == P_COST);
    Checked {
        ok,
        needs_rehash: !current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hashes_verify_and_detect_old_parameters() {
        let area = &mut vec![Block::default(); params().block_count()];
        let hash = hash_now(b"correct horse", area).expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert_eq!(
            check(b"correct horse", &hash, area),
            Checked {
                ok: true,
                needs_rehash: false
            }
        );
        assert!(!check(b"wrong", &hash, area).ok);
        // The PHC string is the argon2 crate's own format: it verifies there too.
        let parsed = PasswordHash::new(&hash).expect("phc");
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 1, 1, None).expect("params"),
        )
        .hash_password(b"correct horse")
        .expect("hash")
        .to_string();
        assert_eq!(
            check(b"correct horse", &weak, area),
            Checked {
                ok: true,
                needs_rehash: true
            }
        );
        assert!(!check(b"x", "not a hash", area).ok);
    }

    #[test]
    fn hashes_from_the_crates_own_hasher_verify() {
        let area = &mut vec![Block::default(); params().block_count()];
        // What earlier versions stored: `Argon2::hash_password` with today's parameters.
        let stored = Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
            .hash_password(b"correct horse")
            .expect("hash")
            .to_string();
        assert_eq!(
            check(b"correct horse", &stored, area),
            Checked {
                ok: true,
                needs_rehash: false
            }
        );
        assert!(!check(b"correct hose", &stored, area).ok);
        // Stronger parameters than the area holds: computed in an area of their own.
        let strong = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(M_COST * 2, 1, 1, None).expect("params"),
        )
        .hash_password(b"correct horse")
        .expect("hash")
        .to_string();
        assert_eq!(
            check(b"correct horse", &strong, area),
            Checked {
                ok: true,
                needs_rehash: true
            }
        );
    }
}
