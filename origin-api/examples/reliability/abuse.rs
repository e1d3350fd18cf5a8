//! The abuse corpus (issue 7, section 2) against the origin: bad JSON, wrong types, deep
//! nesting, invalid UTF-8, oversized and slow bodies, slow and idle connections, huge and
//! oddly quoted cookies, look-alike emails, off-site `next` values, header injection and
//! injection through path parameters. Each case is checked for the contract's status and
//! followed by a health check (`/healthz` 200 and a normal login). The token corpus runs
//! in `tokens.mjs` against the origin and through the edge.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::client::{self, Api, COOKIE, RawReply, Reply, status_key};
use crate::env::{BODY_READ_TIMEOUT_SECS, HEADER_READ_TIMEOUT_SECS};
use crate::ledger::Rng;
use crate::report::{Outcome, Tally};
use crate::scenarios::Cx;

/// The longest a connection that sends its request slowly (or not at all) may be held.
const SLOW_LIMIT: Duration = Duration::from_secs(
    if HEADER_READ_TIMEOUT_SECS > BODY_READ_TIMEOUT_SECS {
        HEADER_READ_TIMEOUT_SECS
    } else {
        BODY_READ_TIMEOUT_SECS
    } + 5,
);

struct Abuse<'a> {
    cx: &'a Cx,
    out: Outcome,
    tally: Tally,
    health_user: usize,
    unhealthy: Vec<String>,
}

impl Abuse<'_> {
    /// Checks one case's status against `expect`, plus `extra` (empty when fine), then
    /// the server's health.
    async fn case(
        &mut self,
        name: &str,
        expect: &[u16],
        r: Result<Reply, reqwest::Error>,
        extra: impl FnOnce(&Reply) -> String,
    ) {
        self.tally.add("abuse", &status_key(&r));
        let (ok, detail) = match &r {
            Ok(reply) => {
                let problem = extra(reply);
                let json_ok = reply.status < 400
                    || reply.header("content-type") != Some("application/json")
                    || reply.json().get("error").is_some_and(Value::is_string);
                (
                    expect.contains(&reply.status) && problem.is_empty() && json_ok,
                    format!(
                        "{}{}{}",
                        reply.status,
                        if problem.is_empty() { "" } else { ": " },
                        problem
                    ),
                )
            }
            Err(e) => (false, format!("no answer: {e}")),
        };
        self.out
            .check(format!("{name} → {}", fmt_expect(expect)), ok, detail);
        self.health(name).await;
    }

    /// A raw-socket case: `expect` statuses, or `None` for "the server closes".
    fn raw_case(&mut self, name: &str, expect: &[u16], r: anyhow::Result<RawReply>) {
        let (ok, detail) = match &r {
            Ok(raw) => {
                self.tally.add(
                    "abuse",
                    &raw.status.map_or("closed".into(), |s| s.to_string()),
                );
                (
                    raw.status.is_some_and(|s| expect.contains(&s)),
                    format!(
                        "{} after {:.1} s",
                        raw.status.map_or("no answer".into(), |s| s.to_string()),
                        raw.elapsed.as_secs_f64()
                    ),
                )
            }
            Err(e) => (false, format!("{e:#}")),
        };
        self.out
            .check(format!("{name} → {}", fmt_expect(expect)), ok, detail);
    }

    /// `/healthz` 200 and a normal login (then its logout) still work.
    async fn health(&mut self, after: &str) {
        let h = self.cx.api.healthz().await;
        self.tally.add("health", &status_key(&h));
        let u = self.cx.ledger.user(self.health_user);
        let l = self
            .cx
            .api
            .login(&u.email, &u.password, &Rng::new().ip())
            .await;
        self.tally.add("health", &status_key(&l));
        let healthy = h.as_ref().is_ok_and(|r| r.status == 200)
            && l.as_ref()
                .is_ok_and(|r| r.status == 200 && r.token().is_some());
        if let Ok(reply) = &l
            && let Some(token) = reply.token()
        {
            let out = self
                .cx
                .api
                .send(Api::with_cookie(
                    self.cx
                        .api
                        .post_json("/api/v1/auth/logout", &json!({}), "10.0.0.1"),
                    &token,
                ))
                .await;
            self.tally.add("health", &status_key(&out));
        }
        if !healthy {
            let why = |r: &Result<Reply, reqwest::Error>| match r {
                Ok(reply) => reply.status.to_string(),
                Err(e) => format!("{e:?}"),
            };
            self.unhealthy
                .push(format!("{after} (healthz {}, login {})", why(&h), why(&l)));
        }
    }
}

