//! Signing and verification against every rule of the contract's "The session cookie".

mod common;

use common::craft::*;
use proptest::prelude::*;
use shared::token::{MAX_TOKEN_BYTES, sign, verify};
use shared::{KeyRing, Rejection, SessionId};

fn ring() -> KeyRing {
    KeyRing::parse(RING).unwrap()
}

fn sid() -> SessionId {
    SessionId::parse(SID).unwrap()
}

fn reject(token: &str) -> Rejection {
    verify(&ring(), token, NOW).expect_err("token must be rejected")
}

fn decode_part(token: &str, index: usize) -> serde_json::Value {
    use ct_codecs::{Base64UrlSafeNoPadding, Decoder};
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&Base64UrlSafeNoPadding::decode_to_vec(part, None).unwrap()).unwrap()
}

#[test]
fn signs_exactly_the_contract_format() {
    let token = sign(&ring(), &sid(), NOW, NOW + 600);
    assert_eq!(token.split('.').count(), 3);
    assert!(!token.contains('='), "no padding");
    assert_eq!(
        decode_part(&token, 0),
        serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": "a"})
    );
    assert_eq!(
        decode_part(&token, 1),
        serde_json::json!({"sid": SID, "iat": NOW, "exp": NOW + 600})
    );
    let verified = verify(&ring(), &token, NOW).unwrap();
    assert_eq!(verified.sid, sid());
    assert_eq!((verified.issued_at, verified.expires_at), (NOW, NOW + 600));
    assert_eq!(verified.kid, "a");
}

#[test]
fn hand_crafted_valid_token_verifies() {
    assert!(verify(&ring(), &valid(), NOW).is_ok());
}

#[test]
fn second_key_verifies_after_rotation() {
    let old = signed(&header("b"), &claims(SID, NOW, NOW + 60), KEY_B);
    assert_eq!(verify(&ring(), &old, NOW).unwrap().kid, "b");
    // Dropping the old key ends its cookies.
    let rotated = KeyRing::parse(RING.split(',').next().unwrap()).unwrap();
    assert_eq!(verify(&rotated, &old, NOW), Err(Rejection::UnknownKid));
}

#[test]
fn rejects_other_algorithms() {
    for alg in [
        r#""none""#,
        r#""HS512""#,
        r#""RS256""#,
        r#""hs256""#,
        "null",
        "1",
    ] {
        let header = format!(r#"{{"alg":{alg},"typ":"JWT","kid":"a"}}"#);
        let token = signed(&header, &claims(SID, NOW, NOW + 60), KEY_A);
        assert_eq!(reject(&token), Rejection::AlgorithmNotAllowed, "{alg}");
    }
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"a"}"#),
        b64(claims(SID, NOW, NOW + 60).as_bytes())
    );
    assert_eq!(reject(&unsigned), Rejection::AlgorithmNotAllowed);
    let no_alg = signed(
        r#"{"typ":"JWT","kid":"a"}"#,
        &claims(SID, NOW, NOW + 60),
        KEY_A,
    );
    assert_eq!(reject(&no_alg), Rejection::AlgorithmNotAllowed);
}

