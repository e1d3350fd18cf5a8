//! The service's error type: one variant per contract status, so every layer can say
//! what went wrong and the HTTP layer alone decides the wire shape.

use sea_orm::DbErr;

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
    MethodNotAllowed(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("Request body too large")]
    PayloadTooLarge,
    /// The body did not arrive within `BODY_READ_TIMEOUT`; the connection is closed.
    #[error("Request body not received in time")]
    BodyTimeout,
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    Unprocessable(String),
    #[error("Too many requests. Please try again later.")]
    RateLimited { retry_after: u64 },
    /// A dependency (database, cache) is unavailable; the detail is logged, never sent.
    #[error("Service temporarily unavailable")]
    Unavailable(String),
    /// A bug; the detail is logged, never sent.
    #[error("Internal server error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized | ApiError::InvalidCredentials => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::Conflict(_) => 409,
            ApiError::BodyTimeout => 408,
            ApiError::PayloadTooLarge => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::Unprocessable(_) => 422,
            ApiError::RateLimited { .. } => 429,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        }
    }

    pub fn forbidden() -> Self {
        ApiError::Forbidden("Forbidden".into())
    }

    pub fn invalid(field: &str, problem: &str) -> Self {
        ApiError::Unprocessable(format!("{field}: {problem}"))
    }
}

/// True when the database error means "the database cannot be reached" (503), not a bug.
pub fn is_unavailable(e: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    let runtime = match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Query(r) | DbErr::Exec(r) => r,
        _ => return false,
    };
    match runtime {
        RuntimeErr::SqlxError(inner) => match inner.as_ref() {
            Sqlx::Io(_)
            | Sqlx::Tls(_)
            | Sqlx::PoolTimedOut
            | Sqlx::PoolClosed
            | Sqlx::WorkerCrashed
            | Sqlx::Protocol(_) => true,
            // The server ended or refused the session rather than the statement: SQLSTATE
            // class 08 (connection exception), 53 (insufficient resources: too many
            // connections, out of memory or disk) and 57 (operator intervention: a
            // shutdown or restart, a terminated backend, a failover).
            Sqlx::Database(db) => db
                .code()
                .is_some_and(|code| ["08", "53", "57"].iter().any(|c| code.starts_with(c))),
            _ => false,
        },
        _ => false,
    }
}

impl From<DbErr> for ApiError {
    fn from(e: DbErr) -> Self {
        if is_unavailable(&e) {
            ApiError::Unavailable(format!("database: {e}"))
        } else {
            ApiError::Internal(format!("database: {e}"))
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A database error reduced to a line safe for logs and start-up messages (no URL).
pub fn short(e: &DbErr) -> String {
    if is_unavailable(e) {
        "database unreachable".into()
    } else {
        e.to_string()
    }
}
