//! The identity sessiongate hands to the app (gateway-v1 "Identity handed to the app"):
//! the identity headers, their value encoding, and the Ed25519-signed assertion with its
//! JWK Set.
//!
//! - [`AssertionKeys`] parses `ASSERTION_KEYS` (`kid:base64seed,…`; the first key signs,
//!   every key is published) and signs an [`Assertion`] as a JWT (`alg: EdDSA`, `kid`).
//! - [`AssertionKeys::jwks`] is the JWK Set served at `<MOUNT_PATH>.well-known/jwks.json`;
//!   [`Jwks::parse`] reads one back.
//! - [`verify`] is the app side: JWK Set + token + audience + now → the verified identity,
//!   with no I/O.
//! - [`encode_header_value`] / [`decode_header_value`] keep header values printable ASCII;
//!   [`identity_headers`] lists every identity header with its value (all present, empty
//!   when anonymous); [`is_identity_lookalike`] tells which client headers to strip.
//!
//! A null user name is carried as the empty string, in the headers and in the assertion's
//! `name` claim alike, so an app reads one type. Signatures are made by jwt-simple, which
//! adds random noise to each Ed25519 signature (hedged signing, drawn from the operating
//! system), so two signatures of the same claims differ; verification is deterministic.

use std::fmt;

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use jwt_simple::JWTError;
use jwt_simple::prelude::{
    Audiences, Duration, Ed25519KeyPair, Ed25519PublicKey, EdDSAKeyPairLike, EdDSAPublicKeyLike,
    JWTClaims, UnixTimeStamp, VerificationOptions,
};
use serde::{Deserialize, Serialize};

use crate::keys::{decode_base64, is_valid_kid};
use crate::rules::Role;

/// An assertion's lifetime: `exp` is exactly this long after `iat` when sessiongate signs,
/// and at most this long for [`verify`] to accept it.
pub const ASSERTION_LIFETIME_SECS: u64 = 60;
/// Clock leeway [`verify`] allows on `exp` and `iat`: small, because the lifetime is.
pub const ASSERTION_LEEWAY_SECS: u64 = 5;
/// Longest assertion [`verify`] reads, in bytes.
pub const MAX_ASSERTION_BYTES: usize = 8192;
/// Length of an Ed25519 seed and public key.
pub const ED25519_KEY_BYTES: usize = 32;

/// The signed-in user as the app sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user id (`sub`).
    pub user_id: String,
    /// The normalised email.
    pub email: String,
    /// The display name; empty when the user has none.
    pub name: String,
    pub role: Role,
    /// The session's storage hash (`sid`; the `id` of the API's session items).
    pub session: String,
}

/// What sessiongate signs for one request. `exp` is `issued_at +`
/// [`ASSERTION_LIFETIME_SECS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assertion {
    /// `iss`: `PUBLIC_URL`, or `<scheme>://<host>` of the request.
    pub issuer: String,
    /// `aud`: the request's host as its `Host` names it, or `ASSERTION_AUDIENCE`.
    pub audience: String,
    pub identity: Identity,
    /// `iat`, unix seconds.
    pub issued_at: u64,
    /// `jti`: unique per assertion (the caller draws it, e.g. 16 random bytes, base64url).
    pub jwt_id: String,
}

impl Assertion {
    /// `exp`, unix seconds.
    pub fn expires_at(&self) -> u64 {
        self.issued_at.saturating_add(ASSERTION_LIFETIME_SECS)
    }
}

/// What [`verify`] found in a valid assertion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub identity: Identity,
    pub issuer: String,
    pub issued_at: u64,
    pub expires_at: u64,
    pub jwt_id: String,
    /// The key that signed it.
    pub kid: String,
}

/// The claims besides the registered ones, as they appear in the token.
#[derive(Serialize)]
struct IdentityClaims<'a> {
    email: &'a str,
    name: &'a str,
    role: &'a str,
    sid: &'a str,
}

/// The same claims read back: every one optional so that a missing claim is named.
#[derive(Deserialize)]
struct IdentityClaimsIn {
    #[serde(default)]
    email: Option<serde_json::Value>,
    #[serde(default)]
    name: Option<serde_json::Value>,
    #[serde(default)]
    role: Option<serde_json::Value>,
    #[serde(default)]
    sid: Option<serde_json::Value>,
}

