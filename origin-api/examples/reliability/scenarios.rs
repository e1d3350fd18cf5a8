//! The scenarios: set-up, Redis outage, Redis stall during a revoke, Postgres outage,
//! origin SIGKILL and SIGTERM, the load, then the abuse corpus, the token corpus at
//! origin and edge, the fuzz targets and the final audit of the whole ledger.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use serde_json::json;
use tokio::task::JoinSet;

use crate::client::{self, Api, Reply, status_key};
use crate::env::{Env, SESSION_CACHE_TTL_SECS, SHUTDOWN_GRACE_SECS};
use crate::ledger::{Ledger, Rng, Sess, User};
use crate::report::{Outcome, Tally};
use crate::traffic::{self, Mix};
use crate::{Args, Mode, abuse, checks, report};

/// Users whose sessions carry the background traffic.
const TRAFFIC_USERS: usize = 160;
/// Users set aside for targeted checks, handed out one by one.
const DEDICATED_USERS: usize = 60;
/// Peak resident memory allowed to the origin through the load scenario: about 15 MiB
/// idle, two 19 MiB argon2 areas, and some 20-25 KiB per open connection with all 10 500
/// requests in flight at once (measured 158-329 MiB), with some room to spare. The argon2 heap
/// hoarding fixed in ca57fcc took it to 1.2 GiB.
pub const MEMORY_BUDGET_MIB: u64 = 384;

/// Everything a scenario needs.
pub struct Cx {
    pub env: Env,
    pub api: Api,
    pub ledger: Arc<Ledger>,
    pub mode: Mode,
    dedicated: std::sync::atomic::AtomicUsize,
}

impl Cx {
    fn long(&self) -> bool {
        self.mode == Mode::Long
    }

    /// Seconds of traffic before, during and after a fault.
    fn phases(&self) -> (Duration, Duration, Duration) {
        if self.long() {
            (secs(10), secs(30), secs(15))
        } else {
            (secs(3), secs(6), secs(4))
        }
    }

    fn mix(&self) -> Mix {
        Mix {
            users: 0..TRAFFIC_USERS,
            verify_workers: 6,
            login_workers: 2,
            revoke_workers: 1,
            verify_pace: Duration::from_millis(5),
            write_pace: Duration::from_millis(60),
        }
    }

    /// The next user set aside for a targeted check.
    pub fn dedicated(&self) -> anyhow::Result<usize> {
        let n = self
            .dedicated
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n >= DEDICATED_USERS {
            bail!("out of dedicated users");
        }
        Ok(TRAFFIC_USERS + n)
    }

