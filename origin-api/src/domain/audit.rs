//! The append-only audit log: what happened, to whom, from where. Events are written off
//! the request path through the background tracker; a write that finds the database
//! unavailable is retried (for up to [`RETRY_FOR`]), and a write that fails for good is
//! logged and counted, never surfaced. No code path updates or deletes audit rows.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::SqlErr;
use serde_json::Value;

use crate::background::{Attempt, Background};
use crate::clock::{Clock, whole_seconds};
use crate::domain::error::{is_unavailable, short};
use crate::domain::types::{Client, UserId};
use crate::metrics::Metrics;
use crate::store::{Store, audit};

/// How long an event whose write found the database unavailable keeps being retried: an
/// operation acknowledged just before (or while) the database went away still gets its
/// row once the database is back.
pub const RETRY_FOR: Duration = Duration::from_secs(300);

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

/// The recorder.
pub struct Audit {
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    background: Background,
}

impl Audit {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        background: Background,
    ) -> Audit {
        Audit {
            store,
            clock,
            metrics,
            background,
        }
    }

    /// Records one event in the background.
    pub fn record(&self, user: Option<&UserId>, action: Action, client: &Client, metadata: Value) {
        let row = audit::Model {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user.map(|u| u.as_str().to_owned()),
            action: action.as_str().to_owned(),
            ip_address: Some(client.ip.to_string()),
            user_agent: client.user_agent.clone(),
            metadata,
            created_at: whole_seconds(self.clock.now()),
        };
        let store = self.store.clone();
        let failures = self.metrics.audit_failures.clone();
        let mut attempts = 0u32;
        self.background.retry(
            RETRY_FOR,
            move || {
                attempts += 1;
                let retried = attempts > 1;
                let store = store.clone();
                let row = row.clone();
                async move {
                    match store.insert_audit(row).await {
                        Ok(()) => Attempt::Done,
                        // A retried write whose first attempt landed but lost its answer.
                        Err(e)
                            if retried
                                && matches!(
                                    e.sql_err(),
                                    Some(SqlErr::UniqueConstraintViolation(_))
                                ) =>
                        {
                            Attempt::Done
                        }
                        Err(e) if is_unavailable(&e) => Attempt::Retry(e),
                        Err(e) => Attempt::GiveUp(e),
                    }
                }
            },
            {
                let mut warned = false;
                move |e, last| {
                    if last {
                        failures.increment(1);
                        tracing::error!(action = action.as_str(), error = %short(e), "audit write failed");
                    } else if !warned {
                        warned = true;
                        tracing::warn!(
                            action = action.as_str(),
                            "audit write deferred: database unavailable; retrying"
                        );
                    }
                }
            },
        );
    }
}
