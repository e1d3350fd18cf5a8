//! The signed identity assertion against gateway-v1 "Signed assertion": the token and JWK
//! Set shapes, a round trip, rotation, and every way a token must be refused (forgeries,
//! `alg: none`, HS256 keyed with the public key, wrong audience, times, claims).

use ct_codecs::{Base64, Base64UrlSafeNoPadding, Decoder, Encoder};
use serde_json::{Value, json};
use shared::assertion::{
    ASSERTION_LEEWAY_SECS, ASSERTION_LIFETIME_SECS, Assertion, AssertionError, AssertionKeys,
    AssertionKeysError, Identity, Jwks, JwksError, MAX_ASSERTION_BYTES, verify,
};
use shared::rules::Role;

const NOW: u64 = 1_800_000_000;
const AUD: &str = "app.example:8443";
const SEED_A: [u8; 32] = [7; 32];
const SEED_B: [u8; 32] = [9; 32];

fn b64(bytes: &[u8]) -> String {
    Base64::encode_to_string(bytes).unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

fn keys_spec(pairs: &[(&str, [u8; 32])]) -> String {
    pairs
        .iter()
        .map(|(kid, seed)| format!("{kid}:{}", b64(seed)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Keys `a` (signs) and `b`.
fn keys() -> AssertionKeys {
    AssertionKeys::parse(&keys_spec(&[("a", SEED_A), ("b", SEED_B)])).unwrap()
}

fn identity() -> Identity {
    Identity {
        user_id: "user-1".into(),
        email: "zoë@example.com".into(),
        name: "Zoë \"Z\" Example".into(),
        role: Role::Admin,
        session: "c2Vzc2lvbi1oYXNoLWZvci10ZXN0cy1vbmx5LWFiY2RlZg".into(),
    }
}

fn assertion() -> Assertion {
    Assertion {
        issuer: "https://app.example:8443".into(),
        audience: AUD.into(),
        identity: identity(),
        issued_at: NOW,
        jwt_id: "jti-1".into(),
    }
}

fn jwks() -> Jwks {
    keys().jwks()
}

fn part(token: &str, index: usize) -> Value {
    let bytes =
        Base64UrlSafeNoPadding::decode_to_vec(token.split('.').nth(index).unwrap(), None).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A token with any header and claims, signed with Ed25519 `seed` (deterministically).
fn crafted(header: &Value, claims: &Value, seed: [u8; 32]) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
    let signature = pair.sk.sign(input.as_bytes(), None);
    format!("{input}.{}", b64url(&signature[..]))
}

fn header(kid: &str) -> Value {
    json!({"alg": "EdDSA", "typ": "JWT", "kid": kid})
}

fn claims() -> Value {
    json!({
        "iss": "https://app.example:8443", "aud": AUD, "sub": "user-1",
        "email": "a@example.com", "name": "", "role": "USER", "sid": "s",
        "iat": NOW, "exp": NOW + 60, "jti": "j",
    })
}

fn with(mut value: Value, key: &str, replacement: Option<Value>) -> Value {
    let object = value.as_object_mut().unwrap();
    match replacement {
        Some(v) => object.insert(key.into(), v),
        None => object.remove(key),
    };
    value
}

fn reject(token: &str) -> AssertionError {
    verify(&jwks(), token, AUD, NOW).expect_err("must be refused")
}

#[test]
fn signs_the_contract_format_and_round_trips() {
    let token = keys().sign(&assertion());
    assert_eq!(
        part(&token, 0),
        json!({"alg": "EdDSA", "typ": "JWT", "kid": "a"})
    );
    assert_eq!(
        part(&token, 1),
        json!({
            "iss": "https://app.example:8443",
            "aud": AUD,
            "sub": "user-1",
            "email": "zoë@example.com",
            "name": "Zoë \"Z\" Example",
            "role": "ADMIN",
            "sid": "c2Vzc2lvbi1oYXNoLWZvci10ZXN0cy1vbmx5LWFiY2RlZg",
            "iat": NOW,
            "exp": NOW + ASSERTION_LIFETIME_SECS,
            "jti": "jti-1",
        })
    );
    let verified = verify(&jwks(), &token, AUD, NOW).unwrap();
    assert_eq!(verified.identity, identity());
    assert_eq!(verified.issuer, "https://app.example:8443");
    assert_eq!((verified.issued_at, verified.expires_at), (NOW, NOW + 60));
    assert_eq!(verified.jwt_id, "jti-1");
    assert_eq!(verified.kid, "a");
    // Through the JWK Set's JSON, as an app would fetch it.
    let fetched = Jwks::parse(&jwks().to_json()).unwrap();
    assert_eq!(
        verify(&fetched, &token, AUD, NOW + 30).unwrap().identity,
        identity()
    );
    // A user without a name: the empty string.
    let nameless = Assertion {
        identity: Identity {
            name: String::new(),
            ..identity()
        },
        ..assertion()
    };
    let token = keys().sign(&nameless);
    assert_eq!(verify(&jwks(), &token, AUD, NOW).unwrap().identity.name, "");
}

#[test]
fn jwks_shape() {
    let value: Value = serde_json::from_str(&jwks().to_json()).unwrap();
    let pair = |seed| ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
    assert_eq!(
        value,
        json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "a", "alg": "EdDSA", "use": "sig",
             "x": b64url(&pair(SEED_A).pk[..])},
            {"kty": "OKP", "crv": "Ed25519", "kid": "b", "alg": "EdDSA", "use": "sig",
             "x": b64url(&pair(SEED_B).pk[..])},
        ]})
    );
    assert_eq!(serde_json::to_value(jwks()).unwrap(), value);
    assert!(
        !jwks().to_json().contains(&b64url(&SEED_A)),
        "no private material"
    );
}

