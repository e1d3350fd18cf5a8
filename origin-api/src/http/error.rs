//! The one error type of the HTTP layer and how it becomes the contract's answer: a status,
//! `{"error": "<message>"}`, and the headers that go with it (`Retry-After` on 429 and
//! 503, `Connection: close` after a body timeout). Internals are logged, never sent.

use axum::http::header::{CACHE_CONTROL, CONNECTION, RETRY_AFTER, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::error::DomainError;

/// Seconds a client should wait after a 503 caused by a dependency.
pub const RETRY_AFTER_UNAVAILABLE: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("Invalid credentials")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("Method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    /// The body did not arrive within `BODY_READ_TIMEOUT`; the connection is closed.
    #[error("Request body not received in time")]
    BodyTimeout,
    #[error("Request body too large")]
    PayloadTooLarge,
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    Unprocessable(String),
    #[error("Too many requests. Please try again later.")]
    RateLimited { retry_after: u64 },
    /// A dependency is unavailable or a queue is full; the detail is logged, never sent.
    #[error("{message}")]
    Unavailable {
        message: &'static str,
        retry_after: u64,
        detail: String,
    },
    /// A bug; the detail is logged, never sent.
    #[error("Internal server error")]
    Internal(String),
}

/// The contract's error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// A human-readable message.
    pub error: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn not_found() -> ApiError {
        ApiError::NotFound("Not found".into())
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::InvalidCredentials => ApiError::InvalidCredentials,
            DomainError::NotAuthenticated => ApiError::Unauthorized,
            DomainError::Forbidden(m) => ApiError::Forbidden(m.into()),
            DomainError::NotFound(m) => ApiError::NotFound(m.into()),
            DomainError::Conflict(m) => ApiError::Conflict(m.into()),
            DomainError::Refused(m) => ApiError::BadRequest(m.into()),
            e @ DomainError::Invalid { .. } => ApiError::Unprocessable(e.to_string()),
            DomainError::RateLimited { retry_after } => ApiError::RateLimited { retry_after },
            DomainError::Busy { retry_after } => ApiError::Unavailable {
                message: "Service busy. Please try again shortly.",
                retry_after,
                detail: "password hashing queue full".into(),
            },
            DomainError::Unavailable(detail) => ApiError::Unavailable {
                message: "Service temporarily unavailable",
                retry_after: RETRY_AFTER_UNAVAILABLE,
                detail,
            },
            DomainError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

/// A JSON error response with the API's headers (`no-store`, `nosniff`).
pub fn error_response(status: StatusCode, message: String) -> Response {
    let mut resp = (status, axum::Json(ErrorBody { error: message })).into_response();
    let headers = resp.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            ApiError::Unavailable { detail, .. } => {
                tracing::warn!(error = %detail, "dependency unavailable");
            }
            _ => {}
        }
        let mut resp = error_response(self.status(), self.to_string());
        let headers = resp.headers_mut();
        match self {
            ApiError::RateLimited { retry_after } | ApiError::Unavailable { retry_after, .. } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after));
            }
            // The rest of a slow body may still arrive: never read it as a next request.
            ApiError::BodyTimeout => {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
