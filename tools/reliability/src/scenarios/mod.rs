//! The scenarios, one per file, in the order they run: set-up, Redis outage, Redis stall
//! during a revoke, Postgres outage, a connection killed mid-write, the revoke race, the
//! abuse corpus, the token corpus at origin and edge, the load, origin SIGKILL and SIGTERM,
//! the fuzz targets, and the final audit of the whole ledger. This module runs them and
//! holds the checks several of them share.

mod abuse_origin;
mod fuzz;
mod ledger;
mod load;
mod origin_sigkill;
mod origin_sigterm;
mod postgres_conn_killed;
mod postgres_outage;
mod redis_outage;
mod redis_stall_revoke;
mod revoke_race;
mod setup;
mod tokens_origin_edge;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::cx::{Cx, SHUTDOWN_GRACE_SECS};
use crate::report::Outcome;
use crate::traffic::{self, Event, Recorder};

type Scenario =
    for<'a> fn(&'a Cx) -> Pin<Box<dyn Future<Output = anyhow::Result<Outcome>> + Send + 'a>>;

/// The scenarios after set-up, by name, in order.
fn list() -> Vec<(&'static str, Scenario)> {
    vec![
        ("redis-outage", |cx| Box::pin(redis_outage::run(cx))),
        ("redis-stall-revoke", |cx| {
            Box::pin(redis_stall_revoke::run(cx))
        }),
        ("postgres-outage", |cx| Box::pin(postgres_outage::run(cx))),
        ("postgres-conn-killed", |cx| {
            Box::pin(postgres_conn_killed::run(cx))
        }),
        ("revoke-race", |cx| Box::pin(revoke_race::run(cx))),
        ("abuse-origin", |cx| Box::pin(abuse_origin::run(cx))),
        ("tokens-origin-edge", |cx| {
            Box::pin(tokens_origin_edge::run(cx))
        }),
        ("load", |cx| Box::pin(load::run(cx))),
        ("origin-sigkill", |cx| Box::pin(origin_sigkill::run(cx))),
        ("origin-sigterm", |cx| Box::pin(origin_sigterm::run(cx))),
        ("fuzz", |cx| Box::pin(fuzz::run(cx))),
    ]
}

/// Runs set-up, the selected scenarios (`only`, empty for all) and the ledger audit.
pub async fn run_all(cx: &Cx, only: &[String], with_fuzz: bool) -> anyhow::Result<Vec<Outcome>> {
    let mut outcomes = vec![guard("setup", setup::run(cx)).await];
    print_memory(cx, "setup");
    if !outcomes[0].passed() {
        return Ok(outcomes);
    }
    for (name, scenario) in list() {
        if (!only.is_empty() && !only.iter().any(|o| o == name)) || (name == "fuzz" && !with_fuzz) {
            continue;
        }
        outcomes.push(guard(name, scenario(cx)).await);
        print_memory(cx, name);
        // Every scenario leaves a serving origin behind for the next one.
        if cx.origin.pid().is_none() || cx.api.healthz().await.is_err() {
            println!("  (origin not serving after {name}: restarting it)");
            cx.origin
                .stop(Duration::from_secs(SHUTDOWN_GRACE_SECS + 5))
                .await;
            cx.origin.restart().await?;
        }
    }
    outcomes.push(guard("ledger", ledger::run(cx)).await);
    Ok(outcomes)
}

fn print_memory(cx: &Cx, after: &str) {
    println!(
        "  (origin memory after {after}: VmRSS {} MiB, VmHWM {} MiB)",
        cx.origin.vm_rss_kib().unwrap_or(0) / 1024,
        cx.origin.vm_hwm_kib().unwrap_or(0) / 1024
    );
}

/// Turns a scenario that could not run to completion into a failed outcome.
async fn guard(name: &str, fut: impl Future<Output = anyhow::Result<Outcome>>) -> Outcome {
    match fut.await {
        Ok(o) => o.finish(),
        Err(e) => {
            let mut o = Outcome::new(name);
            o.check("scenario ran to completion", false, format!("{e:#}"));
            o.finish()
        }
    }
}

/// Common checks on background traffic: no 5xx (or, with `allow_503`, only 503 with
/// `Retry-After`), no revoked session accepted after `revoke_bound`, no live session
/// refused.
fn traffic_checks(out: &mut Outcome, rec: &Recorder, allow_503: bool, revoke_bound: Duration) {
    let events = rec.events();
    let fives = events.iter().filter(|e| e.status.starts_with('5')).count();
    if allow_503 {
        let bad = traffic::bad_5xx(&events);
        out.check(
            "traffic: no 500, every 503 carries Retry-After",
            bad.is_empty(),
            format!("{} answers, {fives} 503, {} bad", events.len(), bad.len()),
        );
    } else {
        out.check(
            "traffic: no 5xx",
            fives == 0,
            format!("{} answers, {fives} 5xx", events.len()),
        );
    }
    check_revoked_refused(out, &events, revoke_bound);
    check_live_accepted(out, rec, &events);
    out.absorb(&rec.tally);
}

fn check_revoked_refused(out: &mut Outcome, events: &[Event], bound: Duration) {
    let accepted = traffic::revoked_accepted(events, bound);
    let when = if bound.is_zero() {
        "at any time".to_owned()
    } else {
        format!("more than {} s", bound.as_secs())
    };
    let of_revoked = events
        .iter()
        .filter(|e| e.kind == "verify" && e.revoked_for.is_some())
        .count();
    out.check(
        format!("traffic: no revoked session accepted {when} after its revoke"),
        accepted.is_empty(),
        format!(
            "{of_revoked} verifies of revoked sessions, {} accepted",
            accepted.len()
        ),
    );
}

fn check_live_accepted(out: &mut Outcome, rec: &Recorder, events: &[Event]) {
    let live = events
        .iter()
        .filter(|e| e.kind == "verify" && e.believed_live);
    let refused: Vec<_> = live.clone().filter(|e| e.status == "401").collect();
    let examples: String = refused
        .iter()
        .take(5)
        .map(|e| {
            format!(
                "; one sent {:.3} s into the traffic, answered after {} ms",
                e.sent.saturating_duration_since(rec.started).as_secs_f64(),
                e.took.as_millis()
            )
        })
        .collect();
    out.check(
        "traffic: no live session refused",
        refused.is_empty(),
        format!(
            "{} verifies of live sessions, {} answered 401{examples}",
            live.count(),
            refused.len()
        ),
    );
}

/// Answers of `kind` with `status` to requests sent between `from` and `to`.
fn count_in(events: &[Event], kind: &str, status: &str, from: Instant, to: Instant) -> usize {
    events
        .iter()
        .filter(|e| e.kind == kind && e.status == status && e.sent >= from && e.sent < to)
        .count()
}
