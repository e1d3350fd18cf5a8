//! Scale-out on the real engines: the origin on a 3-master Redis Cluster
//! (`redis-cluster://`) and behind Redis Sentinel (`redis-sentinel://`), each started on
//! free loopback ports by [`crate::redis_servers`]. The contract's session checks run
//! against the cluster; then, under traffic, a cluster master hangs (SIGSTOP), dies and
//! comes back, and a sentinel fails its master over. Under both faults no request may
//! fail (verification falls back to the database) and revocations hold on the very next
//! request; afterwards the database holds every acknowledged login and none of the
//! acknowledged revokes, and the cache serves hits again. Skipped (with a line saying
//! why) without `redis-server`. The last test is the outage's regression in miniature on
//! whatever cache the environment gives, so it runs everywhere.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::redis_servers::{Cluster, Sentinel, cli, require_redis_tools, wait_for};
use crate::support::*;

const HITS: &str = "sessiongate_session_cache_hits_total";
const FALLBACKS: &str = "sessiongate_session_db_fallbacks_total";

fn entry_key(hash: &str) -> String {
    format!("v1:s:{{{hash}}}")
}

/// Every session id (storage hash) in the server's database.
async fn stored_sessions(s: &TestApp) -> HashSet<String> {
    let db = sea_orm::Database::connect(s.config.database_url.as_str())
        .await
        .expect("db");
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(backend, "SELECT id FROM sessions"))
        .await
        .expect("sessions");
    let _ = db.close().await;
    rows.iter()
        .map(|r| r.try_get::<String>("", "id").expect("id"))
        .collect()
}

