//! The audit of the stores against the ledger, read straight from Postgres and Redis:
//! every acknowledged login has its session row (unless revoked since) and its `login`
//! audit row; every acknowledged revoke left no row and no cache entry and has its
//! `session_revoke` audit row; refused logins are audited; every row is well-formed.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use fred::prelude::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::Value;

use crate::cx::Cx;
use crate::ledger::{KILL_WINDOW, Ledger};
use crate::report::Outcome;

const ACTIONS: &[&str] = &[
    "login",
    "login_failed",
    "logout",
    "register",
    "password_change",
    "session_revoke",
    "role_change",
    "user_delete",
    "profile_update",
];

struct SessionRow {
    user_id: String,
    created_at: DateTime<Utc>,
    last_used_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    ip: Option<String>,
}

struct AuditRow {
    user_id: Option<String>,
    action: String,
    ip: Option<String>,
    metadata: Option<Value>,
}

/// The three tables as they are now.
struct Tables {
    sessions: HashMap<String, SessionRow>,
    users: HashSet<String>,
    audit: Vec<AuditRow>,
}

/// The audit log indexed by what the checks look up.
#[derive(Default)]
struct AuditIndex<'a> {
    /// session hash → user id of its `login` row.
    logins: HashMap<&'a str, &'a str>,
    /// session hash → reason of its `session_revoke` row.
    revokes: HashMap<&'a str, &'a str>,
    /// user id → `login_failed` rows.
    failed: HashMap<&'a str, u64>,
}

async fn all(db: &DatabaseConnection, sql: &str) -> anyhow::Result<Vec<sea_orm::QueryResult>> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .with_context(|| format!("query {sql}"))
}

async fn load(cx: &Cx) -> anyhow::Result<Tables> {
    let db = cx.db().await?;
    let mut sessions = HashMap::new();
    let sql = "SELECT id, user_id, created_at, last_used_at, expires_at, ip_address FROM sessions";
    for row in all(&db, sql).await? {
        let session = SessionRow {
            user_id: row.try_get("", "user_id")?,
            created_at: row.try_get("", "created_at")?,
            last_used_at: row.try_get("", "last_used_at")?,
            expires_at: row.try_get("", "expires_at")?,
            ip: row.try_get("", "ip_address")?,
        };
        sessions.insert(row.try_get("", "id")?, session);
    }
    let users = all(&db, "SELECT id FROM users")
        .await?
        .iter()
        .map(|r| r.try_get::<String>("", "id"))
        .collect::<Result<_, _>>()?;
    let mut audit = Vec::new();
    let sql = "SELECT user_id, action, ip_address, metadata::text AS metadata FROM audit_log";
    for row in all(&db, sql).await? {
        let metadata: String = row.try_get("", "metadata")?;
        audit.push(AuditRow {
            user_id: row.try_get("", "user_id")?,
            action: row.try_get("", "action")?,
            ip: row.try_get("", "ip_address")?,
            metadata: serde_json::from_str(&metadata).ok(),
        });
    }
    let _ = db.close().await;
    Ok(Tables {
        sessions,
        users,
        audit,
    })
}

/// The whole audit; adds its checks to `out`. Only sessions and revokes of the listed
/// scenarios are held to account (`None`: all).
pub async fn audit_stores(
    cx: &Cx,
    scenarios: Option<&[&str]>,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let tables = load(cx).await?;
    out.rows_checked += (tables.sessions.len() + tables.users.len() + tables.audit.len()) as u64;
    check_well_formed(&tables, out);
    let index = index_audit(&tables.audit);
    let in_scope = |s: &str| scenarios.is_none_or(|list| list.contains(&s));
    check_logins(&cx.ledger, &tables, &index, &in_scope, out);
    check_revokes(cx, &tables, &index, &in_scope, out).await?;
    check_failed_logins(&cx.ledger, &index, out);
    // Session rows no acknowledged login explains (a login cut off before its answer).
    let orphans = tables
        .sessions
        .keys()
        .filter(|id| !index.logins.contains_key(id.as_str()))
        .count();
    out.note(format!(
        "{orphans} session rows without a `login` audit row (logins cut off before their audit write)"
    ));
    Ok(())
}

fn valid_ip(ip: Option<&str>) -> bool {
    ip.is_none_or(|ip| ip.parse::<IpAddr>().is_ok())
}

fn check_well_formed(t: &Tables, out: &mut Outcome) {
    let now = Utc::now();
    let bad_sessions = t
        .sessions
        .iter()
        .filter(|(id, s)| {
            id.len() != 43
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                || !t.users.contains(&s.user_id)
                || s.created_at > s.last_used_at
                || s.last_used_at > now + TimeDelta::minutes(1)
                || s.expires_at <= s.created_at
                || s.expires_at > s.created_at + TimeDelta::days(30)
                || !valid_ip(s.ip.as_deref())
        })
        .count();
    out.check(
        "every session row is well-formed",
        bad_sessions == 0,
        format!("{} rows, {bad_sessions} malformed", t.sessions.len()),
    );
    let bad_audit = t
        .audit
        .iter()
        .filter(|a| {
            !ACTIONS.contains(&a.action.as_str())
                || !a.metadata.as_ref().is_some_and(Value::is_object)
                || !valid_ip(a.ip.as_deref())
        })
        .count();
    out.check(
        "every audit row is well-formed",
        bad_audit == 0,
        format!("{} rows, {bad_audit} malformed", t.audit.len()),
    );
}

/// A string field of an audit row's metadata.
fn meta_str<'a>(a: &'a AuditRow, name: &str) -> Option<&'a str> {
    a.metadata.as_ref()?.get(name)?.as_str()
}

