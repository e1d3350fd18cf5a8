//! `redis-stall-revoke`: a revoke while Redis is stalled (`CLIENT PAUSE 4000 WRITE`,
//! `DEBUG SLEEP 4`, long mode also `CLIENT PAUSE 10000 ALL`). The revoke answers 200 or a
//! clean 503; the revoked session is refused within `SESSION_CACHE_TTL`; the failed
//! evictions are counted and retried.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::checks;
use crate::cx::{Cx, SESSION_CACHE_TTL_SECS, secs};
use crate::ledger::Sess;
use crate::report::{Outcome, Tally};
use crate::traffic;

const NAME: &str = "redis-stall-revoke";

pub async fn run(cx: &Cx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::new(NAME);
    let tally = Tally::default();
    let evict_before = cx
        .api
        .metric("sessiongate_cache_evict_failures_total")
        .await?;
    let running = traffic::start(&cx.api, &cx.ledger, cx.mix(), NAME);
    tokio::time::sleep(cx.phases().0).await;
    let mut stalls = vec![
        &["CLIENT", "PAUSE", "4000", "WRITE"][..],
        &["DEBUG", "SLEEP", "4"][..],
    ];
    if cx.long() {
        stalls.push(&["CLIENT", "PAUSE", "10000", "ALL"][..]);
    }
    for stall in stalls {
        stalled_revoke(cx, &mut out, &tally, stall).await?;
    }
    tokio::time::sleep(cx.phases().2).await;
    let rec = running.stop().await;
    super::traffic_checks(&mut out, &rec, true, secs(SESSION_CACHE_TTL_SECS));
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
    checks::audit_stores(cx, Some(&[NAME]), &mut out).await?;
    Ok(out)
}

/// Revokes a session while Redis is stalled by `stall`, then measures how long the
/// session stays usable.
async fn stalled_revoke(
    cx: &Cx,
    out: &mut Outcome,
    tally: &Tally,
    stall: &[&str],
) -> anyhow::Result<()> {
    let label = stall.join(" ");
    let user = cx.dedicated()?;
    let actor = cx.login(user, NAME).await?;
    let target = cx.login(user, NAME).await?;
    // After the previous stall the origin's Redis circuit breaker may still be open (up to
    // 5 s), and a session is not cached while it is: wait for the cache to take the
    // target, so the stall below hits a cached session.
    let waited = Instant::now();
    let (status, cached) = loop {
        let r = cx.api.me(&target.token).await?;
        tally.add("verify", &r.status.to_string());
        let cached = checks::cached_sessions(cx, std::iter::once(target.hash.as_str())).await?;
        if (r.status == 200 && cached.len() == 1) || waited.elapsed() > Duration::from_secs(15) {
            break (r.status, cached.len());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    out.check(
        format!("{label}: the target session is cached before the stall"),
        status == 200 && cached == 1,
        format!(
            "verify {status}, cache entry {cached} after {:.2} s",
            waited.elapsed().as_secs_f64()
        ),
    );

    let revoke = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        target.update(|s| s.revoke_sent = Some(Instant::now()));
        let sent = Instant::now();
        let r = cx.api.revoke(&actor.token, &target.hash).await;
        (r, sent.elapsed(), Instant::now())
    };
    let (stalled, (r, took, acked)) = tokio::join!(cx.redis.cli(stall), revoke);
    let r = r?;
    tally.add("revoke", &r.status.to_string());
    let clean = r.status == 200 || (r.status == 503 && r.retry_after().is_some());
    out.check(
        format!("{label}: the revoke succeeds or fails cleanly"),
        clean,
        format!("answered {} in {:.2} s", r.status, took.as_secs_f64()),
    );
    if r.status == 200 {
        cx.ledger.add_revoke(&target, NAME);
    } else {
        target.update(|s| s.uncertain = true);
    }
    stalled.with_context(|| format!("{label}: the stall command"))?;
    if r.status == 200 {
        refused_within_ttl(cx, out, tally, &label, &target, acked).await
    } else {
        let v = cx.api.me(&target.token).await?;
        tally.add("verify", &v.status.to_string());
        out.note(format!(
            "{label}: revoke failed cleanly; the session then answered {}",
            v.status
        ));
        Ok(())
    }
}

/// Verifies `target` every 250 ms until refused; the refusal must come within the bound.
async fn refused_within_ttl(
    cx: &Cx,
    out: &mut Outcome,
    tally: &Tally,
    label: &str,
    target: &Sess,
    acked: Instant,
) -> anyhow::Result<()> {
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
        format!(
            "{label}: the revoked session is refused within SESSION_CACHE_TTL ({} s)",
            bound.as_secs()
        ),
        refused_after.is_some_and(|d| d <= bound),
        match refused_after {
            Some(d) => format!(
                "refused {:.2} s after the revoke answered ({accepted} verifies accepted before)",
                d.as_secs_f64()
            ),
            None => format!("still accepted after {} s", (bound + secs(5)).as_secs()),
        },
    );
    Ok(())
}
