//! The identity assertion handed to the app: an Ed25519 JWT (`shared::assertion`) signed
//! with the first of `ASSERTION_KEYS`, one per session and audience, reused for at most
//! half its 60 s life so that a warm decision does not pay for a signature every time.

use std::time::Duration;

use shared::assertion::{ASSERTION_LIFETIME_SECS, Assertion, AssertionKeys, Identity, Jwks};

use crate::domain::sessions::Session;
use crate::domain::types::Role;

/// How long an issued assertion is handed out again: half its life, so an app that
/// receives one always has at least 30 s to verify it.
const REUSE_FOR_SECS: u64 = ASSERTION_LIFETIME_SECS / 2;

pub struct Assertions {
    keys: AssertionKeys,
    /// `PUBLIC_URL`'s origin, the `iss` when set.
    issuer: Option<String>,
    /// `ASSERTION_AUDIENCE`, the `aud` when set.
    audience: Option<String>,
    /// `(session hash, audience) → (token, iat)`.
    recent: moka::sync::Cache<(String, String), (String, u64)>,
}

/// The identity of a live session as the app sees it.
pub fn identity_of(session: &Session) -> Identity {
    let user = &session.user;
    Identity {
        user_id: user.id.as_str().to_owned(),
        email: user.email.as_str().to_owned(),
        name: user.name.clone().unwrap_or_default(),
        role: match user.role {
            Role::Admin => shared::rules::Role::Admin,
            Role::User => shared::rules::Role::User,
        },
        session: session.hash.as_str().to_owned(),
    }
}

impl Assertions {
    pub fn new(
        keys: AssertionKeys,
        issuer: Option<String>,
        audience: Option<String>,
        capacity: u64,
    ) -> Assertions {
        Assertions {
            keys,
            issuer,
            audience,
            recent: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(Duration::from_secs(REUSE_FOR_SECS))
                .build(),
        }
    }

    /// The public keys, as the JWK Set at `<MOUNT_PATH>.well-known/jwks.json`.
    pub fn jwks(&self) -> Jwks {
        self.keys.jwks()
    }

    /// An assertion for `session` on a request to `host` over `scheme` at unix time `now`:
    /// a recent one for the same session and audience, or a new one.
    pub fn for_session(&self, session: &Session, scheme: &str, host: &str, now: u64) -> String {
        let audience = self.audience.clone().unwrap_or_else(|| host.to_owned());
        let key = (session.hash.as_str().to_owned(), audience);
        if let Some((token, issued_at)) = self.recent.get(&key)
            && now >= issued_at
            && now - issued_at <= REUSE_FOR_SECS
        {
            return token;
        }
        let assertion = Assertion {
            issuer: self
                .issuer
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{host}")),
            audience: key.1.clone(),
            identity: identity_of(session),
            issued_at: now,
            jwt_id: jwt_id(),
        };
        let token = self.keys.sign(&assertion);
        self.recent.insert(key, (token.clone(), now));
        token
    }
}

/// 16 random bytes, base64url: unique per assertion.
fn jwt_id() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
