//! The key ring parsed from `SESSION_KEYS`: comma-separated `kid:base64key` pairs.
//!
//! The first pair signs new cookies; every pair verifies. Rotation is: prepend a new key,
//! deploy, wait one session lifetime, drop the old key. Error messages name the entry and
//! the problem, never the key material.

use std::fmt;

use ct_codecs::{Base64NoPadding, Base64UrlSafeNoPadding, Decoder, Encoder};
use hmac::{Hmac, KeyInit};
use jwt_simple::prelude::HS256Key;
use sha2::Sha256;

/// Keys shorter than this are refused: HS256 wants at least its output size.
pub const MIN_KEY_BYTES: usize = 32;
/// Longest key id accepted.
pub const MAX_KID_LEN: usize = 32;

/// One signing/verifying key with its id, and what the verifier's fast path needs from it,
/// computed once here instead of on every request.
#[derive(Clone)]
pub struct Key {
    kid: String,
    /// jwt-simple's key: the signer, and the reference verifier.
    key: HS256Key,
    /// The header segment the signer emits for this key, byte for byte (base64url of
    /// `{"alg":"HS256","kid":"<kid>","typ":"JWT"}` with jwt-simple 0.15).
    header_b64: String,
    /// HMAC-SHA256 with the inner and outer padded key blocks already absorbed: a clone of
    /// it costs a verify only the hash blocks of the message itself plus the outer block.
    mac: Hmac<Sha256>,
}

impl Key {
    fn new(kid: &str, bytes: &[u8]) -> Self {
        // The signer's header, spelled as jwt-simple 0.15 serializes it (fields in its
        // struct order, `None`s skipped). Spelled here rather than taken from a signing
        // run so the edge, which never signs, does not link the signer's serializer (8 KB
        // of wasm); `keys::tests::header_is_the_signers` pins it to the signer's output.
        // A kid is `A-Za-z0-9._-` only: nothing to escape.
        let header = format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"JWT"}}"#);
        let header_b64 =
            Base64UrlSafeNoPadding::encode_to_string(header).expect("base64 of a short header");
        let mac = Hmac::<Sha256>::new_from_slice(bytes).expect("HMAC takes keys of any length");
        Self {
            kid: kid.to_owned(),
            key: HS256Key::from_bytes(bytes).with_key_id(kid),
            header_b64,
            mac,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn hs256(&self) -> &HS256Key {
        &self.key
    }

    /// The exact header segment of the tokens this key signs.
    pub(crate) fn header_b64(&self) -> &str {
        &self.header_b64
    }

    /// The precomputed HMAC state; clone it per message.
    pub(crate) fn mac(&self) -> &Hmac<Sha256> {
        &self.mac
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The configured keys, in order. Never empty.
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<Key>,
}

/// Why a `SESSION_KEYS` value was refused. `entry` is the 1-based position in the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRingError {
    Empty,
    EmptyEntry { entry: usize },
    MissingColon { entry: usize },
    BadKid { entry: usize },
    DuplicateKid { kid: String },
    BadBase64 { kid: String },
    KeyTooShort { kid: String, bytes: usize },
}

impl fmt::Display for KeyRingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(
                f,
                "no keys given; expected `kid:base64key[,kid:base64key…]`"
            ),
            Self::EmptyEntry { entry } => write!(f, "entry {entry} is empty (stray comma?)"),
            Self::MissingColon { entry } => {
                write!(f, "entry {entry} is not of the form `kid:base64key`")
            }
            Self::BadKid { entry } => write!(
                f,
                "entry {entry} has an invalid key id: use 1-{MAX_KID_LEN} characters of A-Z a-z 0-9 . _ -"
            ),
            Self::DuplicateKid { kid } => write!(f, "key id `{kid}` appears more than once"),
            Self::BadBase64 { kid } => write!(f, "key `{kid}` is not valid base64"),
            Self::KeyTooShort { kid, bytes } => write!(
                f,
                "key `{kid}` is {bytes} bytes; at least {MIN_KEY_BYTES} are required"
            ),
        }
    }
}

impl std::error::Error for KeyRingError {}

/// True for a key id of 1–32 characters of `A-Za-z0-9._-`.
pub fn is_valid_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Decodes standard or URL-safe base64, with or without padding.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let unpadded = text.trim_end_matches('=');
    if unpadded.is_empty() || text.len() - unpadded.len() > 2 {
        return None;
    }
    let standard: String = unpadded
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            other => other,
        })
        .collect();
    Base64NoPadding::decode_to_vec(standard, None).ok()
}

