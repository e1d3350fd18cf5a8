//! `load`: 500 concurrent logins (50 wrong passwords, 20 from one address) and 10 000
//! concurrent verifies (live, revoked, forged, expired, none), all in flight at once (long
//! mode: 3 rounds). Every answer is the one the contract requires, none is a 5xx or a
//! transport error except the password queue's `503` + `Retry-After` for logins beyond
//! `PASSWORD_QUEUE_MAX` (which must still admit at least that many), the per-address login
//! limit holds, and the origin's peak memory stays within its budget.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;
use testkit::Api;
use testkit::api::reqwest;
use tokio::task::JoinSet;

use crate::checks;
use crate::cx::{Cx, PASSWORD_QUEUE_MAX, TRAFFIC_USERS, secs};
use crate::ledger::{Rng, Sess};
use crate::report::{Outcome, Tally};
use crate::status_key;

const NAME: &str = "load";
/// Peak resident memory allowed to the origin through the load: about 15 MiB idle, two
/// 19 MiB argon2 areas, and some 20-25 KiB per open connection with all 10 500 requests
/// in flight at once (measured 158-329 MiB), with some room to spare. The argon2 heap
/// hoarding fixed in ca57fcc took it to 1.2 GiB.
pub const MEMORY_BUDGET_MIB: u64 = 384;

/// The error of a login refused because the password-hashing queue is full.
const QUEUE_FULL: &str = "Service busy. Please try again shortly.";

/// A verify of the load: the token and the answer the contract requires.
struct Probe {
    token: Option<String>,
    expect: u16,
    class: &'static str,
}

/// What one round saw.
#[derive(Default)]
struct Figures {
    login_lat: Vec<Duration>,
    verify_lat: Vec<Duration>,
    off_contract: usize,
    wrong_answer: BTreeMap<String, usize>,
    shared_429: usize,
    shared_429_retry: bool,
    ok_logins: usize,
    failed_logins: usize,
    /// Logins refused because the hashing queue was full.
    queue_503: usize,
    queue_503_retry: bool,
}

pub async fn run(cx: &Cx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::new(NAME);
    let users = cx.register_users(500, "load", &Tally::default()).await?;
    out.note(format!("registered {} load users first", users.len()));
    let rounds = if cx.long() { 3 } else { 1 };
    for round in 0..rounds {
        run_round(cx, &users, round, &mut out).await?;
    }
    checks::audit_stores(cx, Some(&[NAME]), &mut out).await?;
    Ok(out)
}

/// 500 logins: 450 right, 50 wrong; 20 of the right ones share one address.
fn logins(users: &[usize], shared_ip: &str) -> Vec<(usize, bool, String)> {
    users
        .iter()
        .enumerate()
        .map(|(i, &user)| {
            let wrong = i % 10 == 9;
            let ip = if !wrong && i < 22 {
                shared_ip.to_owned()
            } else {
                Rng::new().ip()
            };
            (user, wrong, ip)
        })
        .collect()
}

/// 10 000 verifies: live sessions, revoked ones, forged and expired tokens, none.
fn probes(cx: &Cx) -> anyhow::Result<Vec<Probe>> {
    let sessions = cx.ledger.sessions();
    let live: Vec<&Arc<Sess>> = sessions
        .iter()
        .filter(|s| s.user < TRAFFIC_USERS && s.live())
        .collect();
    let revoked: Vec<&Arc<Sess>> = sessions
        .iter()
        .filter(|s| s.state().revoked.is_some())
        .collect();
    let mut forged_key = [0u8; 32];
    getrandom::fill(&mut forged_key).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    let mut rng = Rng::new();
    let probe = |token, expect, class| Probe {
        token: Some(token),
        expect,
        class,
    };
    Ok((0..10_000usize)
        .map(|i| match i % 10 {
            0..=5 if !live.is_empty() => {
                probe(live[rng.below(live.len())].token.clone(), 200, "live")
            }
            6 if !revoked.is_empty() => probe(
                revoked[rng.below(revoked.len())].token.clone(),
                401,
                "revoked",
            ),
            7 => probe(
                mint(&cx.kid, &random_sid(), now, now + 3600, &forged_key),
                401,
                "forged",
            ),
            8 => probe(
                mint(&cx.kid, &random_sid(), now - 7200, now - 3600, &cx.key),
                401,
                "expired",
            ),
            _ => Probe {
                token: None,
                expect: 401,
                class: "none",
            },
        })
        .collect())
}

