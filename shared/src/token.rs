//! The session token: a compact JWS signed with HMAC-SHA256 carrying only a session id.
//!
//! Header `{"alg":"HS256","typ":"JWT","kid":…}`, claims `{"sid","iat","exp"}` and nothing
//! else. Verification accepts a token only if every rule of the contract holds; each
//! failure has its own [`Rejection`] for logs and metrics, never for clients.

use std::fmt;

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use jwt_simple::JWTError;
use jwt_simple::prelude::{Duration, JWTClaims, MACLike, UnixTimeStamp, VerificationOptions};
use serde::{Deserialize, Serialize};

use crate::keys::KeyRing;
use crate::sid::SessionId;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Clock leeway applied to `exp` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// Why a token was refused. Internal only: every variant means "no session" to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    TooLong,
    WrongSegmentCount,
    BadBase64,
    BadJson,
    AlgorithmNotAllowed,
    MissingKid,
    UnknownKid,
    BadSignature,
    MissingExpiry,
    Expired,
    MissingIssuedAt,
    IssuedInFuture,
    MissingSid,
    MalformedSid,
}

impl Rejection {
    /// A stable snake_case name, for logs, metrics and the test vectors.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLong => "too_long",
            Self::WrongSegmentCount => "wrong_segment_count",
            Self::BadBase64 => "bad_base64",
            Self::BadJson => "bad_json",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::MissingKid => "missing_kid",
            Self::UnknownKid => "unknown_kid",
            Self::BadSignature => "bad_signature",
            Self::MissingExpiry => "missing_exp",
            Self::Expired => "expired",
            Self::MissingIssuedAt => "missing_iat",
            Self::IssuedInFuture => "iat_in_future",
            Self::MissingSid => "missing_sid",
            Self::MalformedSid => "malformed_sid",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Rejection {}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    pub sid: SessionId,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// The key that verified it; not the signing key means the cookie predates a rotation.
    pub kid: String,
}

#[derive(Serialize)]
struct SidClaim<'a> {
    sid: &'a str,
}

#[derive(Deserialize)]
struct AnySid {
    #[serde(default)]
    sid: Option<serde_json::Value>,
}

/// Signs a token for `sid` with the ring's signing key.
pub fn sign(keys: &KeyRing, sid: &SessionId, issued_at: u64, expires_at: u64) -> String {
    let mut claims = JWTClaims {
        issued_at: Some(UnixTimeStamp::from_secs(issued_at)),
        expires_at: Some(UnixTimeStamp::from_secs(expires_at)),
        invalid_before: None,
        issuer: None,
        subject: None,
        audiences: None,
        jwt_id: None,
        nonce: None,
        custom: SidClaim { sid: sid.expose() },
    };
    // jwt-simple adds `nbf` only through `Claims::create`; keep it out explicitly.
    claims.invalid_before = None;
    keys.signing_key()
        .hs256()
        .authenticate(claims)
        .expect("HS256 signing with a key of at least 32 bytes cannot fail")
}

/// Verifies `token` at time `now` (unix seconds). No clock is read here.
pub fn verify(keys: &KeyRing, token: &str, now: u64) -> Result<VerifiedToken, Rejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::TooLong);
    }
    let segments: Vec<&str> = token.split('.').collect();
    let [header_b64, _, signature_b64] = segments[..] else {
        return Err(Rejection::WrongSegmentCount);
    };
    let header_bytes = Base64UrlSafeNoPadding::decode_to_vec(header_b64, None)
        .map_err(|_| Rejection::BadBase64)?;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header_bytes).map_err(|_| Rejection::BadJson)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(Rejection::AlgorithmNotAllowed);
    }
    let kid = match header.remove("kid") {
        None => return Err(Rejection::MissingKid),
        Some(serde_json::Value::String(kid)) => kid,
        Some(_) => return Err(Rejection::UnknownKid),
    };
    let key = keys.get(&kid).ok_or(Rejection::UnknownKid)?;
    // Base64 tails have spare bits: accept only the canonical spelling of the tag, so no
    // two distinct strings carry the same valid signature.
    let tag = Base64UrlSafeNoPadding::decode_to_vec(signature_b64, None)
        .map_err(|_| Rejection::BadBase64)?;
    if Base64UrlSafeNoPadding::encode_to_string(&tag).as_deref() != Ok(signature_b64) {
        return Err(Rejection::BadBase64);
    }

    let options = VerificationOptions {
        required_key_id: Some(kid.clone()),
        time_tolerance: Some(Duration::from_secs(LEEWAY_SECS)),
        max_token_length: Some(MAX_TOKEN_BYTES),
        accept_future: false,
        artificial_time: Some(UnixTimeStamp::from_secs(now)),
        ..VerificationOptions::default()
    };
    let claims = key
        .hs256()
        .verify_token::<AnySid>(token, Some(options))
        .map_err(classify)?;

    let expires_at = claims.expires_at.ok_or(Rejection::MissingExpiry)?.as_secs();
    let issued_at = claims
        .issued_at
        .ok_or(Rejection::MissingIssuedAt)?
        .as_secs();
    let sid = match claims.custom.sid {
        None => return Err(Rejection::MissingSid),
        Some(serde_json::Value::String(sid)) => {
            SessionId::parse(&sid).ok_or(Rejection::MalformedSid)?
        }
        Some(_) => return Err(Rejection::MalformedSid),
    };
    Ok(VerifiedToken {
        sid,
        issued_at,
        expires_at,
        kid,
    })
}

/// Maps jwt-simple's errors (after our own header checks) to a rejection.
fn classify(error: jwt_simple::Error) -> Rejection {
    if let Some(jwt) = error.downcast_ref::<JWTError>() {
        return match jwt {
            JWTError::InvalidAuthenticationTag => Rejection::BadSignature,
            JWTError::TokenHasExpired => Rejection::Expired,
            JWTError::ClockDrift | JWTError::TokenNotValidYet => Rejection::IssuedInFuture,
            JWTError::TokenTooLong => Rejection::TooLong,
            JWTError::CompactEncodingError => Rejection::WrongSegmentCount,
            JWTError::AlgorithmMismatch => Rejection::AlgorithmNotAllowed,
            JWTError::KeyIdentifierMismatch => Rejection::UnknownKid,
            JWTError::MissingJWTKeyIdentifier => Rejection::MissingKid,
            // Header shapes jwt-simple refuses (crit, typ, oversized header) and anything
            // new: the token is not ours.
            _ => Rejection::BadJson,
        };
    }
    if error.downcast_ref::<ct_codecs::Error>().is_some() {
        return Rejection::BadBase64;
    }
    Rejection::BadJson
}
