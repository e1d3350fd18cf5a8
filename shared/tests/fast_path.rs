//! `verify`'s fast path against the reference path (jwt-simple's general verifier): on
//! every input they must accept and reject the same tokens with the same `Rejection` and
//! the same `VerifiedToken`. The generators build tokens the way the signer does and then
//! bend them (claim order, whitespace, extra and duplicated claims, number and string
//! spellings, header variants, wrong keys, byte flips/inserts/deletes in each segment,
//! non-canonical base64 tails, padding, over-long tokens), re-signing the bent JSON so the
//! claims parser is reached with a valid tag, at times around every leeway boundary.

mod common;

use std::sync::LazyLock;

use common::craft::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use shared::token::{LEEWAY_SECS, MAX_TOKEN_BYTES, sign, verify, verify_fast, verify_reference};
use shared::{KeyRing, Rejection, SessionId, VerifiedToken};

static RING: LazyLock<KeyRing> = LazyLock::new(|| KeyRing::parse(common::craft::RING).unwrap());

/// The header JSON the signer (jwt-simple 0.15) emits: `kid` before `typ`.
fn signer_header(kid: &str) -> String {
    format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"JWT"}}"#)
}

/// The claims JSON the signer emits: registered claims first, then the flattened `sid`.
fn signer_claims(sid: &str, iat: u64, exp: u64) -> String {
    format!(r#"{{"iat":{iat},"exp":{exp},"sid":"{sid}"}}"#)
}

/// `header.claims.tag` over raw bytes (the bent JSON need not be UTF-8).
fn sign_raw(header: &[u8], claims: &[u8], key: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let tag = hmac_sha256::HMAC::mac(input.as_bytes(), key);
    format!("{input}.{}", b64(&tag))
}

/// Latest `now` at which the reference path runs without overflowing coarsetime's 32.32
/// fixed point (`now + leeway` past 2^32 panics in debug builds; year 2106).
const LATEST_NOW: u64 = u32::MAX as u64 - LEEWAY_SECS;

type Verdict = Result<VerifiedToken, Rejection>;

/// Both paths on one input: returns (fast decided?, verdict).
fn compare(token: &str, now: u64) -> Result<(bool, Verdict), TestCaseError> {
    let reference = verify_reference(&RING, token, now);
    let fast = verify_fast(&RING, token, now);
    if let Some(fast) = &fast {
        prop_assert_eq!(
            fast,
            &reference,
            "fast path differs on {:?} at {}",
            token,
            now
        );
    }
    prop_assert_eq!(
        &verify(&RING, token, now),
        &reference,
        "verify differs on {:?} at {}",
        token,
        now
    );
    Ok((fast.is_some(), reference))
}

// ---------------------------------------------------------------------------------------
// Generators

fn canonical_sid() -> impl Strategy<Value = String> {
    proptest::array::uniform32(any::<u8>()).prop_map(|bytes| b64(&bytes))
}

/// A JSON value for `sid`: mostly a valid id, sometimes every near miss.
fn sid_value() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => canonical_sid().prop_map(|sid| format!("\"{sid}\"")),
        1 => canonical_sid().prop_map(|sid| {
            // Same id with a spare bit of the last character set: non-canonical.
            let mut sid = sid.into_bytes();
            sid[42] = ALPHABET[alphabet_value(sid[42]).unwrap() | 1];
            format!("\"{}\"", String::from_utf8(sid).unwrap())
        }),
        1 => canonical_sid().prop_map(|sid| format!("\"{}\"", &sid[..42])),
        1 => canonical_sid().prop_map(|sid| format!("\"{sid}A\"")),
        1 => canonical_sid().prop_map(|sid| format!("\"\\u00{:x}{}\"", sid.as_bytes()[0], &sid[1..])),
        1 => canonical_sid().prop_map(|sid| format!("\"{}+\"", &sid[..42])),
        1 => prop::sample::select(vec![
            "null", "42", "[]", "{}", "\"\"", "true", r#""' OR 1=1 --""#, "\"\\u0000\"",
        ]).prop_map(String::from),
    ]
}

