//! An audit write that finds the database unavailable is retried until it lands (found by
//! the reliability suite's postgres-outage scenario: a login acknowledged just before
//! Postgres stopped had no audit row afterwards). Postgres only: a trigger ends the
//! inserting backend (SQLSTATE 57P01, as a restart does) while a flag row exists.

use std::time::Duration;

use crate::support::TestApp;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

#[tokio::test]
async fn an_audit_write_refused_by_an_unavailable_database_lands_later() {
    if crate::support::postgres_url().is_none() {
        eprintln!("skipped: needs DATABASE_URL pointing to Postgres");
        return;
    }
    let s = TestApp::start().await;
    let email = "audited@example.com";
    s.register(email).await;
    s.sql(
        "CREATE TABLE audit_down (x int); INSERT INTO audit_down VALUES (1); \
         CREATE SEQUENCE audit_down_attempts; \
         CREATE FUNCTION audit_down() RETURNS trigger AS $$ BEGIN \
         IF EXISTS (SELECT 1 FROM audit_down) THEN \
         PERFORM nextval('audit_down_attempts'); \
         PERFORM pg_terminate_backend(pg_backend_pid()); \
         END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER audit_down BEFORE INSERT ON audit_log FOR EACH ROW \
         EXECUTE FUNCTION audit_down();",
    )
    .await;
    let token = s.login(email).await;
    // Wait (bounded) until the login's audit write has been refused at least twice, so it
    // is being retried, then bring the table back.
    let db = sea_orm::Database::connect(s.config.database_url.as_str())
        .await
        .expect("db");
    let mut attempts = 0i64;
    for _ in 0..500 {
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM audit_down_attempts",
            ))
            .await
            .expect("attempts")
            .expect("row");
        attempts = row.try_get("", "n").expect("n");
        if attempts >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = db.close().await;
    assert!(
        attempts >= 2,
        "the audit write was not retried ({attempts} attempts)"
    );
    assert_eq!(
        s.metric("sessiongate_audit_write_failures_total").await,
        0.0,
        "the write was given up"
    );
    s.sql("DELETE FROM audit_down").await;
    let items = token.audit_items(2).await;
    let actions: Vec<&str> = items.iter().filter_map(|i| i["action"].as_str()).collect();
    assert!(actions.contains(&"login"), "{actions:?}");
    assert_eq!(
        s.metric("sessiongate_audit_write_failures_total").await,
        0.0
    );
    s.stop().await;
}