fn index_audit(audit: &[AuditRow]) -> AuditIndex<'_> {
    let mut index = AuditIndex::default();
    for a in audit {
        match (a.action.as_str(), meta_str(a, "sessionId")) {
            ("login", Some(sid)) => {
                index.logins.insert(sid, a.user_id.as_deref().unwrap_or(""));
            }
            ("session_revoke", Some(sid)) => {
                index
                    .revokes
                    .insert(sid, meta_str(a, "reason").unwrap_or(""));
            }
            ("login_failed", _) => {
                if let Some(u) = a.user_id.as_deref() {
                    *index.failed.entry(u).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    index
}

fn check_logins(
    ledger: &Ledger,
    t: &Tables,
    index: &AuditIndex,
    in_scope: &(dyn Fn(&str) -> bool + Sync),
    out: &mut Outcome,
) {
    let users = ledger.users();
    let (mut checked, mut cut_audit) = (0u64, 0usize);
    let (mut missing_row, mut missing_audit, mut wrong_owner) = (0usize, 0usize, 0usize);
    for s in ledger.sessions().iter().filter(|s| in_scope(&s.scenario)) {
        checked += 1;
        let user_id = &users[s.user].id;
        match index.logins.get(s.hash.as_str()) {
            Some(owner) if owner == user_id => {}
            Some(_) => wrong_owner += 1,
            None if ledger.cut_by_kill(s.acked) => cut_audit += 1,
            None => missing_audit += 1,
        }
        let state = s.state();
        if state.revoked.is_some() || state.uncertain || state.revoke_sent.is_some() {
            continue;
        }
        match t.sessions.get(&s.hash) {
            Some(row) if &row.user_id == user_id => {}
            Some(_) => wrong_owner += 1,
            None if index.revokes.get(s.hash.as_str()) == Some(&"limit") => {}
            None => missing_row += 1,
        }
    }
    out.check(
        "every acknowledged login has its session row (unless revoked since)",
        missing_row == 0 && wrong_owner == 0,
        format!("{checked} logins checked; {missing_row} rows missing, {wrong_owner} owned by another user"),
    );
    out.check(
        "every acknowledged login has its `login` audit row",
        missing_audit == 0,
        format!(
            "{checked} logins checked; {missing_audit} audit rows missing{}",
            cut_note(cut_audit)
        ),
    );
}

async fn check_revokes(
    cx: &Cx,
    t: &Tables,
    index: &AuditIndex<'_>,
    in_scope: &(dyn Fn(&str) -> bool + Sync),
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let revokes: Vec<_> = cx
        .ledger
        .revokes()
        .into_iter()
        .filter(|r| in_scope(&r.scenario))
        .collect();
    let still_there = revokes
        .iter()
        .filter(|r| t.sessions.contains_key(&r.hash))
        .count();
    let missing: Vec<_> = revokes
        .iter()
        .filter(|r| !index.revokes.contains_key(r.hash.as_str()))
        .collect();
    let cut = missing
        .iter()
        .filter(|r| cx.ledger.cut_by_kill(r.acked))
        .count();
    let unaudited = missing.len() - cut;
    out.check(
        "every acknowledged revoke left no session row",
        still_there == 0,
        format!(
            "{} revokes checked; {still_there} rows still present",
            revokes.len()
        ),
    );
    out.check(
        "every acknowledged revoke has its `session_revoke` audit row",
        unaudited == 0,
        format!(
            "{} revokes checked; {unaudited} audit rows missing{}",
            revokes.len(),
            cut_note(cut)
        ),
    );
    let cached = cached_sessions(cx, revokes.iter().map(|r| r.hash.as_str())).await?;
    out.check(
        "no acknowledged revoke left a cache entry",
        cached.is_empty(),
        format!(
            "{} cache keys checked; {} present",
            revokes.len(),
            cached.len()
        ),
    );
    Ok(())
}

fn check_failed_logins(ledger: &Ledger, index: &AuditIndex, out: &mut Outcome) {
    let users = ledger.users();
    let failed = ledger.failed_logins();
    let short: u64 = failed
        .iter()
        .map(|(user, n)| {
            let have = index
                .failed
                .get(users[*user].id.as_str())
                .copied()
                .unwrap_or(0);
            n.saturating_sub(have)
        })
        .sum();
    out.check(
        "every refused login (401) has its `login_failed` audit row",
        short == 0,
        format!(
            "{} refused logins checked; {short} audit rows missing",
            failed.values().sum::<u64>()
        ),
    );
}

fn cut_note(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(
            " (and {n} answered within {} s before a SIGKILL, whose audit write died with the process)",
            KILL_WINDOW.as_secs()
        )
    }
}

/// Which of these sessions still have a cache entry.
pub async fn cached_sessions<'a>(
    cx: &Cx,
    hashes: impl Iterator<Item = &'a str>,
) -> anyhow::Result<Vec<String>> {
    let client = cx.redis_client().await?;
    let mut present = Vec::new();
    for hash in hashes {
        let n: i64 = client
            .exists(testkit::keys::session(hash))
            .await
            .context("redis EXISTS")?;
        if n > 0 {
            present.push(hash.to_owned());
        }
    }
    let _ = client.quit().await;
    Ok(present)
}

/// Drops these sessions' cache entries (so the next verify misses).
pub async fn evict_sessions<'a>(
    cx: &Cx,
    hashes: impl Iterator<Item = &'a str>,
) -> anyhow::Result<()> {
    let client = cx.redis_client().await?;
    for hash in hashes {
        let _: i64 = client
            .del(testkit::keys::session(hash))
            .await
            .context("redis DEL")?;
    }
    let _ = client.quit().await;
    Ok(())
}
