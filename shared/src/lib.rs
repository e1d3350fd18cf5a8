//! The one definition of the sessiongate session cookie and gateway rules, shared by the
//! edge worker and the origin service.
//!
//! Everything here is pure: no I/O and no clock reads (callers pass `now`), so the same
//! code runs natively and on `wasm32-unknown-unknown`.
//!
//! - [`assertion`]: the identity headers and the Ed25519-signed assertion handed to the app.
//! - [`keys`]: the `SESSION_KEYS` key ring (first key signs, all verify).
//! - [`token`]: signing and verifying the HS256 token that carries the session id.
//! - [`sid`]: the session id form, generation and its storage hash.
//! - [`cookie`]: the cookie name rule, `Cookie` header parsing, `Set-Cookie` values.
//! - [`paths`]: protected-prefix matching, the mount path and the login redirect.
//! - [`rules`]: access rules, path normalisation and the gateway decision.

pub mod assertion;
pub mod cookie;
pub mod keys;
pub mod paths;
pub mod rules;
pub mod sid;
pub mod token;

pub use keys::{KeyRing, KeyRingError};
pub use sid::SessionId;
pub use token::{Rejection, VerifiedToken, sign, verify};
