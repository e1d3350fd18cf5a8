//! Token parser fuzz target: verification must never panic, `verify` (fast path first) must
//! give exactly what the reference path (jwt-simple's general verifier) gives, and anything
//! accepted must be a live token of a configured key. Each input is checked as it is and
//! re-signed with key `a` (the fuzzer cannot guess a tag, and the claims are only read
//! behind a valid one).
#![no_main]

use ct_codecs::{Base64UrlSafeNoPadding, Encoder};
use libfuzzer_sys::fuzz_target;
use shared::token::{verify_fast, verify_reference};
use shared::{KeyRing, verify};

const RING: &str =
    "a:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY,b:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA";
const KEY_A: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_800_000_000;

fn check(ring: &KeyRing, token: &str) {
    // The corpus's times sit around NOW; also an hour before and a week after.
    for now in [NOW, NOW - 3600, NOW + 7 * 86_400] {
        let reference = verify_reference(ring, token, now);
        if let Some(fast) = verify_fast(ring, token, now) {
            assert_eq!(fast, reference, "fast path differs on {token:?} at {now}");
        }
        let verdict = verify(ring, token, now);
        assert_eq!(verdict, reference, "verify differs on {token:?} at {now}");
        if let Ok(verified) = verdict {
            assert!(verified.expires_at + 60 >= now);
            assert!(ring.get(&verified.kid).is_some());
        }
    }
}

fn resigned(input: &str) -> String {
    let tag = hmac_sha256::HMAC::mac(input.as_bytes(), KEY_A);
    let tag = Base64UrlSafeNoPadding::encode_to_string(tag).expect("base64 of 32 bytes");
    format!("{input}.{tag}")
}

fuzz_target!(|data: &[u8]| {
    let ring = KeyRing::parse(RING).expect("fixed ring");
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    check(&ring, token);
    check(&ring, &resigned(token));
    if let Some((input, _)) = token.rsplit_once('.') {
        check(&ring, &resigned(input));
    }
});
