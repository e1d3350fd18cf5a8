//! `postgres-outage`: Postgres stopped (fast shutdown) under traffic, then started again.
//! `/readyz` names the database; cached sessions keep working; misses, logins, writes and
//! database reads answer 503 with `Retry-After` (never 500, no internals); full service
//! after the restart with the same origin process; nothing half-written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use testkit::Reply;

use crate::checks;
use crate::cx::{Cx, secs};
use crate::ledger::Sess;
use crate::report::{Outcome, Tally};
use crate::traffic;

const NAME: &str = "postgres-outage";
const REFUSED_EMAIL: &str = "pg-outage@reliability.example";

/// The sessions the checks use.
struct Subjects {
    /// Fresh logins, cached with a full `SESSION_CACHE_TTL` ahead.
    warm: Vec<Arc<Sess>>,
    /// The revoke's actor and target (one user).
    r_actor: Arc<Sess>,
    r_target: Arc<Sess>,
    /// The password change's user, its actor and another session of it.
    pu: usize,
    p_actor: Arc<Sess>,
    p_other: Arc<Sess>,
    /// Known to the database; their cache entries are dropped during the outage. (Of
    /// dedicated users: the background traffic revokes its own users' oldest sessions.)
    cold: Vec<Arc<Sess>>,
}

async fn subjects(cx: &Cx) -> anyhow::Result<Subjects> {
    let mut warm = Vec::new();
    for _ in 0..6 {
        warm.push(cx.login(cx.dedicated()?, NAME).await?);
    }
    let (ru, pu) = (cx.dedicated()?, cx.dedicated()?);
    let (r_actor, r_target) = (cx.login(ru, NAME).await?, cx.login(ru, NAME).await?);
    let (p_actor, p_other) = (cx.login(pu, NAME).await?, cx.login(pu, NAME).await?);
    let mut cold = Vec::new();
    for _ in 0..6 {
        cold.push(cx.login(cx.dedicated()?, NAME).await?);
    }
    Ok(Subjects {
        warm,
        r_actor,
        r_target,
        pu,
        p_actor,
        p_other,
        cold,
    })
}

pub async fn run(cx: &Cx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::new(NAME);
    let tally = Tally::default();
    let (before, during, after) = cx.phases();
    let pid = cx.origin.pid();
    let s = subjects(cx).await?;
    let running = traffic::start(&cx.api, &cx.ledger, cx.mix(), NAME);
    tokio::time::sleep(before).await;
    cx.pg.stop().await?;
    let down = Instant::now();
    out.note("postgres stopped (fast shutdown: SIGINT, as pg_ctl stop -m fast)");
    checks::evict_sessions(cx, s.cold.iter().map(|c| c.hash.as_str())).await?;
    check_during(cx, &mut out, &tally, &s).await?;

    tokio::time::sleep(during.saturating_sub(down.elapsed())).await;
    cx.pg.restart().await?;
    let up = Instant::now();
    let ready = cx.api.wait_ready(secs(30)).await;
    out.check(
        "full service after the restart without restarting the origin",
        ready && cx.origin.pid() == pid,
        format!(
            "/readyz 200 {:.1} s after the restart, origin pid unchanged: {}",
            up.elapsed().as_secs_f64(),
            cx.origin.pid() == pid
        ),
    );
    check_nothing_half_written(cx, &mut out, &tally, &s).await?;

    tokio::time::sleep(after).await;
    let rec = running.stop().await;
    let events = rec.events();
    out.note(format!(
        "during the outage: {} verifies 200, {} verifies 503, {} logins 503",
        super::count_in(&events, "verify", "200", down, up),
        super::count_in(&events, "verify", "503", down, up),
        super::count_in(&events, "login", "503", down, up)
    ));
    super::traffic_checks(&mut out, &rec, true, Duration::ZERO);
    out.absorb(&tally);
    checks::audit_stores(cx, Some(&[NAME]), &mut out).await?;
    Ok(out)
}

fn unavailable<T>(r: &Reply<T>) -> bool {
    r.status == 503 && r.retry_after().is_some()
}

/// Everything checked while the database is down.
async fn check_during(
    cx: &Cx,
    out: &mut Outcome,
    tally: &Tally,
    s: &Subjects,
) -> anyhow::Result<()> {
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
    for sess in s.warm.iter().chain([&s.r_actor, &s.p_actor]) {
        let r = cx.api.me(&sess.token).await?;
        tally.add("verify", &r.status.to_string());
        warm_ok += usize::from(r.status == 200);
    }
    out.check(
        "cached sessions keep working",
        warm_ok == s.warm.len() + 2,
        format!("{warm_ok}/{} verified", s.warm.len() + 2),
    );
    let mut cold_503 = 0;
    let mut cold_statuses = BTreeMap::new();
    for sess in &s.cold {
        let r = cx.api.me(&sess.token).await?;
        tally.add("verify", &r.status.to_string());
        cold_503 += usize::from(unavailable(&r));
        *cold_statuses.entry(r.status).or_insert(0) += 1;
    }
    out.check(
        "cache misses answer 503 with Retry-After",
        cold_503 == s.cold.len(),
        format!("{cold_statuses:?}"),
    );
    check_writes_refused(cx, out, tally, s).await
}

