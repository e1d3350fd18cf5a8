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

use crate::env::Env;
use crate::ledger::Ledger;
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
    metadata: String,
}

async fn all(db: &DatabaseConnection, sql: &str) -> anyhow::Result<Vec<sea_orm::QueryResult>> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .with_context(|| format!("query {sql}"))
}

/// The whole audit; adds its checks to `out`. Only sessions and revokes of the listed
/// scenarios are held to account (`None`: all).
pub async fn audit_stores(
    env: &Env,
    ledger: &Ledger,
    scenarios: Option<&[&str]>,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let db = env.db().await?;
    let in_scope = |s: &str| scenarios.is_none_or(|list| list.contains(&s));

    let mut sessions: HashMap<String, SessionRow> = HashMap::new();
    for row in all(
        &db,
        "SELECT id, user_id, created_at, last_used_at, expires_at, ip_address FROM sessions",
    )
    .await?
    {
        sessions.insert(
            row.try_get("", "id")?,
            SessionRow {
                user_id: row.try_get("", "user_id")?,
                created_at: row.try_get("", "created_at")?,
                last_used_at: row.try_get("", "last_used_at")?,
                expires_at: row.try_get("", "expires_at")?,
                ip: row.try_get("", "ip_address")?,
            },
        );
    }
    let users: HashSet<String> = all(&db, "SELECT id FROM users")
        .await?
        .iter()
        .map(|r| r.try_get::<String>("", "id"))
        .collect::<Result<_, _>>()?;
    let mut audit = Vec::new();
    for row in all(
        &db,
        "SELECT user_id, action, ip_address, metadata::text AS metadata FROM audit_log",
    )
    .await?
    {
        audit.push(AuditRow {
            user_id: row.try_get("", "user_id")?,
            action: row.try_get("", "action")?,
            ip: row.try_get("", "ip_address")?,
            metadata: row.try_get("", "metadata")?,
        });
    }
    let _ = db.close().await;
    out.rows_checked += (sessions.len() + users.len() + audit.len()) as u64;

    // Well-formed rows.
    let now = Utc::now();
    let max_age = TimeDelta::days(30);
    let bad_sessions: Vec<&String> = sessions
        .iter()
        .filter(|(id, s)| {
            id.len() != 43
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                || !users.contains(&s.user_id)
                || s.created_at > s.last_used_at
                || s.last_used_at > now + TimeDelta::minutes(1)
                || s.expires_at <= s.created_at
                || s.expires_at > s.created_at + max_age
                || s.ip
                    .as_deref()
                    .is_some_and(|ip| ip.parse::<IpAddr>().is_err())
        })
        .map(|(id, _)| id)
        .collect();
    out.check(
        "every session row is well-formed",
        bad_sessions.is_empty(),
        format!("{} rows, {} malformed", sessions.len(), bad_sessions.len()),
    );
    let mut parsed_meta: Vec<Option<Value>> = Vec::with_capacity(audit.len());
    let mut bad_audit = 0usize;
    for a in &audit {
        let meta = serde_json::from_str::<Value>(&a.metadata).ok();
        if !ACTIONS.contains(&a.action.as_str())
            || !meta.as_ref().is_some_and(Value::is_object)
            || a.ip
                .as_deref()
                .is_some_and(|ip| ip.parse::<IpAddr>().is_err())
        {
            bad_audit += 1;
        }
        parsed_meta.push(meta);
    }
    out.check(
        "every audit row is well-formed",
        bad_audit == 0,
        format!("{} rows, {bad_audit} malformed", audit.len()),
    );

    // Index the audit log.
    let mut login_audit: HashMap<&str, &str> = HashMap::new();
    let mut revoke_audit: HashMap<&str, &str> = HashMap::new();
    let mut failed_by_user: HashMap<&str, u64> = HashMap::new();
    for (a, meta) in audit.iter().zip(&parsed_meta) {
        let sid = meta
            .as_ref()
            .and_then(|m| m.get("sessionId"))
            .and_then(Value::as_str);
        let reason = meta
            .as_ref()
            .and_then(|m| m.get("reason"))
            .and_then(Value::as_str)
            .unwrap_or("");
        match (a.action.as_str(), sid) {
            ("login", Some(sid)) => {
                login_audit.insert(sid, a.user_id.as_deref().unwrap_or(""));
            }
            ("session_revoke", Some(sid)) => {
                revoke_audit.insert(sid, reason);
            }
            ("login_failed", _) => {
                if let Some(u) = a.user_id.as_deref() {
                    *failed_by_user.entry(u).or_default() += 1;
                }
            }
            _ => {}
        }
    }

    // Acknowledged logins.
    let all_users = ledger.users();
    let mut checked = 0u64;
    let mut missing_row = Vec::new();
    let mut missing_audit = Vec::new();
    let mut cut_audit = 0usize;
    let mut wrong_owner = Vec::new();
    for s in ledger.sessions().iter().filter(|s| in_scope(&s.scenario)) {
        checked += 1;
        let user_id = &all_users[s.user].id;
        match login_audit.get(s.hash.as_str()) {
            Some(owner) if owner == user_id => {}
            Some(_) => wrong_owner.push(s.hash.clone()),
            None if ledger.cut_by_kill(s.acked) => cut_audit += 1,
            None => missing_audit.push(s.hash.clone()),
        }
        let state = s.state();
        if state.revoked.is_some() || state.uncertain || state.revoke_sent.is_some() {
            continue;
        }
        match sessions.get(&s.hash) {
            Some(row) if &row.user_id == user_id => {}
            Some(_) => wrong_owner.push(s.hash.clone()),
            None if revoke_audit.get(s.hash.as_str()) == Some(&"limit") => {}
            None => missing_row.push(s.hash.clone()),
        }
    }
    out.check(
        "every acknowledged login has its session row (unless revoked since)",
        missing_row.is_empty() && wrong_owner.is_empty(),
        format!(
            "{checked} logins checked; {} rows missing, {} owned by another user",
            missing_row.len(),
            wrong_owner.len()
        ),
    );
    out.check(
        "every acknowledged login has its `login` audit row",
        missing_audit.is_empty(),
        format!(
            "{checked} logins checked; {} audit rows missing{}",
            missing_audit.len(),
            cut_note(cut_audit)
        ),
    );

    // Acknowledged revokes.
    let revokes: Vec<_> = ledger
        .revokes()
        .into_iter()
        .filter(|r| in_scope(&r.scenario))
        .collect();
    let still_there: Vec<&String> = revokes
        .iter()
        .filter(|r| sessions.contains_key(&r.hash))
        .map(|r| &r.hash)
        .collect();
    let missing: Vec<_> = revokes
        .iter()
        .filter(|r| !revoke_audit.contains_key(r.hash.as_str()))
        .collect();
    let cut_revokes = missing
        .iter()
        .filter(|r| ledger.cut_by_kill(r.acked))
        .count();
    let unaudited = missing.len() - cut_revokes;
    out.check(
        "every acknowledged revoke left no session row",
        still_there.is_empty(),
        format!(
            "{} revokes checked; {} rows still present",
            revokes.len(),
            still_there.len()
        ),
    );
    out.check(
        "every acknowledged revoke has its `session_revoke` audit row",
        unaudited == 0,
        format!(
            "{} revokes checked; {unaudited} audit rows missing{}",
            revokes.len(),
            cut_note(cut_revokes)
        ),
    );
    let cached = cached_sessions(env, revokes.iter().map(|r| r.hash.as_str())).await?;
    out.check(
        "no acknowledged revoke left a cache entry",
        cached.is_empty(),
        format!(
            "{} cache keys checked; {} present",
            revokes.len(),
            cached.len()
        ),
    );

    // Refused logins.
    let mut short = 0u64;
    let failed = ledger.failed_logins();
    for (user, n) in &failed {
        let have = failed_by_user
            .get(all_users[*user].id.as_str())
            .copied()
            .unwrap_or(0);
        if have < *n {
            short += n - have;
        }
    }
    out.check(
        "every refused login (401) has its `login_failed` audit row",
        short == 0,
        format!(
            "{} refused logins checked; {short} audit rows missing",
            failed.values().sum::<u64>()
        ),
    );

    // Session rows no acknowledged login explains (a login cut off before its answer).
    let orphans = sessions
        .keys()
        .filter(|id| !login_audit.contains_key(id.as_str()))
        .count();
    out.note(format!(
        "{orphans} session rows without a `login` audit row (logins cut off before their audit write)"
    ));
    Ok(())
}