#[test]
fn rotation_publishes_every_key() {
    let rotated = AssertionKeys::parse(&keys_spec(&[("b", SEED_B), ("a", SEED_A)])).unwrap();
    assert_eq!(rotated.signing_kid(), "b");
    let token = rotated.sign(&assertion());
    assert_eq!(part(&token, 0)["kid"], "b");
    // Published alongside the old key: a token signed by either verifies.
    let both = rotated.jwks();
    assert_eq!(both.kids().collect::<Vec<_>>(), ["b", "a"]);
    assert_eq!(verify(&both, &token, AUD, NOW).unwrap().kid, "b");
    assert_eq!(
        verify(&both, &keys().sign(&assertion()), AUD, NOW)
            .unwrap()
            .kid,
        "a"
    );
    // Once `b` is dropped, its tokens die.
    let only_a = AssertionKeys::parse(&keys_spec(&[("a", SEED_A)]))
        .unwrap()
        .jwks();
    assert_eq!(
        verify(&only_a, &token, AUD, NOW),
        Err(AssertionError::UnknownKid)
    );
}

#[test]
fn forged_tokens_are_refused() {
    // Signed with a key that is not published, under a published kid.
    let forged = crafted(&header("a"), &claims(), [3; 32]);
    assert_eq!(reject(&forged), AssertionError::BadSignature);
    // The published key `b` signed it, but the header says `a`.
    assert_eq!(
        reject(&crafted(&header("a"), &claims(), SEED_B)),
        AssertionError::BadSignature
    );
    // Claims swapped under a genuine signature.
    let genuine = keys().sign(&assertion());
    let mut pieces: Vec<&str> = genuine.split('.').collect();
    let elevated = b64url(
        with(claims(), "role", Some(json!("ADMIN")))
            .to_string()
            .as_bytes(),
    );
    pieces[1] = &elevated;
    assert_eq!(reject(&pieces.join(".")), AssertionError::BadSignature);
    // A signature of the wrong length.
    let short = format!(
        "{}.{}",
        genuine.rsplit_once('.').unwrap().0,
        b64url(&[1; 32])
    );
    assert_eq!(reject(&short), AssertionError::BadSignature);
    // A non-canonical spelling of a genuine signature (spare bits of the last character set).
    let good = crafted(&header("a"), &claims(), SEED_A);
    assert!(verify(&jwks(), &good, AUD, NOW).is_ok());
    let (input, signature) = good.rsplit_once('.').unwrap();
    let mut chars: Vec<char> = signature.chars().collect();
    let last = chars.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.find(last).unwrap();
    chars.push(alphabet.chars().nth(index ^ 1).unwrap());
    let respelled = format!("{input}.{}", chars.into_iter().collect::<String>());
    assert_eq!(reject(&respelled), AssertionError::Malformed);
}

