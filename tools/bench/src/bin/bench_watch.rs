//! How to close long-lived connections whose session ended (issue 14), measured three ways
//! in one run against a scratch Redis this tool may configure (`bench.py`'s `watch` phase
//! runs it against the bench's own redis-server):
//!
//! ```text
//! bench_watch REDIS_URL [--sessions N] [--revokes R] [--secs S] [--churn W] [--churn-ttl-ms T]
//!                       [--in-flight K] [--json]
//! ```
//!
//! N sessions (default 10,000) are watched, one connection each; their entries are written
//! through the origin's own `SessionCache` (the real key `v1:s:{<hash>}`, the real JSON).
//! Each mechanism then runs, one after the other, with fresh sessions, the same windows:
//!
//! 1. **idle**, S seconds (default 10): Redis commands/s and CPU (`INFO` deltas), this
//!    process's CPU (`getrusage`), messages received;
//! 2. **revokes**: R revokes (default 100) at random moments over S seconds, each the
//!    origin's revoke (`SessionCache::revoke`: tombstone + `DEL` in one script); the
//!    latency is from just before the revoke to the moment the mechanism sees it;
//! 3. **churn**, S seconds: a child process writes W session entries of *other* sessions per
//!    second (default 5,000 `SET … PX`, TTL T ms so they also expire at the write rate, as
//!    entries do at steady state): what each mechanism receives and discards meanwhile.
//!
//! The mechanisms: the periodic re-check of `origin-api/src/gateway/watch.rs` (every 2 s
//! one `GET` per session through `SessionCache::get`), once one `GET` at a time (what
//! watch.rs does) and once with K (default 64) in flight so fred pipelines them; Redis
//! pub/sub (one subscriber; a revoke publishes the hash on one channel); keyspace
//! notifications (`notify-keyspace-events Kgx`, `PSUBSCRIBE __keyspace@0__:v1:s:*`).
//! After the pub/sub run it also times one full re-check sweep (what a subscriber must do
//! after reconnecting, having lost whatever was published meanwhile).
//!
//! Prints a table (or, with `--json`, one JSON object on standard output and the table on
//! standard error). It refuses a Redis that is not on loopback and port 6379 (the shared
//! Redis of a development machine), restores `notify-keyspace-events` and deletes its keys
//! when done. `bench_watch churn URL RATE TTL_MS SECS` is the churn child.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use fred::prelude::{
    Builder, Client, ClientLike, Config, EventInterface, Expiration, KeysInterface, PubsubInterface,
};
use fred::types::{ClusterHash, CustomCommand};
use origin_api::cache::{Cache, Lookup, RedisCache, SessionCache, SessionEntry, Write};
use origin_api::clock::{Clock, SystemClock, whole_seconds};
use origin_api::domain::types::{Email, Role, SessionHash, User, UserId};
use shared::SessionId;
use tokio::task::JoinSet;

/// watch.rs's period.
const RECHECK: Duration = origin_api::gateway::watch::RECHECK;
/// The pub/sub channel a revoke would publish on.
const CHANNEL: &str = "v1:sessions-ended";
/// The keyspace pattern of session entries (database 0).
const PATTERN: &str = "__keyspace@0__:v1:s:*";
/// The notification classes: generic (`del`, `expire`) and expired.
const KEYSPACE_CLASSES: &str = "Kgx";

struct Args {
    url: String,
    sessions: usize,
    revokes: usize,
    secs: u64,
    churn: u64,
    churn_ttl_ms: u64,
    in_flight: usize,
    json: bool,
}

fn parse_args(args: &[String]) -> anyhow::Result<Args> {
    let mut a = Args {
        url: String::new(),
        sessions: 10_000,
        revokes: 100,
        secs: 10,
        churn: 5_000,
        churn_ttl_ms: 1_000,
        in_flight: 64,
        json: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> anyhow::Result<u64> {
            it.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name}: not a number"))
        };
        match arg.as_str() {
            "--sessions" => a.sessions = value(arg)? as usize,
            "--revokes" => a.revokes = value(arg)? as usize,
            "--secs" => a.secs = value(arg)?,
            "--churn" => a.churn = value(arg)?,
            "--churn-ttl-ms" => a.churn_ttl_ms = value(arg)?,
            "--in-flight" => a.in_flight = value(arg)?.max(1) as usize,
            "--json" => a.json = true,
            url if a.url.is_empty() && !url.starts_with("--") => a.url = url.to_owned(),
            other => bail!("unexpected argument {other:?}"),
        }
    }
    if a.url.is_empty() {
        bail!(
            "usage: bench_watch REDIS_URL [--sessions N] [--revokes R] [--secs S] [--churn W] \
             [--churn-ttl-ms T] [--in-flight K] [--json]"
        );
    }
    if a.revokes > a.sessions || a.sessions == 0 || a.secs == 0 {
        bail!("need 0 < revokes <= sessions and secs > 0");
    }
    check_scratch(&a.url)?;
    Ok(a)
}