impl KeyRing {
    /// Parses the `SESSION_KEYS` format. Whitespace around entries is ignored.
    pub fn parse(spec: &str) -> Result<Self, KeyRingError> {
        if spec.trim().is_empty() {
            return Err(KeyRingError::Empty);
        }
        let mut keys: Vec<Key> = Vec::new();
        for (index, raw) in spec.split(',').enumerate() {
            let entry = index + 1;
            let raw = raw.trim();
            if raw.is_empty() {
                return Err(KeyRingError::EmptyEntry { entry });
            }
            let (kid, material) = raw
                .split_once(':')
                .ok_or(KeyRingError::MissingColon { entry })?;
            let (kid, material) = (kid.trim(), material.trim());
            if !is_valid_kid(kid) {
                return Err(KeyRingError::BadKid { entry });
            }
            if keys.iter().any(|k| k.kid == kid) {
                return Err(KeyRingError::DuplicateKid { kid: kid.into() });
            }
            let bytes = decode_base64(material)
                .ok_or_else(|| KeyRingError::BadBase64 { kid: kid.into() })?;
            if bytes.len() < MIN_KEY_BYTES {
                return Err(KeyRingError::KeyTooShort {
                    kid: kid.into(),
                    bytes: bytes.len(),
                });
            }
            keys.push(Key::new(kid, &bytes));
        }
        Ok(Self { keys })
    }

    /// The key that signs new cookies (the first listed).
    pub fn signing_key(&self) -> &Key {
        &self.keys[0]
    }

    /// The key with this id, if configured.
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The keys in configuration order.
    pub(crate) fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Key ids in configuration order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K32: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"; // 32 bytes, no padding

    #[test]
    fn parses_and_orders() {
        let ring = KeyRing::parse(&format!("new:{K32}, old:{K32}=")).unwrap();
        assert_eq!(ring.signing_key().kid(), "new");
        assert_eq!(ring.kids().collect::<Vec<_>>(), ["new", "old"]);
        assert!(ring.get("old").is_some());
        assert!(ring.get("nope").is_none());
    }

    #[test]
    fn accepts_url_safe_and_standard_alphabets() {
        // 33 bytes of 0xfb encode to `+/` (standard) or `-_` (URL-safe).
        let standard = "+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7";
        let url_safe = standard.replace('+', "-").replace('/', "_");
        assert!(KeyRing::parse(&format!("a:{standard}")).is_ok());
        assert!(KeyRing::parse(&format!("a:{url_safe}")).is_ok());
    }

    #[test]
    fn errors_name_the_problem_never_the_key() {
        let short = "c2hvcnQ"; // "short"
        let cases = [
            ("", KeyRingError::Empty),
            (&format!("a:{K32},"), KeyRingError::EmptyEntry { entry: 2 }),
            (K32, KeyRingError::MissingColon { entry: 1 }),
            (&format!("bad/kid:{K32}"), KeyRingError::BadKid { entry: 1 }),
            (&format!(":{K32}"), KeyRingError::BadKid { entry: 1 }),
            (
                &format!("a:{K32},a:{K32}"),
                KeyRingError::DuplicateKid { kid: "a".into() },
            ),
            ("a:not*base64", KeyRingError::BadBase64 { kid: "a".into() }),
            (
                &format!("a:{short}"),
                KeyRingError::KeyTooShort {
                    kid: "a".into(),
                    bytes: 5,
                },
            ),
        ];
        for (spec, expected) in cases {
            let err = KeyRing::parse(spec).unwrap_err();
            assert_eq!(err, expected, "for {spec:?}");
            let message = err.to_string();
            assert!(
                !message.contains(K32) && !message.contains(short),
                "{message}"
            );
        }
    }

    #[test]
    fn header_is_the_signers() {
        use crate::{SessionId, sign};
        let sid = SessionId::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        for kid in ["a", "k-2026.11_a", &"x".repeat(MAX_KID_LEN)] {
            let ring = KeyRing::parse(&format!("{kid}:{K32}")).unwrap();
            let token = sign(&ring, &sid, 1, 2);
            let key = ring.get(kid).unwrap();
            assert_eq!(token.split('.').next(), Some(key.header_b64()), "{kid}");
        }
    }

    #[test]
    fn kid_rules() {
        assert!(is_valid_kid("k-2026.11_a"));
        assert!(is_valid_kid(&"x".repeat(32)));
        assert!(!is_valid_kid(&"x".repeat(33)));
        assert!(!is_valid_kid("../etc"));
        assert!(!is_valid_kid(""));
    }
}
