//! Hand-crafted tokens for tests and the test-vector generator: any header, any claims,
//! signed with any key, so every rejection rule can be exercised.

use ct_codecs::{Base64UrlSafeNoPadding, Encoder};

pub const KEY_A: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
pub const KEY_B: &[u8; 32] = b"fedcba9876543210fedcba9876543210";
/// `SESSION_KEYS` for the two keys: `a` signs, `b` only verifies.
pub const RING: &str =
    "a:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY,b:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA";
pub const SID: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80";
pub const NOW: u64 = 1_800_000_000;

pub fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

/// `header.claims.signature` with an HS256 signature over the first two parts.
pub fn signed(header: &str, claims: &str, key: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let tag = hmac_sha256::HMAC::mac(signing_input.as_bytes(), key);
    format!("{signing_input}.{}", b64(&tag))
}

pub fn header(kid: &str) -> String {
    format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#)
}

pub fn claims(sid: &str, iat: u64, exp: u64) -> String {
    format!(r#"{{"sid":"{sid}","iat":{iat},"exp":{exp}}}"#)
}

/// A valid token signed by key `a`, issued at NOW, expiring an hour later.
pub fn valid() -> String {
    signed(&header("a"), &claims(SID, NOW, NOW + 3600), KEY_A)
}
