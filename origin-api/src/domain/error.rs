//! What can go wrong in the domain, in the domain's words. No HTTP statuses here: the HTTP
//! layer alone maps each variant onto the contract's answer.

use sea_orm::DbErr;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Unknown email or wrong password (the same answer for both).
    #[error("Invalid credentials")]
    InvalidCredentials,
    /// No live session (absent, expired, revoked, or its user is gone).
    #[error("Unauthorized")]
    NotAuthenticated,
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    /// Refused because of the current state (an email taken, the last ADMIN).
    #[error("{0}")]
    Conflict(&'static str),
    /// A request that cannot be carried out as asked (revoking one's current session).
    #[error("{0}")]
    Refused(&'static str),
    /// A field failed validation.
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: &'static str,
    },
    #[error("Too many requests. Please try again later.")]
    RateLimited { retry_after: u64 },
    /// The password-hashing queue is full: retry shortly.
    #[error("Service busy. Please try again shortly.")]
    Busy { retry_after: u64 },
    /// A dependency (database) cannot be reached; the detail is logged, never shown.
    #[error("Service temporarily unavailable")]
    Unavailable(String),
    /// A bug; the detail is logged, never shown.
    #[error("Internal server error")]
    Internal(String),
}

impl DomainError {
    pub fn invalid(field: &'static str, problem: &'static str) -> Self {
        DomainError::Invalid { field, problem }
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

impl From<DbErr> for DomainError {
    fn from(e: DbErr) -> Self {
        if is_unavailable(&e) {
            DomainError::Unavailable(format!("database: {}", short(&e)))
        } else {
            DomainError::Internal(format!("database: {e}"))
        }
    }
}

/// A database error reduced to a line safe for logs and start-up messages (no URL).
pub fn short(e: &DbErr) -> String {
    if is_unavailable(e) {
        "database unreachable".into()
    } else {
        e.to_string()
    }
}

pub type DomainResult<T> = Result<T, DomainError>;