/// Polls the metric (bounded) until it exceeds `above`.
async fn metric_above(s: &TestApp, name: &str, above: f64, limit: Duration) -> f64 {
    wait_for(&format!("{name} > {above}"), limit, || async move {
        let v = s.metric(name).await;
        (v > above).then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_serves_the_session_contract() {
    require_redis_tools!();
    let cluster = Cluster::start().await;
    let url = cluster.url();
    let s = TestApp::start_with(&[
        ("REDIS_URL", url.as_str()),
        ("RATE_LIMIT_LOGIN_ACCOUNT", "3/60s"),
        ("CLEANUP_INTERVAL", "1s"),
    ])
    .await;
    assert_eq!(s.anon().get("/readyz").await.body["cache"], "ok");

    // Logins write their entries across the cluster: sessions until every master holds
    // one, each verified from the cache on the master of its slot.
    let admin = s.admin("root@example.com").await;
    let mut masters = HashMap::new();
    for i in 0..60 {
        if masters.len() == 3 {
            break;
        }
        let user = s.user(&format!("u{i}@example.com")).await;
        let key = entry_key(&user.session_id());
        let node = cluster.master_of(&key).await;
        assert_eq!(cli(node, &["EXISTS", &key]).await, "1", "{key} on {node}");
        masters.entry(node).or_insert(user);
    }
    assert_eq!(masters.len(), 3, "sessions on every master");
    let hits = s.metric(HITS).await;
    for user in masters.values() {
        let r = user.me().await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert_eq!(s.metric(HITS).await, hits + 3.0, "every verify a cache hit");

    // Role change: seen on the next request; the marker is in the user's slot.
    let user = masters.values().next().expect("user").clone();
    let uid = user.id().await;
    assert_eq!(
        admin.get("/api/v1/users?pageSize=100").await.status,
        200,
        "a users page cached"
    );
    let r = admin
        .patch(&format!("/api/v1/users/{uid}"), json!({"role": "ADMIN"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(user.me().await.body["user"]["role"], "ADMIN");
    let marker = format!("v1:user-changed:{{{uid}}}");
    assert_eq!(cluster.cli(&["EXISTS", &marker]).await, "1");
    assert_ne!(cluster.cli(&["GET", "v1:users:_ver"]).await, "");

    // Refresh past half-life: a new cookie, and the entry rewritten with the new expiry
    // (another user: the role change keeps this one's entries out for 30 s).
    let user = masters.values().nth(1).expect("user").clone();
    s.clock.advance(hours(85));
    let r = user.me().await;
    assert_eq!(r.status, 200);
    let fresh = user.with(r.cookie().expect("refreshed cookie"));
    let exp = segment(&fresh, 1)["exp"].as_i64().expect("exp");
    s.wait_metric("sessiongate_session_refreshes_total", 1.0)
        .await;
    let key = entry_key(&user.session_id());
    wait_for("the refreshed entry", Duration::from_secs(10), || {
        let cache = s.core().cache.clone();
        let key = key.clone();
        async move {
            let text = cache.get(&key).await.ok()??;
            let entry: serde_json::Value = serde_json::from_str(&text).ok()?;
            let at = chrono::DateTime::parse_from_rfc3339(entry["expiresAt"].as_str()?).ok()?;
            (at.timestamp() == exp).then_some(())
        }
    })
    .await;

    // Revoke: tombstone and entry in one slot; refused on the very next request.
    let other = s.login(&user.email).await;
    let victim = other.session_id();
    let r = fresh
        .delete(&format!("/api/v1/account/sessions/{victim}"))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(other.me().await.status, 401);
    assert_eq!(
        cluster
            .cli(&["EXISTS", &format!("v1:revoked:{{{victim}}}")])
            .await,
        "1"
    );
    assert_eq!(cluster.cli(&["EXISTS", &entry_key(&victim)]).await, "0");

    // Rate limits: the window scripts count and read in the cluster; after three wrong
    // passwords the account refuses a stranger, even with the right one.
    s.register("limited@example.com").await;
    for _ in 0..3 {
        assert_eq!(
            s.login_as("limited@example.com", "wrong password")
                .await
                .status,
            401
        );
    }
    let r = s.login_as("limited@example.com", PASSWORD).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert!(r.header("retry-after").is_some());
    let window = "v1:rl:login-account:{limited@example.com}";
    assert_eq!(cluster.cli(&["GET", window]).await, "3");
    let ttl: i64 = cluster.cli(&["PTTL", window]).await.parse().expect("ttl");
    assert!((1..=60_000).contains(&ttl), "{ttl}");

    // The cleanup job's window (one instance per interval) lives in the cluster, and the job
    // runs: a week later every session has expired and is deleted.
    wait_for("the cleanup window", Duration::from_secs(10), || async {
        (cluster.cli(&["EXISTS", "v1:rl:cleanup:{periodic}"]).await == "1").then_some(())
    })
    .await;
    let sessions = stored_sessions(&s).await.len() as f64;
    s.clock.advance(days(8));
    metric_above(
        &s,
        "sessiongate_cleanup_deleted_total",
        sessions - 1.0,
        Duration::from_secs(15),
    )
    .await;
    assert!(stored_sessions(&s).await.is_empty());

    // Not one cache operation failed or fell back along the way.
    for name in [
        FALLBACKS,
        "sessiongate_rate_limit_fallbacks_total",
        "sessiongate_cache_evict_failures_total",
    ] {
        assert_eq!(s.metric(name).await, 0.0, "{name}");
    }
    s.stop().await;
}

/// What the traffic saw: acknowledged logins and revokes, and every answer that broke
/// the contract.
#[derive(Default)]
struct Ledger {
    logins: HashSet<String>,
    revoked: HashSet<String>,
    /// Session id → token.
    tokens: HashMap<String, String>,
    wrong: Vec<String>,
    /// The slowest request (printed: tests assert no timings).
    slowest: Duration,
}

/// Clients logging in, verifying, and revoking one of their two new sessions, until
/// stopped. Every answer is checked: a live session is 200, a revoked one 401, and
/// nothing is ever 5xx.
struct Traffic {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    ledger: Arc<Mutex<Ledger>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    async fn start(s: &TestApp, clients: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let mut tasks = Vec::new();
        for i in 0..clients {
            let email = format!("load{i}@example.com");
            s.register(&email).await;
            let app = s.anon();
            let (stop, rounds, ledger) = (stop.clone(), rounds.clone(), ledger.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    round(&app, &email, &ledger).await;
                    rounds.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        Traffic {
            stop,
            rounds,
            ledger,
            tasks,
        }
    }

    fn rounds(&self) -> usize {
        self.rounds.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `more` rounds have completed from now.
    async fn run_rounds(&self, more: usize) {
        let target = self.rounds() + more;
        wait_for(
            &format!("traffic round {target}"),
            Duration::from_secs(30),
            || async move { (self.rounds() >= target).then_some(()) },
        )
        .await;
    }

    async fn stop(self) -> Ledger {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("traffic task");
        }
        Arc::try_unwrap(self.ledger)
            .ok()
            .expect("ledger")
            .into_inner()
            .expect("ledger")
    }
}

/// Sends a request, noting how long it took.
async fn timed(ledger: &Mutex<Ledger>, request: impl std::future::Future<Output = Resp>) -> Resp {
    let started = std::time::Instant::now();
    let r = request.await;
    let took = started.elapsed();
    let mut l = ledger.lock().expect("ledger");
    l.slowest = l.slowest.max(took);
    r
}

async fn round(app: &Client, email: &str, ledger: &Mutex<Ledger>) {
    let wrong = |what: String| ledger.lock().expect("ledger").wrong.push(what);
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let login = app.post(
            "/api/v1/auth/login",
            json!({"email": email, "password": PASSWORD}),
        );
        let r = timed(ledger, login).await;
        match r.cookie() {
            Some(token) if r.status == 200 => {
                let client = app.with(token.clone());
                let mut l = ledger.lock().expect("ledger");
                l.logins.insert(client.session_id());
                l.tokens.insert(client.session_id(), token);
                sessions.push(client);
            }
            _ => return wrong(format!("login: {} {:?}", r.status, r.body)),
        }
    }
    let (keep, drop) = (&sessions[0], &sessions[1]);
    for client in [keep, drop] {
        let r = timed(ledger, client.me()).await;
        if r.status != 200 {
            wrong(format!(
                "verify of a live session: {} {:?}",
                r.status, r.body
            ));
        }
    }
    let id = drop.session_id();
    let path = format!("/api/v1/account/sessions/{id}");
    let r = timed(ledger, keep.delete(&path)).await;
    if r.status != 200 {
        return wrong(format!("revoke: {} {:?}", r.status, r.body));
    }
    ledger.lock().expect("ledger").revoked.insert(id);
    let r = timed(ledger, drop.me()).await;
    if r.status != 401 {
        wrong(format!("verify of a revoked session: {}", r.status));
    }
    let r = timed(ledger, keep.me()).await;
    if r.status != 200 {
        wrong(format!("verify after a revoke: {} {:?}", r.status, r.body));
    }
}

/// After the traffic: the database holds every acknowledged login that was not revoked
/// and no acknowledged revoke; the server accepts exactly those sessions; and every
/// revoked session's entry leaves the cache (failed evictions land once it answers).
async fn check_nothing_lost(s: &TestApp, ledger: &Ledger) {
    eprintln!(
        "{} logins, {} revokes, slowest request {:?}, {} cache hits, {} database fallbacks, \
         {} failed evictions",
        ledger.logins.len(),
        ledger.revoked.len(),
        ledger.slowest,
        s.metric(HITS).await,
        s.metric(FALLBACKS).await,
        s.metric("sessiongate_cache_evict_failures_total").await,
    );
    assert!(
        ledger.wrong.is_empty(),
        "contract broken: {:#?}",
        ledger.wrong
    );
    assert!(!ledger.revoked.is_empty());
    let stored = stored_sessions(s).await;
    for id in &ledger.logins {
        let revoked = ledger.revoked.contains(id);
        assert_eq!(
            stored.contains(id),
            !revoked,
            "session {id} (revoked: {revoked})"
        );
        let r = s.anon().with(ledger.tokens[id].clone()).me().await;
        assert_eq!(
            r.status,
            if revoked { 401 } else { 200 },
            "session {id} (revoked: {revoked})"
        );
    }
    let cache = s.core().cache.clone();
    for id in &ledger.revoked {
        wait_for(
            &format!("the eviction of revoked session {id}"),
            Duration::from_secs(30),
            || {
                let (cache, key) = (cache.clone(), entry_key(id));
                async move { matches!(cache.get(&key).await, Ok(None)).then_some(()) }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_master_hung_then_killed_mid_traffic() {
    require_redis_tools!();
    let mut cluster = Cluster::start().await;
    let url = cluster.url();
    let s = TestApp::start_with(&[
        ("REDIS_URL", url.as_str()),
        ("MAX_SESSIONS_PER_USER", "10000"),
    ])
    .await;
    let traffic = Traffic::start(&s, 3).await;
    traffic.run_rounds(6).await;
    assert!(s.metric(HITS).await > 0.0, "warm traffic hits the cache");
    assert_eq!(s.metric(FALLBACKS).await, 0.0);

    // A master hangs (its connections stay open and go silent): requests must not wait
    // for it. The other masters refuse service once they agree it failed.
    let victim = cluster.ports[1];
    cluster.pause(victim);
    metric_above(&s, FALLBACKS, 0.0, Duration::from_secs(20)).await;
    cluster.wait_failed(cluster.ports[0]).await;
    traffic.run_rounds(6).await;
    // Then dies.
    cluster.kill(victim);
    traffic.run_rounds(6).await;

    // Back (empty: no persistence): the cache serves hits again.
    cluster.restart(victim).await;
    cluster.wait_healthy(&cluster.ports.clone()).await;
    let hits = s.metric(HITS).await;
    traffic.run_rounds(3).await;
    metric_above(&s, HITS, hits, Duration::from_secs(20)).await;
    traffic.run_rounds(3).await;

    let ledger = traffic.stop().await;
    check_nothing_lost(&s, &ledger).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_failover_mid_traffic() {
    require_redis_tools!();
    let set = Sentinel::start().await;
    let url = set.url();
    let s = TestApp::start_with(&[
        ("REDIS_URL", url.as_str()),
        ("MAX_SESSIONS_PER_USER", "10000"),
    ])
    .await;
    let traffic = Traffic::start(&s, 3).await;
    traffic.run_rounds(6).await;
    assert!(s.metric(HITS).await > 0.0, "warm traffic hits the cache");

    // Fail over under traffic: the replica becomes the master.
    set.failover().await;
    wait_for("the failover", Duration::from_secs(20), || async {
        (set.current_master().await == set.replica).then_some(())
    })
    .await;
    traffic.run_rounds(6).await;

    // The cache warms on the new master: a session that logs in after the switch has its
    // entry there (fred moves when the sentinel demotes the old master and closes its
    // connections, seconds later) ...
    let probe = s.user("probe@example.com").await;
    let key = entry_key(&probe.session_id());
    wait_for(
        "an entry on the new master",
        Duration::from_secs(30),
        || {
            let (probe, key) = (probe.clone(), key.clone());
            async move {
                assert_eq!(probe.me().await.status, 200);
                (cli(set.replica, &["EXISTS", &key]).await == "1").then_some(())
            }
        },
    )
    .await;
    traffic.run_rounds(3).await;
    let ledger = traffic.stop().await;
    // ... and is verified from it.
    let hits = s.metric(HITS).await;
    assert_eq!(probe.me().await.status, 200);
    assert_eq!(
        s.metric(HITS).await,
        hits + 1.0,
        "a cache hit on the new master"
    );
    assert_eq!(set.current_master().await, set.replica);

    check_nothing_lost(&s, &ledger).await;
    s.stop().await;
}

/// The outage above in miniature, on whatever cache the environment gives (so it runs
/// everywhere): a revoke while the cache fails cannot evict the entry; when the cache
/// answers again, before the background retry has landed, the stale entry must not be
/// served.
#[tokio::test]
async fn a_revoke_during_a_cache_outage_holds_when_the_cache_returns() {
    let s = TestApp::start().await;
    let keep = s.user("outage@example.com").await;
    let gone = s.login("outage@example.com").await;
    assert_eq!(gone.me().await.status, 200);
    let hits = s.metric(HITS).await;
    assert_eq!(gone.me().await.status, 200);
    assert_eq!(s.metric(HITS).await, hits + 1.0, "the entry is cached");

    s.faults.fail(true);
    let id = gone.session_id();
    let r = keep.delete(&format!("/api/v1/account/sessions/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(gone.me().await.status, 401);
    // Five failed attempts: the retries now wait 1.6 s, time enough for the checks.
    s.wait_metric("sessiongate_cache_evict_failures_total", 5.0)
        .await;
    s.faults.fail(false);
    // The entry is still in the cache (its eviction waits for the next retry) ...
    let cache = s.core().cache.clone();
    assert!(cache.get(&entry_key(&id)).await.expect("get").is_some());
    // ... and is not served; other sessions are.
    assert_eq!(gone.me().await.status, 401);
    let hits = s.metric(HITS).await;
    assert_eq!(keep.me().await.status, 200);
    assert_eq!(s.metric(HITS).await, hits + 1.0);
    wait_for("the retried eviction", Duration::from_secs(30), || {
        let (cache, key) = (cache.clone(), entry_key(&id));
        async move { cache.get(&key).await.expect("get").is_none().then_some(()) }
    })
    .await;
    assert_eq!(gone.me().await.status, 401);
    s.stop().await;
}
