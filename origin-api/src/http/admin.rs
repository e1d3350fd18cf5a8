//! The contract's Users table (ADMIN only): the users list, role changes, deletion, and
//! revoking every session of a user.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::domain::admin;
use crate::domain::types::{Role, UserId};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{Admin, ClientInfo, JsonObject, PageQuery};
use crate::http::state::AppState;
use crate::http::types::{
    OkBody, Page, Pagination, RevokedBody, RoleChangeRequest, UserBody, UserView,
};

/// Users, newest first, optionally filtered by a case-insensitive substring of email or
/// name.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    params(("page" = Option<u64>, Query), ("pageSize" = Option<u64>, Query),
        ("search" = Option<String>, Query)),
    responses((status = 200, body = Page<UserView>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Admin(_): Admin,
    query: PageQuery,
) -> ApiResult<Response> {
    let page = admin::list_users(&state.core, query.paging, &query.search).await?;
    Ok(Json(Page {
        items: page.items.iter().map(UserView::from).collect(),
        pagination: Pagination::of(query.paging, page.total),
    })
    .into_response())
}

/// Set a user's role; refused when no ADMIN would be left.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path)),
    request_body = RoleChangeRequest,
    responses((status = 200, body = UserBody), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "It would leave no ADMIN"),
        (status = 422, body = ErrorBody)))]
pub async fn change_role(
    State(state): State<AppState>,
    Admin(actor): Admin,
    ClientInfo(client): ClientInfo,
    Path(id): Path<String>,
    body: Result<JsonObject, ApiError>,
) -> ApiResult<Response> {
    let body: RoleChangeRequest = body?.parse()?;
    let role = Role::parse(&body.role)?;
    let target = UserId::from_stored(id);
    let user = admin::change_role(&state.core, &client, &actor, &target, role).await?;
    Ok(Json(UserBody {
        user: UserView::from(&user),
    })
    .into_response())
}

/// Delete a user with their sessions.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path)),
    responses((status = 200, body = OkBody),
        (status = 400, body = ErrorBody, description = "One's own account"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(actor): Admin,
    ClientInfo(client): ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<Json<OkBody>> {
    admin::delete_user(&state.core, &client, &actor, &UserId::from_stored(id)).await?;
    Ok(Json(OkBody::TRUE))
}

/// Revoke every session of a user.
#[utoipa::path(delete, path = "/api/v1/users/{id}/sessions", tag = "users",
    params(("id" = String, Path)),
    responses((status = 200, body = RevokedBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_sessions(
    State(state): State<AppState>,
    Admin(actor): Admin,
    ClientInfo(client): ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<Json<RevokedBody>> {
    let target = UserId::from_stored(id);
    let revoked = admin::revoke_user_sessions(&state.core, &client, &actor, &target).await?;
    Ok(Json(RevokedBody { ok: true, revoked }))
}
