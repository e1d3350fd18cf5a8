//! User management for ADMINs (the contract's Users table): the paginated, searchable
//! list (cached per users-list version), role changes, deletion and revoking all of a
//! user's sessions. Each write re-checks, in its transaction, that the actor is still an
//! ADMIN, so two ADMINs demoting or deleting each other at once cannot leave none.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::whole_seconds;
use crate::domain::audit::Action;
use crate::domain::core::Core;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::sessions::{self, Revoked, Session};
use crate::domain::types::{Client, Role, SessionHash, User, UserId};
use crate::store::{RoleChange, UserDeletion};

/// `page` (≥ 1, default 1) and `pageSize` (1..=100, default 20); garbage falls back to the
/// defaults.
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

    pub fn total_pages(&self, total: u64) -> u64 {
        total.div_ceil(self.page_size)
    }
}

/// One page of users, newest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UsersPage {
    pub items: Vec<User>,
    pub total: u64,
}

fn no_longer_admin() -> DomainError {
    DomainError::Forbidden("Admin role required")
}

/// One page of users matching `search` (trimmed, at most 200 characters, a
/// case-insensitive substring of email or name).
pub async fn list_users(core: &Arc<Core>, paging: Paging, search: &str) -> DomainResult<UsersPage> {
    let search: String = search.trim().chars().take(200).collect();
    let (hit, slot) = core
        .users_list
        .get(paging.page, paging.page_size, &search)
        .await;
    if let Some(page) = hit.and_then(|text| serde_json::from_str::<UsersPage>(&text).ok()) {
        return Ok(page);
    }
    let (rows, total) = core
        .store
        .list_users(paging.page, paging.page_size, &search)
        .await?;
    let page = UsersPage {
        items: rows.iter().map(|u| u.to_user()).collect(),
        total,
    };
    if let (Some(slot), Ok(text)) = (slot, serde_json::to_string(&page)) {
        core.users_list.put(slot, &text).await;
    }
    Ok(page)
}

/// Sets a user's role; `NotFound` for an unknown user, `Conflict` when no ADMIN would be
/// left.
pub async fn change_role(
    core: &Arc<Core>,
    client: &Client,
    actor: &Session,
    target: &UserId,
    role: Role,
) -> DomainResult<User> {
    let now = whole_seconds(core.clock.now());
    match core
        .store
        .change_role(actor.user.id.as_str(), target.as_str(), role.as_str(), now)
        .await?
    {
        RoleChange::NotFound => Err(DomainError::NotFound("User not found")),
        RoleChange::ActorNotAdmin => Err(no_longer_admin()),
        RoleChange::LastAdmin => Err(DomainError::Conflict("This change would leave no ADMIN")),
        RoleChange::Changed { old_role, user } => {
            sessions::user_changed(core, target).await;
            core.audit.record(
                Some(&actor.user.id),
                Action::RoleChange,
                client,
                json!({ "targetUserId": target.as_str(), "oldRole": old_role, "newRole": role.as_str() }),
            );
            Ok(user.to_user())
        }
    }
}

/// Deletes a user, their sessions and their cache entries; refused for one's own account.
pub async fn delete_user(
    core: &Arc<Core>,
    client: &Client,
    actor: &Session,
    target: &UserId,
) -> DomainResult<()> {
    if *target == actor.user.id {
        return Err(DomainError::Refused("You cannot delete your own account"));
    }
    let sessions = match core
        .store
        .delete_user(actor.user.id.as_str(), target.as_str())
        .await?
    {
        UserDeletion::NotFound => return Err(DomainError::NotFound("User not found")),
        UserDeletion::ActorNotAdmin => return Err(no_longer_admin()),
        UserDeletion::Deleted(sessions) => sessions,
    };
    let hashes: Vec<SessionHash> = sessions.into_iter().map(SessionHash::from_stored).collect();
    let revoked = hashes.len();
    sessions::revoke_sessions(core, client, Revoked::UserDeleted, hashes).await;
    core.sessions.user_changed(target, Vec::new()).await;
    core.users_list.changed().await;
    core.audit.record(
        Some(&actor.user.id),
        Action::UserDelete,
        client,
        json!({ "targetUserId": target.as_str(), "revoked": revoked }),
    );
    Ok(())
}

/// Revokes every session of a user; returns how many.
pub async fn revoke_user_sessions(
    core: &Arc<Core>,
    client: &Client,
    actor: &Session,
    target: &UserId,
) -> DomainResult<usize> {
    if core.store.user_by_id(target.as_str()).await?.is_none() {
        return Err(DomainError::NotFound("User not found"));
    }
    let ids = core.store.delete_sessions_of(target.as_str(), None).await?;
    let hashes: Vec<SessionHash> = ids.into_iter().map(SessionHash::from_stored).collect();
    let n = hashes.len();
    let why = Revoked::ByAdmin {
        actor: &actor.user.id,
        target,
    };
    sessions::revoke_sessions(core, client, why, hashes).await;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_clamps_and_falls_back() {
        let p = |a, b| Paging::parse(a, b);
        let paging = |page, page_size| Paging { page, page_size };
        assert_eq!(p(None, None), paging(1, 20));
        assert_eq!(p(Some("0"), Some("0")), paging(1, 1));
        assert_eq!(p(Some("-3"), Some("1000")), paging(1, 100));
        assert_eq!(p(Some("x"), Some("y")), paging(1, 20));
        assert_eq!(p(Some("3"), Some("7")), paging(3, 7));
        assert_eq!(paging(2, 10).total_pages(25), 3);
        assert_eq!(paging(1, 10).total_pages(0), 0);
    }
}