async fn run_round(
    cx: &Cx,
    users: &[usize],
    round: usize,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let tally = Tally::default();
    let shared_ip = format!("10.250.{round}.1");
    let logins = logins(users, &shared_ip);
    let probes = probes(cx)?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(secs(180))
        .connect_timeout(secs(60))
        .pool_max_idle_per_host(0)
        .build()?;
    let api = Api::with_client(&cx.origin.url(), http);
    let hwm_before = cx.origin.vm_hwm_kib().unwrap_or(0);
    let started = Instant::now();
    let mut login_set = JoinSet::new();
    for (user, wrong, ip) in logins {
        let api = api.from_ip(&ip);
        let u = cx.ledger.user(user);
        login_set.spawn(async move {
            let pw = if wrong {
                "definitely wrong".to_owned()
            } else {
                u.password.clone()
            };
            (user, wrong, ip, api.login(&u.email, &pw).await)
        });
    }
    let mut verify_set = JoinSet::new();
    for probe in probes {
        let api = api.clone();
        verify_set.spawn(async move {
            let req = api.request(reqwest::Method::GET, "/api/v1/auth/me");
            let req = match &probe.token {
                Some(t) => api.with_cookie(req, t),
                None => req,
            };
            (
                probe.expect,
                probe.class,
                api.send::<serde_json::Value>(req).await,
            )
        });
    }
    let mut f = Figures {
        shared_429_retry: true,
        queue_503_retry: true,
        ..Figures::default()
    };
    while let Some(done) = login_set.join_next().await {
        let (user, wrong, ip, r) = done?;
        tally.add("login", &status_key(&r));
        match r {
            Ok(reply) => record_login(cx, &mut f, user, wrong, ip == shared_ip, reply),
            Err(_) => f.off_contract += 1,
        }
    }
    while let Some(done) = verify_set.join_next().await {
        let (expect, class, r) = done?;
        tally.add("verify", &status_key(&r));
        match r {
            Ok(reply) => {
                f.verify_lat.push(reply.elapsed);
                f.off_contract += usize::from(![200, 401, 429].contains(&reply.status));
                if reply.status != expect {
                    *f.wrong_answer
                        .entry(format!("verify {class} {}", reply.status))
                        .or_default() += 1;
                }
            }
            Err(_) => f.off_contract += 1,
        }
    }
    report_round(cx, out, &tally, f, round + 1, started.elapsed(), hwm_before);
    Ok(())
}

fn record_login(
    cx: &Cx,
    f: &mut Figures,
    user: usize,
    wrong: bool,
    shared: bool,
    reply: testkit::Reply<testkit::api::UserBody>,
) {
    f.login_lat.push(reply.elapsed);
    // The hashing queue is full (api-v1.md, PASSWORD_QUEUE_MAX): the one 503 a login may
    // answer while the stores are up.
    let queue_full = reply.status == 503 && reply.error().as_deref() == Some(QUEUE_FULL);
    f.off_contract += usize::from(![200, 401, 429].contains(&reply.status) && !queue_full);
    let expected = match (wrong, reply.status) {
        (_, 429) => shared,
        (_, 503) => queue_full,
        (true, s) => s == 401,
        (false, s) => s == 200,
    };
    if !expected {
        let what = format!(
            "login {}{}",
            if wrong { "wrong-password " } else { "" },
            reply.status
        );
        *f.wrong_answer.entry(what).or_default() += 1;
    }
    if reply.status == 429 {
        f.shared_429 += 1;
        f.shared_429_retry &= reply.retry_after().is_some();
    }
    if queue_full {
        f.queue_503 += 1;
        f.queue_503_retry &= reply.retry_after().is_some();
    }
    if reply.status == 401 {
        f.failed_logins += 1;
        cx.ledger.add_failed_login(user);
    }
    if reply.status == 200
        && let Some(token) = reply.token()
    {
        f.ok_logins += 1;
        cx.ledger.add_session(user, token, NAME);
    }
}

