//! The committed vectors (`tests/vectors.json`) hold: the edge checks the same file.
//! Regenerate with `cargo run -p shared --example make_vectors > shared/tests/vectors.json`
//! only when the format deliberately changes.

use serde::Deserialize;
use shared::token::verify_reference;
use shared::{KeyRing, verify};

#[derive(Deserialize)]
struct File {
    keys: String,
    vectors: Vec<Vector>,
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