fn cut_note(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(
            " (and {n} answered within {} s before a SIGKILL, whose audit write died with the process)",
            crate::ledger::KILL_WINDOW.as_secs()
        )
    }
}

/// Which of these sessions still have a cache entry.
pub async fn cached_sessions<'a>(
    env: &Env,
    hashes: impl Iterator<Item = &'a str>,
) -> anyhow::Result<Vec<String>> {
    let client = redis(env).await?;
    let mut present = Vec::new();
    for hash in hashes {
        let key = format!("v1:session:{hash}");
        let n: i64 = client.exists(key.as_str()).await.context("redis EXISTS")?;
        if n > 0 {
            present.push(hash.to_owned());
        }
    }
    let _ = client.quit().await;
    Ok(present)
}

/// A connection to the suite's Redis.
pub async fn redis(env: &Env) -> anyhow::Result<Client> {
    let client = Client::new(
        Config::from_url(&env.redis_url).context("redis url")?,
        None,
        None,
        None,
    );
    client
        .init()
        .await
        .context("connecting to the suite's Redis")?;
    Ok(client)
}

/// `SELECT count(*) AS n ...` on the suite's Postgres.
pub async fn count(env: &Env, sql: &str) -> anyhow::Result<i64> {
    let db = env.db().await?;
    let rows = all(&db, sql).await?;
    let _ = db.close().await;
    let n = rows
        .first()
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    Ok(n)
}

/// Runs statements on the suite's Postgres (fault injection: triggers, terminations).
pub async fn execute(env: &Env, sql: &str) -> anyhow::Result<()> {
    let db = env.db().await?;
    let r = db
        .execute_unprepared(sql)
        .await
        .with_context(|| format!("executing {sql}"));
    let _ = db.close().await;
    r.map(drop)
}
