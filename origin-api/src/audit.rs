//! The append-only audit log: events are written off the request path; a write that finds
//! the database unavailable is retried in the background (for up to [`RETRY_FOR`]), and a
//! write that fails for good is logged and counted, never surfaced. No code path updates
//! or deletes audit rows.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use sea_orm::SqlErr;

use crate::clock::Clock;
use crate::error::is_unavailable;
use crate::metrics::Metrics;
use crate::store::{Store, audit};

/// How long an event whose write found the database unavailable keeps being retried: an
/// operation acknowledged just before (or while) the database went away still gets its
/// row once the database is back.
pub const RETRY_FOR: Duration = Duration::from_secs(300);

/// Where a request came from, as recorded with its events.
#[derive(Clone, Debug, Default)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Audited actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Login,
    LoginFailed,
    Logout,
    Register,
    PasswordChange,
    SessionRevoke,
    RoleChange,
    UserDelete,
    ProfileUpdate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::LoginFailed => "login_failed",
            Action::Logout => "logout",
            Action::Register => "register",
            Action::PasswordChange => "password_change",
            Action::SessionRevoke => "session_revoke",
            Action::RoleChange => "role_change",
            Action::UserDelete => "user_delete",
            Action::ProfileUpdate => "profile_update",
        }
    }
}

pub struct Audit {
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl Audit {
    pub fn new(store: Store, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Audit {
        Audit {
            store,
            clock,
            metrics,
        }
    }

    /// Records one event in the background.
    pub fn record(&self, user_id: Option<&str>, action: Action, client: &Client, metadata: Value) {
        let row = audit::Model {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user_id.map(str::to_owned),
            action: action.as_str().to_owned(),
            ip_address: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            metadata,
            created_at: crate::session::whole_seconds(self.clock.now()),
        };
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let give_up = tokio::time::Instant::now() + RETRY_FOR;
            let mut delay = Duration::from_millis(100);
            let mut retried = false;
            loop {
                let e = match store.insert_audit(row.clone()).await {
                    Ok(()) => return,
                    Err(e) => e,
                };
                // A retried write whose first attempt landed but lost its answer.
                if retried && matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
                    return;
                }
                if !is_unavailable(&e) || tokio::time::Instant::now() >= give_up {
                    metrics.audit_failures.increment(1);
                    tracing::error!(action = action.as_str(), error = %crate::error::short(&e), "audit write failed");
                    return;
                }
                if !retried {
                    tracing::warn!(
                        action = action.as_str(),
                        "audit write deferred: database unavailable; retrying"
                    );
                    retried = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
    }
}