    /// Logs `user` in from a fresh address; the session goes into the ledger.
    pub async fn login(&self, user: usize, scenario: &str) -> anyhow::Result<Arc<Sess>> {
        let u = self.ledger.user(user);
        let reply = self
            .api
            .login(&u.email, &u.password, &Rng::new().ip())
            .await?;
        if reply.status != 200 {
            bail!("login of {} answered {}", u.email, reply.status);
        }
        let token = reply
            .token()
            .ok_or_else(|| anyhow!("login without a cookie"))?;
        self.ledger
            .add_session(user, token, scenario)
            .ok_or_else(|| anyhow!("login cookie carries no session id"))
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn password(i: usize) -> String {
    let mut b = [0u8; 12];
    let _ = getrandom::fill(&mut b);
    format!(
        "pw{}x{i}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

/// Registers `n` users (16 at a time, each from its own address); returns their indexes.
async fn register_users(cx: &Cx, n: usize, tag: &str, tally: &Tally) -> anyhow::Result<Vec<usize>> {
    let run = format!("{:x}", Rng::new().next() & 0xffff_ffff);
    let mut set = JoinSet::new();
    let mut made = Vec::new();
    let mut i = 0;
    while i < n || !set.is_empty() {
        while i < n && set.len() < 16 {
            let api = cx.api.clone();
            let email = format!("{tag}-{run}-{i}@reliability.example");
            let pw = password(i);
            set.spawn(async move {
                let r = api.register(&email, &pw, &Rng::new().ip()).await;
                (email, pw, r)
            });
            i += 1;
        }
        if let Some(done) = set.join_next().await {
            let (email, password, r) = done?;
            tally.add("register", &status_key(&r));
            let reply = r?;
            if reply.status != 201 {
                bail!("register {email}: {}", reply.status);
            }
            let id = reply.json()["user"]["id"]
                .as_str()
                .ok_or_else(|| anyhow!("register: no user id"))?
                .to_owned();
            made.push(cx.ledger.add_user(User {
                id,
                email,
                password,
            }));
        }
    }
    Ok(made)
}

/// Runs everything; true when every scenario passed.
pub async fn run_all(args: Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    let env = Env::new(args)?;
    let api = Api::new(&env.base, Duration::from_secs(60))?;
    let mode = env.args.mode;
    let only = env.args.only.clone();
    let cx = Cx {
        env,
        api,
        ledger: Arc::new(Ledger::default()),
        mode,
        dedicated: std::sync::atomic::AtomicUsize::new(0),
    };
    println!(
        "reliability: mode {:?}; origin {} (pid {}); Redis :{}, Postgres :{}; run dir {}",
        mode,
        cx.env.base,
        cx.env.start_origin().await?,
        cx.env.args.redis_port,
        cx.env.args.pg_port,
        cx.env.args.run_dir.display()
    );

    let mut outcomes = Vec::new();
    outcomes.push(guard("setup", setup(&cx)).await);
    println!(
        "  (origin memory after setup: VmRSS {} MiB, VmHWM {} MiB)",
        cx.env.origin_vm_rss_kib().unwrap_or(0) / 1024,
        cx.env.origin_vm_hwm_kib().unwrap_or(0) / 1024
    );
    if outcomes[0].passed() {
        type Scenario = for<'a> fn(
            &'a Cx,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = anyhow::Result<Outcome>> + Send + 'a>,
        >;
        let list: Vec<(&str, Scenario)> = vec![
            ("redis-outage", |cx| Box::pin(redis_outage(cx))),
            ("redis-stall-revoke", |cx| Box::pin(redis_stall(cx))),
            ("postgres-outage", |cx| Box::pin(postgres_outage(cx))),
            ("postgres-conn-killed", |cx| {
                Box::pin(postgres_conn_killed(cx))
            }),
            ("revoke-race", |cx| Box::pin(revoke_race(cx))),
            ("abuse-origin", |cx| Box::pin(abuse::run(cx))),
            ("tokens-origin-edge", |cx| Box::pin(abuse::tokens(cx))),
            ("load", |cx| Box::pin(load(cx))),
            ("origin-sigkill", |cx| Box::pin(origin_sigkill(cx))),
            ("origin-sigterm", |cx| Box::pin(origin_sigterm(cx))),
            ("fuzz", |cx| Box::pin(fuzz(cx))),
        ];
        for (name, scenario) in list {
            if !only.is_empty() && !only.iter().any(|o| o == name) {
                continue;
            }
            if name == "fuzz" && cx.env.args.no_fuzz {
                continue;
            }
            let outcome = guard(name, scenario(&cx)).await;
            outcomes.push(outcome);
            println!(
                "  (origin memory after {name}: VmRSS {} MiB, VmHWM {} MiB)",
                cx.env.origin_vm_rss_kib().unwrap_or(0) / 1024,
                cx.env.origin_vm_hwm_kib().unwrap_or(0) / 1024
            );
            // Every scenario leaves a serving origin behind for the next one.
            if cx.env.origin_pid().is_none() || cx.api.healthz().await.is_err() {
                println!("  (origin not serving after {name}: restarting it)");
                cx.env.stop_origin().await;
                cx.env.start_origin().await?;
            }
        }
        outcomes.push(guard("ledger", final_audit(&cx)).await);
    }
    cx.env.stop_origin().await;
    let ok = report::summary(&outcomes, started.elapsed());
    if let Some(path) = &cx.env.args.results {
        let doc = json!({
            "mode": format!("{mode:?}").to_lowercase(),
            "seconds": started.elapsed().as_secs_f64(),
            "passed": outcomes.iter().filter(|o| o.passed()).count(),
            "failed": outcomes.iter().filter(|o| !o.passed()).count(),
            "scenarios": outcomes,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ok)
}

/// Turns a scenario that could not run to completion into a failed outcome.
async fn guard(
    name: &str,
    fut: impl std::future::Future<Output = anyhow::Result<Outcome>>,
) -> Outcome {
    match fut.await {
        Ok(o) => o.finish(),
        Err(e) => {
            let mut o = Outcome::new(name);
            o.check("scenario ran to completion", false, format!("{e:#}"));
            o.finish()
        }
    }
}

/// Registers the traffic and dedicated users and gives each traffic user two sessions.
async fn setup(cx: &Cx) -> anyhow::Result<Outcome> {
    let name = "setup";
    let mut out = Outcome::new(name);
    let tally = Tally::default();
    let users = register_users(cx, TRAFFIC_USERS + DEDICATED_USERS, "u", &tally).await?;
    out.check(
        "users registered",
        users.len() == TRAFFIC_USERS + DEDICATED_USERS,
        format!("{} users", users.len()),
    );
    let mut set = JoinSet::new();
    let mut logins = 0;
    for _round in 0..2 {
        for user in 0..TRAFFIC_USERS {
            let api = cx.api.clone();
            let u = cx.ledger.user(user);
            set.spawn(async move {
                let r = api.login(&u.email, &u.password, &Rng::new().ip()).await;
                (user, r)
            });
            if set.len() >= 16
                && let Some(done) = set.join_next().await
            {
                logins += record_login(cx, &tally, done?, name);
            }
        }
    }
    while let Some(done) = set.join_next().await {
        logins += record_login(cx, &tally, done?, name);
    }
    out.check(
        "traffic users hold two sessions each",
        logins == 2 * TRAFFIC_USERS,
        format!("{logins} sessions"),
    );
    let ready = cx.api.readyz().await?;
    out.check(
        "/readyz is 200",
        ready.status == 200,
        ready.json().to_string(),
    );
    out.absorb(&tally);
    Ok(out)
}

fn record_login(
    cx: &Cx,
    tally: &Tally,
    (user, r): (usize, Result<Reply, reqwest::Error>),
    scenario: &str,
) -> usize {
    tally.add("login", &status_key(&r));
    match r {
        Ok(reply) if reply.status == 200 => reply
            .token()
            .and_then(|t| cx.ledger.add_session(user, t, scenario))
            .map_or(0, |_| 1),
        _ => 0,
    }
}

/// Common checks on background traffic: no 5xx (or, with `allow_503`, only 503 with
/// `Retry-After`), no revoked session accepted after `revoke_bound`, no live session
/// refused.
fn traffic_checks(
    out: &mut Outcome,
    rec: &traffic::Recorder,
    allow_503: bool,
    revoke_bound: Duration,
) {
    let events = rec.events();
    let fives: Vec<_> = events
        .iter()
        .filter(|e| e.status.starts_with('5'))
        .collect();
    if allow_503 {
        let bad = traffic::bad_5xx(&events);
        out.check(
            "traffic: no 500, every 503 carries Retry-After",
            bad.is_empty(),
            format!(
                "{} answers, {} 503, {} bad",
                events.len(),
                fives.len(),
                bad.len()
            ),
        );
    } else {
        out.check(
            "traffic: no 5xx",
            fives.is_empty(),
            format!("{} answers, {} 5xx", events.len(), fives.len()),
        );
    }
    let accepted = traffic::revoked_accepted(&events, revoke_bound);
    out.check(
        format!(
            "traffic: no revoked session accepted {} after its revoke",
            if revoke_bound.is_zero() {
                "at any time".to_owned()
            } else {
                format!("more than {} s", revoke_bound.as_secs())
            }
        ),
        accepted.is_empty(),
        format!(
            "{} verifies of revoked sessions, {} accepted",
            events
                .iter()
                .filter(|e| e.kind == "verify" && e.revoked_for.is_some())
                .count(),
            accepted.len()
        ),
    );
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "verify" && e.believed_live && e.status == "401")
        .collect();
    out.check(
        "traffic: no live session refused",
        refused.is_empty(),
        format!(
            "{} verifies of live sessions, {} answered 401{}",
            events
                .iter()
                .filter(|e| e.kind == "verify" && e.believed_live)
                .count(),
            refused.len(),
            refused
                .iter()
                .take(5)
                .map(|e| format!(
                    "; one sent {:.3} s into the traffic, answered after {} ms",
                    e.sent.saturating_duration_since(rec.started).as_secs_f64(),
                    e.took.as_millis()
                ))
                .collect::<String>()
        ),
    );
    out.absorb(&rec.tally);
}

fn count_in(
    events: &[traffic::Event],
    kind: &str,
    status: &str,
    from: Instant,
    to: Instant,
) -> usize {
    events
        .iter()
        .filter(|e| e.kind == kind && e.status == status && e.sent >= from && e.sent < to)
        .count()
}

async fn redis_outage(cx: &Cx) -> anyhow::Result<Outcome> {
    let name = "redis-outage";
    let mut out = Outcome::new(name);
    let tally = Tally::default();
    let (before, during, after) = cx.phases();
    let d = cx.dedicated()?;
    let a = cx.login(d, name).await?;
    let x = cx.login(d, name).await?;
    let running = traffic::start(&cx.api, &cx.ledger, cx.mix(), name);
    tokio::time::sleep(before).await;

    cx.env.svc(&["redis-stop"]).await?;
    let down = Instant::now();
    out.note("redis stopped (SHUTDOWN NOSAVE)");
    let ready = cx.api.readyz().await?;
    tally.add("readyz", &ready.status.to_string());
    let body = ready.json();
    out.check(
        "/readyz answers 503 naming the cache, with Retry-After",
        ready.status == 503
            && body["cache"] == "unavailable"
            && body["database"] == "ok"
            && ready.retry_after().is_some(),
        format!("{} {body}", ready.status),
    );

    // The per-process limiter takes over: 5 logins per address and minute.
    let limited = cx.dedicated()?;
    let user = cx.ledger.user(limited);
    let ip = Rng::new().ip();
    let mut statuses = Vec::new();
    let mut retry = true;
    for _ in 0..7 {
        let r = cx.api.login(&user.email, "not the password", &ip).await?;
        tally.add("login", &r.status.to_string());
        if r.status == 401 {
            cx.ledger.add_failed_login(limited);
        }
        if r.status == 429 {
            retry &= r.retry_after().is_some();
        }
        statuses.push(r.status);
    }
    out.check(
        "rate limits fall back to the per-process limiter (5/min per address)",
        statuses[..5].iter().all(|s| *s == 401) && statuses[5..].iter().all(|s| *s == 429) && retry,
        format!("{statuses:?}"),
    );

    let fresh = cx.login(cx.dedicated()?, name).await;
    tally.add("login", if fresh.is_ok() { "200" } else { "failed" });
    let fresh_verify = match &fresh {
        Ok(s) => cx.api.me(&s.token).await.map(|r| r.status).unwrap_or(0),
        Err(_) => 0,
    };
    tally.add("verify", &fresh_verify.to_string());
    out.check(
        "a login during the outage works and its session verifies",
        fresh.is_ok() && fresh_verify == 200,
        format!(
            "login {}, verify {fresh_verify}",
            fresh
                .as_ref()
                .map_or_else(|e| e.to_string(), |_| "200".into())
        ),
    );

    x.update(|s| s.revoke_sent = Some(Instant::now()));
    let r = cx.api.revoke(&a.token, &x.hash).await?;
    tally.add("revoke", &r.status.to_string());
    if r.status == 200 {
        cx.ledger.add_revoke(&x, name);
    }
    let v = cx.api.me(&x.token).await?;
    tally.add("verify", &v.status.to_string());
    out.check(
        "a revoke during the outage succeeds and takes effect at once",
        r.status == 200 && v.status == 401,
        format!("revoke {}, verify {}", r.status, v.status),
    );

    tokio::time::sleep(during.saturating_sub(down.elapsed())).await;
    cx.env.svc(&["redis-start"]).await?;
    let up = Instant::now();
    let ready = cx.api.wait_ready(secs(20)).await;
    out.check(
        "/readyz is 200 again after the restart",
        ready,
        format!("after {:.1} s", up.elapsed().as_secs_f64()),
    );
    out.note(format!(
        "outage {:.1} s; cache reconnected {:.1} s after the restart",
        (up - down).as_secs_f64(),
        up.elapsed().as_secs_f64()
    ));
    let v = cx.api.me(&x.token).await?;
    tally.add("verify", &v.status.to_string());
    out.check(
        "the session revoked during the outage is refused after it",
        v.status == 401,
        format!("verify {}", v.status),
    );

    tokio::time::sleep(after).await;
    let rec = running.stop().await;
    // The cache warms again: verified sessions are backfilled and then served from it
    // (checked with the traffic stopped, so none of them is being revoked meanwhile).
    let warm: Vec<Arc<Sess>> = (0..TRAFFIC_USERS)
        .flat_map(|u| cx.ledger.sessions_of(u))
        .filter(|s| s.live())
        .take(20)
        .collect();
    let hits_before = cx
        .api
        .metric("sessiongate_session_cache_hits_total")
        .await?;
    for s in &warm {
        let r = cx.api.me(&s.token).await?;
        tally.add("verify", &r.status.to_string());
    }
    let cached = checks::cached_sessions(&cx.env, warm.iter().map(|s| s.hash.as_str())).await?;
    for s in &warm {
        let r = cx.api.me(&s.token).await?;
        tally.add("verify", &r.status.to_string());
    }
    let hits = cx
        .api
        .metric("sessiongate_session_cache_hits_total")
        .await?
        - hits_before;
    out.check(
        "the cache warms again: verified sessions are back in Redis and served from it",
        cached.len() == warm.len() && hits >= warm.len() as f64,
        format!(
            "{}/{} entries present, {hits} cache hits on {} verifies",
            cached.len(),
            warm.len(),
            2 * warm.len()
        ),
    );

    let events = rec.events();
    let during_verifies = count_in(&events, "verify", "200", down, up);
    let during_logins = count_in(&events, "login", "200", down, up);
    let during_revokes = count_in(&events, "revoke", "200", down, up);
    out.check(
        "traffic during the outage: verifies, logins and revokes kept succeeding",
        during_verifies > 0 && during_logins > 0,
        format!("{during_verifies} verifies, {during_logins} logins, {during_revokes} revokes answered 200"),
    );
    traffic_checks(&mut out, &rec, false, Duration::ZERO);
    out.absorb(&tally);
    let fallbacks = cx
        .api
        .metric("sessiongate_session_db_fallbacks_total")
        .await?;
    let rl = cx
        .api
        .metric("sessiongate_rate_limit_fallbacks_total")
        .await?;
    out.note(format!(
        "{fallbacks} verifies answered from Postgres, {rl} rate-limit fallbacks (process totals)"
    ));
    checks::audit_stores(&cx.env, &cx.ledger, Some(&[name]), &mut out).await?;
    Ok(out)
}

/// Revokes `target` with `actor` while Redis is stalled by `stall` (run in the
/// background), then measures how long `target` stays usable.
async fn stalled_revoke(
    cx: &Cx,
    out: &mut Outcome,
    tally: &Tally,
    label: &str,
    stall: Vec<&'static str>,
    scenario: &str,
) -> anyhow::Result<()> {
    let user = cx.dedicated()?;
    let actor = cx.login(user, scenario).await?;
    let target = cx.login(user, scenario).await?;
    let r = cx.api.me(&target.token).await?;
    tally.add("verify", &r.status.to_string());
    let cached = checks::cached_sessions(&cx.env, std::iter::once(target.hash.as_str())).await?;
    out.check(
        format!("{label}: the target session is cached before the stall"),
        r.status == 200 && cached.len() == 1,
        format!("verify {}, cache entry {}", r.status, cached.len()),
    );

    let svc_env = (
        cx.env.args.svc.clone(),
        cx.env.args.run_dir.clone(),
        cx.env.args.redis_port,
    );
    let staller = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(&svc_env.0)
            .arg("redis-cli")
            .args(&stall)
            .env("RUN_DIR", &svc_env.1)
            .env("REDIS_PORT", svc_env.2.to_string());
        cmd.output()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    target.update(|s| s.revoke_sent = Some(Instant::now()));
    let sent = Instant::now();
    let r = cx.api.revoke(&actor.token, &target.hash).await?;
    let took = sent.elapsed();
    tally.add("revoke", &r.status.to_string());
    let clean = r.status == 200 || (r.status == 503 && r.retry_after().is_some());
    out.check(
        format!("{label}: the revoke succeeds or fails cleanly"),
        clean,
        format!("answered {} in {:.2} s", r.status, took.as_secs_f64()),
    );
    let acked = Instant::now();
    if r.status == 200 {
        cx.ledger.add_revoke(&target, scenario);
    } else {
        target.update(|s| s.uncertain = true);
    }
    let stall_out = staller.await??;
    if !stall_out.status.success() {
        bail!(
            "{label}: stall command failed: {}",
            String::from_utf8_lossy(&stall_out.stderr)
        );
    }

    if r.status == 200 {
        let bound = secs(SESSION_CACHE_TTL_SECS);
        let mut refused_after = None;
        let mut accepted = 0;
        while acked.elapsed() <= bound + secs(5) {
            let v = cx.api.me(&target.token).await?;
            tally.add("verify", &v.status.to_string());
            if v.status == 401 {
                refused_after = Some(acked.elapsed());
                break;
            }
            accepted += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        out.check(
            format!("{label}: the revoked session is refused within SESSION_CACHE_TTL ({} s)", bound.as_secs()),
            refused_after.is_some_and(|d| d <= bound),
            match refused_after {
                Some(d) => format!("refused {:.2} s after the revoke answered ({accepted} verifies accepted before)", d.as_secs_f64()),
                None => format!("still accepted after {} s", (bound + secs(5)).as_secs()),
            },
        );
    } else {
        let v = cx.api.me(&target.token).await?;
        tally.add("verify", &v.status.to_string());
        out.note(format!(
            "{label}: revoke failed cleanly; the session then answered {}",
            v.status
        ));
    }
    Ok(())
}

async fn redis_stall(cx: &Cx) -> anyhow::Result<Outcome> {
    let name = "redis-stall-revoke";
    let mut out = Outcome::new(name);
    let tally = Tally::default();
    let evict_before = cx
        .api
        .metric("sessiongate_cache_evict_failures_total")
        .await?;
    let running = traffic::start(&cx.api, &cx.ledger, cx.mix(), name);
    tokio::time::sleep(cx.phases().0).await;
    stalled_revoke(
        cx,
        &mut out,
        &tally,
        "CLIENT PAUSE 4000 WRITE",
        vec!["CLIENT", "PAUSE", "4000", "WRITE"],
        name,
    )
    .await?;
    stalled_revoke(
        cx,
        &mut out,
        &tally,
        "DEBUG SLEEP 4",
        vec!["DEBUG", "SLEEP", "4"],
        name,
    )
    .await?;
    if cx.long() {
        stalled_revoke(
            cx,
            &mut out,
            &tally,
            "CLIENT PAUSE 10000 ALL",
            vec!["CLIENT", "PAUSE", "10000", "ALL"],
            name,
        )
        .await?;
    }
    tokio::time::sleep(cx.phases().2).await;
    let rec = running.stop().await;
    traffic_checks(&mut out, &rec, true, secs(SESSION_CACHE_TTL_SECS));
    out.absorb(&tally);
    let evict = cx
        .api
        .metric("sessiongate_cache_evict_failures_total")
        .await?
        - evict_before;
    out.check(
        "the failed evictions were counted (and retried in the background)",
        evict > 0.0,
        format!("sessiongate_cache_evict_failures_total rose by {evict}"),
    );
    checks::audit_stores(&cx.env, &cx.ledger, Some(&[name]), &mut out).await?;
    Ok(out)
}

async fn postgres_outage(cx: &Cx) -> anyhow::Result<Outcome> {
    let name = "postgres-outage";
    let mut out = Outcome::new(name);
    let tally = Tally::default();
    let (before, during, after) = cx.phases();
    let pid = cx.env.origin_pid();

    // Warm sessions: fresh logins, cached with a full SESSION_CACHE_TTL ahead.
    let mut warm = Vec::new();
    for _ in 0..6 {
        warm.push(cx.login(cx.dedicated()?, name).await?);
    }
    // The revoke and password-change subjects (their actors are warm too).
    let ru = cx.dedicated()?;
    let r_actor = cx.login(ru, name).await?;
    let r_target = cx.login(ru, name).await?;
    let pu = cx.dedicated()?;
    let p_actor = cx.login(pu, name).await?;
    let p_other = cx.login(pu, name).await?;
    // Cold sessions: known to the database; their cache entries are dropped below.
    // (Of dedicated users: the background traffic revokes its own users' oldest sessions.)
    let mut cold = Vec::new();
    for _ in 0..6 {
        cold.push(cx.login(cx.dedicated()?, name).await?);
    }

    let running = traffic::start(&cx.api, &cx.ledger, cx.mix(), name);
    tokio::time::sleep(before).await;
    cx.env.svc(&["pg-stop"]).await?;
    let down = Instant::now();
    out.note("postgres stopped (pg_ctl stop -m fast)");

    let redis = checks::redis(&cx.env).await?;
    for s in &cold {
        let _: i64 =
            fred::interfaces::KeysInterface::del(&redis, format!("v1:session:{}", s.hash)).await?;
    }
    let _ = fred::interfaces::ClientLike::quit(&redis).await;

    let ready = cx.api.readyz().await?;
    tally.add("readyz", &ready.status.to_string());
    out.check(
        "/readyz answers 503 naming the database, with Retry-After",
        ready.status == 503
            && ready.json()["database"] == "unavailable"
            && ready.retry_after().is_some(),
        format!("{} {}", ready.status, ready.json()),
    );

    let mut warm_ok = 0;
    for s in warm.iter().chain([&r_actor, &p_actor]) {
        let r = cx.api.me(&s.token).await?;
        tally.add("verify", &r.status.to_string());
        warm_ok += usize::from(r.status == 200);
    }
    out.check(
        "cached sessions keep working",
        warm_ok == warm.len() + 2,
        format!("{warm_ok}/{} verified", warm.len() + 2),
    );
    let unavailable = |r: &Reply| r.status == 503 && r.retry_after().is_some();
    let mut cold_503 = 0;
    let mut cold_statuses = BTreeMap::new();
    for s in &cold {
        let r = cx.api.me(&s.token).await?;
        tally.add("verify", &r.status.to_string());
        cold_503 += usize::from(unavailable(&r));
        *cold_statuses.entry(r.status).or_insert(0) += 1;
    }
    out.check(
        "cache misses answer 503 with Retry-After",
        cold_503 == cold.len(),
        format!("{cold_statuses:?}"),
    );

    let lu = cx.ledger.user(cx.dedicated()?);
    let login = cx
        .api
        .login(&lu.email, &lu.password, &Rng::new().ip())
        .await?;
    tally.add("login", &login.status.to_string());
    let reg = cx
        .api
        .register(
            "pg-outage@reliability.example",
            "a fine password",
            &Rng::new().ip(),
        )
        .await?;
    tally.add("register", &reg.status.to_string());
    r_target.update(|s| s.revoke_sent = Some(Instant::now()));
    let revoke = cx.api.revoke(&r_actor.token, &r_target.hash).await?;
    tally.add("revoke", &revoke.status.to_string());
    let new_password = "a brand new password";
    let pw = cx
        .api
        .send(Api::with_cookie(
            cx.api.post_json(
                "/api/v1/account/password",
                &json!({ "currentPassword": cx.ledger.user(pu).password, "newPassword": new_password }),
                &Rng::new().ip(),
            ),
            &p_actor.token,
        ))
        .await?;
    tally.add("password", &pw.status.to_string());
    let list = cx
        .api
        .send(Api::with_cookie(
            cx.api.get("/api/v1/account/sessions"),
            &p_actor.token,
        ))
        .await?;
    tally.add("sessions", &list.status.to_string());
    let writes = [
        ("login", &login),
        ("register", &reg),
        ("revoke", &revoke),
        ("password change", &pw),
        ("sessions list", &list),
    ];
    let bad: Vec<String> = writes
        .iter()
        .filter(|(_, r)| !unavailable(r))
        .map(|(what, r)| format!("{what} {}", r.status))
        .collect();
    out.check(
        "logins, writes and database reads answer 503 with Retry-After, never 500",
        bad.is_empty(),
        if bad.is_empty() {
            "login, register, revoke, password change, sessions list: 503".into()
        } else {
            bad.join(", ")
        },
    );
    let leaks: Vec<&str> = writes
        .iter()
        .filter(|(_, r)| {
            let body = String::from_utf8_lossy(&r.body).to_lowercase();
            ["postgres", "sql", "connection", "5442", "127.0.0.1"]
                .iter()
                .any(|w| body.contains(w))
        })
        .map(|(what, _)| *what)
        .collect();
    out.check(
        "503 bodies carry no internals",
        leaks.is_empty(),
        format!("{leaks:?}"),
    );

    tokio::time::sleep(during.saturating_sub(down.elapsed())).await;
    cx.env.svc(&["pg-start"]).await?;
    let up = Instant::now();
    let ready = cx.api.wait_ready(secs(30)).await;
    out.check(
        "full service after the restart without restarting the origin",
        ready && cx.env.origin_pid() == pid,
        format!(
            "/readyz 200 {:.1} s after the restart, origin pid unchanged: {}",
            up.elapsed().as_secs_f64(),
            cx.env.origin_pid() == pid
        ),
    );

    // Nothing half-written: the refused operations left no trace, and work now.
    let mut after_ok = Vec::new();
    let still = cx.api.me(&r_target.token).await?;
    tally.add("verify", &still.status.to_string());
    after_ok.push((
        "session refused-revoke target still valid",
        still.status == 200,
    ));
    r_target.update(|s| {
        s.revoke_sent = None;
        s.uncertain = false;
    });
    let other = cx.api.me(&p_other.token).await?;
    tally.add("verify", &other.status.to_string());
    after_ok.push((
        "other session of the refused password change still valid",
        other.status == 200,
    ));
    let old_pw = cx.login(pu, name).await;
    after_ok.push(("old password still works", old_pw.is_ok()));
    r_target.update(|s| s.revoke_sent = Some(Instant::now()));
    let revoke = cx.api.revoke(&r_actor.token, &r_target.hash).await?;
    tally.add("revoke", &revoke.status.to_string());
    if revoke.status == 200 {
        cx.ledger.add_revoke(&r_target, name);
    }
    after_ok.push(("revoke works", revoke.status == 200));
    let login = cx.login(cx.dedicated()?, name).await;
    after_ok.push(("login works", login.is_ok()));
    let mut cold_ok = 0;
    for s in &cold {
        let r = cx.api.me(&s.token).await?;
        tally.add("verify", &r.status.to_string());
        cold_ok += usize::from(r.status == 200);
    }
    after_ok.push(("uncached sessions verify", cold_ok == cold.len()));
    let failed: Vec<&str> = after_ok
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(w, _)| *w)
        .collect();
    out.check(
        "nothing half-written: refused operations left no trace and succeed now",
        failed.is_empty(),
        if failed.is_empty() {
            after_ok
                .iter()
                .map(|(w, _)| *w)
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            format!("failed: {}", failed.join("; "))
        },
    );
    let reg_row = checks::count(
        &cx.env,
        "SELECT count(*) AS n FROM users WHERE email = 'pg-outage@reliability.example'",
    )
    .await?;
    out.check(
        "the registration refused with 503 created no user",
        reg_row == 0,
        format!("{reg_row} rows"),
    );
    out.rows_checked += 1;

    tokio::time::sleep(after).await;
    let rec = running.stop().await;
    let events = rec.events();
    out.note(format!(
        "during the outage: {} verifies 200, {} verifies 503, {} logins 503",
        count_in(&events, "verify", "200", down, up),
        count_in(&events, "verify", "503", down, up),
        count_in(&events, "login", "503", down, up)
    ));
    traffic_checks(&mut out, &rec, true, Duration::ZERO);
    out.absorb(&tally);
    checks::audit_stores(&cx.env, &cx.ledger, Some(&[name]), &mut out).await?;
    Ok(out)
}

/// The database connection dies in the middle of a multi-statement write: a password
/// change (new hash, then every other session revoked) whose session delete is held by a
/// trigger while the driver terminates that backend, as a failover or an operator would.
/// The answer must be 503 with Retry-After, and the change all or nothing.
async fn postgres_conn_killed(cx: &Cx) -> anyhow::Result<Outcome> {
    let name = "postgres-conn-killed";
    let mut out = Outcome::new(name);
    let tally = Tally::default();
    let user = cx.dedicated()?;
    let u = cx.ledger.user(user);
    let actor = cx.login(user, name).await?;
    let others = [cx.login(user, name).await?, cx.login(user, name).await?];
    for s in &others {
        s.update(|st| st.uncertain = true);
    }
    let victim = u.id.replace('\'', "''");
    checks::execute(
        &cx.env,
        &format!(
            "CREATE OR REPLACE FUNCTION reliability_hold() RETURNS trigger AS $$ \
             BEGIN PERFORM pg_sleep(5); RETURN OLD; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER reliability_hold BEFORE DELETE ON sessions FOR EACH ROW \
             WHEN (OLD.user_id = '{victim}') EXECUTE FUNCTION reliability_hold();"
        ),
    )
    .await?;
    let api = cx.api.clone();
    let token = actor.token.clone();
    let old_password = u.password.clone();
    let new_password = "a password after the fault";
    let change = tokio::spawn(async move {
        api.send(Api::with_cookie(
            api.post_json(
                "/api/v1/account/password",
                &json!({ "currentPassword": old_password, "newPassword": new_password }),
                &Rng::new().ip(),
            ),
            &token,
        ))
        .await
    });
    // Wait until the delete is held by the trigger, then cut that connection.
    let mut terminated = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        terminated = checks::count(
            &cx.env,
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND state = 'active' AND query ILIKE '%DELETE%sessions%'",
        )
        .await?;
        if terminated > 0 {
            break;
        }
    }
    let reply = change.await??;
    tally.add("password", &reply.status.to_string());
    checks::execute(
        &cx.env,
        "DROP TRIGGER reliability_hold ON sessions; DROP FUNCTION reliability_hold();",
    )
    .await?;
    out.check(
        "the write's database connection was terminated mid-statement",
        terminated > 0,
        format!("{terminated} backend(s) terminated"),
    );
    out.check(
        "a connection lost mid-write answers 503 with Retry-After, never 500",
        reply.status == 503 && reply.retry_after().is_some(),
        format!("{} {}", reply.status, String::from_utf8_lossy(&reply.body)),
    );

    let old_ok = cx
        .api
        .login(&u.email, &u.password, &Rng::new().ip())
        .await?;
    let new_ok = cx
        .api
        .login(&u.email, new_password, &Rng::new().ip())
        .await?;
    tally.add("login", &old_ok.status.to_string());
    tally.add("login", &new_ok.status.to_string());
    let mut alive = 0;
    for s in &others {
        let r = cx.api.me(&s.token).await?;
        tally.add("verify", &r.status.to_string());
        alive += usize::from(r.status == 200);
    }
    let changed = new_ok.status == 200;
    let whole =
        (changed && alive == 0) || (!changed && old_ok.status == 200 && alive == others.len());
    out.check(
        "nothing half-written: the password change happened entirely or not at all",
        whole,
        format!(
            "password changed: {changed} (old password {}, new {}); other sessions alive: {alive}/{}",
            old_ok.status,
            new_ok.status,
            others.len()
        ),
    );
    // Sessions opened by the two logins above belong to no scenario check.
    out.absorb(&tally);
    Ok(out)
}

/// A revoke racing the cache backfill of verifies of the same session: verifies that
/// missed the cache and read the row just before the revoke deleted it must not put the
/// session back into the cache after the revoke evicted it.
async fn revoke_race(cx: &Cx) -> anyhow::Result<Outcome> {
    let name = "revoke-race";
    let mut out = Outcome::new(name);
    let tally = Tally::default();
    let rounds = if cx.long() { 150 } else { 40 };
    let user = cx.dedicated()?;
    let actor = cx.login(user, name).await?;
    let redis = checks::redis(&cx.env).await?;
    let mut resurrected = 0;
    let mut accepted_after = 0;
    for _ in 0..rounds {
        let target = cx.login(user, name).await?;
        let key = format!("v1:session:{}", target.hash);
        let _: i64 = fred::interfaces::KeysInterface::del(&redis, key.as_str()).await?;
        let mut set = JoinSet::new();
        for i in 0..24u64 {
            let api = cx.api.clone();
            let token = target.token.clone();
            set.spawn(async move {
                tokio::time::sleep(Duration::from_micros(i * 150)).await;
                api.me(&token).await
            });
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        target.update(|s| s.revoke_sent = Some(Instant::now()));
        let r = cx.api.revoke(&actor.token, &target.hash).await?;
        tally.add("revoke", &r.status.to_string());
        if r.status != 200 {
            bail!("revoke answered {}", r.status);
        }
        cx.ledger.add_revoke(&target, name);
        while let Some(done) = set.join_next().await {
            tally.add("verify", &status_key(&done?));
        }
        let present: i64 = fred::interfaces::KeysInterface::exists(&redis, key.as_str()).await?;
        resurrected += usize::from(present > 0);
        let v = cx.api.me(&target.token).await?;
        tally.add("verify", &v.status.to_string());
        accepted_after += usize::from(v.status == 200);
    }
    let _ = fred::interfaces::ClientLike::quit(&redis).await;
    out.check(
        "no verify racing a revoke puts the revoked session back into the cache",
        resurrected == 0,
        format!("{rounds} rounds of 24 verifies around a revoke; {resurrected} cache entries back after the revoke"),
    );
    out.check(
        "the revoked session is refused on the next request",
        accepted_after == 0,
        format!("{accepted_after} of {rounds} accepted after the revoke answered"),
    );
    out.absorb(&tally);
    checks::audit_stores(&cx.env, &cx.ledger, Some(&[name]), &mut out).await?;
    Ok(out)
}

async fn origin_sigkill(cx: &Cx) -> anyhow::Result<Outcome> {
    let name = "origin-sigkill";
    let mut out = Outcome::new(name);
    let (before, _, after) = cx.phases();
    let mut mix = cx.mix();
    mix.login_workers = 4;
    mix.write_pace = Duration::from_millis(20);
    let running = traffic::start(&cx.api, &cx.ledger, mix, name);
    tokio::time::sleep(before).await;
    cx.env.signal_origin("KILL").await?;
    let killed = Instant::now();
    cx.ledger.add_kill(killed);
    let status = cx.env.wait_origin(secs(10)).await?;
    out.note(format!("origin killed (SIGKILL): {status:?}"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = cx.env.start_origin().await?;
    out.note(format!(
        "restarted as pid {pid}, serving {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    ));
    tokio::time::sleep(after).await;
    let rec = running.stop().await;
    let events = rec.events();
    let fives = events.iter().filter(|e| e.status.starts_with('5')).count();
    let transport = events
        .iter()
        .filter(|e| !e.status.starts_with(|c: char| c.is_ascii_digit()))
        .count();
    out.check(
        "no 5xx; requests cut by the kill fail as connection errors only",
        fives == 0,
        format!(
            "{} answers, {fives} 5xx, {transport} connection errors",
            events.len()
        ),
    );
    let accepted = traffic::revoked_accepted(&events, Duration::ZERO);
    out.check(
        "no revoked session accepted",
        accepted.is_empty(),
        format!("{} accepted", accepted.len()),
    );
    out.absorb(&rec.tally);

    // Every session the ledger believes live still verifies on the new process.
    let tally = Tally::default();
    let live: Vec<Arc<Sess>> = cx
        .ledger
        .sessions()
        .into_iter()
        .filter(|s| s.user < TRAFFIC_USERS && s.live())
        .collect();
    let mut refused = 0;
    for s in &live {
        let r = cx.api.me(&s.token).await;
        tally.add("verify", &status_key(&r));
        if r.map(|r| r.status).unwrap_or(0) != 200 {
            refused += 1;
        }
    }
    out.check(
        "every live session verifies on the restarted origin",
        refused == 0,
        format!("{} sessions, {refused} not 200", live.len()),
    );
    out.absorb(&tally);
    checks::audit_stores(&cx.env, &cx.ledger, Some(&[name]), &mut out).await?;
    Ok(out)
}

async fn origin_sigterm(cx: &Cx) -> anyhow::Result<Outcome> {
    let name = "origin-sigterm";
    let mut out = Outcome::new(name);
    let tally = Tally::default();
    let addr = format!("127.0.0.1:{}", cx.env.args.origin_port);

    // In flight at the signal: a queue of logins (argon2 on a bounded pool) and one login
    // whose body arrives slowly.
    let mut set = JoinSet::new();
    let n = 24;
    for i in 0..n {
        let api = cx.api.clone();
        let user = i % TRAFFIC_USERS;
        let u = cx.ledger.user(user);
        set.spawn(async move {
            (
                user,
                api.login(&u.email, &u.password, &Rng::new().ip()).await,
            )
        });
    }
    let slow_user = cx.dedicated()?;
    let su = cx.ledger.user(slow_user);
    let body = json!({ "email": su.email, "password": su.password }).to_string();
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Forwarded-For: {}\r\n\r\n",
        body.len(),
        Rng::new().ip()
    );
    let mut chunks = vec![head.into_bytes()];
    let bytes = body.into_bytes();
    for part in bytes.chunks(bytes.len().div_ceil(8)) {
        chunks.push(part.to_vec());
    }
    let slow_addr = addr.clone();
    let slow = tokio::spawn(async move {
        client::raw(&slow_addr, &chunks, Duration::from_millis(250), secs(30)).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cx.env.signal_origin("TERM").await?;
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = tokio::net::TcpStream::connect(&addr).await.is_err();

    let mut answered = 0;
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(done) = set.join_next().await {
        let (user, r) = done?;
        let key = status_key(&r);
        tally.add("login", &key);
        *statuses.entry(key).or_default() += 1;
        if let Ok(reply) = &r {
            answered += 1;
            if reply.status == 200
                && let Some(token) = reply.token()
            {
                cx.ledger.add_session(user, token, name);
            }
        }
    }
    let slow = slow.await??;
    tally.add(
        "login",
        &slow.status.map_or("no answer".into(), |s| s.to_string()),
    );
    if slow.status == Some(200)
        && let Some(token) = slow.head.lines().find_map(|l| {
            let lower = l.to_ascii_lowercase();
            lower
                .starts_with("set-cookie: session=")
                .then(|| {
                    l["set-cookie: session=".len()..]
                        .split(';')
                        .next()
                        .map(str::to_owned)
                })
                .flatten()
        })
    {
        cx.ledger.add_session(slow_user, token, name);
    }
    let exit = cx.env.wait_origin(secs(SHUTDOWN_GRACE_SECS + 10)).await?;
    out.check(
        "in-flight requests finish after SIGTERM",
        answered == n && statuses.get("200") == Some(&n),
        format!("{answered}/{n} logins answered: {statuses:?}"),
    );
    out.check(
        "a request whose body was still arriving at SIGTERM is answered",
        slow.status == Some(200),
        format!(
            "answered {:?} after {:.2} s",
            slow.status,
            slow.elapsed.as_secs_f64()
        ),
    );
    out.check(
        "new connections are refused once shutting down",
        refused,
        String::new(),
    );
    out.check(
        "the process exits 0 within SHUTDOWN_GRACE",
        exit.is_some_and(|s| s.success()),
        format!(
            "{exit:?} {:.2} s after the signal",
            signalled.elapsed().as_secs_f64()
        ),
    );
    if exit.is_none() {
        cx.env.signal_origin("KILL").await?;
        cx.env.wait_origin(secs(10)).await?;
    }
    cx.env.start_origin().await?;
    let mut ok = 0;
    let mine: Vec<Arc<Sess>> = cx
        .ledger
        .sessions()
        .into_iter()
        .filter(|s| s.scenario == name)
        .collect();
    for s in &mine {
        let r = cx.api.me(&s.token).await?;
        tally.add("verify", &r.status.to_string());
        ok += usize::from(r.status == 200);
    }
    out.check(
        "sessions from the drained logins work after the restart",
        ok == mine.len(),
        format!("{ok}/{} verified", mine.len()),
    );
    out.absorb(&tally);
    checks::audit_stores(&cx.env, &cx.ledger, Some(&[name]), &mut out).await?;
    Ok(out)
}

/// A verify of the load: the token and the answer the contract requires.
struct Probe {
    token: Option<String>,
    expect: u16,
    class: &'static str,
}

fn mint(cx: &Cx, sid: &str, iat: u64, exp: u64, key: &[u8]) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let header = b64(json!({ "alg": "HS256", "typ": "JWT", "kid": cx.env.kid })
        .to_string()
        .as_bytes());
    let claims = b64(json!({ "sid": sid, "iat": iat, "exp": exp })
        .to_string()
        .as_bytes());
    let input = format!("{header}.{claims}");
    let sig = hmac_sha256::HMAC::mac(input.as_bytes(), key);
    format!("{input}.{}", b64(&sig))
}

fn random_sid() -> String {
    let mut b = [0u8; 32];
    let _ = getrandom::fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn load(cx: &Cx) -> anyhow::Result<Outcome> {
    let name = "load";
    let mut out = Outcome::new(name);
    let setup_tally = Tally::default();
    let users = register_users(cx, 500, "load", &setup_tally).await?;
    out.note(format!("registered {} load users first", users.len()));
    let rounds = if cx.long() { 3 } else { 1 };
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);

    for round in 0..rounds {
        let tally = Tally::default();
        // 500 logins: 450 right, 50 wrong; 20 of the right ones share one address.
        let shared_ip = format!("10.250.{round}.1");
        let mut logins = Vec::new();
        for (i, &user) in users.iter().enumerate() {
            let wrong = i % 10 == 9;
            let ip = if !wrong && i < 22 {
                shared_ip.clone()
            } else {
                Rng::new().ip()
            };
            logins.push((user, wrong, ip));
        }
        // 10 000 verifies: live sessions, revoked ones, forged and expired tokens, none.
        let live: Vec<Arc<Sess>> = cx
            .ledger
            .sessions()
            .into_iter()
            .filter(|s| s.user < TRAFFIC_USERS && s.live())
            .collect();
        let revoked: Vec<Arc<Sess>> = cx
            .ledger
            .sessions()
            .into_iter()
            .filter(|s| s.state().revoked.is_some())
            .collect();
        let mut forged_key = [0u8; 32];
        getrandom::fill(&mut forged_key).map_err(|e| anyhow!("random: {e}"))?;
        let mut probes = Vec::with_capacity(10_000);
        let mut rng = Rng::new();
        for i in 0..10_000usize {
            let probe = match i % 10 {
                0..=5 if !live.is_empty() => Probe {
                    token: Some(live[rng.below(live.len())].token.clone()),
                    expect: 200,
                    class: "live",
                },
                6 if !revoked.is_empty() => Probe {
                    token: Some(revoked[rng.below(revoked.len())].token.clone()),
                    expect: 401,
                    class: "revoked",
                },
                7 => Probe {
                    token: Some(mint(cx, &random_sid(), now, now + 3600, &forged_key)),
                    expect: 401,
                    class: "forged",
                },
                8 => Probe {
                    token: Some(mint(cx, &random_sid(), now - 7200, now - 3600, &cx.env.key)),
                    expect: 401,
                    class: "expired",
                },
                _ => Probe {
                    token: None,
                    expect: 401,
                    class: "none",
                },
            };
            probes.push(probe);
        }

        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(secs(180))
            .connect_timeout(secs(60))
            .pool_max_idle_per_host(0)
            .build()?;
        let api = Api {
            http,
            base: cx.env.base.clone(),
        };
        let hwm_before = cx.env.origin_vm_hwm_kib().unwrap_or(0);
        let started = Instant::now();
        let mut login_set = JoinSet::new();
        for (user, wrong, ip) in logins {
            let api = api.clone();
            let u = cx.ledger.user(user);
            login_set.spawn(async move {
                let pw = if wrong {
                    "definitely wrong".to_owned()
                } else {
                    u.password.clone()
                };
                let r = api.login(&u.email, &pw, &ip).await;
                (user, wrong, ip, r)
            });
        }
        let mut verify_set = JoinSet::new();
        for probe in probes {
            let api = api.clone();
            verify_set.spawn(async move {
                let req = api.get("/api/v1/auth/me");
                let req = match &probe.token {
                    Some(t) => Api::with_cookie(req, t),
                    None => req,
                };
                (probe.expect, probe.class, api.send(req).await)
            });
        }
        let mut login_lat = Vec::new();
        let mut verify_lat = Vec::new();
        let mut off_contract = 0;
        let mut wrong_answer: BTreeMap<String, usize> = BTreeMap::new();
        let mut shared_429 = 0;
        let mut shared_429_retry = true;
        let mut ok_logins = 0;
        while let Some(done) = login_set.join_next().await {
            let (user, wrong, ip, r) = done?;
            tally.add("login", &status_key(&r));
            match r {
                Ok(reply) => {
                    login_lat.push(reply.elapsed);
                    if ![200, 401, 429].contains(&reply.status) {
                        off_contract += 1;
                    }
                    let expected = match (wrong, reply.status) {
                        (_, 429) => ip == shared_ip,
                        (true, s) => s == 401,
                        (false, s) => s == 200,
                    };
                    if !expected {
                        *wrong_answer
                            .entry(format!(
                                "login {}{}",
                                if wrong { "wrong-password " } else { "" },
                                reply.status
                            ))
                            .or_default() += 1;
                    }
                    if reply.status == 429 {
                        shared_429 += 1;
                        shared_429_retry &= reply.retry_after().is_some();
                    }
                    if reply.status == 401 {
                        cx.ledger.add_failed_login(user);
                    }
                    if reply.status == 200
                        && let Some(token) = reply.token()
                    {
                        ok_logins += 1;
                        cx.ledger.add_session(user, token, name);
                    }
                }
                Err(_) => off_contract += 1,
            }
        }
        while let Some(done) = verify_set.join_next().await {
            let (expect, class, r) = done?;
            tally.add("verify", &status_key(&r));
            match r {
                Ok(reply) => {
                    verify_lat.push(reply.elapsed);
                    if ![200, 401, 429].contains(&reply.status) {
                        off_contract += 1;
                    }
                    if reply.status != expect {
                        *wrong_answer
                            .entry(format!("verify {class} {}", reply.status))
                            .or_default() += 1;
                    }
                }
                Err(_) => off_contract += 1,
            }
        }
        let took = started.elapsed();
        let hwm = cx.env.origin_vm_hwm_kib().unwrap_or(0);
        let rss = cx.env.origin_vm_rss_kib().unwrap_or(0);
        login_lat.sort();
        verify_lat.sort();
        out.check(
            format!(
                "round {}: every answer is 200, 401 or 429; no 5xx, no transport error",
                round + 1
            ),
            off_contract == 0,
            format!(
                "{} requests in {:.1} s, {off_contract} outside the contract",
                tally.total(),
                took.as_secs_f64()
            ),
        );
        out.check(
            format!("round {}: each answer is the one the contract requires", round + 1),
            wrong_answer.is_empty(),
            if wrong_answer.is_empty() {
                format!("{ok_logins} logins 200, 50 wrong passwords 401, {shared_429} rate-limited on the shared address; verifies by class all as expected")
            } else {
                format!("{wrong_answer:?}")
            },
        );
        out.check(
            format!(
                "round {}: the per-address login limit holds under load (429 with Retry-After)",
                round + 1
            ),
            shared_429 == 15 && shared_429_retry,
            format!("{shared_429} of 20 logins from one address refused"),
        );
        out.check(
            format!(
                "round {}: origin memory within {MEMORY_BUDGET_MIB} MiB (VmHWM)",
                round + 1
            ),
            hwm > 0 && hwm <= MEMORY_BUDGET_MIB * 1024,
            format!(
                "VmHWM {} MiB (before the round {} MiB), VmRSS after {} MiB",
                hwm / 1024,
                hwm_before / 1024,
                rss / 1024
            ),
        );
        out.note(format!(
            "round {}: login latency p50 {:.0} ms p99 {:.0} ms; verify latency p50 {:.0} ms p99 {:.0} ms (all 10 500 in flight at once)",
            round + 1,
            percentile(&login_lat, 0.5),
            percentile(&login_lat, 0.99),
            percentile(&verify_lat, 0.5),
            percentile(&verify_lat, 0.99)
        ));
        out.absorb(&tally);
    }
    checks::audit_stores(&cx.env, &cx.ledger, Some(&[name]), &mut out).await?;
    Ok(out)
}

/// Builds the fuzz targets and replays their corpus (short), or runs each for a fixed
/// time (long). A crash fails the scenario and leaves its input in shared/fuzz/artifacts.
async fn fuzz(cx: &Cx) -> anyhow::Result<Outcome> {
    let name = "fuzz";
    let mut out = Outcome::new(name);
    let repo = cx.env.args.repo.clone();
    let target_dir = repo.join("target/fuzz");
    let run = |args: Vec<String>| {
        let repo = repo.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new("cargo")
                    .arg("fuzz")
                    .args(&args)
                    .current_dir(repo.join("shared/fuzz"))
                    .env("RUSTC_BOOTSTRAP", "1")
                    .output()
            })
            .await
        }
    };
    let build = run(vec![
        "build".into(),
        "--target-dir".into(),
        target_dir.display().to_string(),
    ])
    .await??;
    out.check(
        "cargo fuzz build (token, cookie, next)",
        build.status.success(),
        tail(&build.stderr),
    );
    if !build.status.success() {
        return Ok(out);
    }
    for target in ["token", "cookie", "next"] {
        let corpus = repo.join("shared/fuzz/corpus").join(target);
        let before = std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
        let libfuzzer = if cx.long() {
            format!("-max_total_time={}", cx.env.args.fuzz_seconds)
        } else {
            "-runs=0".into()
        };
        let r = run(vec![
            "run".into(),
            target.into(),
            "--target-dir".into(),
            target_dir.display().to_string(),
            "--".into(),
            libfuzzer,
        ])
        .await??;
        let stderr = String::from_utf8_lossy(&r.stderr);
        let runs = stderr
            .lines()
            .rev()
            .find_map(|l| {
                l.strip_prefix("Done ")
                    .and_then(|r| r.split(' ').next())
                    .map(str::to_owned)
            })
            .or_else(|| {
                stderr
                    .lines()
                    .rev()
                    .find(|l| l.contains("INITED"))
                    .map(|l| l.to_owned())
            })
            .unwrap_or_default();
        let after = std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
        out.check(
            format!("fuzz target {target}: no crash"),
            r.status.success(),
            if r.status.success() {
                format!(
                    "{} executions; corpus {before} → {after} inputs",
                    if runs.is_empty() { "?".into() } else { runs }
                )
            } else {
                tail(&r.stderr)
            },
        );
    }
    Ok(out)
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().rev().take(4).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// The whole ledger against the stores, and the origin's log against every secret the
/// run handled.
async fn final_audit(cx: &Cx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::new("ledger");
    checks::audit_stores(&cx.env, &cx.ledger, None, &mut out).await?;
    let log = std::fs::read_to_string(&cx.env.origin_log).unwrap_or_default();
    let mut words = std::collections::HashSet::new();
    for word in
        log.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
    {
        if word.len() >= 8 {
            words.insert(word);
            for part in word.split('.') {
                words.insert(part);
            }
        }
    }
    let mut needles = 0;
    let mut found = Vec::new();
    for u in cx.ledger.users() {
        needles += 1;
        if words.contains(u.password.as_str()) {
            found.push("a password".to_owned());
        }
    }
    for s in cx.ledger.sessions() {
        let raw = client::raw_sid(&s.token).unwrap_or_default();
        for (what, needle) in [
            ("a cookie", s.token.as_str()),
            ("a session id", raw.as_str()),
            ("a session hash", s.hash.as_str()),
        ] {
            needles += 1;
            if !needle.is_empty() && words.contains(needle) {
                found.push(what.to_owned());
            }
        }
    }
    found.sort();
    found.dedup();
    out.check(
        "the origin's log carries no password, cookie, session id or session hash",
        found.is_empty(),
        format!(
            "{} log lines, {needles} secrets looked for; found: {found:?}",
            log.lines().count()
        ),
    );
    out.rows_checked += needles;
    Ok(out)
}
