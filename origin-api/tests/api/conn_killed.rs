//! The database connection dies in the middle of a password change (new hash, then every
//! other session deleted): the answer is 503 with Retry-After and the change is all or
//! nothing (found by the reliability suite's postgres-conn-killed scenario: the answer was
//! 500, the new password was stored and the other sessions survived). Postgres only: the
//! statement is held by a trigger while the test terminates its backend, as a failover or
//! an operator would.

use std::time::Duration;

use crate::support::{PASSWORD, TestApp};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;

#[tokio::test]
async fn a_connection_lost_mid_password_change_is_503_and_changes_nothing() {
    if crate::support::postgres_url().is_none() {
        eprintln!("skipped: needs DATABASE_URL pointing to Postgres");
        return;
    }
    let s = TestApp::start().await;
    let email = "cut@example.com";
    let actor = s.user(email).await;
    let others = [s.login(email).await, s.login(email).await];
    let id = actor.id().await;
    s.sql(&format!(
        "CREATE FUNCTION hold_delete() RETURNS trigger AS $$ \
         BEGIN PERFORM pg_sleep(5); RETURN OLD; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER hold_delete BEFORE DELETE ON sessions FOR EACH ROW \
         WHEN (OLD.user_id = '{id}') EXECUTE FUNCTION hold_delete();"
    ))
    .await;

    let http = s.http.clone();
    let url = format!("{}/api/v1/account/password", s.base);
    let cookie = format!("__Host-session={}", actor.token());
    let change = tokio::spawn(async move {
        http.post(url)
            .header("cookie", cookie)
            .json(&json!({ "currentPassword": PASSWORD, "newPassword": "after the cut" }))
            .send()
            .await
            .expect("password change")
    });
    let db = sea_orm::Database::connect(s.config.database_url.as_str())
        .await
        .expect("db");
    let mut terminated = 0i64;
    for _ in 0..400 {
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND state = 'active' AND query ILIKE '%DELETE%sessions%'",
            ))
            .await
            .expect("terminate")
            .expect("row");
        terminated = row.try_get("", "n").expect("n");
        if terminated > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = db.close().await;
    assert!(terminated > 0, "the held delete was never seen");
    let resp = change.await.expect("task");
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    s.sql("DROP TRIGGER hold_delete ON sessions; DROP FUNCTION hold_delete();")
        .await;

    // Nothing changed: the old password works, the new one does not, no session was lost.
    assert_eq!(s.login_as(email, PASSWORD).await.status, 200);
    assert_eq!(s.login_as(email, "after the cut").await.status, 401);
    for token in &others {
        assert_eq!(token.me().await.status, 200);
    }
    s.stop().await;
}
