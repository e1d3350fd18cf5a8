//! `redis-outage`: Redis shut down (`SHUTDOWN NOSAVE`) under traffic, then restarted.
//! `/readyz` names the cache; verifies continue from Postgres, logins and revokes keep
//! working; rate limits fall back to the per-process limiter; a revoke during the outage
//! holds after it; the cache warms again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checks;
use crate::cx::{Cx, TRAFFIC_USERS, secs};
use crate::ledger::Sess;
use crate::report::{Outcome, Tally};
use crate::traffic;

const NAME: &str = "redis-outage";

pub async fn run(cx: &Cx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::new(NAME);
    let tally = Tally::default();
    let (before, during, after) = cx.phases();
    let d = cx.dedicated()?;
    let (a, x) = (cx.login(d, NAME).await?, cx.login(d, NAME).await?);
    let running = traffic::start(&cx.api, &cx.ledger, cx.mix(), NAME);
    tokio::time::sleep(before).await;

    cx.redis.stop().await?;
    let down = Instant::now();
    out.note("redis stopped (SHUTDOWN NOSAVE)");
    check_readyz(cx, &mut out, &tally).await?;
    check_fallback_limiter(cx, &mut out, &tally).await?;
    check_login_during(cx, &mut out, &tally).await?;
    check_revoke_during(cx, &mut out, &tally, &a, &x).await?;

    tokio::time::sleep(during.saturating_sub(down.elapsed())).await;
    cx.redis.restart().await?;
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
    check_cache_warms(cx, &mut out, &tally).await?;
    let events = rec.events();
    let during_verifies = super::count_in(&events, "verify", "200", down, up);
    let during_logins = super::count_in(&events, "login", "200", down, up);
    let during_revokes = super::count_in(&events, "revoke", "200", down, up);
    out.check(
        "traffic during the outage: verifies, logins and revokes kept succeeding",
        during_verifies > 0 && during_logins > 0,
        format!("{during_verifies} verifies, {during_logins} logins, {during_revokes} revokes answered 200"),
    );
    super::traffic_checks(&mut out, &rec, false, Duration::ZERO);
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
    checks::audit_stores(cx, Some(&[NAME]), &mut out).await?;
    Ok(out)
}

async fn check_readyz(cx: &Cx, out: &mut Outcome, tally: &Tally) -> anyhow::Result<()> {
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
    Ok(())
}

/// The per-process limiter takes over: 5 logins per address and minute.
async fn check_fallback_limiter(cx: &Cx, out: &mut Outcome, tally: &Tally) -> anyhow::Result<()> {
    let limited = cx.dedicated()?;
    let user = cx.ledger.user(limited);
    let api = cx.client();
    let mut statuses = Vec::new();
    let mut retry = true;
    for _ in 0..7 {
        let r = api.login(&user.email, "not the password").await?;
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
    Ok(())
}

async fn check_login_during(cx: &Cx, out: &mut Outcome, tally: &Tally) -> anyhow::Result<()> {
    let fresh = cx.login(cx.dedicated()?, NAME).await;
    tally.add("login", if fresh.is_ok() { "200" } else { "failed" });
    let verified = match &fresh {
        Ok(s) => cx.api.me(&s.token).await.map(|r| r.status).unwrap_or(0),
        Err(_) => 0,
    };
    tally.add("verify", &verified.to_string());
    let login = fresh
        .as_ref()
        .map_or_else(|e| e.to_string(), |_| "200".into());
    out.check(
        "a login during the outage works and its session verifies",
        fresh.is_ok() && verified == 200,
        format!("login {login}, verify {verified}"),
    );
    Ok(())
}

async fn check_revoke_during(
    cx: &Cx,
    out: &mut Outcome,
    tally: &Tally,
    actor: &Sess,
    x: &Sess,
) -> anyhow::Result<()> {
    x.update(|s| s.revoke_sent = Some(Instant::now()));
    let r = cx.api.revoke(&actor.token, &x.hash).await?;
    tally.add("revoke", &r.status.to_string());
    if r.status == 200 {
        cx.ledger.add_revoke(x, NAME);
    }
    let v = cx.api.me(&x.token).await?;
    tally.add("verify", &v.status.to_string());
    out.check(
        "a revoke during the outage succeeds and takes effect at once",
        r.status == 200 && v.status == 401,
        format!("revoke {}, verify {}", r.status, v.status),
    );
    Ok(())
}

/// Verified sessions are backfilled and then served from the cache (checked with the
/// traffic stopped, so none of them is being revoked meanwhile).
async fn check_cache_warms(cx: &Cx, out: &mut Outcome, tally: &Tally) -> anyhow::Result<()> {
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
        tally.add("verify", &cx.api.me(&s.token).await?.status.to_string());
    }
    let cached = checks::cached_sessions(cx, warm.iter().map(|s| s.hash.as_str())).await?;
    for s in &warm {
        tally.add("verify", &cx.api.me(&s.token).await?.status.to_string());
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
    Ok(())
}