/// A JSON value for `iat`/`exp` relative to `base`: mostly plain integers around it (the
/// leeway boundaries sit at ±60), sometimes every other spelling serde_json might accept.
fn time_value(base: u64) -> impl Strategy<Value = String> {
    prop_oneof![
        24 => (-130i64..130).prop_map(move |d| base.saturating_add_signed(d).to_string()),
        1 => any::<u32>().prop_map(|t| t.to_string()),
        1 => any::<u64>().prop_map(|t| t.to_string()),
        // Around 2^32, where jwt-simple's fixed-point times saturate, and 10-digit values.
        1 => (u32::MAX as u64 - 3..u32::MAX as u64 + 3).prop_map(|t| t.to_string()),
        1 => (1_000_000_000u64..10_000_000_000).prop_map(|t| t.to_string()),
        2 => prop::sample::select(vec![
            "0", "00", "-0", "-1", "01800000000", "1800000000.0", "1.8e9", "1800000000e0",
            "4294967295", "4294967296", "4294967235", "18446744073709551615",
            "18446744073709551616", "1e400", "null", "\"1800000000\"", "true", "[]",
            "-9223372036854775808", "1800000000 ", " 1800000000",
        ]).prop_map(String::from),
    ]
}

#[derive(Clone, Debug)]
enum FieldEdit {
    None,
    Permute(Index),
    Remove(Index),
    Duplicate(Index, String),
    Extra(Index, String, String),
}

fn field_edit(base: u64) -> impl Strategy<Value = FieldEdit> {
    prop_oneof![
        16 => Just(FieldEdit::None),
        2 => any::<Index>().prop_map(FieldEdit::Permute),
        1 => any::<Index>().prop_map(FieldEdit::Remove),
        1 => (any::<Index>(), time_value(base)).prop_map(|(i, v)| FieldEdit::Duplicate(i, v)),
        1 => (
            any::<Index>(),
            prop::sample::select(vec!["nbf", "sub", "aud", "jti", "iss", "nonce", "foo", "Sid", "iat "]),
            prop_oneof![time_value(base), Just("\"x\"".to_string()), Just("[\"a\"]".to_string())],
        ).prop_map(|(i, k, v)| FieldEdit::Extra(i, k.to_string(), v)),
    ]
}

/// Whitespace and separators: the signer's compact form, or spellings JSON allows.
fn layout() -> impl Strategy<Value = (&'static str, &'static str, &'static str, &'static str)> {
    // (after '{', around ':', after ',', before '}')
    prop_oneof![
        16 => Just(("", "", "", "")),
        1 => Just((" ", " ", " ", " ")),
        1 => Just(("\n  ", "", "\n  ", "\n")),
        1 => Just(("", "\t", "", "")),
        1 => Just(("", "", "", " ")),
    ]
}

/// A raw edit of JSON or token bytes at a position.
#[derive(Clone, Debug)]
enum ByteEdit {
    None,
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
}

fn some_byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(i, x)| ByteEdit::Flip(i, x)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        any::<Index>().prop_map(ByteEdit::Delete),
    ]
}

fn byte_edit(weight_none: u32) -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        weight_none => Just(ByteEdit::None),
        3 => some_byte_edit(),
    ]
}

fn apply_byte_edit(mut bytes: Vec<u8>, edit: &ByteEdit) -> Vec<u8> {
    match edit {
        ByteEdit::None => {}
        ByteEdit::Flip(i, x) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes[i] ^= x;
        }
        ByteEdit::Insert(i, b) => {
            let i = i.index(bytes.len() + 1);
            bytes.insert(i, *b);
        }
        ByteEdit::Delete(i) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes.remove(i);
        }
        _ => {}
    }
    bytes
}

/// Base64url alphabet edits of one segment, for byte flips that stay in the alphabet.
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#[derive(Clone, Debug)]
enum TokenEdit {
    None,
    /// A byte edit in segment 0, 1 or 2.
    Segment(Index, ByteEdit),
    /// Replace a character of a segment with another base64url character.
    Swap(Index, Index, Index),
    /// Set a spare bit in the last character of a segment (non-canonical tail).
    Tail(Index),
    /// Append `=` or `==` to a segment.
    Padding(Index, bool),
    /// Another segment, or one fewer.
    ExtraSegment(String),
    DropTag,
}

