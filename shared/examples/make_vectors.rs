//! Writes the test vectors that the native suite and the edge both check:
//! `cargo run -p shared --example make_vectors > shared/tests/vectors.json`.
//! Tokens are deterministic (fixed keys, times and session id), so the output is stable.

#[path = "../tests/common/craft.rs"]
mod craft;

use craft::*;
use serde_json::json;
use shared::cookie::{SECURE_NAME, cookie_values_bytes};
use shared::{KeyRing, SessionId, sign, verify};

fn main() {
    let ring = KeyRing::parse(RING).unwrap();
    let sid = SessionId::parse(SID).unwrap();
    let body = claims(SID, NOW, NOW + 3600);
    let none_token = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"a"}"#),
        b64(body.as_bytes())
    );
    let tampered = {
        let token = valid();
        let (rest, _) = token.rsplit_once('.').unwrap();
        let (header_part, _) = rest.split_once('.').unwrap();
        let tag = token.rsplit_once('.').unwrap().1;
        format!(
            "{header_part}.{}.{tag}",
            b64(claims(SID, NOW, NOW + 999_999).as_bytes())
        )
    };
    let cases: Vec<(&str, u64, String)> = vec![
        (
            "signed by the first key",
            NOW,
            sign(&ring, &sid, NOW, NOW + 3600),
        ),
        (
            "signed by the second key",
            NOW,
            signed(&header("b"), &body, KEY_B),
        ),
        ("expired within leeway", NOW + 3660, valid()),
        ("expired beyond leeway", NOW + 3661, valid()),
        ("issued in the future beyond leeway", NOW - 61, valid()),
        ("alg none", NOW, none_token),
        (
            "alg HS512",
            NOW,
            signed(r#"{"alg":"HS512","typ":"JWT","kid":"a"}"#, &body, KEY_A),
        ),
        (
            "no kid",
            NOW,
            signed(r#"{"alg":"HS256","typ":"JWT"}"#, &body, KEY_A),
        ),
        ("unknown kid", NOW, signed(&header("zz"), &body, KEY_A)),
        (
            "kid path traversal",
            NOW,
            signed(&header("../../etc/passwd"), &body, KEY_A),
        ),
        ("wrong key for kid", NOW, signed(&header("a"), &body, KEY_B)),
        ("claims tampered", NOW, tampered),
        (
            "no exp",
            NOW,
            signed(
                &header("a"),
                &format!(r#"{{"sid":"{SID}","iat":{NOW}}}"#),
                KEY_A,
            ),
        ),
        (
            "no sid",
            NOW,
            signed(
                &header("a"),
                &format!(r#"{{"iat":{NOW},"exp":{}}}"#, NOW + 60),
                KEY_A,
            ),
        ),
        (
            "sql in sid",
            NOW,
            signed(&header("a"), &claims("' OR 1=1 --", NOW, NOW + 60), KEY_A),
        ),
        ("two segments", NOW, "abc.def".into()),
        ("four segments", NOW, format!("{}.x", valid())),
        ("bad base64", NOW, "***.***.***".into()),
        ("header not json", NOW, format!("{}.e30.AAAA", b64(b"nope"))),
        ("too long", NOW, format!("{}{}", valid(), "A".repeat(4096))),
        ("empty", NOW, String::new()),
    ];
    let vectors: Vec<_> = cases
        .into_iter()
        .map(|(name, now, token)| {
            let verdict = verify(&ring, &token, now);
            json!({
                "name": name,
                "now": now,
                "token": token,
                "valid": verdict.is_ok(),
                "reason": verdict.err().map(|r| r.as_str()),
            })
        })
        .collect();
    let file = json!({
        "keys": RING,
        "cookieSecure": true,
        "vectors": vectors,
        "cookieHeaders": cookie_headers(&valid()),
    });
    println!("{}", serde_json::to_string_pretty(&file).unwrap());
}

/// `Cookie` headers as raw bytes (hex, since they need not be UTF-8) and the session cookie
/// values a parser must find in them (`__Host-session`): an unrelated cookie's non-ASCII
/// bytes never hide the session cookie. `now` is when `token` is valid.
fn cookie_headers(token: &str) -> serde_json::Value {
    let t = token.as_bytes();
    let join = |parts: &[&[u8]]| parts.concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "latin-1 byte in a cookie before the session cookie",
            join(&[b"lang=caf\xe9; __Host-session=", t]),
        ),
        (
            "latin-1 byte in a cookie after the session cookie",
            join(&[b"__Host-session=", t, b"; lang=caf\xe9"]),
        ),
        (
            "UTF-8 text in another cookie",
            join(&["name=Zo\u{eb} \u{65e5}; __Host-session=".as_bytes(), t]),
        ),
        (
            "stray high bytes and control characters in other pairs",
            join(&[
                b"\xff\xfe; a=\x01; __Host-session=",
                t,
                b"; \x80=\x81; b=\x7f",
            ]),
        ),
        (
            "malformed pairs around the session cookie",
            join(&[b";;=;junk; __Host-session=", t, b";=x;"]),
        ),
        ("quoted value", join(&[b"__Host-session=\"", t, b"\""])),
        (
            "non-ASCII inside the session value: skipped",
            join(&[b"__Host-session=", &t[..10], b"\xe9", &t[10..]]),
        ),
        (
            "non-ASCII session pair, then a clean duplicate",
            join(&[b"__Host-session=\xe9; __Host-session=", t]),
        ),
        ("no session cookie", b"a=1; b=\xe9".to_vec()),
        (
            "the insecure name is another cookie",
            join(&[b"session=", t]),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, header)| {
            let values: Vec<&str> = cookie_values_bytes(&header, SECURE_NAME).collect();
            let hex: String = header.iter().map(|b| format!("{b:02x}")).collect();
            json!({ "name": name, "now": NOW, "headerHex": hex, "values": values })
        })
        .collect()
}
