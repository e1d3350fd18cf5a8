//! The contract's Auth table: register, login, logout, me.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderName;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::domain::types::{Email, Password, normalise_email, parse_name};
use crate::domain::{accounts, limits, sessions};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{Authed, ClientInfo, Extras, JsonObject, Presented};
use crate::http::state::AppState;
use crate::http::types::{LoginRequest, OkBody, RegisterRequest, UserBody, UserView};

/// Create an account (a USER; no cookie is set).
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, body = UserBody, description = "Created"),
        (status = 400, body = ErrorBody), (status = 409, body = ErrorBody, description = "Email taken"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    ClientInfo(client): ClientInfo,
    extras: Extras,
    body: Result<JsonObject, ApiError>,
) -> ApiResult<impl IntoResponse> {
    // Counted before the body is judged: unreadable and invalid requests count too.
    let decision = limits::register(&state.core, &client).await;
    extras.rate(&decision);
    limits::enforce(&decision)?;
    let body: RegisterRequest = body?.parse()?;
    let email = Email::parse(&body.email)?;
    let password = Password::new_password("password", body.password)?;
    let name = match body.name {
        Some(name) => parse_name(&name)?,
        None => None,
    };
    let user = accounts::register(&state.core, &client, email, password, name).await?;
    Ok((
        StatusCode::CREATED,
        Json(UserBody {
            user: UserView::from(&user),
        }),
    )
        .into_response())
}

/// Sign in: a new session and its cookie. A session presented with the request is revoked.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = UserBody, description = "Signed in; `Set-Cookie` carries the session"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody, description = "Invalid credentials"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "Hashing queue full or database down")))]
pub async fn login(
    State(state): State<AppState>,
    ClientInfo(client): ClientInfo,
    Presented(presented): Presented,
    extras: Extras,
    body: Result<JsonObject, ApiError>,
) -> ApiResult<Response> {
    let gate = limits::login(&state.core, &client).await;
    extras.rate(&gate);
    limits::enforce(&gate)?;
    let body: LoginRequest = body?.parse()?;
    let email = normalise_email(&body.email);
    if email.is_empty() {
        return Err(ApiError::Unprocessable("email: is required".into()));
    }
    if email.len() > crate::domain::types::EMAIL_MAX_BYTES {
        // No stored email is longer: refused like any unknown one, without a counter.
        return Err(ApiError::InvalidCredentials);
    }
    let password = Password::offered("password", body.password)?;
    let outcome = sessions::login(&state.core, &client, gate, &email, password, presented).await;
    extras.rate(&outcome.limits);
    let (user, issued) = outcome.result?;
    extras.set_cookie(&state, &issued);
    Ok(Json(UserBody {
        user: UserView::from(&user),
    })
    .into_response())
}

/// Sign out: the session ends, the cookie is cleared (with or without a session).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 200, body = OkBody, description = "Signed out; cookie cleared, `Clear-Site-Data: \"cookies\"`")))]
pub async fn logout(
    State(state): State<AppState>,
    ClientInfo(client): ClientInfo,
    Presented(presented): Presented,
    extras: Extras,
) -> ApiResult<impl IntoResponse> {
    sessions::logout(&state.core, &client, presented.as_ref()).await?;
    extras.clear_cookie(&state);
    Ok((
        [(HeaderName::from_static("clear-site-data"), "\"cookies\"")],
        Json(OkBody::TRUE),
    ))
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = UserBody), (status = 401, body = ErrorBody)))]
pub async fn me(Authed(session): Authed) -> impl IntoResponse {
    Json(UserBody {
        user: UserView::from(&session.user),
    })
    .into_response()
}
