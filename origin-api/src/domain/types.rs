//! The domain's vocabulary: user ids, session hashes, emails, roles, passwords, names and
//! the user as the service sees it. Parsing here is where outside input becomes trusted:
//! every constructor that takes text validates it, so the rest of the code never re-checks.
//! No HTTP and no storage in here.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::error::DomainError;

/// Longest accepted password in bytes; longer ones are refused before any hashing.
pub const PASSWORD_MAX_BYTES: usize = 1024;
/// Shortest accepted new password in bytes.
pub const PASSWORD_MIN_BYTES: usize = 8;
/// Longest display name, in characters.
pub const NAME_MAX_CHARS: usize = 100;
/// Longest email: RFC 5321's path limit.
pub const EMAIL_MAX_BYTES: usize = 254;

/// A user id (UUIDv7 text).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// A new, time-ordered id.
    pub fn generate() -> UserId {
        UserId(uuid::Uuid::now_v7().to_string())
    }

    /// An id as stored or as named in a URL; any text is a possible id (unknown ones are
    /// simply not found).
    pub fn from_stored(id: impl Into<String>) -> UserId {
        UserId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A session's storage hash: SHA-256 of the session id, base64url (the API's session `id`).
/// The raw id never leaves the cookie.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionHash(String);

impl SessionHash {
    pub fn of(sid: &shared::SessionId) -> SessionHash {
        SessionHash(sid.storage_hash())
    }

    /// A hash read from storage (trusted).
    pub fn from_stored(hash: String) -> SessionHash {
        SessionHash(hash)
    }

    /// A hash named by a client: `None` unless it has the form of one.
    pub fn parse(text: &str) -> Option<SessionHash> {
        shared::sid::is_session_id_form(text).then(|| SessionHash(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A normalised (trimmed, lower-cased), plausible email address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Normalises and validates: one `@`, a non-empty local part of at most 64 bytes, a
    /// dotted domain, no whitespace or control characters, at most 254 bytes.
    pub fn parse(text: &str) -> Result<Email, DomainError> {
        let email = normalise_email(text);
        let Some((local, domain)) = email.split_once('@') else {
            return Err(DomainError::invalid(
                "email",
                "is not a valid email address",
            ));
        };
        let plausible = email.len() <= EMAIL_MAX_BYTES
            && !local.is_empty()
            && local.len() <= 64
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if plausible {
            Ok(Email(email))
        } else {
            Err(DomainError::invalid(
                "email",
                "is not a valid email address",
            ))
        }
    }

    /// An email read from storage (already normalised when written).
    pub fn from_stored(email: String) -> Email {
        Email(email)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Trims and lower-cases an email for storage and comparison.
pub fn normalise_email(text: &str) -> String {
    text.trim().to_lowercase()
}

/// A user's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "USER",
            Role::Admin => "ADMIN",
        }
    }

    /// `USER` or `ADMIN`, exactly.
    pub fn parse(text: &str) -> Result<Role, DomainError> {
        match text {
            "USER" => Ok(Role::User),
            "ADMIN" => Ok(Role::Admin),
            _ => Err(DomainError::invalid("role", "must be USER or ADMIN")),
        }
    }

    /// A role read from storage; the schema's CHECK constraint allows only the two.
    pub fn from_stored(text: &str) -> Role {
        if text == "ADMIN" {
            Role::Admin
        } else {
            Role::User
        }
    }
}

/// A password in memory. `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// A password offered for checking (login, current password): only the upper bound
    /// applies, so that no 64 KiB string is ever hashed.
    pub fn offered(field: &'static str, text: String) -> Result<Password, DomainError> {
        if text.len() > PASSWORD_MAX_BYTES {
            return Err(DomainError::invalid(field, "must be at most 1024 bytes"));
        }
        Ok(Password(text))
    }

    /// A new password: 8 to 1024 bytes.
    pub fn new_password(field: &'static str, text: String) -> Result<Password, DomainError> {
        let password = Password::offered(field, text)?;
        if password.0.len() < PASSWORD_MIN_BYTES {
            return Err(DomainError::invalid(field, "must be at least 8 bytes"));
        }
        Ok(password)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A display name: trimmed, at most 100 characters, no control characters; empty means
/// none.
pub fn parse_name(text: &str) -> Result<Option<String>, DomainError> {
    let name = text.trim();
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(DomainError::invalid(
            "name",
            "must be at most 100 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

/// The user as the service, the cache and the API see it: never the password hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub name: Option<String>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Where a request came from, as recorded with its audit events and used by the per-IP
/// rate limits.
#[derive(Clone, Debug)]
pub struct Client {
    pub ip: std::net::IpAddr,
    /// The identifier of the per-IP rate-limit buckets: an IPv4 address, or the IPv6
    /// network of the configured prefix length (one /64 is one client).
    pub rate_key: String,
    pub user_agent: Option<String>,
}

impl Client {
    /// A client for work that has no request (command line, tests).
    pub fn local() -> Client {
        Client {
            ip: std::net::IpAddr::from([127, 0, 0, 1]),
            rate_key: "127.0.0.1".into(),
            user_agent: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@b",
            "a@.b.c",
            "a@b.c.",
            "a b@c.d",
            "a@b@c.d",
            "a\u{7}@b.cd",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(Email::parse(&long_local).is_err());
    }

    #[test]
    fn passwords_names_roles() {
        assert!(Password::new_password("password", "short".into()).is_err());
        assert!(Password::new_password("password", "x".repeat(1025)).is_err());
        assert!(Password::new_password("password", "y".repeat(1024)).is_ok());
        assert!(Password::offered("password", "x".into()).is_ok());
        assert_eq!(
            format!("{:?}", Password::offered("p", "secret".into()).unwrap()),
            "Password(..)"
        );
        assert_eq!(parse_name("  Ann ").unwrap().as_deref(), Some("Ann"));
        assert_eq!(parse_name("   ").unwrap(), None);
        assert!(parse_name("a\u{0}b").is_err());
        assert!(parse_name(&"n".repeat(101)).is_err());
        assert_eq!(Role::parse("ADMIN").unwrap(), Role::Admin);
        assert!(Role::parse("admin").is_err());
    }
}