/// One signing key.
#[derive(Clone)]
struct SigningKey {
    kid: String,
    pair: Ed25519KeyPair,
    public: [u8; ED25519_KEY_BYTES],
}

/// The `ASSERTION_KEYS` key set: the first key signs, every key is published in the JWK
/// Set (so an assertion signed just before a rotation still verifies). `Debug` shows only
/// the key ids.
#[derive(Clone)]
pub struct AssertionKeys {
    keys: Vec<SigningKey>,
}

impl fmt::Debug for AssertionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionKeys")
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Why an `ASSERTION_KEYS` value was refused. `entry` is the 1-based position in the list.
/// Messages name the entry or key id and the problem, never key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssertionKeysError {
    Empty,
    EmptyEntry {
        entry: usize,
    },
    MissingColon {
        entry: usize,
    },
    BadKid {
        entry: usize,
    },
    DuplicateKid {
        kid: String,
    },
    BadBase64 {
        kid: String,
    },
    WrongSeedLength {
        kid: String,
        bytes: usize,
    },
    /// The seed is all zeros (a placeholder, not a key).
    WeakSeed {
        kid: String,
    },
}

impl fmt::Display for AssertionKeysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(
                f,
                "no keys given; expected `kid:base64seed[,kid:base64seed…]`"
            ),
            Self::EmptyEntry { entry } => write!(f, "entry {entry} is empty (stray comma?)"),
            Self::MissingColon { entry } => {
                write!(f, "entry {entry} is not of the form `kid:base64seed`")
            }
            Self::BadKid { entry } => write!(
                f,
                "entry {entry} has an invalid key id: use 1-32 characters of A-Z a-z 0-9 . _ -"
            ),
            Self::DuplicateKid { kid } => write!(f, "key id `{kid}` appears more than once"),
            Self::BadBase64 { kid } => write!(f, "key `{kid}` is not valid base64"),
            Self::WrongSeedLength { kid, bytes } => write!(
                f,
                "key `{kid}` is {bytes} bytes; an Ed25519 seed is exactly {ED25519_KEY_BYTES}"
            ),
            Self::WeakSeed { kid } => write!(f, "key `{kid}` is all zeros; use a random seed"),
        }
    }
}

impl std::error::Error for AssertionKeysError {}

impl AssertionKeys {
    /// Parses `kid:base64seed[,kid:base64seed…]`: each seed exactly 32 bytes in standard or
    /// URL-safe base64, padding optional; key ids as for `SESSION_KEYS` (1–32 characters
    /// of `A-Za-z0-9._-`). Whitespace around entries is ignored.
    pub fn parse(spec: &str) -> Result<Self, AssertionKeysError> {
        if spec.trim().is_empty() {
            return Err(AssertionKeysError::Empty);
        }
        let mut keys: Vec<SigningKey> = Vec::new();
        for (index, raw) in spec.split(',').enumerate() {
            let entry = index + 1;
            let raw = raw.trim();
            if raw.is_empty() {
                return Err(AssertionKeysError::EmptyEntry { entry });
            }
            let (kid, material) = raw
                .split_once(':')
                .ok_or(AssertionKeysError::MissingColon { entry })?;
            let (kid, material) = (kid.trim(), material.trim());
            if !is_valid_kid(kid) {
                return Err(AssertionKeysError::BadKid { entry });
            }
            if keys.iter().any(|k| k.kid == kid) {
                return Err(AssertionKeysError::DuplicateKid { kid: kid.into() });
            }
            let seed = decode_base64(material)
                .ok_or_else(|| AssertionKeysError::BadBase64 { kid: kid.into() })?;
            let seed: [u8; ED25519_KEY_BYTES] =
                seed.as_slice()
                    .try_into()
                    .map_err(|_| AssertionKeysError::WrongSeedLength {
                        kid: kid.into(),
                        bytes: seed.len(),
                    })?;
            keys.push(signing_key(kid, seed)?);
        }
        Ok(Self { keys })
    }

