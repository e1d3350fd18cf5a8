//! The ADMIN user management of the contract's Users table: list (cached per users-list
//! version), role change, delete, revoke all sessions of a user.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::app::App;
use crate::audit::{Action, Client};
use crate::cache::keys;
use crate::error::{ApiError, ApiResult};
use crate::session::{self, Authed, UserRecord, invalidate_user, whole_seconds};
use crate::store::RoleChange;

const PAGE_TTL: Duration = Duration::from_secs(30);

/// `page` (≥ 1, default 1) and `pageSize` (1..=100, default 20) from a query string;
/// garbage falls back to the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    pub page: u64,
    pub page_size: u64,
}

impl Paging {
    pub fn parse(page: Option<&str>, page_size: Option<&str>) -> Paging {
        let num = |v: Option<&str>| v.and_then(|s| s.trim().parse::<i64>().ok());
        Paging {
            page: num(page).map_or(1, |p| p.max(1)).try_into().unwrap_or(1),
            page_size: num(page_size)
                .map_or(20, |s| s.clamp(1, 100))
                .try_into()
                .unwrap_or(20),
        }
    }

    /// The contract's `pagination` object.
    pub fn json(&self, total: u64) -> Value {
        let total_pages = total.div_ceil(self.page_size);
        json!({
            "page": self.page,
            "pageSize": self.page_size,
            "total": total,
            "totalPages": total_pages,
            "hasNext": self.page < total_pages,
            "hasPrev": self.page > 1,
        })
    }
}

/// One page of users: from the cache when this version of the list has it.
pub async fn list(app: &App, paging: Paging, search: &str) -> ApiResult<Value> {
    let version = match app.cache.get(keys::USERS_VERSION).await {
        Ok(v) => Some(v.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0)),
        Err(_) => None,
    };
    let key = version.map(|v| keys::users_page(v, paging.page, paging.page_size, search));
    if let Some(key) = &key
        && let Ok(Some(hit)) = app.cache.get(key).await
        && let Ok(value) = serde_json::from_str::<Value>(&hit)
    {
        return Ok(value);
    }
    let (rows, total) = app
        .store
        .list_users(paging.page, paging.page_size, search)
        .await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|u| UserRecord::from(u).user_json())
        .collect();
    let body = json!({ "items": items, "pagination": paging.json(total) });
    if let Some(key) = key {
        let _ = app.cache.set(&key, &body.to_string(), Some(PAGE_TTL)).await;
    }
    Ok(body)
}

/// Sets a user's role; 404 for an unknown user, 409 when no ADMIN would be left.
pub async fn change_role(
    app: &Arc<App>,
    client: &Client,
    actor: &Authed,
    target: &str,
    role: &str,
) -> ApiResult<UserRecord> {
    let now = whole_seconds(app.clock.now());
    match app.store.change_role(target, role, now).await? {
        RoleChange::NotFound => Err(ApiError::NotFound("User not found".into())),
        RoleChange::LastAdmin => Err(ApiError::Conflict(
            "This change would leave no ADMIN".into(),
        )),
        RoleChange::Changed { old_role, user } => {
            invalidate_user(app, target).await;
            app.audit.record(
                Some(&actor.user.id),
                Action::RoleChange,
                client,
                json!({ "targetUserId": target, "oldRole": old_role, "newRole": role }),
            );
            Ok(UserRecord::from(&user))
        }
    }
}

/// Deletes a user, their sessions and their cache entries; 400 for one's own account.
pub async fn delete(
    app: &Arc<App>,
    client: &Client,
    actor: &Authed,
    target: &str,
) -> ApiResult<()> {
    if target == actor.user.id {
        return Err(ApiError::BadRequest(
            "You cannot delete your own account".into(),
        ));
    }
    let Some(sessions) = app.store.delete_user(target).await? else {
        return Err(ApiError::NotFound("User not found".into()));
    };
    app.metrics.revocations.increment(sessions.len() as u64);
    let revoked = sessions.len();
    app.evict_revoked(sessions).await;
    app.user_changed(target.to_owned()).await;
    if let Err(e) = app.cache.incr(keys::USERS_VERSION).await {
        tracing::warn!(error = %e, "users list version bump failed");
    }
    app.audit.record(
        Some(&actor.user.id),
        Action::UserDelete,
        client,
        json!({ "targetUserId": target, "revoked": revoked }),
    );
    Ok(())
}

/// Revokes every session of a user; 404 for an unknown user.
pub async fn revoke_sessions(
    app: &Arc<App>,
    client: &Client,
    actor: &Authed,
    target: &str,
) -> ApiResult<usize> {
    if app.store.user_by_id(target).await?.is_none() {
        return Err(ApiError::NotFound("User not found".into()));
    }
    let n = session::revoke_all(app, target, None).await?;
    app.audit.record(
        Some(&actor.user.id),
        Action::SessionRevoke,
        client,
        json!({ "reason": "admin", "targetUserId": target, "revoked": n }),
    );
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_clamps_and_falls_back() {
        let p = |a, b| Paging::parse(a, b);
        assert_eq!(
            p(None, None),
            Paging {
                page: 1,
                page_size: 20
            }
        );
        assert_eq!(
            p(Some("0"), Some("0")),
            Paging {
                page: 1,
                page_size: 1
            }
        );
        assert_eq!(
            p(Some("-3"), Some("1000")),
            Paging {
                page: 1,
                page_size: 100
            }
        );
        assert_eq!(
            p(Some("x"), Some("y")),
            Paging {
                page: 1,
                page_size: 20
            }
        );
        assert_eq!(
            p(Some("3"), Some("7")),
            Paging {
                page: 3,
                page_size: 7
            }
        );
        let j = Paging {
            page: 2,
            page_size: 10,
        }
        .json(25);
        assert_eq!(j["totalPages"], 3);
        assert_eq!(j["hasNext"], true);
        assert_eq!(j["hasPrev"], true);
        assert_eq!(
            Paging {
                page: 1,
                page_size: 10
            }
            .json(0)["totalPages"],
            0
        );
    }
}