#[test]
fn rejects_missing_and_unknown_kid() {
    let body = claims(SID, NOW, NOW + 60);
    let no_kid = signed(r#"{"alg":"HS256","typ":"JWT"}"#, &body, KEY_A);
    assert_eq!(reject(&no_kid), Rejection::MissingKid);
    for kid in ["zz", "../../etc/passwd", "' OR 1=1 --", &"k".repeat(10_000)] {
        let token = signed(&header(kid), &body, KEY_A);
        let expected = if token.len() > MAX_TOKEN_BYTES {
            Rejection::TooLong
        } else {
            Rejection::UnknownKid
        };
        assert_eq!(reject(&token), expected);
    }
    let numeric = signed(r#"{"alg":"HS256","kid":1}"#, &body, KEY_A);
    assert_eq!(reject(&numeric), Rejection::UnknownKid);
}

#[test]
fn rejects_bad_signatures() {
    let body = claims(SID, NOW, NOW + 60);
    // Signed by key b but claiming kid a.
    assert_eq!(
        reject(&signed(&header("a"), &body, KEY_B)),
        Rejection::BadSignature
    );
    // Claims swapped after signing.
    let token = valid();
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    parts[1] = b64(claims(SID, NOW, NOW + 999_999).as_bytes());
    assert_eq!(reject(&parts.join(".")), Rejection::BadSignature);
    // Truncated tag.
    let short = &token[..token.len() - 4];
    assert_eq!(reject(short), Rejection::BadSignature);
}

#[test]
fn expiry_with_at_most_sixty_seconds_leeway() {
    let exp = NOW - 10;
    let token = signed(&header("a"), &claims(SID, NOW - 100, exp), KEY_A);
    assert!(verify(&ring(), &token, exp + 60).is_ok());
    assert_eq!(verify(&ring(), &token, exp + 61), Err(Rejection::Expired));
    assert_eq!(verify(&ring(), &token, exp + 900), Err(Rejection::Expired));
    let no_exp = signed(
        &header("a"),
        &format!(r#"{{"sid":"{SID}","iat":{NOW}}}"#),
        KEY_A,
    );
    assert_eq!(reject(&no_exp), Rejection::MissingExpiry);
}

#[test]
fn issued_in_the_future() {
    let token = signed(&header("a"), &claims(SID, NOW + 60, NOW + 600), KEY_A);
    assert!(verify(&ring(), &token, NOW).is_ok(), "within leeway");
    let token = signed(&header("a"), &claims(SID, NOW + 61, NOW + 600), KEY_A);
    assert_eq!(reject(&token), Rejection::IssuedInFuture);
    let no_iat = signed(
        &header("a"),
        &format!(r#"{{"sid":"{SID}","exp":{}}}"#, NOW + 60),
        KEY_A,
    );
    assert_eq!(reject(&no_iat), Rejection::MissingIssuedAt);
}

#[test]
fn session_id_must_be_present_and_well_formed() {
    let exp = NOW + 60;
    let missing = signed(
        &header("a"),
        &format!(r#"{{"iat":{NOW},"exp":{exp}}}"#),
        KEY_A,
    );
    assert_eq!(reject(&missing), Rejection::MissingSid);
    for sid in [
        r#""short""#,
        r#""' OR 1=1 --""#,
        r#""\u0000\r\n""#,
        "42",
        "null",
        "[]",
    ] {
        let token = signed(
            &header("a"),
            &format!(r#"{{"sid":{sid},"iat":{NOW},"exp":{exp}}}"#),
            KEY_A,
        );
        let expected = if sid == "null" {
            Rejection::MissingSid
        } else {
            Rejection::MalformedSid
        };
        assert_eq!(reject(&token), expected, "{sid}");
    }
}

#[test]
fn structural_rejections() {
    let token = valid();
    assert_eq!(reject(&format!("{token}.x")), Rejection::WrongSegmentCount);
    assert_eq!(reject("a.b"), Rejection::WrongSegmentCount);
    assert_eq!(reject(""), Rejection::WrongSegmentCount);
    assert_eq!(reject("***.b.c"), Rejection::BadBase64);
    assert_eq!(
        reject(&format!("{}.b.c", b64(b"not json"))),
        Rejection::BadJson
    );
    assert_eq!(
        reject(&format!("{}.b.c", b64(b"[1,2]"))),
        Rejection::BadJson
    );
    let bad_claims = format!("{}.%%%.{}", b64(header("a").as_bytes()), "x");
    assert_eq!(reject(&bad_claims), Rejection::BadBase64);
    let padded = format!("{}.{}", token.rsplit_once('.').unwrap().0, "AAAA====");
    assert!(matches!(
        reject(&padded),
        Rejection::BadBase64 | Rejection::BadSignature
    ));
    let long = format!("{token}{}", "A".repeat(MAX_TOKEN_BYTES));
    assert_eq!(reject(&long), Rejection::TooLong);
}

#[test]
fn claims_must_be_json() {
    let token = signed(&header("a"), "not json", KEY_A);
    assert_eq!(reject(&token), Rejection::BadJson);
}

#[test]
fn every_rejection_has_a_distinct_name() {
    let all = [
        Rejection::TooLong,
        Rejection::WrongSegmentCount,
        Rejection::BadBase64,
        Rejection::BadJson,
        Rejection::AlgorithmNotAllowed,
        Rejection::MissingKid,
        Rejection::UnknownKid,
        Rejection::BadSignature,
        Rejection::MissingExpiry,
        Rejection::Expired,
        Rejection::MissingIssuedAt,
        Rejection::IssuedInFuture,
        Rejection::MissingSid,
        Rejection::MalformedSid,
    ];
    let names: std::collections::HashSet<_> = all.iter().map(|r| r.as_str()).collect();
    assert_eq!(names.len(), all.len());
}

fn arbitrary_sid() -> impl Strategy<Value = SessionId> {
    proptest::array::uniform32(any::<u8>())
        .prop_map(|bytes| SessionId::parse(&b64(&bytes)).unwrap())
}

proptest! {
    #[test]
    fn sign_then_verify_round_trips(sid in arbitrary_sid(), iat in 0u64..4_000_000_000, life in 61u64..40_000_000) {
        let token = sign(&ring(), &sid, iat, iat + life);
        let verified = verify(&ring(), &token, iat).unwrap();
        prop_assert_eq!(verified.sid, sid);
        prop_assert_eq!(verified.expires_at, iat + life);
    }

    #[test]
    fn any_single_byte_change_is_rejected(index in any::<prop::sample::Index>(), replacement in any::<u8>()) {
        let token = valid();
        let position = index.index(token.len());
        prop_assume!(token.as_bytes()[position] != replacement);
        let mut bytes = token.into_bytes();
        bytes[position] = replacement;
        if let Ok(changed) = String::from_utf8(bytes) {
            prop_assert!(verify(&ring(), &changed, NOW).is_err(), "accepted {}", changed);
        }
    }

    #[test]
    fn verification_never_panics(input in ".{0,600}") {
        let _ = verify(&ring(), &input, NOW);
    }

    #[test]
    fn verification_never_panics_on_near_tokens(parts in proptest::collection::vec("[A-Za-z0-9_\\-=+/]{0,80}", 0..5)) {
        let _ = verify(&ring(), &parts.join("."), NOW);
    }
}