fn token_edit() -> impl Strategy<Value = TokenEdit> {
    prop_oneof![
        10 => Just(TokenEdit::None),
        2 => (any::<Index>(), some_byte_edit()).prop_map(|(s, e)| TokenEdit::Segment(s, e)),
        2 => (any::<Index>(), any::<Index>(), any::<Index>()).prop_map(|(s, i, c)| TokenEdit::Swap(s, i, c)),
        1 => any::<Index>().prop_map(TokenEdit::Tail),
        1 => (any::<Index>(), any::<bool>()).prop_map(|(s, two)| TokenEdit::Padding(s, two)),
        1 => "[A-Za-z0-9_-]{0,8}".prop_map(TokenEdit::ExtraSegment),
        1 => Just(TokenEdit::DropTag),
    ]
}

fn alphabet_value(c: u8) -> Option<usize> {
    ALPHABET.iter().position(|&a| a == c)
}

fn apply_token_edit(token: String, edit: &TokenEdit) -> String {
    let mut parts: Vec<Vec<u8>> = token.split('.').map(|p| p.as_bytes().to_vec()).collect();
    match edit {
        TokenEdit::None => {}
        TokenEdit::Segment(s, e) => {
            let s = s.index(parts.len());
            parts[s] = apply_byte_edit(std::mem::take(&mut parts[s]), e);
        }
        TokenEdit::Swap(s, i, c) => {
            let s = s.index(parts.len());
            if !parts[s].is_empty() {
                let i = i.index(parts[s].len());
                parts[s][i] = ALPHABET[c.index(64)];
            }
        }
        TokenEdit::Tail(s) => {
            let s = s.index(parts.len());
            let spare = match parts[s].len() % 4 {
                2 => 4,
                3 => 2,
                _ => 0,
            };
            if spare > 0
                && let Some(last) = parts[s].last_mut()
                && let Some(v) = alphabet_value(*last)
            {
                *last = ALPHABET[v | 1];
            }
        }
        TokenEdit::Padding(s, two) => {
            let s = s.index(parts.len());
            parts[s].extend_from_slice(if *two { b"==" } else { b"=" });
        }
        TokenEdit::ExtraSegment(extra) => parts.push(extra.as_bytes().to_vec()),
        TokenEdit::DropTag => {
            parts.pop();
        }
    }
    let joined: Vec<u8> = parts.join(&b'.');
    // A byte edit may leave invalid UTF-8; `verify` takes `&str`, so map it lossily.
    String::from_utf8_lossy(&joined).into_owned()
}

#[derive(Clone, Debug)]
enum HeaderChoice {
    Signer(&'static str),
    Text(String),
}

fn header_choice() -> impl Strategy<Value = HeaderChoice> {
    prop_oneof![
        12 => prop::sample::select(vec!["a", "b"]).prop_map(HeaderChoice::Signer),
        1 => Just(HeaderChoice::Text(header("a"))),
        1 => Just(HeaderChoice::Text(signer_header("c"))),
        3 => prop::sample::select(vec![
            r#"{"alg":"HS256","kid":"a"}"#,
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"alg":"HS256","kid":"a","typ":"jwt"}"#,
            r#"{"alg":"HS256","kid":"a","typ":"at+JWT"}"#,
            r#"{"alg":"HS256","kid":"a","typ":"JWS"}"#,
            r#"{"alg":"HS256","kid":"a","typ":"JWT","crit":[]}"#,
            r#"{"alg":"HS256","kid":"a","typ":"JWT","crit":["exp"]}"#,
            r#"{"alg":"HS256","kid":"a","typ":"JWT","cty":"JWT"}"#,
            r#"{"alg":"HS256","kid":"a","typ":"JWT","x":1}"#,
            r#"{"alg":"HS256","kid":"a","typ":"JWT","salt":"AA"}"#,
            r#"{"alg":"HS256","kid":"b","kid":"a","typ":"JWT"}"#,
            r#"{"alg":"HS512","kid":"a","typ":"JWT"}"#,
            r#"{"alg":"none","kid":"a","typ":"JWT"}"#,
            r#"{"alg":"HS256","kid":1,"typ":"JWT"}"#,
            r#"{ "alg":"HS256","kid":"a","typ":"JWT"}"#,
            r#"{"alg":"HS256","kid":"a","typ":"JWT"} "#,
            r#"{"alg":"HS256","kid":"\u0061","typ":"JWT"}"#,
            r#"{"alg":"HS256","kid":"a","typ":"JWT","kid":"a"}"#,
        ]).prop_map(|h| HeaderChoice::Text(h.to_string())),
    ]
}

