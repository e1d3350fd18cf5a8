//! Per-call cost of the session token check that the edge and the origin both run:
//! `cargo bench -p shared --bench verify`.
//!
//! - `verify/valid`: `shared::verify` of a good token (the path of every signed-in request;
//!   the fast path decides it).
//! - `verify/forged`: a token whose signature does not match (what the edge turns away).
//! - `verify/cookie_header`: finding the cookie in a browser-sized `Cookie` header, then
//!   verifying it (what the origin does per request).
//! - `reference/valid`, `reference/forged`: the same tokens through
//!   `shared::token::verify_reference`, jwt-simple's general path (what `verify` was before
//!   the fast path, and what it still falls back to).
//! - `floor/hmac_sha256`: HMAC-SHA256 over the same signing input from a precomputed key
//!   state (sha2 + hmac, cloned per call, as the fast path does): the cryptographic work no
//!   implementation can skip, the reference the others are quoted against (the name
//!   `origin-api/bench/bench.py` reads).
//! - `floor/hmac_sha256_from_key`: the same HMAC with the `hmac-sha256` crate from the raw
//!   key, as jwt-simple's HS256 computes it (the floor quoted before the fast path).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use shared::token::verify_reference;
use shared::{KeyRing, SessionId, sign, verify};

const NOW: u64 = 1_800_000_000;
const KEY: &[u8; 32] = b"bench-key-bench-key-bench-key-32";

fn ring() -> KeyRing {
    use ct_codecs::{Base64, Encoder};
    let b64 = Base64::encode_to_string(KEY).expect("base64 of 32 bytes");
    KeyRing::parse(&format!("bench:{b64},old:{b64}")).expect("bench key ring")
}

fn bench(c: &mut Criterion) {
    let ring = ring();
    let sid = SessionId::parse("q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA").expect("sid form");
    let token = sign(&ring, &sid, NOW - 60, NOW + 7 * 86_400);
    assert!(
        verify(&ring, &token, NOW).is_ok(),
        "the bench token must verify"
    );
    assert!(
        shared::token::verify_fast(&ring, &token, NOW).is_some(),
        "the bench token must take the fast path"
    );
    let forged = {
        let (input, tag) = token.rsplit_once('.').expect("three parts");
        let mut tag = tag.as_bytes().to_vec();
        tag[0] = if tag[0] == b'A' { b'B' } else { b'A' };
        format!("{input}.{}", String::from_utf8(tag).expect("ascii"))
    };
    assert!(
        verify(&ring, &forged, NOW).is_err(),
        "the forged token must fail"
    );
    let header =
        format!("_ga=GA1.1.1234567890.1700000000; theme=dark; session={token}; consent=yes");
    let signing_input = token.rsplit_once('.').expect("three parts").0.to_owned();
    let precomputed = Hmac::<Sha256>::new_from_slice(KEY).expect("any key length");

    let mut group = c.benchmark_group("verify");
    group.bench_function("valid", |b| {
        b.iter(|| verify(black_box(&ring), black_box(&token), black_box(NOW)))
    });
    group.bench_function("forged", |b| {
        b.iter(|| verify(black_box(&ring), black_box(&forged), black_box(NOW)))
    });
    group.bench_function("cookie_header", |b| {
        b.iter(|| {
            shared::cookie::cookie_values(black_box(&header), "session")
                .find_map(|t| verify(&ring, t, NOW).ok())
        })
    });
    group.finish();

    let mut group = c.benchmark_group("reference");
    group.bench_function("valid", |b| {
        b.iter(|| verify_reference(black_box(&ring), black_box(&token), black_box(NOW)))
    });
    group.bench_function("forged", |b| {
        b.iter(|| verify_reference(black_box(&ring), black_box(&forged), black_box(NOW)))
    });
    group.finish();

    let mut group = c.benchmark_group("floor");
    group.bench_function("hmac_sha256", |b| {
        b.iter(|| {
            let mut mac = black_box(&precomputed).clone();
            mac.update(black_box(signing_input.as_bytes()));
            mac.finalize().into_bytes()
        })
    });
    group.bench_function("hmac_sha256_from_key", |b| {
        b.iter(|| hmac_sha256::HMAC::mac(black_box(signing_input.as_bytes()), black_box(KEY)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
