//! The committed vectors (`tests/vectors.json`) hold: the edge checks the same file.
//! Regenerate with `cargo run -p shared --example make_vectors > shared/tests/vectors.json`
//! only when the format deliberately changes.

use serde::Deserialize;
use shared::cookie::{SECURE_NAME, cookie_values_bytes};
use shared::token::verify_reference;
use shared::{KeyRing, verify};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    keys: String,
    vectors: Vec<Vector>,
    cookie_headers: Vec<CookieHeader>,
}

/// A `Cookie` header as raw bytes and the `__Host-session` values in it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CookieHeader {
    name: String,
    now: u64,
    header_hex: String,
    values: Vec<String>,
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    now: u64,
    token: String,
    valid: bool,
    reason: Option<String>,
}

#[test]
fn committed_vectors_hold() {
    let file: File = serde_json::from_str(include_str!("vectors.json")).unwrap();
    let ring = KeyRing::parse(&file.keys).unwrap();
    assert!(file.vectors.len() >= 20);
    assert!(file.vectors.iter().any(|v| v.valid));
    for vector in &file.vectors {
        let verdict = verify(&ring, &vector.token, vector.now);
        // The fast path and the reference path agree on every vector.
        assert_eq!(
            verdict,
            verify_reference(&ring, &vector.token, vector.now),
            "{}",
            vector.name
        );
        assert_eq!(verdict.is_ok(), vector.valid, "{}", vector.name);
        assert_eq!(
            verdict.err().map(|r| r.as_str().to_owned()),
            vector.reason,
            "{}",
            vector.name
        );
    }
}

#[test]
fn committed_cookie_headers_hold() {
    let file: File = serde_json::from_str(include_str!("vectors.json")).unwrap();
    let ring = KeyRing::parse(&file.keys).unwrap();
    assert!(file.cookie_headers.len() >= 8);
    assert!(file.cookie_headers.iter().any(|c| c.values.is_empty()));
    assert!(
        file.cookie_headers
            .iter()
            .any(|c| String::from_utf8(hex(&c.header_hex)).is_err()),
        "some headers are not UTF-8 at all"
    );
    for case in &file.cookie_headers {
        let header = hex(&case.header_hex);
        let found: Vec<&str> = cookie_values_bytes(&header, SECURE_NAME).collect();
        assert_eq!(found, case.values, "{}", case.name);
        // Every value the vectors name is a live session token.
        for value in &case.values {
            assert!(verify(&ring, value, case.now).is_ok(), "{}", case.name);
        }
    }
}
