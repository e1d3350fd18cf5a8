//! `origin-sigterm`: 24 logins queued on the argon2 pool and one login whose body is still
//! arriving, then `kill -TERM`. All are answered 200, the slow one too; new connections
//! are refused; the process exits 0 within `SHUTDOWN_GRACE`; the sessions work after a
//! restart and their audit rows exist.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use testkit::Signal;
use tokio::task::JoinSet;

use crate::checks;
use crate::cx::{Cx, SHUTDOWN_GRACE_SECS, TRAFFIC_USERS, secs};
use crate::ledger::{Rng, Sess};
use crate::rawsock::{self, RawReply};
use crate::report::{Outcome, Tally};
use crate::status_key;

const NAME: &str = "origin-sigterm";
const QUEUED: usize = 24;

pub async fn run(cx: &Cx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::new(NAME);
    let tally = Tally::default();
    let mut set = JoinSet::new();
    for i in 0..QUEUED {
        let api = cx.client();
        let user = i % TRAFFIC_USERS;
        let u = cx.ledger.user(user);
        set.spawn(async move { (user, api.login(&u.email, &u.password).await) });
    }
    let slow_user = cx.dedicated()?;
    let slow = tokio::spawn(slow_login(cx.origin.addr(), cx.ledger.user(slow_user)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    cx.origin.signal(Signal::SIGTERM).await?;
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = tokio::net::TcpStream::connect(cx.origin.addr())
        .await
        .is_err();

    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(done) = set.join_next().await {
        let (user, r) = done?;
        let key = status_key(&r);
        tally.add("login", &key);
        *statuses.entry(key).or_default() += 1;
        if let Some(token) = r.ok().filter(|r| r.status == 200).and_then(|r| r.token()) {
            cx.ledger.add_session(user, token, NAME);
        }
    }
    let answered: usize = statuses
        .iter()
        .filter(|(k, _)| k.parse::<u16>().is_ok())
        .map(|(_, n)| n)
        .sum();
    let slow = slow.await??;
    tally.add(
        "login",
        &slow.status.map_or("no answer".into(), |s| s.to_string()),
    );
    if slow.status == Some(200)
        && let Some(token) = slow.cookie("session")
    {
        cx.ledger.add_session(slow_user, token, NAME);
    }
    let exit = cx.origin.wait_exit(secs(SHUTDOWN_GRACE_SECS + 10)).await?;
    out.check(
        "in-flight requests finish after SIGTERM",
        answered == QUEUED && statuses.get("200") == Some(&QUEUED),
        format!("{answered}/{QUEUED} logins answered: {statuses:?}"),
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
        cx.origin.signal(Signal::SIGKILL).await?;
        cx.origin.wait_exit(secs(10)).await?;
    }
    cx.origin.restart().await?;
    check_sessions_after_restart(cx, &mut out, &tally).await?;
    out.absorb(&tally);
    checks::audit_stores(cx, Some(&[NAME]), &mut out).await?;
    Ok(out)
}

/// A login whose body arrives in 8 pieces, 250 ms apart, on a raw connection.
async fn slow_login(addr: String, user: crate::ledger::User) -> anyhow::Result<RawReply> {
    let body = json!({ "email": user.email, "password": user.password }).to_string();
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Forwarded-For: {}\r\n\r\n",
        body.len(),
        Rng::new().ip()
    );
    let mut chunks = vec![head.into_bytes()];
    let bytes = body.into_bytes();
    chunks.extend(bytes.chunks(bytes.len().div_ceil(8)).map(<[u8]>::to_vec));
    rawsock::raw(&addr, &chunks, Duration::from_millis(250), secs(30)).await
}

async fn check_sessions_after_restart(
    cx: &Cx,
    out: &mut Outcome,
    tally: &Tally,
) -> anyhow::Result<()> {
    let mine: Vec<Arc<Sess>> = cx
        .ledger
        .sessions()
        .into_iter()
        .filter(|s| s.scenario == NAME)
        .collect();
    let mut ok = 0;
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
    Ok(())
}
