//! `ledger`: the store audit over everything the run acknowledged, and the origin's log
//! checked for every secret the run handled (passwords, cookies, raw session ids, session
//! hashes).

use std::collections::HashSet;

use crate::checks;
use crate::cx::Cx;
use crate::report::Outcome;

pub async fn run(cx: &Cx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::new("ledger");
    checks::audit_stores(cx, None, &mut out).await?;
    let log = std::fs::read_to_string(cx.origin.log_path()).unwrap_or_default();
    let words = words_of(&log);
    let mut needles = 0;
    let mut found = Vec::new();
    for u in cx.ledger.users() {
        needles += 1;
        if words.contains(u.password.as_str()) {
            found.push("a password".to_owned());
        }
    }
    for s in cx.ledger.sessions() {
        let raw = testkit::keys::raw_sid(&s.token).unwrap_or_default();
        for (what, needle) in [
            ("a cookie", s.token.as_str()),
            ("a session id", raw.as_str()),
            ("a session hash", s.hash.as_str()),
        ] {
            needles += 1;
            if !needle.is_empty() && words.contains(needle) {
                found.push(what.to_owned());
            }
        }
    }
    found.sort();
    found.dedup();
    out.check(
        "the origin's log carries no password, cookie, session id or session hash",
        found.is_empty(),
        format!(
            "{} log lines, {needles} secrets looked for; found: {found:?}",
            log.lines().count()
        ),
    );
    out.rows_checked += needles;
    Ok(out)
}

/// Every token-like word of the log (8 characters or more), and its dot-separated parts.
fn words_of(log: &str) -> HashSet<&str> {
    let mut words = HashSet::new();
    for word in
        log.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
    {
        if word.len() >= 8 {
            words.insert(word);
            words.extend(word.split('.'));
        }
    }
    words
}
