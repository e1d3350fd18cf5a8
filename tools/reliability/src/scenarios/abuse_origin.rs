//! `abuse-origin`: the bad-input corpus (`corpus/abuse.json` plus the cases below that
//! need the run's state) against the origin: bad JSON, wrong types, deep nesting, invalid
//! UTF-8, oversized and slow bodies, slow and idle connections, huge and oddly quoted
//! cookies, look-alike emails, off-site `next` values, header injection and injection
//! through path parameters. Each case gets the contract's status and is followed by a
//! health check.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use bytes::Bytes;
use serde_json::json;
use testkit::api::reqwest::{self, Method};
use testkit::{Api, Reply};

use crate::abuse::{Abuse, Corpus, header_text};
use crate::cx::{BODY_READ_TIMEOUT_SECS, Cx, HEADER_READ_TIMEOUT_SECS};
use crate::ledger::User;
use crate::rawsock::{self, RawReply};
use crate::report::{Outcome, Tally};

const NAME: &str = "abuse-origin";
const LOGIN: &str = "/api/v1/auth/login";
const REGISTER: &str = "/api/v1/auth/register";
/// The longest a connection that sends its request slowly (or not at all) may be held.
const SLOW_LIMIT: Duration = Duration::from_secs(
    if HEADER_READ_TIMEOUT_SECS > BODY_READ_TIMEOUT_SECS {
        HEADER_READ_TIMEOUT_SECS
    } else {
        BODY_READ_TIMEOUT_SECS
    } + 5,
);

fn fine<T>(_: &Reply<T>) -> String {
    String::new()
}

/// `POST path` with this content type (or none) and exactly these bytes.
fn post_raw(
    api: &Api,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    let req = api.request(Method::POST, path).body(body);
    match content_type {
        Some(t) => req.header("content-type", t),
        None => req,
    }
}