fn report_round(
    cx: &Cx,
    out: &mut Outcome,
    tally: &Tally,
    mut f: Figures,
    round: usize,
    took: Duration,
    hwm_before: u64,
) {
    let hwm = cx.origin.vm_hwm_kib().unwrap_or(0);
    let rss = cx.origin.vm_rss_kib().unwrap_or(0);
    f.login_lat.sort();
    f.verify_lat.sort();
    out.check(
        format!(
            "round {round}: every answer is 200, 401, 429 or a full queue's 503; no other 5xx, no transport error"
        ),
        f.off_contract == 0,
        format!(
            "{} requests in {:.1} s, {} outside the contract",
            tally.total(),
            took.as_secs_f64(),
            f.off_contract
        ),
    );
    out.check(
        format!("round {round}: each answer is the one the contract requires"),
        f.wrong_answer.is_empty(),
        if f.wrong_answer.is_empty() {
            format!("{} logins 200, {} wrong passwords 401, {} rate-limited on the shared address, {} refused by the full hashing queue; verifies by class all as expected", f.ok_logins, f.failed_logins, f.shared_429, f.queue_503)
        } else {
            format!("{:?}", f.wrong_answer)
        },
    );
    out.check(
        format!(
            "round {round}: the per-address login limit holds under load (429 with Retry-After)"
        ),
        f.shared_429 == 15 && f.shared_429_retry,
        format!("{} of 20 logins from one address refused", f.shared_429),
    );
    let hashed = f.ok_logins + f.failed_logins;
    out.check(
        format!(
            "round {round}: the hashing queue refuses only beyond PASSWORD_QUEUE_MAX ({PASSWORD_QUEUE_MAX}), with Retry-After"
        ),
        f.queue_503_retry && (f.queue_503 == 0 || hashed >= PASSWORD_QUEUE_MAX),
        format!(
            "{hashed} logins hashed, {} refused with 503{}",
            f.queue_503,
            if f.queue_503_retry {
                ""
            } else {
                " (some without Retry-After)"
            }
        ),
    );
    out.check(
        format!("round {round}: origin memory within {MEMORY_BUDGET_MIB} MiB (VmHWM)"),
        hwm > 0 && hwm <= MEMORY_BUDGET_MIB * 1024,
        format!(
            "VmHWM {} MiB (before the round {} MiB), VmRSS after {} MiB",
            hwm / 1024,
            hwm_before / 1024,
            rss / 1024
        ),
    );
    out.note(format!(
        "round {round}: login latency p50 {:.0} ms p99 {:.0} ms; verify latency p50 {:.0} ms p99 {:.0} ms (all 10 500 in flight at once)",
        percentile(&f.login_lat, 0.5),
        percentile(&f.login_lat, 0.99),
        percentile(&f.verify_lat, 0.5),
        percentile(&f.verify_lat, 0.99)
    ));
    out.absorb(tally);
}

/// An HS256 token signed with `key` (forged when it is not the run's key).
fn mint(kid: &str, sid: &str, iat: u64, exp: u64, key: &[u8]) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let header = b64(json!({ "alg": "HS256", "typ": "JWT", "kid": kid })
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
    testkit::random_b64url(32)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}
