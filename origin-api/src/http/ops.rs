//! The contract's Operations table: the cleanup cron, liveness, readiness, metrics, and
//! the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::cleanup;
use crate::http::context::constant_time_eq;
use crate::http::error::{ApiError, ApiResult, ErrorBody, RETRY_AFTER_UNAVAILABLE};
use crate::http::state::AppState;
use crate::http::types::{DeletedBody, HealthBody, ReadyBody};

/// The token of an `Authorization: Bearer <token>` value: the scheme is case-insensitive
/// and separated by one or more spaces (RFC 7235, RFC 6750).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// True when the request carries `Authorization: Bearer <secret>`.
fn bearer_is(headers: &HeaderMap, secret: Option<&str>) -> bool {
    match (secret, bearer_token(headers)) {
        (Some(secret), Some(token)) => constant_time_eq(token.as_bytes(), secret.as_bytes()),
        _ => false,
    }
}

/// Delete expired sessions now (for an external scheduler).
#[utoipa::path(post, path = "/api/v1/cron/cleanup-sessions", tag = "operations",
    security(("bearer" = [])),
    responses((status = 200, body = DeletedBody), (status = 401, body = ErrorBody)))]
pub async fn cleanup(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<DeletedBody>> {
    if !bearer_is(&headers, state.config.cron_secret.as_deref()) {
        return Err(ApiError::Unauthorized);
    }
    let deleted = cleanup::run_once(&state.core).await?;
    Ok(Json(DeletedBody { deleted }))
}

/// The process serves.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = HealthBody)))]
pub async fn healthz() -> Json<HealthBody> {
    Json(HealthBody { status: "ok" })
}

/// The database and the cache answer.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = ReadyBody), (status = 503, body = ReadyBody)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let core = &state.core;
    let (db, cache) = tokio::join!(core.store.ping(), core.cache.ping());
    let (db, cache) = (db.is_ok(), cache.is_ok());
    let status = |ok: bool| if ok { "ok" } else { "unavailable" };
    let failing: Vec<&str> = [("database", db), ("cache", cache)]
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| *name)
        .collect();
    let body = ReadyBody {
        database: status(db),
        cache: status(cache),
        error: (!failing.is_empty())
            .then(|| format!("Not ready: {} unavailable", failing.join(" and "))),
    };
    if failing.is_empty() {
        return Json(body).into_response();
    }
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_UNAVAILABLE));
    resp
}

/// Prometheus text, on the public listener only with `Authorization: Bearer
/// <METRICS_TOKEN>` (and never without a token configured).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/plain", body = String),
        (status = 401, body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !bearer_is(&headers, state.config.metrics_token.as_deref()) {
        return ApiError::Unauthorized.into_response();
    }
    render_metrics(&state)
}

/// Prometheus text (the `METRICS_ADDR` listener serves this without a token).
pub fn render_metrics(state: &AppState) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.core.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, content_type = "application/json", description = "OpenAPI 3.1")))]
pub async fn openapi() -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        crate::http::openapi::document(),
    )
        .into_response()
}