/// Only a loopback Redis, never the development machine's shared one on 6379: this tool
/// reconfigures the server it is given.
fn check_scratch(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("redis://")
        .context("REDIS_URL must be redis://HOST:PORT")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = authority
        .rsplit_once(':')
        .context("REDIS_URL must name a port")?;
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        bail!("{host} is not loopback: bench_watch only runs against a local scratch Redis");
    }
    if port == "6379" {
        bail!("port 6379 is the shared Redis: start a scratch one (redis-server --port 0 …)");
    }
    Ok(())
}

// ------------------------------------------------------------------ measuring

/// This process's CPU seconds (user + system).
fn self_cpu() -> f64 {
    // SAFETY: getrusage fills a local struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn cmd(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

/// What the mechanism under test has received (messages) or done (passes).
#[derive(Default)]
struct Stats {
    received: AtomicU64,
    discarded: AtomicU64,
    lagged: AtomicU64,
    by_event: Mutex<HashMap<String, u64>>,
    passes: Mutex<Vec<f64>>,
}

#[derive(Clone)]
struct Snap {
    at: Instant,
    redis_cpu: f64,
    commands: u64,
    self_cpu: f64,
    received: u64,
    discarded: u64,
}

async fn snap(admin: &Client, stats: &Stats) -> anyhow::Result<Snap> {
    let info: String = admin.custom(cmd("INFO"), vec!["cpu", "stats"]).await?;
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok(Snap {
        at: Instant::now(),
        redis_cpu: field("used_cpu_sys") + field("used_cpu_user"),
        commands: field("total_commands_processed") as u64,
        self_cpu: self_cpu(),
        received: stats.received.load(Ordering::Relaxed),
        discarded: stats.discarded.load(Ordering::Relaxed),
    })
}

/// A window's rates.
#[derive(Clone, Copy, Default)]
struct Window {
    secs: f64,
    redis_cmds: f64,
    redis_cores: f64,
    client_cores: f64,
    received: f64,
    discarded: f64,
}

fn window(a: &Snap, b: &Snap) -> Window {
    let secs = (b.at - a.at).as_secs_f64();
    Window {
        secs,
        // Less the INFO that ended the window.
        redis_cmds: (b.commands.saturating_sub(a.commands + 1)) as f64 / secs,
        redis_cores: (b.redis_cpu - a.redis_cpu) / secs,
        client_cores: (b.self_cpu - a.self_cpu) / secs,
        received: (b.received - a.received) as f64 / secs,
        discarded: (b.discarded - a.discarded) as f64 / secs,
    }
}

// ------------------------------------------------------------------ the watched sessions

/// The watched sessions (one connection each) and what became of them.
struct Board {
    hashes: Vec<SessionHash>,
    index: HashMap<String, usize>,
    live: Vec<AtomicBool>,
    revoked_at: Mutex<HashMap<usize, Instant>>,
    latencies_ms: Mutex<Vec<f64>>,
    /// Ended without being revoked: must stay 0.
    wrongly_closed: AtomicU64,
}

impl Board {
    /// Session `i` seen ended.
    fn ended(&self, i: usize) {
        if !self.live[i].swap(false, Ordering::AcqRel) {
            return;
        }
        let at = self.revoked_at.lock().unwrap().get(&i).copied();
        match at {
            Some(t) => self
                .latencies_ms
                .lock()
                .unwrap()
                .push(t.elapsed().as_secs_f64() * 1e3),
            None => {
                self.wrongly_closed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn by_key(&self, key: &str) -> Option<usize> {
        let hash = key.strip_prefix("v1:s:{")?.strip_suffix('}')?;
        self.index.get(hash).copied()
    }
}

/// A session entry as the origin writes it (~300 bytes of JSON).
fn entry(i: usize) -> anyhow::Result<SessionEntry> {
    let now = whole_seconds(SystemClock.now());
    let id = UserId::generate();
    Ok(SessionEntry {
        user_id: id.clone(),
        expires_at: now + Duration::from_secs(7 * 86_400),
        created_at: now,
        user: User {
            id,
            email: Email::parse(&format!("bench-watch-{i}@example.com"))
                .map_err(|e| anyhow!("{e:?}"))?,
            name: Some(format!("Bench Watcher {i}")),
            role: Role::User,
            created_at: now,
            updated_at: now,
        },
    })
}

/// N fresh sessions, their entries written through the origin's `SessionCache`.
async fn board(
    sessions: &Arc<SessionCache>,
    admin: &Client,
    n: usize,
) -> anyhow::Result<Arc<Board>> {
    let hashes: Vec<SessionHash> = (0..n)
        .map(|_| SessionHash::of(&SessionId::generate()))
        .collect();
    let entries = (0..n).map(entry).collect::<anyhow::Result<Vec<_>>>()?;
    let work = Arc::new((hashes.clone(), entries));
    let mut writers = JoinSet::new();
    for first in 0..64 {
        let (work, sessions) = (work.clone(), sessions.clone());
        writers.spawn(async move {
            for i in (first..work.0.len()).step_by(64) {
                let now = whole_seconds(SystemClock.now());
                sessions
                    .put(&work.0[i], &work.1[i], now, Write::Replace, Instant::now())
                    .await;
            }
        });
    }
    while writers.join_next().await.is_some() {}
    let mut written = 0;
    for chunk in hashes.chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(entry_key).collect();
        written += admin.exists::<usize, _>(keys).await?;
    }
    if written != n {
        bail!("{written} of {n} session entries written");
    }
    Ok(Arc::new(Board {
        index: hashes
            .iter()
            .enumerate()
            .map(|(i, h)| (h.as_str().to_owned(), i))
            .collect(),
        live: (0..n).map(|_| AtomicBool::new(true)).collect(),
        hashes,
        revoked_at: Mutex::default(),
        latencies_ms: Mutex::default(),
        wrongly_closed: AtomicU64::new(0),
    }))
}

fn entry_key(hash: &SessionHash) -> String {
    origin_api::cache::keys::session(hash.as_str())
}

/// Deletes a board's entries and tombstones.
async fn clear(admin: &Client, board: &Board) -> anyhow::Result<()> {
    for chunk in board.hashes.chunks(500) {
        let keys: Vec<String> = chunk
            .iter()
            .flat_map(|h| [entry_key(h), origin_api::cache::keys::revoked(h.as_str())])
            .collect();
        admin.del::<(), _>(keys).await?;
    }
    Ok(())
}

// ------------------------------------------------------------------ the mechanisms

#[derive(Clone, Copy, PartialEq)]
enum Mechanism {
    /// watch.rs's re-check with this many `GET`s in flight (1: what watch.rs does).
    Recheck(usize),
    PubSub,
    Keyspace,
}

impl Mechanism {
    fn label(self) -> String {
        match self {
            Mechanism::Recheck(1) => "re-check every 2 s, one GET at a time".into(),
            Mechanism::Recheck(k) => {
                format!(
                    "re-check every 2 s, {k} GETs in flight (pipelined; watch.rs since 4c85117)"
                )
            }
            Mechanism::PubSub => "Redis pub/sub of revocations".into(),
            Mechanism::Keyspace => format!("keyspace notifications ({KEYSPACE_CLASSES})"),
        }
    }

    fn key(self) -> String {
        match self {
            Mechanism::Recheck(1) => "recheck_sequential".into(),
            Mechanism::Recheck(_) => "recheck_pipelined".into(),
            Mechanism::PubSub => "pubsub".into(),
            Mechanism::Keyspace => "keyspace".into(),
        }
    }
}

/// What the re-check does for one session: `sessions::still_live`'s cache path.
async fn check(sessions: &SessionCache, board: &Board, i: usize) {
    let now = whole_seconds(SystemClock.now());
    match sessions.get(&board.hashes[i]).await {
        Lookup::Hit(e) if e.expires_at > now => {}
        // A miss goes to the database in the origin; the revoke ended the row there too.
        Lookup::Hit(_) | Lookup::Miss => board.ended(i),
        Lookup::Unavailable(_) | Lookup::Disabled => {}
    }
}

/// One pass over `indices`, `in_flight` at a time.
async fn pass(
    sessions: &Arc<SessionCache>,
    board: &Arc<Board>,
    indices: Vec<usize>,
    in_flight: usize,
) {
    if in_flight <= 1 {
        for i in indices {
            check(sessions, board, i).await;
        }
        return;
    }
    let indices = Arc::new(indices);
    let mut workers = JoinSet::new();
    for first in 0..in_flight {
        let (sessions, board, indices) = (sessions.clone(), board.clone(), indices.clone());
        workers.spawn(async move {
            for j in (first..indices.len()).step_by(in_flight) {
                check(&sessions, &board, indices[j]).await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

fn start_recheck(
    sessions: Arc<SessionCache>,
    board: Arc<Board>,
    stats: Arc<Stats>,
    in_flight: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(RECHECK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let started = Instant::now();
            let live: Vec<usize> = (0..board.hashes.len())
                .filter(|&i| board.live[i].load(Ordering::Acquire))
                .collect();
            pass(&sessions, &board, live, in_flight).await;
            stats
                .passes
                .lock()
                .unwrap()
                .push(started.elapsed().as_secs_f64() * 1e3);
        }
    })
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    let client = Builder::from_config(Config::from_url(url)?)
        .with_performance_config(|c| {
            // Bursts of keyspace events must not overflow fred's broadcast channel.
            c.broadcast_channel_capacity = 1 << 16;
        })
        .build()?;
    client.init().await?;
    Ok(client)
}

/// Subscribes `sub` for the mechanism and spawns the task that handles what arrives.
async fn start_subscriber(
    sub: &Client,
    mechanism: Mechanism,
    board: Arc<Board>,
    stats: Arc<Stats>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let task = if mechanism == Mechanism::PubSub {
        let rx = sub.message_rx();
        tokio::spawn(async move {
            drain(rx, &stats, |message| {
                let hash: Option<String> = message.value.as_string();
                match hash.and_then(|h| board.index.get(&h).copied()) {
                    Some(i) => board.ended(i),
                    None => {
                        stats.discarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .await
        })
    } else {
        let rx = sub.keyspace_event_rx();
        tokio::spawn(async move {
            drain(rx, &stats, |event| {
                *stats
                    .by_event
                    .lock()
                    .unwrap()
                    .entry(event.operation.clone())
                    .or_default() += 1;
                let watched = event.key.as_str().and_then(|k| board.by_key(k));
                match (watched, event.operation.as_str()) {
                    (Some(i), "del" | "expired") => board.ended(i),
                    _ => {
                        stats.discarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .await
        })
    };
    if mechanism == Mechanism::PubSub {
        sub.subscribe(CHANNEL).await?;
    } else {
        sub.psubscribe(PATTERN).await?;
    }
    Ok(task)
}

/// Hands every message of `rx` to `handle`, counting received and lagged ones, until the
/// channel closes.
async fn drain<T: Clone>(
    mut rx: tokio::sync::broadcast::Receiver<T>,
    stats: &Stats,
    mut handle: impl FnMut(T),
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match rx.recv().await {
            Ok(message) => {
                stats.received.fetch_add(1, Ordering::Relaxed);
                handle(message);
            }
            Err(RecvError::Lagged(n)) => {
                stats.lagged.fetch_add(n, Ordering::Relaxed);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// xorshift64*: enough to spread revokes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// R revokes at random moments over `span`, each of a different session; then waits until
/// each is seen or 10 s have passed since the last.
async fn revokes(
    sessions: &SessionCache,
    admin: &Client,
    board: &Board,
    count: usize,
    span: Duration,
    publish: bool,
    rng: &mut Rng,
) -> anyhow::Result<()> {
    let n = board.hashes.len();
    let stride = n / count;
    let mut moments: Vec<Duration> = (0..count).map(|_| span.mul_f64(rng.unit())).collect();
    moments.sort();
    let started = tokio::time::Instant::now();
    for (r, moment) in moments.into_iter().enumerate() {
        tokio::time::sleep_until(started + moment).await;
        let i = r * stride + (rng.next() as usize) % stride;
        let hash = board.hashes[i].clone();
        board.revoked_at.lock().unwrap().insert(i, Instant::now());
        sessions.revoke(vec![hash.clone()]).await;
        if publish {
            admin
                .publish::<i64, _, _>(CHANNEL, hash.as_str().to_owned())
                .await?;
        }
    }
    let last = Instant::now();
    while board.latencies_ms.lock().unwrap().len() < count
        && last.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// One full sweep of every session: what a subscriber must do after a reconnect.
#[derive(Clone, Copy, Default)]
struct Sweep {
    in_flight: usize,
    ms: f64,
    commands: u64,
    client_cpu_ms: f64,
    redis_cpu_ms: f64,
}

async fn sweep(
    sessions: &Arc<SessionCache>,
    admin: &Client,
    board: &Arc<Board>,
    in_flight: usize,
) -> anyhow::Result<Sweep> {
    let stats = Stats::default();
    let a = snap(admin, &stats).await?;
    pass(
        sessions,
        board,
        (0..board.hashes.len()).collect(),
        in_flight,
    )
    .await;
    let b = snap(admin, &stats).await?;
    Ok(Sweep {
        in_flight,
        ms: (b.at - a.at).as_secs_f64() * 1e3,
        commands: b.commands.saturating_sub(a.commands + 1),
        client_cpu_ms: (b.self_cpu - a.self_cpu) * 1e3,
        redis_cpu_ms: (b.redis_cpu - a.redis_cpu) * 1e3,
    })
}

// ------------------------------------------------------------------ the churn child

/// `churn URL RATE TTL_MS SECS VALUE`: RATE `SET key VALUE PX TTL_MS` per second for SECS
/// seconds over a pool of RATE × 2 keys (so each key has expired before it is written
/// again); prints `{"sent":…,"done":…,"secs":…}`.
async fn churn(argv: &[String]) -> anyhow::Result<()> {
    let [url, rate, ttl_ms, secs, value] = argv else {
        bail!("usage: bench_watch churn URL RATE TTL_MS SECS VALUE");
    };
    check_scratch(url)?;
    let rate: u64 = rate.parse()?;
    let ttl_ms: i64 = ttl_ms.parse()?;
    let secs: f64 = secs.parse()?;
    let client = connect(url).await?;
    let keys: Arc<Vec<String>> = Arc::new(
        (0..(rate * 2).max(1))
            .map(|_| format!("v1:s:{{{}}}", SessionId::generate().storage_hash()))
            .collect(),
    );
    let value: Arc<str> = value.as_str().into();
    let done = Arc::new(AtomicU64::new(0));
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        ticker.tick().await;
        let due = (rate as f64 * started.elapsed().as_secs_f64()) as u64;
        while sent < due {
            let key = keys[(sent % keys.len() as u64) as usize].clone();
            let (client, value, done) = (client.clone(), value.clone(), done.clone());
            tokio::spawn(async move {
                let set = client
                    .set::<(), _, _>(key, &*value, Some(Expiration::PX(ttl_ms)), None, false)
                    .await;
                if set.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
            sent += 1;
        }
    }
    let sending = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!(
        "{{\"sent\":{sent},\"done\":{},\"secs\":{sending:.3}}}",
        done.load(Ordering::Relaxed),
    );
    let _ = client.quit().await;
    Ok(())
}

fn spawn_churn(args: &Args, secs: f64, value: &str) -> anyhow::Result<std::process::Child> {
    Ok(std::process::Command::new(std::env::current_exe()?)
        .args([
            "churn",
            &args.url,
            &args.churn.to_string(),
            &args.churn_ttl_ms.to_string(),
            &format!("{secs:.3}"),
            value,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()?)
}

/// The churn child's achieved writes per second.
async fn churn_rate(child: std::process::Child) -> anyhow::Result<f64> {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    let text = String::from_utf8_lossy(&out.stdout);
    let num = |name: &str| -> f64 {
        text.split(&format!("\"{name}\":"))
            .nth(1)
            .and_then(|r| r.split([',', '}']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    if !out.status.success() {
        bail!("the churn child failed: {text}");
    }
    Ok(num("done") / num("secs").max(1e-9))
}

// ------------------------------------------------------------------ one mechanism

#[derive(Default)]
struct Outcome {
    label: String,
    key: String,
    idle: Window,
    revoking: Window,
    churn: Window,
    churn_writes: f64,
    churn_events: Vec<(String, f64)>,
    latencies_ms: Vec<f64>,
    not_seen: usize,
    wrongly_closed: u64,
    lagged: u64,
    passes_ms: Vec<f64>,
    sweeps: Vec<Sweep>,
}

async fn run(
    mechanism: Mechanism,
    args: &Args,
    sessions: &Arc<SessionCache>,
    admin: &Client,
    entry_json: &str,
    rng: &mut Rng,
) -> anyhow::Result<Outcome> {
    eprintln!("bench_watch: {} …", mechanism.label());
    let board = board(sessions, admin, args.sessions).await?;
    let stats = Arc::new(Stats::default());
    let events = if mechanism == Mechanism::Keyspace {
        KEYSPACE_CLASSES
    } else {
        ""
    };
    admin
        .custom::<(), _>(cmd("CONFIG"), vec!["SET", "notify-keyspace-events", events])
        .await?;
    let mut sub = None;
    let task = match mechanism {
        Mechanism::Recheck(k) => start_recheck(sessions.clone(), board.clone(), stats.clone(), k),
        Mechanism::PubSub | Mechanism::Keyspace => {
            let client = connect(&args.url).await?;
            let task = start_subscriber(&client, mechanism, board.clone(), stats.clone()).await?;
            sub = Some(client);
            task
        }
    };
    // A re-check pass or two first: the steady state.
    tokio::time::sleep(RECHECK + Duration::from_millis(500)).await;
    let span = Duration::from_secs(args.secs);

    let a = snap(admin, &stats).await?;
    tokio::time::sleep(span).await;
    let b = snap(admin, &stats).await?;
    let idle = window(&a, &b);

    let a = snap(admin, &stats).await?;
    revokes(
        sessions,
        admin,
        &board,
        args.revokes,
        span,
        mechanism == Mechanism::PubSub,
        rng,
    )
    .await?;
    let b = snap(admin, &stats).await?;
    let revoking = window(&a, &b);

    let child = spawn_churn(args, args.secs as f64 + 2.0, entry_json)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stats.by_event.lock().unwrap().clear();
    let a = snap(admin, &stats).await?;
    tokio::time::sleep(span).await;
    let b = snap(admin, &stats).await?;
    let churn = window(&a, &b);
    let churn_events = {
        let mut v: Vec<(String, f64)> = stats
            .by_event
            .lock()
            .unwrap()
            .iter()
            .map(|(k, &n)| (k.clone(), n as f64 / churn.secs))
            .collect();
        v.sort_by(|x, y| y.1.total_cmp(&x.1));
        v
    };
    let churn_writes = churn_rate(child).await?;

    task.abort();
    if let Some(client) = sub {
        let _ = client.quit().await;
    }
    admin
        .custom::<(), _>(cmd("CONFIG"), vec!["SET", "notify-keyspace-events", ""])
        .await?;
    let mut sweeps = Vec::new();
    if mechanism == Mechanism::PubSub {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sweeps.push(sweep(sessions, admin, &board, 1).await?);
        sweeps.push(sweep(sessions, admin, &board, args.in_flight).await?);
    }
    let mut latencies_ms = board.latencies_ms.lock().unwrap().clone();
    latencies_ms.sort_by(f64::total_cmp);
    let passes_ms = stats.passes.lock().unwrap().clone();
    clear(admin, &board).await?;
    Ok(Outcome {
        label: mechanism.label(),
        key: mechanism.key(),
        idle,
        revoking,
        churn,
        churn_writes,
        churn_events,
        not_seen: args.revokes - latencies_ms.len(),
        latencies_ms,
        wrongly_closed: board.wrongly_closed.load(Ordering::Relaxed),
        lagged: stats.lagged.load(Ordering::Relaxed),
        passes_ms,
        sweeps,
    })
}

// ------------------------------------------------------------------ the report

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Milliseconds: whole ones, tenths below 10.
fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

fn table(args: &Args, outcomes: &[Outcome], load: (&str, &str), value_bytes: usize) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} watched sessions (one connection each; entries {value_bytes} bytes of JSON), {} revokes at \
         random moments over {} s, windows of {} s; churn: {} SET PX/s of other sessions' entries \
         (TTL {} ms) from a second process",
        args.sessions, args.revokes, args.secs, args.secs, args.churn, args.churn_ttl_ms
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| mechanism | idle Redis cmds/s | idle Redis CPU (cores) | idle client CPU (cores) | \
         revoke → seen, median / max (ms) | messages/s under churn (received / discarded) | \
         client CPU under churn (cores) | Redis CPU under churn (cores) |"
    );
    let _ = writeln!(
        t,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for o in outcomes {
        let lat = &o.latencies_ms;
        let _ = writeln!(
            t,
            "| {} | {:.0} | {:.3} | {:.3} | {} / {}{} | {:.0} / {:.0} | {:.3} | {:.3} |",
            o.label,
            o.idle.redis_cmds,
            o.idle.redis_cores,
            o.idle.client_cores,
            ms(median(lat)),
            ms(lat.last().copied().unwrap_or(f64::NAN)),
            if o.not_seen > 0 {
                format!(" ({} not seen)", o.not_seen)
            } else {
                String::new()
            },
            o.churn.received,
            o.churn.discarded,
            o.churn.client_cores,
            o.churn.redis_cores,
        );
    }
    let _ = writeln!(t);
    for o in outcomes {
        if !o.passes_ms.is_empty() {
            let p = sorted(&o.passes_ms);
            let _ = writeln!(
                t,
                "- {}: a pass over {} sessions takes {:.0} ms median, {:.0} ms max ({} passes)",
                o.label,
                args.sessions,
                median(&p),
                p.last().copied().unwrap_or(f64::NAN),
                p.len()
            );
        }
        for s in &o.sweeps {
            let _ = writeln!(
                t,
                "- after a pub/sub reconnect, one full sweep of {} sessions ({} GET{} in flight): {:.0} ms, \
                 {} Redis commands, client CPU {:.0} ms, Redis CPU {:.0} ms",
                args.sessions,
                s.in_flight,
                if s.in_flight == 1 { "" } else { "s" },
                s.ms,
                s.commands,
                s.client_cpu_ms,
                s.redis_cpu_ms
            );
        }
        if !o.churn_events.is_empty() {
            let events: Vec<String> = o
                .churn_events
                .iter()
                .map(|(k, v)| format!("{k} {v:.0}/s"))
                .collect();
            let _ = writeln!(
                t,
                "- {}: events under churn: {}",
                o.label,
                events.join(", ")
            );
        }
        if o.lagged > 0 || o.wrongly_closed > 0 {
            let _ = writeln!(
                t,
                "- {}: {} messages lost to a full channel, {} sessions seen ended that were not revoked",
                o.label, o.lagged, o.wrongly_closed
            );
        }
    }
    let writes: Vec<String> = outcomes
        .iter()
        .map(|o| format!("{:.0}", o.churn_writes))
        .collect();
    let _ = writeln!(
        t,
        "- churn achieved: {} SET/s in the four runs",
        writes.join(", ")
    );
    let _ = writeln!(
        t,
        "- Redis commands/s during the revoke windows: {}",
        outcomes
            .iter()
            .map(|o| format!("{:.0}", o.revoking.redis_cmds))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        t,
        "- not covered without more machinery: pub/sub sees only what is published (expiry needs \
         local timers; role changes and user deletes need a publish on every write path; messages \
         published while the subscriber is reconnecting are lost: a full sweep after each \
         reconnect); keyspace notifications see entry deletions and entry expiry, which are not \
         the session's end (an entry expires after SESSION_CACHE_TTL while its session lives; \
         user writes delete entries: each event needs a re-check), nothing on Postgres-only \
         deployments, and in Redis Cluster they are node-local: a subscriber on every master"
    );
    let _ = writeln!(
        t,
        "- load (/proc/loadavg) before: {}; after: {}",
        load.0, load.1
    );
    t
}

fn json(args: &Args, outcomes: &[Outcome], load: (&str, &str)) -> String {
    let w = |w: &Window| {
        format!(
            "{{\"secs\":{:.3},\"redis_cmds_per_s\":{:.1},\"redis_cores\":{:.4},\"client_cores\":{:.4},\
             \"received_per_s\":{:.1},\"discarded_per_s\":{:.1}}}",
            w.secs, w.redis_cmds, w.redis_cores, w.client_cores, w.received, w.discarded
        )
    };
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut parts = Vec::new();
    for o in outcomes {
        let sweeps: Vec<String> = o
            .sweeps
            .iter()
            .map(|s| {
                format!(
                    "{{\"in_flight\":{},\"ms\":{:.1},\"commands\":{},\"client_cpu_ms\":{:.1},\"redis_cpu_ms\":{:.1}}}",
                    s.in_flight, s.ms, s.commands, s.client_cpu_ms, s.redis_cpu_ms
                )
            })
            .collect();
        let events: Vec<String> = o
            .churn_events
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v:.1}"))
            .collect();
        parts.push(format!(
            "\"{}\":{{\"label\":\"{}\",\"idle\":{},\"revoking\":{},\"churn\":{},\"churn_writes_per_s\":{:.1},\
             \"churn_events_per_s\":{{{}}},\"latency_ms\":[{}],\"not_seen\":{},\"wrongly_closed\":{},\
             \"lagged\":{},\"passes_ms\":[{}],\"sweeps\":[{}]}}",
            o.key,
            o.label,
            w(&o.idle),
            w(&o.revoking),
            w(&o.churn),
            o.churn_writes,
            events.join(","),
            list(&o.latencies_ms),
            o.not_seen,
            o.wrongly_closed,
            o.lagged,
            list(&o.passes_ms),
            sweeps.join(",")
        ));
    }
    format!(
        "{{\"sessions\":{},\"revokes\":{},\"secs\":{},\"churn\":{},\"churn_ttl_ms\":{},\"in_flight\":{},\
         \"loadavg_before\":\"{}\",\"loadavg_after\":\"{}\",\"mechanisms\":{{{}}}}}",
        args.sessions,
        args.revokes,
        args.secs,
        args.churn,
        args.churn_ttl_ms,
        args.in_flight,
        load.0,
        load.1,
        parts.join(",")
    )
}

// ------------------------------------------------------------------ main

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("churn") {
        return churn(&argv[1..]).await;
    }
    let args = parse_args(&argv)?;
    let load_before = loadavg();
    let admin = connect(&args.url).await?;
    let cache: Arc<dyn Cache> =
        Arc::new(RedisCache::connect(&args.url, metrics::Counter::noop()).await?);
    let sessions = Arc::new(SessionCache::new(
        Some(cache),
        origin_api::background::Background::new(),
        metrics::Counter::noop(),
        // Entries outlive the run (SESSION_CACHE_TTL is 5 min by default).
        Duration::from_secs(3600),
    ));
    let original: Vec<String> = admin
        .custom(cmd("CONFIG"), vec!["GET", "notify-keyspace-events"])
        .await?;
    let original = original.get(1).cloned().unwrap_or_default();

    // The churn's value: an entry as the origin writes it.
    let sample = board(&sessions, &admin, 1).await?;
    let entry_json: String = admin
        .get::<Option<String>, _>(entry_key(&sample.hashes[0]))
        .await?
        .context("the sample entry")?;
    clear(&admin, &sample).await?;

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()));
    let mut outcomes = Vec::new();
    let mut failure = None;
    for mechanism in [
        Mechanism::Recheck(1),
        Mechanism::Recheck(args.in_flight),
        Mechanism::PubSub,
        Mechanism::Keyspace,
    ] {
        match run(mechanism, &args, &sessions, &admin, &entry_json, &mut rng).await {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let restored = admin
        .custom::<(), _>(
            cmd("CONFIG"),
            vec!["SET", "notify-keyspace-events", &original],
        )
        .await;
    if let Some(e) = failure {
        return Err(e);
    }
    restored?;
    let load_after = loadavg();
    let load = (load_before.as_str(), load_after.as_str());
    let text = table(&args, &outcomes, load, entry_json.len());
    if args.json {
        eprintln!("{text}");
        println!("{}", json(&args, &outcomes, load));
    } else {
        println!("{text}");
    }
    let _ = admin.quit().await;
    Ok(())
}