    /// The key id that signs.
    pub fn signing_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// Signs `assertion` with the first key: a JWT with header
    /// `{"alg":"EdDSA","typ":"JWT","kid":…}` and claims `iss`, `aud` (a string), `sub`,
    /// `email`, `name`, `role`, `sid`, `iat`, `exp` and `jti`.
    pub fn sign(&self, assertion: &Assertion) -> String {
        let identity = &assertion.identity;
        let claims = JWTClaims {
            issued_at: Some(UnixTimeStamp::from_secs(assertion.issued_at)),
            expires_at: Some(UnixTimeStamp::from_secs(assertion.expires_at())),
            invalid_before: None,
            issuer: Some(assertion.issuer.clone()),
            subject: Some(identity.user_id.clone()),
            audiences: Some(Audiences::AsString(assertion.audience.clone())),
            jwt_id: Some(assertion.jwt_id.clone()),
            nonce: None,
            custom: IdentityClaims {
                email: &identity.email,
                name: &identity.name,
                role: identity.role.as_str(),
                sid: &identity.session,
            },
        };
        self.keys[0]
            .pair
            .sign(claims)
            .expect("Ed25519 signing of serialisable claims cannot fail")
    }

    /// The public keys as a JWK Set, signing key first.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self
                .keys
                .iter()
                .map(|k| PublicKey::new(&k.kid, k.public).expect("a key pair's own public key"))
                .collect(),
        }
    }
}

fn signing_key(kid: &str, seed: [u8; ED25519_KEY_BYTES]) -> Result<SigningKey, AssertionKeysError> {
    let weak = || AssertionKeysError::WeakSeed { kid: kid.into() };
    let pair = ed25519_compact::KeyPair::try_from_seed(ed25519_compact::Seed::new(seed))
        .map_err(|_| weak())?;
    let public = *pair.pk;
    let pair = Ed25519KeyPair::from_bytes(&pair[..])
        .map_err(|_| weak())?
        .with_key_id(kid);
    Ok(SigningKey {
        kid: kid.to_owned(),
        pair,
        public,
    })
}

/// One published key.
#[derive(Clone, Debug)]
struct PublicKey {
    kid: String,
    x: [u8; ED25519_KEY_BYTES],
    key: Ed25519PublicKey,
}

impl PublicKey {
    fn new(kid: &str, x: [u8; ED25519_KEY_BYTES]) -> Option<Self> {
        let key = Ed25519PublicKey::from_bytes(&x).ok()?.with_key_id(kid);
        Some(Self {
            kid: kid.to_owned(),
            x,
            key,
        })
    }
}

/// A JWK Set of Ed25519 public keys: `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":…,
/// "alg":"EdDSA","use":"sig","x":<base64url public key>}]}`. Serialises to exactly that.
#[derive(Clone, Debug)]
pub struct Jwks {
    keys: Vec<PublicKey>,
}

/// A JWK as published and as read back (extra members are ignored when reading).
#[derive(Serialize, Deserialize)]
struct JwkWire {
    kty: Option<String>,
    crv: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    x: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct JwksWire {
    keys: Vec<serde_json::Value>,
}

/// Why a JWK Set was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksError {
    /// Not JSON, or no `keys` array.
    NotAJwkSet,
    /// An Ed25519 key with a missing or unusable `kid`.
    BadKid {
        index: usize,
    },
    /// An Ed25519 key whose `x` is not 32 bytes of base64url or not a valid public key.
    BadPublicKey {
        kid: String,
    },
    DuplicateKid {
        kid: String,
    },
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAJwkSet => f.write_str("not a JWK Set (a JSON object with a `keys` array)"),
            Self::BadKid { index } => write!(f, "key {index} has no usable `kid`"),
            Self::BadPublicKey { kid } => {
                write!(f, "key `{kid}` does not hold a valid Ed25519 public key")
            }
            Self::DuplicateKid { kid } => write!(f, "key id `{kid}` appears more than once"),
        }
    }
}

impl std::error::Error for JwksError {}