#[test]
fn other_algorithms_are_refused() {
    let body = b64url(claims().to_string().as_bytes());
    let none = format!(
        "{}.{body}.",
        b64url(
            json!({"alg": "none", "typ": "JWT", "kid": "a"})
                .to_string()
                .as_bytes()
        )
    );
    assert_eq!(reject(&none), AssertionError::AlgorithmNotAllowed);

    // HS256 keyed with the published public key bytes (the classic key-confusion attack).
    let public = Base64UrlSafeNoPadding::decode_to_vec(
        serde_json::from_str::<Value>(&jwks().to_json()).unwrap()["keys"][0]["x"]
            .as_str()
            .unwrap(),
        None,
    )
    .unwrap();
    let input = format!(
        "{}.{body}",
        b64url(
            json!({"alg": "HS256", "typ": "JWT", "kid": "a"})
                .to_string()
                .as_bytes()
        )
    );
    let tag = hmac_sha256::HMAC::mac(input.as_bytes(), &public);
    assert_eq!(
        reject(&format!("{input}.{}", b64url(&tag))),
        AssertionError::AlgorithmNotAllowed
    );
    // The same keyed with the x value's text.
    let x = serde_json::from_str::<Value>(&jwks().to_json()).unwrap()["keys"][0]["x"].clone();
    let tag = hmac_sha256::HMAC::mac(input.as_bytes(), x.as_str().unwrap().as_bytes());
    assert_eq!(
        reject(&format!("{input}.{}", b64url(&tag))),
        AssertionError::AlgorithmNotAllowed
    );

    for alg in ["Ed25519", "eddsa", "ES256", "RS256", "HS512"] {
        let token = crafted(
            &json!({"alg": alg, "typ": "JWT", "kid": "a"}),
            &claims(),
            SEED_A,
        );
        assert_eq!(reject(&token), AssertionError::AlgorithmNotAllowed, "{alg}");
    }
    let no_alg = crafted(&json!({"typ": "JWT", "kid": "a"}), &claims(), SEED_A);
    assert_eq!(reject(&no_alg), AssertionError::AlgorithmNotAllowed);
}

#[test]
fn kid_rules() {
    let no_kid = crafted(&json!({"alg": "EdDSA", "typ": "JWT"}), &claims(), SEED_A);
    assert_eq!(reject(&no_kid), AssertionError::MissingKid);
    assert_eq!(
        reject(&crafted(&header("zz"), &claims(), SEED_A)),
        AssertionError::UnknownKid
    );
    let numeric = crafted(&json!({"alg": "EdDSA", "kid": 1}), &claims(), SEED_A);
    assert_eq!(reject(&numeric), AssertionError::UnknownKid);
}

#[test]
fn audience_must_match_exactly() {
    let token = keys().sign(&assertion());
    for other in ["app.example", "app.example:443", "APP.EXAMPLE:8443", ""] {
        assert_eq!(
            verify(&jwks(), &token, other, NOW),
            Err(AssertionError::WrongAudience),
            "{other}"
        );
    }
    let array = crafted(
        &header("a"),
        &with(claims(), "aud", Some(json!([AUD]))),
        SEED_A,
    );
    assert_eq!(reject(&array), AssertionError::WrongAudience);
    let missing = crafted(&header("a"), &with(claims(), "aud", None), SEED_A);
    assert_eq!(reject(&missing), AssertionError::MissingClaim("aud"));
}

#[test]
fn times() {
    let token = keys().sign(&assertion());
    let leeway = ASSERTION_LEEWAY_SECS;
    assert!(verify(&jwks(), &token, AUD, NOW + 60 + leeway).is_ok());
    assert_eq!(
        verify(&jwks(), &token, AUD, NOW + 60 + leeway + 1),
        Err(AssertionError::Expired)
    );
    assert!(verify(&jwks(), &token, AUD, NOW - leeway).is_ok());
    assert_eq!(
        verify(&jwks(), &token, AUD, NOW - leeway - 1),
        Err(AssertionError::IssuedInFuture)
    );
    // Lifetime over 60 s, or exp before iat.
    let long = crafted(
        &header("a"),
        &with(claims(), "exp", Some(json!(NOW + 61))),
        SEED_A,
    );
    assert_eq!(reject(&long), AssertionError::BadLifetime);
    let backwards = crafted(
        &header("a"),
        &with(claims(), "exp", Some(json!(NOW - 1))),
        SEED_A,
    );
    assert_eq!(
        verify(&jwks(), &backwards, AUD, NOW - 2),
        Err(AssertionError::BadLifetime)
    );
}

#[test]
fn every_claim_is_required() {
    for claim in [
        "iss", "sub", "email", "name", "role", "sid", "iat", "exp", "jti",
    ] {
        let token = crafted(&header("a"), &with(claims(), claim, None), SEED_A);
        assert_eq!(
            reject(&token),
            AssertionError::MissingClaim(claim),
            "{claim}"
        );
    }
    let bad_role = crafted(
        &header("a"),
        &with(claims(), "role", Some(json!("ROOT"))),
        SEED_A,
    );
    assert_eq!(reject(&bad_role), AssertionError::BadClaim("role"));
    let null_name = crafted(
        &header("a"),
        &with(claims(), "name", Some(Value::Null)),
        SEED_A,
    );
    // A null name is never issued (it is written as ""): refused like a missing one.
    assert_eq!(reject(&null_name), AssertionError::MissingClaim("name"));
    let numeric_email = crafted(
        &header("a"),
        &with(claims(), "email", Some(json!(5))),
        SEED_A,
    );
    assert_eq!(reject(&numeric_email), AssertionError::BadClaim("email"));
    let numeric_sub = crafted(&header("a"), &with(claims(), "sub", Some(json!(5))), SEED_A);
    assert_eq!(reject(&numeric_sub), AssertionError::Malformed);
}