/// Logins, writes and database reads answer 503 with `Retry-After`, with no internals.
async fn check_writes_refused(
    cx: &Cx,
    out: &mut Outcome,
    tally: &Tally,
    s: &Subjects,
) -> anyhow::Result<()> {
    let lu = cx.ledger.user(cx.dedicated()?);
    let login = cx.client().login(&lu.email, &lu.password).await?;
    tally.add("login", &login.status.to_string());
    let reg = cx
        .client()
        .register(REFUSED_EMAIL, "a fine password", None)
        .await?;
    tally.add("register", &reg.status.to_string());
    s.r_target
        .update(|st| st.revoke_sent = Some(Instant::now()));
    let revoke = cx.api.revoke(&s.r_actor.token, &s.r_target.hash).await?;
    tally.add("revoke", &revoke.status.to_string());
    let current = cx.ledger.user(s.pu).password;
    let pw = cx
        .client()
        .change_password(&s.p_actor.token, &current, "a brand new password")
        .await?;
    tally.add("password", &pw.status.to_string());
    let list = cx.api.sessions(&s.p_actor.token).await?;
    tally.add("sessions", &list.status.to_string());
    let writes: [(&str, bool, String); 5] = [
        ("login", unavailable(&login), login.text()),
        ("register", unavailable(&reg), reg.text()),
        ("revoke", unavailable(&revoke), revoke.text()),
        ("password change", unavailable(&pw), pw.text()),
        ("sessions list", unavailable(&list), list.text()),
    ];
    let statuses = [
        login.status,
        reg.status,
        revoke.status,
        pw.status,
        list.status,
    ];
    let bad: Vec<String> = writes
        .iter()
        .zip(statuses)
        .filter(|((_, ok, _), _)| !ok)
        .map(|((what, _, _), status)| format!("{what} {status}"))
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
        .filter(|(_, _, body)| {
            let body = body.to_lowercase();
            [
                "postgres",
                "sql",
                "connection",
                &cx.pg.port().to_string(),
                "127.0.0.1",
            ]
            .iter()
            .any(|w| body.contains(w))
        })
        .map(|(what, _, _)| *what)
        .collect();
    out.check(
        "503 bodies carry no internals",
        leaks.is_empty(),
        format!("{leaks:?}"),
    );
    Ok(())
}

/// The refused operations left no trace, and work now.
async fn check_nothing_half_written(
    cx: &Cx,
    out: &mut Outcome,
    tally: &Tally,
    s: &Subjects,
) -> anyhow::Result<()> {
    let mut after_ok = Vec::new();
    let still = cx.api.me(&s.r_target.token).await?;
    tally.add("verify", &still.status.to_string());
    after_ok.push((
        "session refused-revoke target still valid",
        still.status == 200,
    ));
    s.r_target.update(|st| {
        st.revoke_sent = None;
        st.uncertain = false;
    });
    let other = cx.api.me(&s.p_other.token).await?;
    tally.add("verify", &other.status.to_string());
    after_ok.push((
        "other session of the refused password change still valid",
        other.status == 200,
    ));
    after_ok.push((
        "old password still works",
        cx.login(s.pu, NAME).await.is_ok(),
    ));
    s.r_target
        .update(|st| st.revoke_sent = Some(Instant::now()));
    let revoke = cx.api.revoke(&s.r_actor.token, &s.r_target.hash).await?;
    tally.add("revoke", &revoke.status.to_string());
    if revoke.status == 200 {
        cx.ledger.add_revoke(&s.r_target, NAME);
    }
    after_ok.push(("revoke works", revoke.status == 200));
    after_ok.push(("login works", cx.login(cx.dedicated()?, NAME).await.is_ok()));
    let mut cold_ok = 0;
    for sess in &s.cold {
        let r = cx.api.me(&sess.token).await?;
        tally.add("verify", &r.status.to_string());
        cold_ok += usize::from(r.status == 200);
    }
    after_ok.push(("uncached sessions verify", cold_ok == s.cold.len()));
    let failed: Vec<&str> = after_ok
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(w, _)| *w)
        .collect();
    let all: Vec<&str> = after_ok.iter().map(|(w, _)| *w).collect();
    out.check(
        "nothing half-written: refused operations left no trace and succeed now",
        failed.is_empty(),
        if failed.is_empty() {
            all.join("; ")
        } else {
            format!("failed: {}", failed.join("; "))
        },
    );
    let sql = format!("SELECT count(*) AS n FROM users WHERE email = '{REFUSED_EMAIL}'");
    let reg_row = cx.count(&sql).await?;
    out.check(
        "the registration refused with 503 created no user",
        reg_row == 0,
        format!("{reg_row} rows"),
    );
    out.rows_checked += 1;
    Ok(())
}
