//! Session ids: 32 random bytes, base64url without padding (43 characters).
//!
//! The raw id lives only in the cookie. Storage and the API use [`SessionId::storage_hash`],
//! the SHA-256 of the id in the same encoding, so a leaked database or cache yields no
//! usable session.

use std::fmt;

use ct_codecs::{Base64UrlSafeNoPadding, Encoder};
use sha2::{Digest, Sha256};

/// Length of an encoded session id (and of its storage hash).
pub const SESSION_ID_LEN: usize = 43;

/// A session id of the valid form. `Debug` never prints the id.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh id from the operating system's CSPRNG.
    #[cfg(feature = "generate")]
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random source failed");
        Self(encode(&bytes))
    }

    /// Accepts only the exact form: 43 base64url characters that decode to 32 bytes.
    pub fn parse(text: &str) -> Option<Self> {
        is_session_id_form(text).then(|| Self(text.to_owned()))
    }

    /// The raw id, for the cookie only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the id, base64url without padding: the key in the database and cache,
    /// and the `id` the API shows. `sha2` uses the CPU's SHA instructions when it has them
    /// (checked once at run time), the same SHA-256 as the verifier's HMAC.
    pub fn storage_hash(&self) -> String {
        encode(&Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// True when `text` has the session id form (also the form of a storage hash).
pub fn is_session_id_form(text: &str) -> bool {
    text.len() == SESSION_ID_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        // 43 chars carry 258 bits: the last char must leave the two spare bits zero. With
        // the alphabet checked, that is exactly when they decode to 32 bytes (no decode
        // here: this runs on every verify; `form_is_what_decodes_to_32_bytes` checks it).
        && canonical_tail(text)
}

/// Rejects the non-canonical encodings that differ from a valid id only in the two
/// unused low bits of the last character.
fn canonical_tail(text: &str) -> bool {
    let last = text.as_bytes()[SESSION_ID_LEN - 1];
    let value = match last {
        b'A'..=b'Z' => last - b'A',
        b'a'..=b'z' => last - b'a' + 26,
        b'0'..=b'9' => last - b'0' + 52,
        b'-' => 62,
        _ => 63,
    };
    value & 0b11 == 0
}

fn encode(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).expect("base64 of a small buffer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_the_form_and_differ() {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        let a = SessionId::parse(&encode(&bytes)).unwrap();
        bytes[0] ^= 1;
        let b = SessionId::parse(&encode(&bytes)).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert_eq!(a.storage_hash().len(), 43);
        assert!(is_session_id_form(&a.storage_hash()));
        assert_ne!(a.storage_hash(), a.expose());
    }

    #[test]
    fn storage_hash_is_sha256_base64url() {
        // SHA-256("") would not be reachable; check a fixed id against a known digest
        // (Python's hashlib) and against an independent SHA-256 implementation.
        let id = SessionId::parse(&encode(&[0u8; 32])).unwrap();
        assert_eq!(id.expose(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(
            id.storage_hash(),
            "DwBzhbb51LfusnSGBa_hqYSgo7-j8BTQnip4TOnlzRo"
        );
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        let id = SessionId::parse(&encode(&bytes)).unwrap();
        assert_eq!(
            id.storage_hash(),
            encode(&hmac_sha256::Hash::hash(id.expose().as_bytes()))
        );
    }

    #[test]
    fn rejects_wrong_forms() {
        let good = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(is_session_id_form(good));
        assert!(!is_session_id_form(&good[..42]));
        assert!(!is_session_id_form(&format!("{good}A")));
        assert!(!is_session_id_form(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        ));
        assert!(!is_session_id_form(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+"
        ));
        assert!(!is_session_id_form(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB"
        ));
        assert!(!is_session_id_form(
            "' OR 1=1 --AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        ));
        assert!(!is_session_id_form(""));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        #[test]
        fn form_is_what_decodes_to_32_bytes(
            text in proptest::prop_oneof!["[A-Za-z0-9_-]{43}", "[A-Za-z0-9_\\-+/=]{41,45}"],
        ) {
            use ct_codecs::Decoder;
            let decodes = Base64UrlSafeNoPadding::decode_to_vec(&text, None)
                .is_ok_and(|b| b.len() == 32);
            proptest::prop_assert_eq!(is_session_id_form(&text), decodes);
        }
    }

    #[test]
    fn debug_redacts() {
        let id = SessionId::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert_eq!(format!("{id:?}"), "SessionId(<redacted>)");
    }
}