impl Jwks {
    /// Reads a JWK Set. Keys that are not Ed25519 signing keys (another `kty` or `crv`, an
    /// `alg` other than `EdDSA`, a `use` other than `sig`) are ignored; an Ed25519 key that
    /// is malformed refuses the whole set, so a broken set fails closed.
    pub fn parse(json: &str) -> Result<Self, JwksError> {
        let wire: JwksWire = serde_json::from_str(json).map_err(|_| JwksError::NotAJwkSet)?;
        let mut keys: Vec<PublicKey> = Vec::new();
        for (index, value) in wire.keys.into_iter().enumerate() {
            let Ok(jwk) = serde_json::from_value::<JwkWire>(value) else {
                continue;
            };
            let ed25519 = jwk.kty.as_deref() == Some("OKP")
                && jwk.crv.as_deref() == Some("Ed25519")
                && jwk.alg.as_deref().is_none_or(|a| a == "EdDSA")
                && jwk.use_.as_deref().is_none_or(|u| u == "sig");
            if !ed25519 {
                continue;
            }
            let kid = jwk
                .kid
                .filter(|kid| !kid.is_empty() && kid.len() <= 256)
                .ok_or(JwksError::BadKid { index })?;
            let bad = || JwksError::BadPublicKey { kid: kid.clone() };
            let x = jwk.x.as_deref().ok_or_else(bad)?;
            let bytes = Base64UrlSafeNoPadding::decode_to_vec(x, None).map_err(|_| bad())?;
            let x: [u8; ED25519_KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| bad())?;
            let key = PublicKey::new(&kid, x).ok_or_else(bad)?;
            if keys.iter().any(|k| k.kid == kid) {
                return Err(JwksError::DuplicateKid { kid });
            }
            keys.push(key);
        }
        Ok(Self { keys })
    }

    /// Key ids in order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    /// The JWK Set as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a JWK Set serialises")
    }

    fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

impl Serialize for Jwks {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let keys: Vec<JwkWire> = self
            .keys
            .iter()
            .map(|k| JwkWire {
                kty: Some("OKP".into()),
                crv: Some("Ed25519".into()),
                kid: Some(k.kid.clone()),
                alg: Some("EdDSA".into()),
                use_: Some("sig".into()),
                x: Some(Base64UrlSafeNoPadding::encode_to_string(k.x).expect("base64 of 32 bytes")),
            })
            .collect();
        #[derive(Serialize)]
        struct Out {
            keys: Vec<JwkWire>,
        }
        Out { keys }.serialize(serializer)
    }
}

/// Why [`verify`] refused an assertion. Every variant means "no identity".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AssertionError {
    TooLong,
    /// Not three base64url parts with a JSON object header, or a non-canonical signature.
    Malformed,
    /// `alg` is not exactly `EdDSA` (`none`, `HS256`, `Ed25519`, anything else).
    AlgorithmNotAllowed,
    MissingKid,
    /// The `kid` names no key of the JWK Set.
    UnknownKid,
    BadSignature,
    Expired,
    IssuedInFuture,
    /// `exp` is more than [`ASSERTION_LIFETIME_SECS`] after `iat`, or before it.
    BadLifetime,
    /// `aud` is not exactly the expected audience (an array never is).
    WrongAudience,
    /// A required claim is absent.
    MissingClaim(&'static str),
    /// A claim has the wrong type, or `role` is not `USER` or `ADMIN`.
    BadClaim(&'static str),
}

impl fmt::Display for AssertionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong => write!(f, "assertion longer than {MAX_ASSERTION_BYTES} bytes"),
            Self::Malformed => f.write_str("assertion is not a well-formed JWT"),
            Self::AlgorithmNotAllowed => f.write_str("algorithm is not EdDSA"),
            Self::MissingKid => f.write_str("no kid in the header"),
            Self::UnknownKid => f.write_str("kid names no published key"),
            Self::BadSignature => f.write_str("signature does not verify"),
            Self::Expired => f.write_str("assertion has expired"),
            Self::IssuedInFuture => f.write_str("assertion is issued in the future"),
            Self::BadLifetime => {
                write!(f, "exp is not within {ASSERTION_LIFETIME_SECS} s after iat")
            }
            Self::WrongAudience => f.write_str("assertion is for another audience"),
            Self::MissingClaim(claim) => write!(f, "claim `{claim}` is missing"),
            Self::BadClaim(claim) => write!(f, "claim `{claim}` is invalid"),
        }
    }
}

impl std::error::Error for AssertionError {}

