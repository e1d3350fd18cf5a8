//! `revoke-race`: a revoke racing the cache backfill of verifies of the same session.
//! Verifies that missed the cache and read the row just before the revoke deleted it must
//! not put the session back into the cache after the revoke evicted it.

use std::time::{Duration, Instant};

use anyhow::bail;
use fred::prelude::*;
use tokio::task::JoinSet;

use crate::checks;
use crate::cx::Cx;
use crate::report::{Outcome, Tally};
use crate::status_key;

const NAME: &str = "revoke-race";

pub async fn run(cx: &Cx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::new(NAME);
    let tally = Tally::default();
    let rounds = if cx.long() { 150 } else { 40 };
    let user = cx.dedicated()?;
    let actor = cx.login(user, NAME).await?;
    let redis = cx.redis_client().await?;
    let (mut resurrected, mut accepted_after) = (0, 0);
    for _ in 0..rounds {
        let (back, accepted) = round(cx, &redis, &tally, user, &actor.token).await?;
        resurrected += usize::from(back);
        accepted_after += usize::from(accepted);
    }
    let _ = redis.quit().await;
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
    checks::audit_stores(cx, Some(&[NAME]), &mut out).await?;
    Ok(out)
}

/// One round: a fresh session's cache entry dropped, 24 verifies of it spread over
/// 3.6 ms, its revoke 1 ms in. Returns (entry back in the cache, accepted afterwards).
async fn round(
    cx: &Cx,
    redis: &Client,
    tally: &Tally,
    user: usize,
    actor: &str,
) -> anyhow::Result<(bool, bool)> {
    let target = cx.login(user, NAME).await?;
    let key = testkit::keys::session(&target.hash);
    let _: i64 = redis.del(key.as_str()).await?;
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
    let r = cx.api.revoke(actor, &target.hash).await?;
    tally.add("revoke", &r.status.to_string());
    if r.status != 200 {
        bail!("revoke answered {}", r.status);
    }
    cx.ledger.add_revoke(&target, NAME);
    while let Some(done) = set.join_next().await {
        tally.add("verify", &status_key(&done?));
    }
    let present: i64 = redis.exists(key.as_str()).await?;
    let v = cx.api.me(&target.token).await?;
    tally.add("verify", &v.status.to_string());
    Ok((present > 0, v.status == 200))
}
