//! The session token: a compact JWS signed with HMAC-SHA256 carrying only a session id.
//!
//! Header `{"alg":"HS256","typ":"JWT","kid":…}`, claims `{"sid","iat","exp"}` and nothing
//! else. Verification accepts a token only if every rule of the contract holds; each
//! failure has its own [`Rejection`] for logs and metrics, never for clients. jwt-simple
//! signs and is the reference verifier; [`verify`] decides tokens of the signer's exact
//! shape on a fast path of its own and hands every other token to the reference.

use std::fmt;

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use hmac::Mac;
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
///
/// Tokens in the exact shape [`sign`] emits are decided by [`verify_fast`]: the header
/// segment compared byte for byte with the one the signer emits for each configured key,
/// HMAC-SHA256 from the key's precomputed inner/outer state, a constant-time tag compare and
/// a borrowed parse of the claims `{"iat":…,"exp":…,"sid":"…"}` in the signer's order and
/// spelling. Everything else (other header bytes, claim order, whitespace, extra claims,
/// escapes, floats, times past 2^32 − 1, a tag that is not 43 base64url characters) goes
/// to [`verify_reference`], jwt-simple's general path, so the accepted set and every
/// [`Rejection`] are the reference's own; `tests/fast_path.rs` checks that on thousands of
/// generated and mutated tokens, and the `token` fuzz target compares the two as well.
///
/// Measured in one criterion run (`cargo bench -p shared --bench verify`, medians, on the
/// shared 2-core machine with 1.5 cores taken by other processes, so every figure is
/// inflated): a valid token 0.83 µs here against 16.2 µs through the reference path and
/// 0.41 µs for the bare HMAC-SHA256 from the precomputed state; a forged one 0.50 µs
/// against 13.1 µs. The reference path's 4.45 µs on a quiet machine was the largest piece
/// of the origin's own work per warm verify (BENCHMARKS.md).
pub fn verify(keys: &KeyRing, token: &str, now: u64) -> Result<VerifiedToken, Rejection> {
    match verify_fast(keys, token, now) {
        Some(verdict) => verdict,
        None => verify_reference(keys, token, now),
    }
}

/// Length of the signature segment: 32 bytes of HMAC-SHA256 in unpadded base64url.
const TAG_B64_LEN: usize = 43;
/// Longest claims JSON the signer emits: `{"iat":` + 10 digits + `,"exp":` + 10 digits +
/// `,"sid":"` + 43 + `"}`.
const FAST_CLAIMS_MAX: usize = 87;
/// Its base64url length (4 characters per 3 bytes, no padding).
const FAST_CLAIMS_B64_MAX: usize = 116;
/// jwt-simple holds times as coarsetime 32.32 fixed point: seconds from 2^32 on saturate,
/// and `now + leeway` overflows from 2^32 − 60 on. The fast path decides only below that
/// (until the year 2106), where the reference's arithmetic is plain integer arithmetic.
const FAST_MAX_TIME: u64 = u32::MAX as u64;
const FAST_MAX_NOW: u64 = FAST_MAX_TIME - LEEWAY_SECS;

/// The fast path on its own: `Some(verdict)` when `token` has the signer's exact shape (the
/// verdict is then the one [`verify_reference`] gives), `None` when only the reference path
/// can decide. Also reports `BadSignature` for any token whose header is the signer's and
/// whose 43-character tag does not match, since the reference checks the tag before it
/// reads the claims.
#[doc(hidden)]
pub fn verify_fast(
    keys: &KeyRing,
    token: &str,
    now: u64,
) -> Option<Result<VerifiedToken, Rejection>> {
    if token.len() > MAX_TOKEN_BYTES || now > FAST_MAX_NOW {
        return None;
    }
    let (key, rest) = keys.keys().iter().find_map(|key| {
        let rest = token.strip_prefix(key.header_b64())?.strip_prefix('.')?;
        Some((key, rest))
    })?;
    let (claims_b64, tag_b64) = rest.split_once('.')?;
    if tag_b64.len() != TAG_B64_LEN || tag_b64.contains('.') {
        return None;
    }
    // A strict decode refuses non-zero spare bits, so a decoded 43-character tag is also
    // the canonical spelling the reference insists on.
    let mut tag = [0u8; 32];
    decode_base64url(tag_b64.as_bytes(), &mut tag)?;
    let signing_input = &token.as_bytes()[..token.len() - TAG_B64_LEN - 1];
    let mut mac = key.mac().clone();
    mac.update(signing_input);
    if mac.verify_slice(&tag).is_err() {
        return Some(Err(Rejection::BadSignature));
    }

    if claims_b64.len() > FAST_CLAIMS_B64_MAX {
        return None;
    }
    let mut buffer = [0u8; FAST_CLAIMS_MAX];
    let claims = decode_base64url(claims_b64.as_bytes(), &mut buffer)?;
    let (issued_at, expires_at, sid) = parse_signer_claims(claims)?;
    // jwt-simple's order: `iat` (clock drift) before `exp`, then shared's `sid` check.
    if issued_at > now + LEEWAY_SECS {
        return Some(Err(Rejection::IssuedInFuture));
    }
    if now < LEEWAY_SECS || now - LEEWAY_SECS > expires_at {
        return Some(Err(Rejection::Expired));
    }
    let Some(sid) = SessionId::parse(sid) else {
        return Some(Err(Rejection::MalformedSid));
    };
    Some(Ok(VerifiedToken {
        sid,
        issued_at,
        expires_at,
        kid: key.kid().to_owned(),
    }))
}