#[test]
fn structural_rejections() {
    let token = keys().sign(&assertion());
    for bad in [
        String::new(),
        "a.b".into(),
        format!("{token}.x"),
        "***.***.***".into(),
        format!("{}.e30.AAAA", b64url(b"not json")),
    ] {
        assert_eq!(reject(&bad), AssertionError::Malformed, "{bad:?}");
    }
    let long = format!("{token}{}", "A".repeat(MAX_ASSERTION_BYTES));
    assert_eq!(reject(&long), AssertionError::TooLong);
}

#[test]
fn key_spec_errors_never_show_key_material() {
    let a = b64(&SEED_A);
    let short = b64(&[1; 31]);
    let long = b64(&[1; 33]);
    let cases = [
        (String::new(), AssertionKeysError::Empty),
        (
            format!("a:{a},"),
            AssertionKeysError::EmptyEntry { entry: 2 },
        ),
        (a.clone(), AssertionKeysError::MissingColon { entry: 1 }),
        (
            format!("bad/kid:{a}"),
            AssertionKeysError::BadKid { entry: 1 },
        ),
        (
            format!("a:{a},a:{a}"),
            AssertionKeysError::DuplicateKid { kid: "a".into() },
        ),
        (
            "a:not*base64".into(),
            AssertionKeysError::BadBase64 { kid: "a".into() },
        ),
        (
            format!("a:{short}"),
            AssertionKeysError::WrongSeedLength {
                kid: "a".into(),
                bytes: 31,
            },
        ),
        (
            format!("a:{long}"),
            AssertionKeysError::WrongSeedLength {
                kid: "a".into(),
                bytes: 33,
            },
        ),
        (
            format!("a:{}", b64(&[0; 32])),
            AssertionKeysError::WeakSeed { kid: "a".into() },
        ),
    ];
    for (spec, expected) in cases {
        let err = AssertionKeys::parse(&spec).unwrap_err();
        assert_eq!(err, expected, "{spec:?}");
        let message = err.to_string();
        for material in [&a, &short, &long] {
            assert!(
                !message.contains(material.trim_end_matches('=')),
                "{message}"
            );
        }
    }
    // URL-safe alphabet, no padding: the same key.
    let url_safe = format!("a:{}", b64url(&SEED_A));
    let token = AssertionKeys::parse(&url_safe).unwrap().sign(&assertion());
    assert!(verify(&jwks(), &token, AUD, NOW).is_ok());
    let debug = format!("{:?}", keys());
    assert!(
        debug.contains("\"a\"") && debug.contains("\"b\""),
        "{debug}"
    );
    assert!(!debug.contains(&a) && !debug.contains("7, 7"), "{debug}");
}

#[test]
fn jwks_parsing() {
    let x = |seed| {
        b64url(&ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed)).pk[..])
    };
    let set = json!({"keys": [
        {"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "crv": "P-256", "kid": "e", "x": "AA", "y": "AA"},
        {"kty": "OKP", "crv": "X25519", "kid": "x", "x": x(SEED_A)},
        {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": x(SEED_A)},
        {"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": x(SEED_A), "extra": true},
        "not an object",
    ]});
    let parsed = Jwks::parse(&set.to_string()).unwrap();
    assert_eq!(parsed.kids().collect::<Vec<_>>(), ["a"]);
    assert!(verify(&parsed, &keys().sign(&assertion()), AUD, NOW).is_ok());

    assert_eq!(Jwks::parse("[]").unwrap_err(), JwksError::NotAJwkSet);
    assert_eq!(Jwks::parse("{}").unwrap_err(), JwksError::NotAJwkSet);
    let okp = |kid: Value, x: Value| {
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": x}]}).to_string()
    };
    assert_eq!(
        Jwks::parse(&okp(Value::Null, json!(x(SEED_A)))).unwrap_err(),
        JwksError::BadKid { index: 0 }
    );
    assert_eq!(
        Jwks::parse(&okp(json!("k"), json!("AAAA"))).unwrap_err(),
        JwksError::BadPublicKey { kid: "k".into() }
    );
    let twice = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": x(SEED_A)},
        {"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": x(SEED_B)},
    ]});
    assert_eq!(
        Jwks::parse(&twice.to_string()).unwrap_err(),
        JwksError::DuplicateKid { kid: "k".into() }
    );
    // An empty set verifies nothing.
    let empty = Jwks::parse(r#"{"keys":[]}"#).unwrap();
    assert_eq!(
        verify(&empty, &keys().sign(&assertion()), AUD, NOW),
        Err(AssertionError::UnknownKid)
    );
}
