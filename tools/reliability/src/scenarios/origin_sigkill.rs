//! `origin-sigkill`: `kill -KILL` mid-traffic, then a restart. No 5xx (cut requests fail
//! as connection errors), no revoked session accepted, every live session verifies on the
//! new process, and the store audit holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use testkit::Signal;

use crate::checks;
use crate::cx::{Cx, TRAFFIC_USERS, secs};
use crate::ledger::Sess;
use crate::report::{Outcome, Tally};
use crate::{status_key, traffic};

const NAME: &str = "origin-sigkill";

pub async fn run(cx: &Cx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::new(NAME);
    let (before, _, after) = cx.phases();
    let mut mix = cx.mix();
    mix.login_workers = 4;
    mix.write_pace = Duration::from_millis(20);
    let running = traffic::start(&cx.api, &cx.ledger, mix, NAME);
    tokio::time::sleep(before).await;
    cx.origin.signal(Signal::SIGKILL).await?;
    let killed = Instant::now();
    cx.ledger.add_kill(killed);
    let status = cx.origin.wait_exit(secs(10)).await?;
    out.note(format!("origin killed (SIGKILL): {status:?}"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = cx.origin.restart().await?;
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
    check_live_sessions(cx, &mut out).await;
    checks::audit_stores(cx, Some(&[NAME]), &mut out).await?;
    Ok(out)
}

/// Every session the ledger believes live still verifies on the new process.
async fn check_live_sessions(cx: &Cx, out: &mut Outcome) {
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
}
