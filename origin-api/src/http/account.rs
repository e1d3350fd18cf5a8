//! The contract's Account table: the caller's own profile, password, sessions and audit
//! history.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::domain::accounts::{self, ProfileChange};
use crate::domain::types::{Email, Password, parse_name};
use crate::domain::{limits, sessions};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{Authed, ClientInfo, Extras, JsonObject, PageQuery};
use crate::http::state::AppState;
use crate::http::types::{
    AuditItem, OkBody, Page, Pagination, PasswordChange, ProfileBody, ProfilePatch, ProfileView,
    RevokedBody, SessionItem, SessionsBody,
};

/// The caller's profile.
#[utoipa::path(get, path = "/api/v1/account", tag = "account",
    responses((status = 200, body = ProfileBody), (status = 401, body = ErrorBody)))]
pub async fn profile(Authed(session): Authed) -> Response {
    Json(ProfileBody {
        profile: ProfileView::from(&session.user),
    })
    .into_response()
}

/// Change the name and/or the email (an email change needs `currentPassword`).
#[utoipa::path(patch, path = "/api/v1/account", tag = "account",
    request_body = ProfilePatch,
    responses(
        (status = 200, body = ProfileBody), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "Email change without the right current password"),
        (status = 409, body = ErrorBody, description = "Email taken"),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Authed(session): Authed,
    ClientInfo(client): ClientInfo,
    extras: Extras,
    body: Result<JsonObject, ApiError>,
) -> ApiResult<Response> {
    let decision = limits::account_update(&state.core, &client, &session.user.id).await;
    extras.rate(&decision);
    limits::enforce(&decision)?;
    let patch: ProfilePatch = body?.parse()?;
    let name = match patch.name {
        Some(Some(name)) => Some(parse_name(&name)?),
        Some(None) => Some(None),
        None => None,
    };
    let email = match patch.email {
        Some(Some(email)) => Some(Email::parse(&email)?),
        Some(None) => return Err(ApiError::Unprocessable("email: must be a string".into())),
        None => None,
    };
    let current_password = patch
        .current_password
        .map(|p| Password::offered("currentPassword", p))
        .transpose()?;
    let change = ProfileChange {
        name,
        email,
        current_password,
    };
    let user = accounts::update_profile(&state.core, &client, &session, change).await?;
    Ok(Json(ProfileBody {
        profile: ProfileView::from(&user),
    })
    .into_response())
}

/// Change the password; every other session of the caller is revoked.
#[utoipa::path(post, path = "/api/v1/account/password", tag = "account",
    request_body = PasswordChange,
    responses(
        (status = 200, body = RevokedBody), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "Wrong current password"),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    Authed(session): Authed,
    ClientInfo(client): ClientInfo,
    extras: Extras,
    body: Result<JsonObject, ApiError>,
) -> ApiResult<Json<RevokedBody>> {
    let decision = limits::password(&state.core, &session.user.id).await;
    extras.rate(&decision);
    limits::enforce(&decision)?;
    let body: PasswordChange = body?.parse()?;
    let current = Password::offered("currentPassword", body.current_password)?;
    let new = Password::new_password("newPassword", body.new_password)?;
    let revoked = accounts::change_password(&state.core, &client, &session, current, new).await?;
    Ok(Json(RevokedBody { ok: true, revoked }))
}

/// The caller's live sessions, most recently used first.
#[utoipa::path(get, path = "/api/v1/account/sessions", tag = "account",
    responses((status = 200, body = SessionsBody), (status = 401, body = ErrorBody)))]
pub async fn sessions(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> ApiResult<Json<SessionsBody>> {
    let list = sessions::list(&state.core, &session).await?;
    Ok(Json(SessionsBody {
        sessions: list.into_iter().map(SessionItem::from).collect(),
    }))
}

/// Revoke every other session of the caller.
#[utoipa::path(delete, path = "/api/v1/account/sessions", tag = "account",
    responses((status = 200, body = RevokedBody), (status = 401, body = ErrorBody)))]
pub async fn revoke_others(
    State(state): State<AppState>,
    Authed(session): Authed,
    ClientInfo(client): ClientInfo,
) -> ApiResult<Json<RevokedBody>> {
    let revoked = sessions::revoke_others(&state.core, &client, &session).await?;
    Ok(Json(RevokedBody { ok: true, revoked }))
}

/// Revoke one of the caller's other sessions.
#[utoipa::path(delete, path = "/api/v1/account/sessions/{id}", tag = "account",
    params(("id" = String, Path, description = "The session's id (its storage hash)")),
    responses(
        (status = 200, body = OkBody),
        (status = 400, body = ErrorBody, description = "The current session: use logout"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "Not found or not the caller's")))]
pub async fn revoke_session(
    State(state): State<AppState>,
    Authed(session): Authed,
    ClientInfo(client): ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<Json<OkBody>> {
    sessions::revoke_one(&state.core, &client, &session, &id).await?;
    Ok(Json(OkBody::TRUE))
}

/// The caller's audit history, newest first.
#[utoipa::path(get, path = "/api/v1/account/audit", tag = "account",
    params(("page" = Option<u64>, Query), ("pageSize" = Option<u64>, Query)),
    responses((status = 200, body = Page<AuditItem>), (status = 401, body = ErrorBody)))]
pub async fn audit(
    State(state): State<AppState>,
    Authed(session): Authed,
    query: PageQuery,
) -> ApiResult<Json<Page<AuditItem>>> {
    let paging = query.paging;
    let (rows, total) = accounts::audit_history(&state.core, &session.user.id, paging).await?;
    Ok(Json(Page {
        items: rows.into_iter().map(AuditItem::from).collect(),
        pagination: Pagination::of(paging, total),
    }))
}