pub async fn run(cx: &Cx) -> anyhow::Result<Outcome> {
    let corpus = Corpus::load()?;
    let addr = cx.origin.addr();
    let mut a = Abuse {
        cx,
        out: Outcome::new(NAME),
        tally: Tally::default(),
        health_user: cx.dedicated()?,
        unhealthy: Vec::new(),
    };
    let slow = tokio::spawn(slow_cases(addr.clone()));
    let crowd_started = Instant::now();
    let crowd: Vec<_> = (0..200)
        .map(|i| tokio::spawn(slowloris(addr.clone(), i)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    bodies(&mut a, &corpus).await?;
    lookalikes(&mut a).await?;
    next_values(&mut a, &corpus).await;
    let ua_user = headers(&mut a, &corpus, &addr).await?;
    cookies(&mut a, &corpus).await?;

    crowd_results(&mut a, crowd, crowd_started).await;
    for (case, r) in slow.await.map_err(|e| anyhow!("slow cases: {e}"))? {
        slow_result(&mut a, &case, &r);
    }
    a.health("slow connections").await;
    let unhealthy = std::mem::take(&mut a.unhealthy);
    let health_checks = a
        .tally
        .snapshot()
        .get("health")
        .map_or(0, |m| m.values().sum::<u64>())
        / 3;
    a.out.check(
        "healthy after every case (/healthz 200 and a normal login 200)",
        unhealthy.is_empty(),
        if unhealthy.is_empty() {
            format!("{health_checks} health checks")
        } else {
            format!("unhealthy after: {unhealthy:?}")
        },
    );
    let mut out = a.out;
    out.absorb(&a.tally);
    check_user_agent_row(cx, &mut out, &ua_user).await?;
    Ok(out)
}

/// Bodies from the corpus, sizes around the 64 KiB cap, and passwords that must never
/// reach argon2.
async fn bodies(a: &mut Abuse<'_>, corpus: &Corpus) -> anyhow::Result<()> {
    let vars = HashMap::new();
    for (path, label, cases) in [
        (LOGIN, "login", &corpus.login_bodies),
        (REGISTER, "register", &corpus.register_bodies),
    ] {
        for case in cases {
            // Each request from an address of its own: the per-address limits stay clear.
            let api = a.cx.client();
            let req = post_raw(
                &api,
                path,
                case.content_type.as_deref(),
                case.body.expand(&vars),
            );
            let r = api.send::<serde_json::Value>(req).await;
            a.case(&format!("{label}: {}", case.name), &case.expect, r, fine)
                .await;
        }
    }
    let json = Some("application/json");
    let api = a.cx.client();
    let r = api
        .send::<serde_json::Value>(post_raw(&api, LOGIN, json, vec![b' '; 64 * 1024 + 1]))
        .await;
    a.case(
        "login: 64 KiB + 1 body with Content-Length",
        &[413],
        r,
        fine,
    )
    .await;
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..17)
        .map(|i| Ok(Bytes::from(vec![b' '; if i < 16 { 4096 } else { 1 }])))
        .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let api = a.cx.client();
    let r = api
        .send::<serde_json::Value>(post_raw(&api, LOGIN, json, body))
        .await;
    a.case(
        "login: 64 KiB + 1 body, chunked (no Content-Length)",
        &[413],
        r,
        fine,
    )
    .await;
    let mut exact =
        json!({ "email": "nobody@reliability.example", "password": "abcdefgh", "pad": "" })
            .to_string();
    let pad = 64 * 1024 - exact.len();
    exact = exact.replace(r#""pad":"""#, &format!(r#""pad":"{}""#, "p".repeat(pad)));
    let api = a.cx.client();
    let r = api
        .send::<serde_json::Value>(post_raw(&api, LOGIN, json, exact.clone()))
        .await;
    a.case(
        &format!("login: exactly 64 KiB body ({} bytes)", exact.len()),
        &[401],
        r,
        fine,
    )
    .await;
    for path in [LOGIN, REGISTER] {
        for size in &corpus.password_sizes {
            let api = a.cx.client();
            oversized_password(a, &api, path, size.bytes, size.expect).await?;
        }
    }
    let huge_email = format!("{}@reliability.example", "h".repeat(10 * 1024));
    let r = a.cx.client().login(&huge_email, "abcdefgh").await;
    a.case("login: 10 KiB email", &[401, 422], r, fine).await;
    Ok(())
}

/// The handler must refuse the password before looking the account up, so before
/// argon2: the origin's statement counter does not move (nothing else queries meanwhile).
async fn oversized_password(
    a: &mut Abuse<'_>,
    api: &Api,
    path: &str,
    size: usize,
    expect: u16,
) -> anyhow::Result<()> {
    let body =
        json!({ "email": "big@reliability.example", "password": "p".repeat(size) }).to_string();
    let before = settled_queries(api).await?;
    let r = api
        .send::<serde_json::Value>(post_raw(api, path, Some("application/json"), body))
        .await;
    let queries = api.metric("sessiongate_db_queries_total").await? - before;
    let name = format!("{path}: {size}-byte password never reaches argon2");
    a.case(&name, &[expect], r, |_| {
        if queries == 0.0 {
            String::new()
        } else {
            format!("{queries} database statements: the account was looked up")
        }
    })
    .await;
    Ok(())
}

/// The origin's statement counter once the background writes of earlier requests (audit
/// rows are written off the response path) have landed: unchanged for 200 ms.
async fn settled_queries(api: &Api) -> anyhow::Result<f64> {
    let mut last = api.metric("sessiongate_db_queries_total").await?;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = api.metric("sessiongate_db_queries_total").await?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// Look-alikes of a real account's email: distinct accounts, never the victim's.
async fn lookalikes(a: &mut Abuse<'_>) -> anyhow::Result<()> {
    let victim = a.cx.ledger.user(a.cx.dedicated()?);
    let cyrillic = victim.email.replacen('e', "\u{0435}", 1);
    let fullwidth: String = victim
        .email
        .chars()
        .map(|c| match c {
            'a'..='z' => char::from_u32(c as u32 - 'a' as u32 + 0xFF41).unwrap_or(c),
            _ => c,
        })
        .collect();
    let r =
        a.cx.client()
            .register(&cyrillic, "lookalike password", None)
            .await;
    a.case(
        "register: Cyrillic look-alike of an existing email (a distinct account)",
        &[201, 422],
        r,
        fine,
    )
    .await;
    for (case, email) in [
        ("Cyrillic look-alike", &cyrillic),
        ("full-width look-alike", &fullwidth),
    ] {
        let r = a.cx.client().login(email, &victim.password).await;
        a.case(
            &format!("login: {case} with the victim's password"),
            &[401, 422],
            r,
            fine,
        )
        .await;
    }
    let shouted = format!("  {}  ", victim.email.to_uppercase());
    let r = a.cx.client().login(&shouted, &victim.password).await;
    a.case(
        "login: the victim's email upper-cased and padded (normalised)",
        &[200],
        r,
        fine,
    )
    .await;
    let r =
        a.cx.client()
            .register(&shouted, "another password", None)
            .await;
    a.case(
        "register: the victim's email upper-cased and padded",
        &[409],
        r,
        fine,
    )
    .await;
    Ok(())
}

/// Off-site `next` values are dropped by the login page; a local one is kept.
async fn next_values(a: &mut Abuse<'_>, corpus: &Corpus) {
    let api = a.cx.client();
    for next in &corpus.offsite_next {
        let r = api
            .send::<serde_json::Value>(api.request(Method::GET, &format!("/login?next={next}")))
            .await;
        a.case(&format!("GET /login?next={next}"), &[200], r, |r| {
            if r.header("set-cookie").is_some() {
                "sets a cookie".into()
            } else if !r.text().to_lowercase().contains("data-next=\"\"") {
                "the page kept a next value".into()
            } else {
                String::new()
            }
        })
        .await;
    }
    let r = api
        .send::<serde_json::Value>(
            api.request(Method::GET, "/login?next=/account%3Ftab%3Dsessions"),
        )
        .await;
    a.case(
        "GET /login?next=/account?tab=sessions keeps it",
        &[200],
        r,
        |r| {
            if r.text().contains("data-next=\"/account?tab=sessions\"") {
                String::new()
            } else {
                "next not kept".into()
            }
        },
    )
    .await;
}

/// Header injection on a raw socket, a non-UTF-8 User-Agent, CSRF, X-Request-Id. Returns
/// the user whose login carried the odd User-Agent (its session row is checked last).
async fn headers(a: &mut Abuse<'_>, corpus: &Corpus, addr: &str) -> anyhow::Result<User> {
    for case in &corpus.header_injection {
        let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n{}\r\n", case.head);
        let r = rawsock::raw(
            addr,
            &[req.into_bytes()],
            Duration::ZERO,
            Duration::from_secs(5),
        )
        .await;
        a.raw_case(&format!("header injection: {}", case.name), &[400], r);
        a.health(&case.name).await;
    }
    let uu = a.cx.ledger.user(a.cx.dedicated()?);
    let body = json!({ "email": uu.email, "password": uu.password }).to_string();
    let mut req = format!(
        "POST {LOGIN} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Forwarded-For: <script>, 10.9.8.7\r\nUser-Agent: ",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&[0xc3, 0x28, 0xa0, 0xa1, 0xff]);
    req.extend_from_slice(format!("\r\nConnection: close\r\n\r\n{body}").as_bytes());
    let r = rawsock::raw(addr, &[req], Duration::ZERO, Duration::from_secs(10)).await;
    a.raw_case(
        "login with a non-UTF-8 User-Agent and a garbage X-Forwarded-For entry",
        &[200],
        r,
    );
    a.health("non-UTF-8 user agent").await;
    for case in &corpus.csrf {
        let api = a.cx.client();
        let header = header_text(case, &HashMap::new())?;
        let req = post_raw(&api, LOGIN, Some("application/json"), body.clone())
            .header(header, &case.value);
        let r = api.send::<serde_json::Value>(req).await;
        a.case(&format!("CSRF: login with {}", case.name), &[403], r, fine)
            .await;
    }
    let api = a.cx.client();
    let r = api
        .send::<serde_json::Value>(
            api.request(Method::GET, "/healthz")
                .header("x-request-id", "injected"),
        )
        .await;
    a.case("a client X-Request-Id is not echoed", &[200], r, |r| {
        if r.header("x-request-id") == Some("injected") {
            "echoed".into()
        } else {
            String::new()
        }
    })
    .await;
    Ok(uu)
}

/// Cookie headers from the corpus, then injection through path and query parameters.
async fn cookies(a: &mut Abuse<'_>, corpus: &Corpus) -> anyhow::Result<()> {
    let live = a.cx.login(a.cx.dedicated()?, NAME).await?;
    let other = a.cx.login(a.cx.dedicated()?, NAME).await?;
    let tok = live.token.clone();
    let vars = HashMap::from([
        ("$COOKIE", "session".to_owned()),
        ("$TOKEN", tok.clone()),
        ("$OTHER_SESSION", other.hash.clone()),
    ]);
    let api = a.cx.client();
    for case in &corpus.cookies {
        let req = api
            .request(Method::GET, "/api/v1/auth/me")
            .header("cookie", header_text(case, &vars)?);
        let r = api.send::<serde_json::Value>(req).await;
        a.case(&format!("cookie: {}", case.name), &case.expect, r, fine)
            .await;
    }
    let mut req = api.request(Method::GET, "/api/v1/auth/me");
    for i in 0..199 {
        req = req.header("cookie", format!("c{i}=v{i}"));
    }
    let r = api
        .send::<serde_json::Value>(api.with_cookie(req, &tok))
        .await;
    a.case(
        "cookie: 200 separate Cookie headers, session last",
        &[200, 431],
        r,
        fine,
    )
    .await;
    let req = api.with_cookie(
        api.request(Method::GET, "/api/v1/auth/me")
            .header("cookie", "a=1"),
        &tok,
    );
    let r = api.send::<serde_json::Value>(req).await;
    a.case("cookie: session in a second Cookie header", &[200], r, fine)
        .await;
    for case in &corpus.revoke_ids {
        let id = case
            .id
            .as_ref()
            .map(|t| t.string(&vars))
            .unwrap_or_default();
        let r = api.revoke(&tok, &id).await;
        a.case(
            &format!("DELETE session: {}", case.name),
            &case.expect,
            r,
            fine,
        )
        .await;
    }
    let r = api.me(&other.token).await;
    a.case(
        "the other user's session survived the attempt",
        &[200],
        r,
        fine,
    )
    .await;
    parameters(a, &api, &tok, corpus).await;
    Ok(())
}

async fn parameters(a: &mut Abuse<'_>, api: &Api, tok: &str, corpus: &Corpus) {
    let r = api
        .send::<serde_json::Value>(api.authed(
            Method::GET,
            "/api/v1/users?search=%27%20OR%201%3D1--",
            tok,
        ))
        .await;
    a.case(
        "GET /api/v1/users with SQL in search, as a USER",
        &[403],
        r,
        fine,
    )
    .await;
    let path = "/api/v1/account/audit?page=-1&pageSize=99999999999999999999999";
    let r = api
        .send::<serde_json::Value>(api.authed(Method::GET, path, tok))
        .await;
    a.case(
        "GET /api/v1/account/audit with garbage paging",
        &[200],
        r,
        |r| {
            let p = &r.json()["pagination"];
            if p["page"] == 1 && p["pageSize"] == 20 {
                String::new()
            } else {
                format!("pagination {p}")
            }
        },
    )
    .await;
    for path in &corpus.asset_paths {
        let r = api
            .send::<serde_json::Value>(api.request(Method::GET, path))
            .await;
        a.case(&format!("GET {path}"), &[404], r, fine).await;
    }
}

/// One of 200 slowloris connections: 60 header lines, one per 0.5 s.
async fn slowloris(addr: String, i: usize) -> anyhow::Result<RawReply> {
    let lines: Vec<Vec<u8>> = (0..60)
        .map(|j| {
            if j == 0 {
                format!("GET /healthz?{i} HTTP/1.1\r\n")
            } else {
                format!("X-{j}: x\r\n")
            }
            .into_bytes()
        })
        .collect();
    rawsock::raw(
        &addr,
        &lines,
        Duration::from_millis(500),
        SLOW_LIMIT + Duration::from_secs(20),
    )
    .await
}

/// Slow and idle connections, held open while the other cases run.
async fn slow_cases(addr: String) -> Vec<(String, anyhow::Result<RawReply>)> {
    let header_lines: Vec<Vec<u8>> =
        std::iter::once(format!("POST {LOGIN} HTTP/1.1\r\nHost: {addr}\r\n").into_bytes())
            .chain((0..40).map(|i| format!("X-Slow-{i}: {i}\r\n").into_bytes()))
            .collect();
    let body_head = format!(
        "POST {LOGIN} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{"
    );
    let body_drip: Vec<Vec<u8>> = std::iter::once(body_head.into_bytes())
        .chain((0..60).map(|_| b" ".to_vec()))
        .collect();
    let limit = SLOW_LIMIT + Duration::from_secs(20);
    let gap = Duration::from_millis(700);
    let (headers, body, idle) = tokio::join!(
        rawsock::raw(&addr, &header_lines, gap, limit),
        rawsock::raw(&addr, &body_drip, gap, limit),
        rawsock::raw(&addr, &[], Duration::ZERO, limit),
    );
    vec![
        (
            "slowloris: headers trickled one line per 0.7 s".into(),
            headers,
        ),
        ("slow body: one byte per 0.7 s".into(), body),
        ("idle connection: connects, sends nothing".into(), idle),
    ]
}

async fn crowd_results(
    a: &mut Abuse<'_>,
    crowd: Vec<tokio::task::JoinHandle<anyhow::Result<RawReply>>>,
    started: Instant,
) {
    let (mut closed, mut slowest) = (0, Duration::ZERO);
    for c in crowd {
        if let Ok(Ok(raw)) = c.await {
            closed += usize::from(raw.closed || raw.status.is_some());
            slowest = slowest.max(raw.elapsed);
        }
    }
    a.out.check(
        format!("200 slowloris connections at once are all cut within {} s", SLOW_LIMIT.as_secs()),
        closed == 200 && slowest <= SLOW_LIMIT,
        format!(
            "{closed}/200 closed by the server, the last after {:.1} s (health checks and {} cases ran meanwhile in {:.1} s)",
            slowest.as_secs_f64(),
            a.out.checks.len(),
            started.elapsed().as_secs_f64()
        ),
    );
    a.tally.add("abuse", "slowloris-crowd");
}

fn slow_result(a: &mut Abuse<'_>, case: &str, r: &anyhow::Result<RawReply>) {
    let (ok, detail) = match r {
        Ok(raw) => {
            let what = match (raw.status, raw.closed) {
                (Some(s), _) => format!("answered {s}"),
                (None, true) => "closed without an answer".into(),
                (None, false) => "still open".into(),
            };
            (
                (raw.closed || raw.status.is_some()) && raw.elapsed <= SLOW_LIMIT,
                format!("{what} after {:.1} s", raw.elapsed.as_secs_f64()),
            )
        }
        Err(e) => (false, format!("{e:#}")),
    };
    let status = r
        .as_ref()
        .ok()
        .and_then(|r| r.status)
        .map_or("closed".into(), |s| s.to_string());
    a.tally.add("abuse", &status);
    a.out.check(
        format!("{case} → cut within {} s", SLOW_LIMIT.as_secs()),
        ok,
        detail,
    );
}

/// The non-UTF-8 User-Agent was dropped and the right-most X-Forwarded-For entry kept.
async fn check_user_agent_row(cx: &Cx, out: &mut Outcome, user: &User) -> anyhow::Result<()> {
    let email = user.email.replace('\'', "''");
    let rows = cx
        .count(&format!(
            "SELECT count(*) AS n FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.email = '{email}' AND s.user_agent IS NULL AND s.ip_address = '10.9.8.7'"
        ))
        .await?;
    out.check(
        "the non-UTF-8 User-Agent was dropped and the right-most X-Forwarded-For entry kept",
        rows == 1,
        format!("{rows} matching session rows"),
    );
    out.rows_checked += 1;
    Ok(())
}