#[derive(Clone, Debug)]
enum SigningKey {
    /// The key the header's kid names (a for anything but b).
    Right,
    Other,
    Random([u8; 32]),
}

fn signing_key() -> impl Strategy<Value = SigningKey> {
    prop_oneof![
        10 => Just(SigningKey::Right),
        1 => Just(SigningKey::Other),
        1 => proptest::array::uniform32(any::<u8>()).prop_map(SigningKey::Random),
    ]
}

/// A token built like the signer's, bent by the edits, and the `now` to verify it at.
#[derive(Clone, Debug)]
struct Case {
    token: String,
    now: u64,
}

fn base_time() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => Just(NOW),
        1 => 0u64..200,
        1 => Just(LATEST_NOW - 200),
        1 => 200u64..LATEST_NOW - 200,
    ]
}

fn case() -> impl Strategy<Value = Case> {
    base_time()
        .prop_flat_map(|base| {
            (
                (time_value(base), time_value(base), sid_value()),
                (
                    field_edit(base),
                    layout(),
                    byte_edit(20),
                    prop::bool::weighted(0.03),
                ),
                (header_choice(), byte_edit(30), signing_key()),
                token_edit(),
                (-200i64..200).prop_map(move |d| base.saturating_add_signed(d).min(LATEST_NOW)),
            )
        })
        .prop_map(
            |(
                (iat, exp, sid),
                (fields, layout, claims_edit, long),
                (header, header_edit, key),
                token_edit,
                now,
            )| {
                let mut list = vec![
                    ("iat".to_string(), iat),
                    ("exp".to_string(), exp),
                    ("sid".to_string(), sid),
                ];
                match fields {
                    FieldEdit::None => {}
                    FieldEdit::Permute(i) => {
                        let orders = [[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
                        let order = orders[i.index(orders.len())];
                        list = order.iter().map(|&j| list[j].clone()).collect();
                    }
                    FieldEdit::Remove(i) => {
                        list.remove(i.index(3));
                    }
                    FieldEdit::Duplicate(i, value) => {
                        let j = i.index(3);
                        let key = list[j].0.clone();
                        let value = if key == "sid" {
                            list[j].1.clone()
                        } else {
                            value
                        };
                        list.insert(i.index(4), (key, value));
                    }
                    FieldEdit::Extra(i, key, value) => list.insert(i.index(4), (key, value)),
                }
                if long {
                    // Over the 4096-byte limit only sometimes: lengths straddle it.
                    list.push(("pad".to_string(), format!("\"{}\"", "p".repeat(2980))));
                }
                let (open, colon, comma, close) = layout;
                let body: Vec<String> = list
                    .iter()
                    .map(|(k, v)| format!("\"{k}\"{colon}:{colon}{v}"))
                    .collect();
                let claims = format!("{{{open}{}{close}}}", body.join(&format!(",{comma}")));
                let claims = apply_byte_edit(claims.into_bytes(), &claims_edit);

                let (header_text, kid_is_b) = match &header {
                    HeaderChoice::Signer(kid) => (signer_header(kid), *kid == "b"),
                    HeaderChoice::Text(text) => (text.clone(), false),
                };
                let header_bytes = apply_byte_edit(header_text.into_bytes(), &header_edit);
                let (right, other): (&[u8], &[u8]) = if kid_is_b {
                    (KEY_B, KEY_A)
                } else {
                    (KEY_A, KEY_B)
                };
                let token = match &key {
                    SigningKey::Right => sign_raw(&header_bytes, &claims, right),
                    SigningKey::Other => sign_raw(&header_bytes, &claims, other),
                    SigningKey::Random(k) => sign_raw(&header_bytes, &claims, k),
                };
                Case {
                    token: apply_token_edit(token, &token_edit),
                    now,
                }
            },
        )
}

// ---------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6000))]

    #[test]
    fn fast_and_reference_agree_on_bent_tokens(case in case()) {
        let _ = compare(&case.token, case.now)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn signer_tokens_take_the_fast_path(
        sid in canonical_sid(),
        base in prop_oneof![Just(NOW), 0u64..LATEST_NOW],
        iat_d in -130i64..130,
        exp_d in -130i64..130,
        now_d in -200i64..200,
        second_key in any::<bool>(),
    ) {
        let iat = base.saturating_add_signed(iat_d).min(u32::MAX as u64);
        let exp = base.saturating_add_signed(exp_d).min(u32::MAX as u64);
        let now = base.saturating_add_signed(now_d).min(LATEST_NOW);
        let token = if second_key {
            sign_raw(signer_header("b").as_bytes(), signer_claims(&sid, iat, exp).as_bytes(), KEY_B)
        } else {
            sign(&RING, &SessionId::parse(&sid).unwrap(), iat, exp)
        };
        let (fast, verdict) = compare(&token, now)?;
        prop_assert!(fast, "the signer's shape must be decided by the fast path: {}", token);
        let expected = if iat > now + LEEWAY_SECS {
            Err(Rejection::IssuedInFuture)
        } else if now < LEEWAY_SECS || now - LEEWAY_SECS > exp {
            Err(Rejection::Expired)
        } else {
            Ok((iat, exp))
        };
        prop_assert_eq!(verdict.map(|v| (v.issued_at, v.expires_at)), expected);
    }

    #[test]
    fn agree_on_arbitrary_input(input in ".{0,300}", now in 0u64..=LATEST_NOW) {
        let _ = compare(&input, now)?;
    }

    #[test]
    fn agree_on_junk_after_the_signer_header(
        kid in prop::sample::select(vec!["a", "b"]),
        rest in "[A-Za-z0-9_\\-.=+/ ]{0,160}",
    ) {
        let token = format!("{}.{rest}", b64(signer_header(kid).as_bytes()));
        let _ = compare(&token, NOW)?;
    }

    #[test]
    fn agree_on_near_tokens(parts in proptest::collection::vec("[A-Za-z0-9_\\-=]{0,120}", 0..5)) {
        let _ = compare(&parts.join("."), NOW)?;
    }
}

// ---------------------------------------------------------------------------------------
// Fixed checks

#[test]
fn the_signer_emits_the_shape_the_fast_path_expects() {
    let sid = SessionId::parse(SID).unwrap();
    let token = sign(&RING, &sid, NOW, NOW + 3600);
    let expected = format!(
        "{}.{}.",
        b64(signer_header("a").as_bytes()),
        b64(signer_claims(SID, NOW, NOW + 3600).as_bytes())
    );
    assert!(
        token.starts_with(&expected),
        "jwt-simple changed its output: {token}"
    );
    assert_eq!(token.len(), expected.len() + 43);
    assert!(verify_fast(&RING, &token, NOW).is_some());
}

#[test]
fn leeway_boundaries_are_decided_by_the_fast_path_and_agree() {
    let sid = SessionId::parse(SID).unwrap();
    for base in [NOW, 0, 59, 60, 61, 120, LATEST_NOW - 120] {
        for d in -2i64..=2 {
            let now = base.saturating_add_signed(d).min(LATEST_NOW);
            for (iat, exp) in [
                (now + LEEWAY_SECS, now + 600),
                (now + LEEWAY_SECS + 1, now + 600),
                (now.saturating_sub(600), now.saturating_sub(LEEWAY_SECS)),
                (now.saturating_sub(600), now.saturating_sub(LEEWAY_SECS + 1)),
                (0, 0),
                (u32::MAX as u64, u32::MAX as u64),
            ] {
                let token = sign(&RING, &sid, iat, exp);
                let (fast, _) = compare(&token, now).unwrap();
                assert!(fast, "{iat} {exp} {now}");
            }
        }
    }
}

#[test]
fn what_the_fast_path_decides_and_what_it_leaves() {
    let sid = SessionId::parse(SID).unwrap();
    let good = sign(&RING, &sid, NOW, NOW + 3600);
    let (input, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{input}.{}", b64(&[7u8; 32]));
    let bad_sid = sign_raw(
        signer_header("a").as_bytes(),
        signer_claims(&format!("{}B", &SID[..42]), NOW, NOW + 60).as_bytes(),
        KEY_A,
    );
    let decided = [
        (good.clone(), NOW, None),
        (good.clone(), NOW + 3661, Some(Rejection::Expired)),
        (good.clone(), NOW - 61, Some(Rejection::IssuedInFuture)),
        (forged, NOW, Some(Rejection::BadSignature)),
        (bad_sid, NOW, Some(Rejection::MalformedSid)),
    ];
    for (token, now, rejection) in decided {
        let fast = verify_fast(&RING, &token, now).expect("decided by the fast path");
        assert_eq!(fast.as_ref().err().copied(), rejection, "{token}");
        assert_eq!(fast, verify_reference(&RING, &token, now));
    }

    let left = [
        // The contract's own spelling (kid before typ differs from the signer's).
        signed(&header("a"), &claims(SID, NOW, NOW + 60), KEY_A),
        // Claims in the contract's order.
        sign_raw(
            signer_header("a").as_bytes(),
            claims(SID, NOW, NOW + 60).as_bytes(),
            KEY_A,
        ),
        // Whitespace, an extra claim, a float, a time past 2^32 - 1.
        sign_raw(
            signer_header("a").as_bytes(),
            format!(r#"{{"iat":{NOW}, "exp":{},"sid":"{SID}"}}"#, NOW + 60).as_bytes(),
            KEY_A,
        ),
        sign_raw(
            signer_header("a").as_bytes(),
            format!(
                r#"{{"iat":{NOW},"exp":{},"nbf":1,"sid":"{SID}"}}"#,
                NOW + 60
            )
            .as_bytes(),
            KEY_A,
        ),
        sign_raw(
            signer_header("a").as_bytes(),
            format!(r#"{{"iat":{NOW}.0,"exp":{},"sid":"{SID}"}}"#, NOW + 60).as_bytes(),
            KEY_A,
        ),
        sign_raw(
            signer_header("a").as_bytes(),
            signer_claims(SID, NOW, 1 << 32).as_bytes(),
            KEY_A,
        ),
        // The hand-crafted fixture (contract order throughout).
        valid(),
        // Four segments, and a tag that is not 43 characters.
        format!("{good}.x"),
        good[..good.len() - 1].to_string(),
        format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES)),
    ];
    for token in left {
        assert!(verify_fast(&RING, &token, NOW).is_none(), "{token}");
        let _ = compare(&token, NOW).unwrap();
    }
    // The signer itself never writes a time past 2^32 - 1: coarsetime saturates it.
    assert_eq!(
        verify(&RING, &sign(&RING, &sid, NOW, 1 << 40), NOW).map(|v| v.expires_at),
        Ok(u64::from(u32::MAX))
    );
}

/// The bent-token generator is not vacuous: over a fixed sample it reaches the fast path's
/// every decision and the reference's every rejection that a token can cause.
#[test]
fn the_generator_reaches_every_outcome() {
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let mut seen = std::collections::BTreeMap::<(bool, &'static str), usize>::new();
    for _ in 0..6000 {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        let (fast, verdict) = compare(&case.token, case.now).unwrap();
        let name = verdict.as_ref().map_or_else(|r| r.as_str(), |_| "valid");
        *seen.entry((fast, name)).or_default() += 1;
    }
    eprintln!("(fast path decided, outcome) -> cases: {seen:?}");
    for outcome in [
        "valid",
        "bad_signature",
        "expired",
        "iat_in_future",
        "malformed_sid",
    ] {
        assert!(seen.contains_key(&(true, outcome)), "fast {outcome}");
    }
    for outcome in [
        "valid",
        "too_long",
        "wrong_segment_count",
        "bad_base64",
        "bad_json",
        "algorithm_not_allowed",
        "missing_kid",
        "unknown_kid",
        "bad_signature",
        "missing_exp",
        "expired",
        "missing_iat",
        "iat_in_future",
        "missing_sid",
        "malformed_sid",
    ] {
        assert!(seen.contains_key(&(false, outcome)), "reference {outcome}");
    }
}

/// The fuzz target's saved corpus (fuzz/corpus/token) through both paths, at the fuzz
/// target's times.
#[test]
fn the_fuzz_corpus_agrees() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/token");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let Ok(token) = std::str::from_utf8(&bytes) else {
            continue;
        };
        for now in [NOW, NOW - 3600, NOW + 7 * 86_400] {
            let _ = compare(token, now).unwrap();
        }
        checked += 1;
    }
    assert!(checked > 100, "{checked} corpus entries");
}
