//! The wire format of the contract: request bodies and response objects, camelCase, with
//! RFC 3339 UTC timestamps in whole seconds. Built from domain values here and nowhere
//! else; each type is also an OpenAPI schema.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::domain::admin::Paging;
use crate::domain::sessions::SessionInfo;
use crate::domain::types::User;
use crate::store::audit;

// ---- requests ----

#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    pub email: String,
    /// 8 to 1024 bytes.
    pub password: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfilePatch {
    /// A new name; `null` or an empty string removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    /// A new email; changing it needs `currentPassword`. `null` is refused.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(default)]
    pub current_password: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordChange {
    pub current_password: String,
    /// 8 to 1024 bytes.
    pub new_password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RoleChangeRequest {
    /// `USER` or `ADMIN`.
    pub role: String,
}

// ---- responses ----

/// The contract's `user`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub name: Option<&'a str>,
    /// `USER` or `ADMIN`.
    pub role: &'a str,
    pub created_at: String,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(u: &'a User) -> Self {
        UserView {
            id: u.id.as_str(),
            email: u.email.as_str(),
            name: u.name.as_deref(),
            role: u.role.as_str(),
            created_at: rfc3339(u.created_at),
        }
    }
}

/// The contract's `profile`: `user` plus `updatedAt`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileView<'a> {
    #[serde(flatten)]
    pub user: UserView<'a>,
    pub updated_at: String,
}

impl<'a> From<&'a User> for ProfileView<'a> {
    fn from(u: &'a User) -> Self {
        ProfileView {
            user: UserView::from(u),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UserBody<'a> {
    pub user: UserView<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct ProfileBody<'a> {
    pub profile: ProfileView<'a>,
}

/// One of the caller's sessions.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionItem {
    /// The session's storage hash.
    pub id: String,
    /// True for the session that made this request.
    pub current: bool,
    pub ip_address: Option<String>,
    pub browser: Option<String>,
    pub os: Option<String>,
    pub device_type: Option<String>,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: String,
}

impl From<SessionInfo> for SessionItem {
    fn from(s: SessionInfo) -> Self {
        SessionItem {
            id: s.hash.into_string(),
            current: s.current,
            ip_address: s.ip_address,
            browser: s.browser,
            os: s.os,
            device_type: s.device_type,
            created_at: rfc3339(s.created_at),
            last_used_at: rfc3339(s.last_used_at),
            expires_at: rfc3339(s.expires_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionsBody {
    pub sessions: Vec<SessionItem>,
}

/// One audit event.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditItem {
    pub action: String,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub created_at: String,
}

impl From<audit::Model> for AuditItem {
    fn from(r: audit::Model) -> Self {
        AuditItem {
            action: r.action,
            ip_address: r.ip_address,
            user_agent: r.user_agent,
            metadata: r.metadata,
            created_at: rfc3339(r.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    pub page: u64,
    pub page_size: u64,
    pub total: u64,
    pub total_pages: u64,
    pub has_next: bool,
    pub has_prev: bool,
}

impl Pagination {
    pub fn of(paging: Paging, total: u64) -> Pagination {
        let total_pages = paging.total_pages(total);
        Pagination {
            page: paging.page,
            page_size: paging.page_size,
            total,
            total_pages,
            has_next: paging.page < total_pages,
            has_prev: paging.page > 1,
        }
    }
}

/// A page of items.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub pagination: Pagination,
}

/// `{"ok": true}`.
#[derive(Serialize, ToSchema)]
pub struct OkBody {
    pub ok: bool,
}

impl OkBody {
    pub const TRUE: OkBody = OkBody { ok: true };
}

/// `{"ok": true, "revoked": N}`.
#[derive(Serialize, ToSchema)]
pub struct RevokedBody {
    pub ok: bool,
    pub revoked: usize,
}

#[derive(Serialize, ToSchema)]
pub struct DeletedBody {
    pub deleted: u64,
}

#[derive(Serialize, ToSchema)]
pub struct HealthBody {
    pub status: &'static str,
}

/// Readiness of the dependencies: `ok` or `unavailable` each.
#[derive(Serialize, ToSchema)]
pub struct ReadyBody {
    pub database: &'static str,
    pub cache: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