/// Verifies an assertion for `audience` at unix time `now` against `jwks`. No I/O.
///
/// Accepts only: at most [`MAX_ASSERTION_BYTES`]; three base64url parts; header `alg`
/// exactly `EdDSA` and a `kid` of the set; a valid Ed25519 signature (canonical encoding);
/// `aud` a string equal to `audience`; `exp` and `iat` present with
/// `0 <= exp - iat <= 60`; `exp` not passed and `iat` not in the future, each with
/// [`ASSERTION_LEEWAY_SECS`] of leeway; `iss`, `sub`, `jti`, `email`, `name`, `role`
/// (`USER`/`ADMIN`) and `sid` present as strings.
pub fn verify(
    jwks: &Jwks,
    token: &str,
    audience: &str,
    now: u64,
) -> Result<VerifiedAssertion, AssertionError> {
    if token.len() > MAX_ASSERTION_BYTES {
        return Err(AssertionError::TooLong);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, _, signature_b64] = parts[..] else {
        return Err(AssertionError::Malformed);
    };
    let header_bytes = Base64UrlSafeNoPadding::decode_to_vec(header_b64, None)
        .map_err(|_| AssertionError::Malformed)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header_bytes).map_err(|_| AssertionError::Malformed)?;
    // Checked here, before any key is touched: jwt-simple would also take `Ed25519`, and
    // nothing but `EdDSA` is ever issued.
    if header.get("alg").and_then(|a| a.as_str()) != Some("EdDSA") {
        return Err(AssertionError::AlgorithmNotAllowed);
    }
    let kid = match header.get("kid") {
        None => return Err(AssertionError::MissingKid),
        Some(serde_json::Value::String(kid)) => kid.as_str(),
        Some(_) => return Err(AssertionError::UnknownKid),
    };
    let key = jwks.get(kid).ok_or(AssertionError::UnknownKid)?;
    // Base64 tails have spare bits: only the canonical spelling of the signature counts,
    // so one signature has one token.
    let signature = Base64UrlSafeNoPadding::decode_to_vec(signature_b64, None)
        .map_err(|_| AssertionError::Malformed)?;
    if Base64UrlSafeNoPadding::encode_to_string(&signature).as_deref() != Ok(signature_b64) {
        return Err(AssertionError::Malformed);
    }

    let options = VerificationOptions {
        required_key_id: Some(kid.to_owned()),
        time_tolerance: Some(Duration::from_secs(ASSERTION_LEEWAY_SECS)),
        max_token_length: Some(MAX_ASSERTION_BYTES),
        accept_future: false,
        artificial_time: Some(UnixTimeStamp::from_secs(now)),
        ..VerificationOptions::default()
    };
    let claims = key
        .key
        .verify_token::<IdentityClaimsIn>(token, Some(options))
        .map_err(classify)?;

    match &claims.audiences {
        Some(Audiences::AsString(aud)) if aud == audience => {}
        Some(_) => return Err(AssertionError::WrongAudience),
        None => return Err(AssertionError::MissingClaim("aud")),
    }
    let issued_at = claims
        .issued_at
        .ok_or(AssertionError::MissingClaim("iat"))?
        .as_secs();
    let expires_at = claims
        .expires_at
        .ok_or(AssertionError::MissingClaim("exp"))?
        .as_secs();
    if expires_at < issued_at || expires_at - issued_at > ASSERTION_LIFETIME_SECS {
        return Err(AssertionError::BadLifetime);
    }
    let issuer = claims.issuer.ok_or(AssertionError::MissingClaim("iss"))?;
    let user_id = claims.subject.ok_or(AssertionError::MissingClaim("sub"))?;
    let jwt_id = claims.jwt_id.ok_or(AssertionError::MissingClaim("jti"))?;
    let custom = claims.custom;
    let role = string_claim(custom.role, "role")?;
    let identity = Identity {
        user_id,
        email: string_claim(custom.email, "email")?,
        name: string_claim(custom.name, "name")?,
        role: Role::parse(&role).ok_or(AssertionError::BadClaim("role"))?,
        session: string_claim(custom.sid, "sid")?,
    };
    Ok(VerifiedAssertion {
        identity,
        issuer,
        issued_at,
        expires_at,
        jwt_id,
        kid: kid.to_owned(),
    })
}

fn string_claim(
    value: Option<serde_json::Value>,
    claim: &'static str,
) -> Result<String, AssertionError> {
    match value {
        None => Err(AssertionError::MissingClaim(claim)),
        Some(serde_json::Value::String(text)) => Ok(text),
        Some(_) => Err(AssertionError::BadClaim(claim)),
    }
}