fn fmt_expect(expect: &[u16]) -> String {
    expect
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join("/")
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

fn fine(_: &Reply) -> String {
    String::new()
}

/// `POST path` with a JSON content type and exactly these bytes.
fn post_raw(api: &Api, path: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    api.http
        .post(api.url(path))
        .header("content-type", "application/json")
        .header("x-forwarded-for", Rng::new().ip())
        .body(body)
}

fn cookie_get(api: &Api, header: &str) -> reqwest::RequestBuilder {
    api.get("/api/v1/auth/me").header("cookie", header)
}

const LOGIN: &str = "/api/v1/auth/login";
const REGISTER: &str = "/api/v1/auth/register";

/// Slow and idle connections, held open while the other cases run.
async fn slow_cases(addr: String) -> Vec<(String, anyhow::Result<RawReply>)> {
    let header_lines: Vec<Vec<u8>> =
        std::iter::once(format!("POST {LOGIN} HTTP/1.1\r\nHost: {addr}\r\n").into_bytes())
            .chain((0..40).map(|i| format!("X-Slow-{i}: {i}\r\n").into_bytes()))
            .collect();
    let body_head = format!(
        "POST {LOGIN} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{"
    )
    .into_bytes();
    let body_drip: Vec<Vec<u8>> = std::iter::once(body_head)
        .chain((0..60).map(|_| b" ".to_vec()))
        .collect();
    let limit = SLOW_LIMIT + Duration::from_secs(20);
    let (headers, body, idle) = tokio::join!(
        client::raw(&addr, &header_lines, Duration::from_millis(700), limit),
        client::raw(&addr, &body_drip, Duration::from_millis(700), limit),
        client::raw(&addr, &[], Duration::ZERO, limit),
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

/// The corpus against the origin.
pub async fn run(cx: &Cx) -> anyhow::Result<Outcome> {
    let name = "abuse-origin";
    let addr = format!("127.0.0.1:{}", cx.env.args.origin_port);
    let mut a = Abuse {
        cx,
        out: Outcome::new(name),
        tally: Tally::default(),
        health_user: cx.dedicated()?,
        unhealthy: Vec::new(),
    };
    let api = cx.api.clone();
    let slow = tokio::spawn(slow_cases(addr.clone()));
    let crowd_started = Instant::now();
    let crowd: Vec<_> = (0..200)
        .map(|i| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let lines: Vec<Vec<u8>> = (0..60)
                    .map(|j| {
                        if j == 0 {
                            format!("GET /healthz?{i} HTTP/1.1\r\n").into_bytes()
                        } else {
                            format!("X-{j}: x\r\n").into_bytes()
                        }
                    })
                    .collect();
                client::raw(
                    &addr,
                    &lines,
                    Duration::from_millis(500),
                    SLOW_LIMIT + Duration::from_secs(20),
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // ---- bodies ----
    for (case, body) in [
        (
            "malformed JSON",
            r#"{"email": "a@b.example", "password": "#.to_owned(),
        ),
        (
            "truncated JSON",
            r#"{"email":"a@b.example","password":"abcdefgh""#.to_owned(),
        ),
        ("JSON array body", r#"["a@b.example"]"#.to_owned()),
        ("JSON string body", r#""a@b.example""#.to_owned()),
        ("JSON null body", "null".to_owned()),
        ("empty body", String::new()),
        (
            "deep nesting: 30 000 arrays",
            format!("{}{}", "[".repeat(30_000), "]".repeat(30_000)),
        ),
        (
            "deep nesting inside a field",
            format!(
                r#"{{"email":"a@b.example","password":"abcdefgh","x":{}1{}}}"#,
                "{\"a\":".repeat(6_000),
                "}".repeat(6_000)
            ),
        ),
        (
            "lone surrogate escape",
            r#"{"email":"\ud800@b.example","password":"abcdefgh"}"#.to_owned(),
        ),
    ] {
        let r = api.send(post_raw(&api, LOGIN, body)).await;
        a.case(&format!("login: {case}"), &[400], r, fine).await;
    }
    let mut invalid_utf8 = br#"{"email":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    invalid_utf8.extend_from_slice(br#"@b.example","password":"abcdefgh"}"#);
    let r = api.send(post_raw(&api, LOGIN, invalid_utf8)).await;
    a.case("login: invalid UTF-8 in the body", &[400], r, fine)
        .await;

    for (case, body) in [
        (
            "email is a number",
            json!({ "email": 5, "password": "abcdefgh" }),
        ),
        (
            "password is an array",
            json!({ "email": "a@b.example", "password": ["abcdefgh"] }),
        ),
        (
            "email is null",
            json!({ "email": null, "password": "abcdefgh" }),
        ),
        ("fields missing", json!({})),
        (
            "email is an object",
            json!({ "email": { "$ne": "" }, "password": "abcdefgh" }),
        ),
    ] {
        let r = api.send(post_raw(&api, LOGIN, body.to_string())).await;
        a.case(&format!("login: wrong types: {case}"), &[422], r, fine)
            .await;
    }
    let r = api
        .send(post_raw(
            &api,
            REGISTER,
            json!({ "email": "types@reliability.example", "password": "abcdefgh", "name": {} })
                .to_string(),
        ))
        .await;
    a.case("register: name is an object", &[422], r, fine).await;

    let over = 64 * 1024 + 1;
    let r = api.send(post_raw(&api, LOGIN, vec![b' '; over])).await;
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
    let r = api
        .send(post_raw(
            &api,
            LOGIN,
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
        ))
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
    let r = api.send(post_raw(&api, LOGIN, exact.clone())).await;
    a.case(
        &format!("login: exactly 64 KiB body ({} bytes)", exact.len()),
        &[401],
        r,
        fine,
    )
    .await;

    // The handler must refuse these before looking the account up, so before argon2:
    // the origin's statement counter does not move (nothing else queries meanwhile).
    let mib = "p".repeat(1 << 20);
    for path in [LOGIN, REGISTER] {
        for (size, expect) in [(1 << 20, 413), (1025, 422), (60 * 1024, 422)] {
            let password = if size == 1 << 20 {
                mib.clone()
            } else {
                "p".repeat(size)
            };
            let body =
                json!({ "email": "big@reliability.example", "password": password }).to_string();
            let before = settled_queries(&api).await?;
            let r = api.send(post_raw(&api, path, body)).await;
            let queries = api.metric("sessiongate_db_queries_total").await? - before;
            a.case(
                &format!("{path}: {size}-byte password never reaches argon2"),
                &[expect],
                r,
                |_| {
                    if queries == 0.0 {
                        String::new()
                    } else {
                        format!("{queries} database statements: the account was looked up")
                    }
                },
            )
            .await;
        }
    }
    let long_local = format!("{}@reliability.example", "l".repeat(300));
    let r = api
        .register(&long_local, "abcdefgh", &Rng::new().ip())
        .await;
    a.case("register: 322-character email", &[422], r, fine)
        .await;
    let huge_email = format!("{}@reliability.example", "h".repeat(10 * 1024));
    let r = api.login(&huge_email, "abcdefgh", &Rng::new().ip()).await;
    a.case("login: 10 KiB email", &[401, 422], r, fine).await;
    let r = api
        .send(
            api.http
                .post(api.url(LOGIN))
                .header("content-type", "text/plain")
                .body(r#"{"email":"a@b.example","password":"abcdefgh"}"#),
        )
        .await;
    a.case("login: text/plain content type", &[415], r, fine)
        .await;
    let r = api
        .send(
            api.http
                .post(api.url(LOGIN))
                .body(r#"{"email":"a@b.example","password":"abcdefgh"}"#),
        )
        .await;
    a.case("login: no content type", &[415], r, fine).await;

    // ---- look-alike emails ----
    let victim_idx = cx.dedicated()?;
    let victim = cx.ledger.user(victim_idx);
    let cyrillic = victim.email.replacen('e', "\u{0435}", 1);
    let fullwidth: String = victim
        .email
        .chars()
        .map(|c| match c {
            'a'..='z' => char::from_u32(c as u32 - 'a' as u32 + 0xFF41).unwrap_or(c),
            _ => c,
        })
        .collect();
    let r = api
        .register(&cyrillic, "lookalike password", &Rng::new().ip())
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
        let r = api.login(email, &victim.password, &Rng::new().ip()).await;
        a.case(
            &format!("login: {case} with the victim's password"),
            &[401, 422],
            r,
            fine,
        )
        .await;
    }
    let shouted = format!("  {}  ", victim.email.to_uppercase());
    let r = api
        .login(&shouted, &victim.password, &Rng::new().ip())
        .await;
    a.case(
        "login: the victim's email upper-cased and padded (normalised)",
        &[200],
        r,
        fine,
    )
    .await;
    let r = api
        .register(&shouted, "another password", &Rng::new().ip())
        .await;
    a.case(
        "register: the victim's email upper-cased and padded",
        &[409],
        r,
        fine,
    )
    .await;

    // ---- off-site next ----
    for next in [
        "//evil.example",
        "https://evil.example/",
        "/\\evil.example",
        "%2F%2Fevil.example",
        "/%09/evil.example",
        "javascript:alert(1)",
        "/%0d%0aSet-Cookie:%20evil=1",
        "/%2F%2Fevil.example",
        "http:evil.example",
    ] {
        let r = api.send(api.get(&format!("/login?next={next}"))).await;
        a.case(&format!("GET /login?next={next}"), &[200], r, |r| {
            let body = String::from_utf8_lossy(&r.body).to_lowercase();
            if r.header("set-cookie").is_some() {
                "sets a cookie".into()
            } else if !body.contains("data-next=\"\"") {
                "the page kept a next value".into()
            } else {
                String::new()
            }
        })
        .await;
    }
    let r = api
        .send(api.get("/login?next=/account%3Ftab%3Dsessions"))
        .await;
    a.case(
        "GET /login?next=/account?tab=sessions keeps it",
        &[200],
        r,
        |r| {
            if String::from_utf8_lossy(&r.body).contains("data-next=\"/account?tab=sessions\"") {
                String::new()
            } else {
                "next not kept".into()
            }
        },
    )
    .await;

    // ---- header injection and CSRF ----
    for (case, head) in [
        (
            "obs-fold continuation line",
            "X-Forwarded-For: 1.2.3.4\r\n Set-Cookie: evil=1\r\n",
        ),
        (
            "bare CR inside a header value",
            "X-Test: a\rSet-Cookie: evil=1\r\n",
        ),
        ("space inside a header name", "X Bad: 1\r\n"),
        ("NUL inside a header value", "X-Test: a\0b\r\n"),
    ] {
        let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n{head}\r\n");
        let r = client::raw(
            &addr,
            &[req.into_bytes()],
            Duration::ZERO,
            Duration::from_secs(5),
        )
        .await;
        a.raw_case(&format!("header injection: {case}"), &[400], r);
        a.health(case).await;
    }
    let ua_user = cx.dedicated()?;
    let uu = cx.ledger.user(ua_user);
    let body = json!({ "email": uu.email, "password": uu.password }).to_string();
    let mut req = format!(
        "POST {LOGIN} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Forwarded-For: <script>, 10.9.8.7\r\nUser-Agent: ",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&[0xc3, 0x28, 0xa0, 0xa1, 0xff]);
    req.extend_from_slice(format!("\r\nConnection: close\r\n\r\n{body}").as_bytes());
    let r = client::raw(&addr, &[req], Duration::ZERO, Duration::from_secs(10)).await;
    a.raw_case(
        "login with a non-UTF-8 User-Agent and a garbage X-Forwarded-For entry",
        &[200],
        r,
    );
    a.health("non-UTF-8 user agent").await;
    for (case, header, value) in [
        ("Origin names another site", "origin", "http://evil.example"),
        ("Sec-Fetch-Site: cross-site", "sec-fetch-site", "cross-site"),
        ("Origin: null", "origin", "null"),
    ] {
        let r = api
            .send(
                post_raw(
                    &api,
                    LOGIN,
                    json!({ "email": uu.email, "password": uu.password }).to_string(),
                )
                .header(header, value),
            )
            .await;
        a.case(&format!("CSRF: login with {case}"), &[403], r, fine)
            .await;
    }
    let r = api
        .send(api.get("/healthz").header("x-request-id", "injected"))
        .await;
    a.case("a client X-Request-Id is not echoed", &[200], r, |r| {
        if r.header("x-request-id") == Some("injected") {
            "echoed".into()
        } else {
            String::new()
        }
    })
    .await;

    // ---- cookies ----
    let owner = cx.dedicated()?;
    let live = cx.login(owner, name).await?;
    let tok = live.token.clone();
    let junk: String = (0..100)
        .map(|i| format!("junk{i}={}; ", "j".repeat(90)))
        .collect();
    let many: String = (0..199).map(|i| format!("c{i}=v{i}; ")).collect();
    let cookie_cases: Vec<(String, String, u16)> = vec![
        (
            "10 KiB Cookie header, session last".into(),
            format!("{junk}{COOKIE}={tok}"),
            200,
        ),
        (
            "10 KiB session cookie value".into(),
            format!("{COOKIE}={}", "A".repeat(10 * 1024)),
            401,
        ),
        (
            "200 cookies in one header, session last".into(),
            format!("{many}{COOKIE}={tok}"),
            200,
        ),
        ("quoted value".into(), format!("{COOKIE}=\"{tok}\""), 200),
        (
            "opening quote only".into(),
            format!("{COOKIE}=\"{tok}"),
            401,
        ),
        (
            "closing quote only".into(),
            format!("{COOKIE}={tok}\""),
            401,
        ),
        ("empty value".into(), format!("{COOKIE}="), 401),
        ("empty quotes".into(), format!("{COOKIE}=\"\""), 401),
        (
            "garbage duplicate first".into(),
            format!("{COOKIE}=garbage; {COOKIE}={tok}"),
            200,
        ),
        (
            "garbage duplicate last".into(),
            format!("{COOKIE}={tok}; {COOKIE}=garbage"),
            200,
        ),
        (
            "separators everywhere".into(),
            format!(";;; ;{COOKIE}={tok};;;"),
            200,
        ),
        (
            "comma-joined with another cookie".into(),
            format!("{COOKIE}={tok}, other=1"),
            401,
        ),
        (
            "upper-case name".into(),
            format!("{}={tok}", COOKIE.to_uppercase()),
            401,
        ),
        (
            "spaces around the pair".into(),
            format!("  {COOKIE} = {tok}  "),
            200,
        ),
        (
            "quotes inside the name".into(),
            format!("\"{COOKIE}\"={tok}"),
            401,
        ),
    ];
    for (case, header, expect) in cookie_cases {
        let r = api.send(cookie_get(&api, &header)).await;
        a.case(&format!("cookie: {case}"), &[expect], r, fine).await;
    }
    let mut req = api.get("/api/v1/auth/me");
    for i in 0..199 {
        req = req.header("cookie", format!("c{i}=v{i}"));
    }
    let r = api
        .send(req.header("cookie", format!("{COOKIE}={tok}")))
        .await;
    a.case(
        "cookie: 200 separate Cookie headers, session last",
        &[200, 431],
        r,
        fine,
    )
    .await;
    let r = api
        .send(
            api.get("/api/v1/auth/me")
                .header("cookie", "a=1")
                .header("cookie", format!("{COOKIE}={tok}")),
        )
        .await;
    a.case("cookie: session in a second Cookie header", &[200], r, fine)
        .await;

    // ---- injection through path and query parameters ----
    let other_user = cx.dedicated()?;
    let other = cx.login(other_user, name).await?;
    for (case, id, expect) in [
        (
            "SQL in the session id",
            "'%20OR%20'1'='1".to_owned(),
            vec![403],
        ),
        ("NUL in the session id", "%00".to_owned(), vec![403]),
        ("another user's session", other.hash.clone(), vec![403]),
        ("a 10 KiB session id", "x".repeat(10 * 1024), vec![403]),
        (
            "path traversal in the session id",
            "..%2F..%2Fusers".to_owned(),
            vec![403, 404],
        ),
    ] {
        let r = api.revoke(&tok, &id).await;
        a.case(&format!("DELETE session: {case}"), &expect, r, fine)
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
    let r = api
        .send(Api::with_cookie(
            api.get("/api/v1/users?search=%27%20OR%201%3D1--"),
            &tok,
        ))
        .await;
    a.case(
        "GET /api/v1/users with SQL in search, as a USER",
        &[403],
        r,
        fine,
    )
    .await;
    let r = api
        .send(Api::with_cookie(
            api.get("/api/v1/account/audit?page=-1&pageSize=99999999999999999999999"),
            &tok,
        ))
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
    for path in [
        "/assets/../../etc/passwd",
        "/assets/%2e%2e/%2e%2e/etc/passwd",
        "/assets/..%2f..%2fCargo.toml",
    ] {
        let r = api.send(api.get(path)).await;
        a.case(&format!("GET {path}"), &[404], r, fine).await;
    }

    // ---- slow and idle connections (running since the start) ----
    let mut crowd_closed = 0;
    let mut crowd_slowest = Duration::ZERO;
    for c in crowd {
        if let Ok(Ok(raw)) = c.await {
            if raw.closed || raw.status.is_some() {
                crowd_closed += 1;
            }
            crowd_slowest = crowd_slowest.max(raw.elapsed);
        }
    }
    a.out.check(
        format!("200 slowloris connections at once are all cut within {} s", SLOW_LIMIT.as_secs()),
        crowd_closed == 200 && crowd_slowest <= SLOW_LIMIT,
        format!("{crowd_closed}/200 closed by the server, the last after {:.1} s (health checks and {} cases ran meanwhile in {:.1} s)",
            crowd_slowest.as_secs_f64(), a.out.checks.len(), crowd_started.elapsed().as_secs_f64()),
    );
    a.tally.add("abuse", "slowloris-crowd");
    for (case, r) in slow.await.map_err(|e| anyhow!("slow cases: {e}"))? {
        let (ok, detail) = match &r {
            Ok(raw) => (
                (raw.closed || raw.status.is_some()) && raw.elapsed <= SLOW_LIMIT,
                format!(
                    "{} after {:.1} s",
                    match (raw.status, raw.closed) {
                        (Some(s), _) => format!("answered {s}"),
                        (None, true) => "closed without an answer".into(),
                        (None, false) => "still open".into(),
                    },
                    raw.elapsed.as_secs_f64()
                ),
            ),
            Err(e) => (false, format!("{e:#}")),
        };
        a.tally.add(
            "abuse",
            &r.as_ref()
                .ok()
                .and_then(|r| r.status)
                .map_or("closed".into(), |s| s.to_string()),
        );
        a.out.check(
            format!("{case} → cut within {} s", SLOW_LIMIT.as_secs()),
            ok,
            detail,
        );
    }
    a.health("slow connections").await;

    let unhealthy = std::mem::take(&mut a.unhealthy);
    a.out.check(
        "healthy after every case (/healthz 200 and a normal login 200)",
        unhealthy.is_empty(),
        if unhealthy.is_empty() {
            format!(
                "{} health checks",
                a.tally
                    .snapshot()
                    .get("health")
                    .map_or(0, |m| m.values().sum::<u64>())
                    / 3
            )
        } else {
            format!("unhealthy after: {unhealthy:?}")
        },
    );
    let mut out = a.out;
    out.absorb(&a.tally);
    let email = uu.email.replace('\'', "''");
    let ua_rows = crate::checks::count(
        &cx.env,
        &format!(
            "SELECT count(*) AS n FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.email = '{email}' AND s.user_agent IS NULL AND s.ip_address = '10.9.8.7'"
        ),
    )
    .await?;
    out.check(
        "the non-UTF-8 User-Agent was dropped and the right-most X-Forwarded-For entry kept",
        ua_rows == 1,
        format!("{ua_rows} matching session rows"),
    );
    out.rows_checked += 1;
    Ok(out)
}

/// The token corpus: `tokens.mjs` mints every token (HS256, HS512, `none`, bad kids and
/// sids, ...) and sends it to the origin directly and through the edge under
/// `wrangler dev`.
pub async fn tokens(cx: &Cx) -> anyhow::Result<Outcome> {
    let name = "tokens-origin-edge";
    let mut out = Outcome::new(name);
    let live_user = cx.dedicated()?;
    let live = cx.login(live_user, name).await?;
    let revoked = cx.login(live_user, name).await?;
    let actor = cx.login(live_user, name).await?;
    revoked.update(|s| s.revoke_sent = Some(Instant::now()));
    let r = cx.api.revoke(&actor.token, &revoked.hash).await?;
    if r.status != 200 {
        anyhow::bail!(
            "could not revoke the corpus's revoked session: {}",
            r.status
        );
    }
    cx.ledger.add_revoke(&revoked, name);
    let health = cx.ledger.user(cx.dedicated()?);
    let input = json!({
        "originUrl": cx.env.base,
        "kid": cx.env.kid,
        "key": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &cx.env.key),
        "sessionKeys": cx.env.session_keys(),
        "liveToken": live.token,
        "revokedToken": revoked.token,
        "loginEmail": health.email,
        "loginPassword": health.password,
        "edge": !cx.env.args.no_edge,
        "corpus": cx.env.args.repo.join("origin-api/reliability/corpus/tokens.json"),
    });
    let input_path = cx.env.args.run_dir.join("tokens-input.json");
    std::fs::write(&input_path, input.to_string())?;
    let script = cx.env.args.repo.join("origin-api/reliability/tokens.mjs");
    let repo = cx.env.args.repo.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .arg(input_path)
            .current_dir(repo)
            .output()
    })
    .await?
    .context("running node tokens.mjs")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            anyhow!(
                "tokens.mjs printed no result (exit {:?}): {}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .rev()
                    .take(12)
                    .collect::<Vec<_>>()
                    .join(" | ")
            )
        })?;
    let tally = Tally::default();
    for case in result["cases"].as_array().cloned().unwrap_or_default() {
        let target = case["target"].as_str().unwrap_or("?");
        let status = case["status"]
            .as_u64()
            .map_or_else(|| "error".into(), |s| s.to_string());
        tally.add(target, &status);
        out.check(
            format!("{target}: {}", case["name"].as_str().unwrap_or("?")),
            case["ok"].as_bool() == Some(true),
            case["detail"].as_str().unwrap_or("").to_owned(),
        );
    }
    if let Some(notes) = result["notes"].as_array() {
        for n in notes {
            out.note(n.as_str().unwrap_or("").to_owned());
        }
    }
    if result["edge"] == false && !cx.env.args.no_edge {
        out.check(
            "the edge ran",
            false,
            result["edgeError"].as_str().unwrap_or("").to_owned(),
        );
    }
    out.absorb(&tally);
    Ok(out)
}