/// Digit values of the base64url alphabet; 0xff for every other byte.
const BASE64URL: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Strict unpadded base64url into the front of `out`: `None` for a byte outside the
/// alphabet, a length of 4n + 1, non-zero spare bits in the last character, or an output
/// longer than `out`, which is exactly what ct-codecs refuses (the property test
/// `decoder_matches_ct_codecs` checks it). ct-codecs decodes in constant time, one
/// character at a time, which made it two thirds of the fast path's time; the input here
/// is the client's own token and the secret it is checked against (the expected tag) is
/// compared in constant time, so a table lookup leaks nothing.
fn decode_base64url<'o>(text: &[u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
    let tail = text.len() % 4;
    if tail == 1 {
        return None;
    }
    let len = text.len() / 4 * 3 + tail.saturating_sub(1);
    let out = out.get_mut(..len)?;
    let digit = |c: u8| u32::from(BASE64URL[usize::from(c)]);
    let mut chunks = text.chunks_exact(4);
    let mut written = out.chunks_exact_mut(3);
    for (chunk, bytes) in (&mut chunks).zip(&mut written) {
        let (a, b, c, d) = (
            digit(chunk[0]),
            digit(chunk[1]),
            digit(chunk[2]),
            digit(chunk[3]),
        );
        if (a | b | c | d) > 63 {
            return None;
        }
        let n = (a << 18) | (b << 12) | (c << 6) | d;
        bytes.copy_from_slice(&n.to_be_bytes()[1..]);
    }
    let rest = written.into_remainder();
    match *chunks.remainder() {
        [] => {}
        [a, b] => {
            let (a, b) = (digit(a), digit(b));
            if (a | b) > 63 || b & 0x0f != 0 {
                return None;
            }
            rest[0] = ((a << 2) | (b >> 4)) as u8;
        }
        [a, b, c] => {
            let (a, b, c) = (digit(a), digit(b), digit(c));
            if (a | b | c) > 63 || c & 0x03 != 0 {
                return None;
            }
            let n = (a << 10) | (b << 4) | (c >> 2);
            rest.copy_from_slice(&n.to_be_bytes()[2..]);
        }
        _ => unreachable!("a remainder of 1 was refused above"),
    }
    Some(out)
}

/// Parses exactly `{"iat":N,"exp":N,"sid":"S"}`, the signer's claims (jwt-simple writes its
/// registered claims before the flattened custom ones), with `S` made only of base64url
/// characters so the JSON string holds no escape. `None` for anything else.
fn parse_signer_claims(claims: &[u8]) -> Option<(u64, u64, &str)> {
    let rest = claims.strip_prefix(br#"{"iat":"#)?;
    let (issued_at, rest) = take_time(rest)?;
    let rest = rest.strip_prefix(br#","exp":"#)?;
    let (expires_at, rest) = take_time(rest)?;
    let sid = rest.strip_prefix(br#","sid":""#)?.strip_suffix(br#""}"#)?;
    if !sid
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let sid = std::str::from_utf8(sid).ok()?;
    Some((issued_at, expires_at, sid))
}

/// A JSON integer as serde_json reads it (no leading zero, no sign, fraction or exponent,
/// which the caller's next literal rules out), at most [`FAST_MAX_TIME`].
fn take_time(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 10 || (digits > 1 && bytes[0] == b'0') {
        return None;
    }
    let value = bytes[..digits]
        .iter()
        .fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0'));
    (value <= FAST_MAX_TIME).then_some((value, &bytes[digits..]))
}

/// The reference verifier: every token through jwt-simple's general path, after shared's
/// own header checks. [`verify`] returns exactly what this returns, for every input; it is
/// public so the property tests, the fuzz target and the bench can compare the two.
pub fn verify_reference(keys: &KeyRing, token: &str, now: u64) -> Result<VerifiedToken, Rejection> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ct_codecs_decode(text: &[u8], room: usize) -> Option<Vec<u8>> {
        let mut out = vec![0u8; room];
        Base64UrlSafeNoPadding::decode(&mut out, text, None)
            .ok()
            .map(<[u8]>::to_vec)
    }

    fn decode(text: &[u8], room: usize) -> Option<Vec<u8>> {
        let mut out = vec![0u8; room];
        decode_base64url(text, &mut out).map(<[u8]>::to_vec)
    }

    #[test]
    fn decoder_reads_what_the_encoder_writes() {
        for len in 0..80 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = Base64UrlSafeNoPadding::encode_to_string(&bytes).unwrap();
            assert_eq!(decode(text.as_bytes(), len), Some(bytes), "{text}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// Same verdict and bytes as ct-codecs (ignore = None), with as much room as
        /// ct-codecs' own `decode_to_vec` gives and with exactly the decoded length.
        #[test]
        fn decoder_matches_ct_codecs(
            text in prop_oneof![
                "[A-Za-z0-9_-]{0,64}",
                "[A-Za-z0-9_\\-=+/. ]{0,64}",
                proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            ],
            short in 0usize..3,
        ) {
            let text = text.as_bytes();
            prop_assert_eq!(decode(text, text.len()), ct_codecs_decode(text, text.len()));
            let exact = text.len() / 4 * 3 + (text.len() % 4).saturating_sub(1);
            let room = exact.saturating_sub(short);
            prop_assert_eq!(decode(text, room), ct_codecs_decode(text, room));
        }
    }
}