/// Maps jwt-simple's errors (after our own header checks) to a rejection.
fn classify(error: jwt_simple::Error) -> AssertionError {
    if let Some(jwt) = error.downcast_ref::<JWTError>() {
        return match jwt {
            JWTError::InvalidSignature => AssertionError::BadSignature,
            JWTError::TokenHasExpired => AssertionError::Expired,
            JWTError::ClockDrift | JWTError::TokenNotValidYet => AssertionError::IssuedInFuture,
            JWTError::TokenTooLong => AssertionError::TooLong,
            JWTError::AlgorithmMismatch => AssertionError::AlgorithmNotAllowed,
            JWTError::KeyIdentifierMismatch => AssertionError::UnknownKid,
            JWTError::MissingJWTKeyIdentifier => AssertionError::MissingKid,
            // Claims of the wrong JSON type, bad header shapes (crit, typ) and anything new.
            _ => AssertionError::Malformed,
        };
    }
    // A signature of the wrong length fails in ed25519-compact before it is checked.
    if error.downcast_ref::<ed25519_compact::Error>().is_some() {
        return AssertionError::BadSignature;
    }
    AssertionError::Malformed
}

/// `X-Sessiongate-User-Id`: the user id.
pub const USER_ID_HEADER: &str = "X-Sessiongate-User-Id";
/// `X-Sessiongate-Email`: the normalised email, [encoded](encode_header_value).
pub const EMAIL_HEADER: &str = "X-Sessiongate-Email";
/// `X-Sessiongate-Name`: the name, [encoded](encode_header_value); empty when null.
pub const NAME_HEADER: &str = "X-Sessiongate-Name";
/// `X-Sessiongate-Role`: `USER` or `ADMIN`.
pub const ROLE_HEADER: &str = "X-Sessiongate-Role";
/// `X-Sessiongate-Session`: the session's storage hash.
pub const SESSION_HEADER: &str = "X-Sessiongate-Session";
/// `Remote-User`: the user id (Authelia-style).
pub const REMOTE_USER_HEADER: &str = "Remote-User";
/// `Remote-Email`: the email, encoded.
pub const REMOTE_EMAIL_HEADER: &str = "Remote-Email";
/// `Remote-Name`: the name, encoded.
pub const REMOTE_NAME_HEADER: &str = "Remote-Name";
/// `Remote-Groups`: the role.
pub const REMOTE_GROUPS_HEADER: &str = "Remote-Groups";
/// `X-Sessiongate-Assertion`: the signed assertion.
pub const ASSERTION_HEADER: &str = "X-Sessiongate-Assertion";

/// Every identity header, in the contract's order.
pub const IDENTITY_HEADERS: [&str; 10] = [
    USER_ID_HEADER,
    EMAIL_HEADER,
    NAME_HEADER,
    ROLE_HEADER,
    SESSION_HEADER,
    REMOTE_USER_HEADER,
    REMOTE_EMAIL_HEADER,
    REMOTE_NAME_HEADER,
    REMOTE_GROUPS_HEADER,
    ASSERTION_HEADER,
];

