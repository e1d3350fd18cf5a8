//! Authorization in one place: first "who are you?" (401), then "may you?" (403). The role
//! comes from the authoritative user record (cached, invalidated on every write), so a role
//! change or deletion takes effect on the user's very next request.

use std::sync::Arc;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::session::{self, Authed};

/// The capability a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Any signed-in user.
    User,
    /// An ADMIN.
    Admin,
}

/// Authenticates the request and checks the role.
pub async fn require(app: &Arc<App>, cookie_header: Option<&str>, need: Need) -> ApiResult<Authed> {
    let authed = session::authenticate(app, cookie_header)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if need == Need::Admin && !authed.user.is_admin() {
        return Err(ApiError::Forbidden("Admin role required".into()));
    }
    Ok(authed)
}
