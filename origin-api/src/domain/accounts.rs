//! Accounts: registration, the profile, the password change, and the command line's
//! create-admin. Every write to a user drops that user's cached sessions and keeps them
//! out while the change marker lives (`sessions::user_changed`), so the next request of
//! any of their sessions sees the change.

use std::sync::Arc;

use serde_json::json;

use crate::clock::whole_seconds;
use crate::domain::admin::Paging;
use crate::domain::audit::Action;
use crate::domain::core::Core;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::sessions::{self, Revoked, Session};
use crate::domain::types::{Client, Email, Password, Role, SessionHash, User, UserId};
use crate::store::{WriteError, audit, user};

fn email_taken() -> DomainError {
    DomainError::Conflict("Email already registered")
}

fn write_error(e: WriteError) -> DomainError {
    match e {
        WriteError::Duplicate => email_taken(),
        WriteError::Db(e) => e.into(),
    }
}

/// Creates a USER account.
pub async fn register(
    core: &Arc<Core>,
    client: &Client,
    email: Email,
    password: Password,
    name: Option<String>,
) -> DomainResult<User> {
    let hash = core.passwords.hash(password).await?;
    let now = whole_seconds(core.clock.now());
    let model = user::Model {
        id: UserId::generate().as_str().to_owned(),
        email: email.as_str().to_owned(),
        name,
        password_hash: hash,
        role: Role::User.as_str().to_owned(),
        created_at: now,
        updated_at: now,
    };
    let model = core.store.insert_user(model).await.map_err(write_error)?;
    core.users_list.changed().await;
    let user = model.to_user();
    core.audit
        .record(Some(&user.id), Action::Register, client, json!({}));
    Ok(user)
}

/// A profile change: `name` absent leaves it, `Some(None)` clears it; an email change needs
/// the current password (ASVS 7.5.1: a stolen session alone cannot take the account over).
pub struct ProfileChange {
    pub name: Option<Option<String>>,
    pub email: Option<Email>,
    pub current_password: Option<Password>,
}

/// Updates name and/or email; the very next request sees the change.
pub async fn update_profile(
    core: &Arc<Core>,
    client: &Client,
    session: &Session,
    change: ProfileChange,
) -> DomainResult<User> {
    let id = &session.user.id;
    let email = change.email.filter(|e| *e != session.user.email);
    if email.is_some() {
        let password = change.current_password.ok_or(DomainError::Forbidden(
            "Current password is required to change the email",
        ))?;
        check_password(core, id, password).await?;
    }
    let mut fields = Vec::new();
    if change.name.is_some() {
        fields.push("name");
    }
    if email.is_some() {
        fields.push("email");
    }
    let now = whole_seconds(core.clock.now());
    let updated = core
        .store
        .update_profile(
            id.as_str(),
            change.name,
            email.map(|e| e.as_str().to_owned()),
            now,
        )
        .await
        .map_err(write_error)?
        .ok_or(DomainError::NotAuthenticated)?;
    sessions::user_changed(core, id).await;
    core.audit.record(
        Some(id),
        Action::ProfileUpdate,
        client,
        json!({ "fields": fields }),
    );
    Ok(updated.to_user())
}

/// Checks the user's current password: `Forbidden` when wrong.
async fn check_password(core: &Arc<Core>, id: &UserId, password: Password) -> DomainResult<()> {
    let stored = core
        .store
        .user_by_id(id.as_str())
        .await?
        .ok_or(DomainError::NotAuthenticated)?;
    let checked = core
        .passwords
        .verify(password, Some(stored.password_hash))
        .await?;
    if checked.ok {
        Ok(())
    } else {
        Err(DomainError::Forbidden("Current password is incorrect"))
    }
}

/// Changes the password after checking the current one, and revokes every other session
/// of the user (in the same transaction as the new hash); returns how many.
pub async fn change_password(
    core: &Arc<Core>,
    client: &Client,
    session: &Session,
    current: Password,
    new: Password,
) -> DomainResult<usize> {
    let id = &session.user.id;
    check_password(core, id, current).await?;
    let hash = core.passwords.hash(new).await?;
    let now = whole_seconds(core.clock.now());
    let revoked = core
        .store
        .change_password(id.as_str(), hash, now, session.hash.as_str())
        .await?;
    let hashes: Vec<SessionHash> = revoked.into_iter().map(SessionHash::from_stored).collect();
    let n = hashes.len();
    sessions::revoke_sessions(core, client, Revoked::PasswordChanged, hashes).await;
    sessions::user_changed(core, id).await;
    core.audit.record(
        Some(id),
        Action::PasswordChange,
        client,
        json!({ "revoked": n }),
    );
    Ok(n)
}

/// Creates the user as ADMIN, or promotes an existing one and sets its password (the
/// command line's `create-admin`). True when created.
pub async fn create_admin(
    core: &Arc<Core>,
    email: Email,
    password: Password,
) -> DomainResult<bool> {
    let hash = core.passwords.hash(password).await?;
    let now = whole_seconds(core.clock.now());
    let created = core
        .store
        .upsert_admin(user::Model {
            id: UserId::generate().as_str().to_owned(),
            email: email.as_str().to_owned(),
            name: None,
            password_hash: hash,
            role: Role::Admin.as_str().to_owned(),
            created_at: now,
            updated_at: now,
        })
        .await
        .map_err(write_error)?;
    if let Some(user) = core.store.user_by_email(email.as_str()).await? {
        sessions::user_changed(core, &UserId::from_stored(user.id)).await;
    }
    Ok(created)
}

/// One page of the user's audit events, newest first, and how many there are.
pub async fn audit_history(
    core: &Arc<Core>,
    user: &UserId,
    paging: Paging,
) -> DomainResult<(Vec<audit::Model>, u64)> {
    Ok(core
        .store
        .audit_of(user.as_str(), paging.page, paging.page_size)
        .await?)
}