/// Every identity header with its value: the identity's (encoded) and the assertion when
/// there is a live session, all ten present and empty when there is none. Set all of them
/// on a forwarded request or a forward-auth `200`, replacing whatever was there.
pub fn identity_headers(
    identity: Option<&Identity>,
    assertion: Option<&str>,
) -> [(&'static str, String); 10] {
    let Some(identity) = identity else {
        return IDENTITY_HEADERS.map(|name| (name, String::new()));
    };
    let email = encode_header_value(&identity.email);
    let name = encode_header_value(&identity.name);
    let user_id = encode_header_value(&identity.user_id);
    let session = encode_header_value(&identity.session);
    let role = identity.role.as_str().to_owned();
    [
        (USER_ID_HEADER, user_id.clone()),
        (EMAIL_HEADER, email.clone()),
        (NAME_HEADER, name.clone()),
        (ROLE_HEADER, role.clone()),
        (SESSION_HEADER, session),
        (REMOTE_USER_HEADER, user_id),
        (REMOTE_EMAIL_HEADER, email),
        (REMOTE_NAME_HEADER, name),
        (REMOTE_GROUPS_HEADER, role),
        (ASSERTION_HEADER, assertion.unwrap_or_default().to_owned()),
    ]
}

/// True when a header name could be taken for an identity header: equal to one of
/// [`IDENTITY_HEADERS`] ignoring ASCII case and treating `_`, `-` and any other
/// non-alphanumeric character alike (CGI-style servers turn them all into `_`). The origin
/// strips every such header from a client's request.
pub fn is_identity_lookalike(header_name: &str) -> bool {
    IDENTITY_HEADERS
        .iter()
        .any(|known| same_modulo_separators(known, header_name))
}

fn same_modulo_separators(known: &str, candidate: &str) -> bool {
    let fold = |b: u8| {
        if b.is_ascii_alphanumeric() {
            b.to_ascii_lowercase()
        } else {
            b'-'
        }
    };
    known.len() == candidate.len()
        && known
            .bytes()
            .zip(candidate.bytes())
            .all(|(k, c)| fold(k) == fold(c))
}

/// A header value for an identity field: every byte of the UTF-8 text that is not
/// printable ASCII (`0x20`–`0x7E`), and `%` itself, written `%XX` with upper-case hex. No
/// value can then carry a control character or a line break.
pub fn encode_header_value(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
    out
}

/// The text an [`encode_header_value`] value carries, for apps. `None` when the value is
/// not such an encoding: a byte outside printable ASCII, a `%` without two hex digits
/// (either case accepted), or escapes that are not UTF-8.
pub fn decode_header_value(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |at: usize| bytes.get(at).and_then(|&h| (h as char).to_digit(16));
                out.push((hex(i + 1)? * 16 + hex(i + 2)?) as u8);
                i += 3;
            }
            b @ 0x20..=0x7e => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_round_trip() {
        for (text, encoded) in [
            ("", ""),
            ("ada@example.com", "ada@example.com"),
            ("Ada Lovelace", "Ada Lovelace"),
            ("100% sure", "100%25 sure"),
            ("Zoë", "Zo%C3%AB"),
            ("a\r\nX-Evil: 1", "a%0D%0AX-Evil: 1"),
            ("tab\there", "tab%09here"),
            ("\u{7f}", "%7F"),
            ("日本", "%E6%97%A5%E6%9C%AC"),
        ] {
            assert_eq!(encode_header_value(text), encoded, "{text:?}");
            assert_eq!(
                decode_header_value(encoded).as_deref(),
                Some(text),
                "{encoded}"
            );
        }
        assert_eq!(decode_header_value("zo%c3%ab").as_deref(), Some("zoë"));
        for bad in ["%", "%4", "%zz", "a\nb", "caf\u{e9}", "%FF", "%C3"] {
            assert_eq!(decode_header_value(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lookalikes() {
        for name in IDENTITY_HEADERS {
            assert!(is_identity_lookalike(name));
        }
        for spelling in [
            "x_sessiongate_role",
            "REMOTE_USER",
            "X-SessionGate-Role",
            "x-sessiongate-user_id",
            "remote-groups",
            "X.Sessiongate.Email",
            "x_sessiongate_assertion",
        ] {
            assert!(is_identity_lookalike(spelling), "{spelling}");
        }
        for other in [
            "X-Sessiongate-Edge",
            "X-Sessiongate",
            "Remote-Users",
            "Remote-Addr",
            "X-Forwarded-User",
            "XSessiongateRole",
            "",
            "Cookie",
        ] {
            assert!(!is_identity_lookalike(other), "{other}");
        }
    }

    #[test]
    fn identity_headers_are_all_present() {
        let anonymous = identity_headers(None, None);
        assert_eq!(anonymous.clone().map(|(name, _)| name), IDENTITY_HEADERS);
        assert!(anonymous.iter().all(|(_, value)| value.is_empty()));

        let identity = Identity {
            user_id: "u1".into(),
            email: "zoë@example.com".into(),
            name: "Zoë\r\nX: y".into(),
            role: Role::Admin,
            session: "hash".into(),
        };
        let headers = identity_headers(Some(&identity), Some("a.b.c"));
        let value = |name: &str| headers.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        assert_eq!(value(USER_ID_HEADER), "u1");
        assert_eq!(value(REMOTE_USER_HEADER), "u1");
        assert_eq!(value(EMAIL_HEADER), "zo%C3%AB@example.com");
        assert_eq!(value(REMOTE_EMAIL_HEADER), "zo%C3%AB@example.com");
        assert_eq!(value(NAME_HEADER), "Zo%C3%AB%0D%0AX: y");
        assert_eq!(value(REMOTE_NAME_HEADER), value(NAME_HEADER));
        assert_eq!(value(ROLE_HEADER), "ADMIN");
        assert_eq!(value(REMOTE_GROUPS_HEADER), "ADMIN");
        assert_eq!(value(SESSION_HEADER), "hash");
        assert_eq!(value(ASSERTION_HEADER), "a.b.c");
    }
}
