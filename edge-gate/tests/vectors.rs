//! The shared test vectors (`shared/tests/vectors.json`), checked through the edge's
//! decision: every valid token opens a protected page and a protected API path, every
//! invalid one is bounced with the cookie cleared, for the reason the vector names; and
//! the raw `Cookie` headers give the edge the same session cookie as the origin.

use edge_gate::gate::cookie_state;
use edge_gate::{CookieState, Decision, EdgeConfig, decide};
use serde::Deserialize;
use shared::cookie::cookie_name;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    keys: String,
    cookie_secure: bool,
    vectors: Vec<Vector>,
    cookie_headers: Vec<CookieHeader>,
}

/// A `Cookie` header as raw bytes and the session cookie values in it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CookieHeader {
    name: String,
    now: u64,
    header_hex: String,
    values: Vec<String>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    now: u64,
    token: String,
    valid: bool,
    reason: Option<String>,
}

fn load() -> (File, EdgeConfig) {
    let file: File = serde_json::from_str(include_str!("../../shared/tests/vectors.json"))
        .expect("shared/tests/vectors.json parses");
    let secure = if file.cookie_secure { "true" } else { "false" };
    let config = EdgeConfig::from_vars(|name| match name {
        "ORIGIN_URL" => Some("http://127.0.0.1:8080".to_owned()),
        "SESSION_KEYS" => Some(file.keys.clone()),
        "COOKIE_SECURE" => Some(secure.to_owned()),
        _ => None,
    })
    .expect("the vectors' key ring is a valid configuration");
    (file, config)
}

#[test]
fn shared_vectors_through_the_decision() {
    let (file, config) = load();
    assert!(file.vectors.iter().any(|v| v.valid));
    assert!(file.vectors.iter().any(|v| !v.valid));

    for vector in &file.vectors {
        let name = &vector.name;
        let header = format!(
            "theme=dark; {}={}; lang=en",
            cookie_name(file.cookie_secure),
            vector.token
        );
        let state = cookie_state(&config, Some(&header), vector.now);
        let page = decide(
            &config,
            "/account",
            Some("tab=1"),
            Some(&header),
            vector.now,
        );
        let api = decide(&config, "/api/v1/auth/me", None, Some(&header), vector.now);

        if vector.valid {
            assert!(matches!(state, CookieState::Valid(_)), "{name}: {state:?}");
            assert_eq!(page, Decision::Proxy, "{name}");
            assert_eq!(api, Decision::Proxy, "{name}");
        } else if vector.token.is_empty() {
            // An empty cookie value is no cookie at all: bounced, nothing to clear.
            assert_eq!(state, CookieState::Absent, "{name}");
            assert_eq!(
                page,
                Decision::Redirect {
                    location: "/login?next=/account%3Ftab%3D1".into(),
                    clear_cookie: false
                },
                "{name}"
            );
            assert_eq!(
                api,
                Decision::Unauthorized {
                    clear_cookie: false
                },
                "{name}"
            );
        } else {
            let CookieState::Invalid(rejection) = state else {
                panic!("{name}: expected a rejection, got {state:?}");
            };
            assert_eq!(Some(rejection.as_str()), vector.reason.as_deref(), "{name}");
            assert_eq!(
                page,
                Decision::Redirect {
                    location: "/login?next=/account%3Ftab%3D1".into(),
                    clear_cookie: true
                },
                "{name}"
            );
            assert_eq!(api, Decision::Unauthorized { clear_cookie: true }, "{name}");
        }
        // Unprotected paths are proxied whatever the cookie.
        assert_eq!(
            decide(&config, "/accounting", None, Some(&header), vector.now),
            Decision::Proxy,
            "{name}"
        );
    }
}

/// The raw-byte `Cookie` headers: the Workers runtime hands a header to the worker as a
/// string with one character per byte (latin-1), so that is what the edge parses.
#[test]
fn shared_cookie_headers_through_the_decision() {
    let (file, config) = load();
    assert!(!file.cookie_headers.is_empty());
    for case in &file.cookie_headers {
        let name = &case.name;
        let bytes: Vec<u8> = (0..case.header_hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&case.header_hex[i..i + 2], 16).expect("hex"))
            .collect();
        let header: String = bytes.iter().map(|&b| char::from(b)).collect();
        let found: Vec<&str> =
            shared::cookie::cookie_values(&header, cookie_name(file.cookie_secure)).collect();
        assert_eq!(found, case.values, "{name}");
        let state = cookie_state(&config, Some(&header), case.now);
        let page = decide(&config, "/account", None, Some(&header), case.now);
        if case.values.is_empty() {
            assert!(!matches!(state, CookieState::Valid(_)), "{name}: {state:?}");
            assert!(
                matches!(page, Decision::Redirect { .. }),
                "{name}: {page:?}"
            );
        } else {
            assert!(matches!(state, CookieState::Valid(_)), "{name}: {state:?}");
            assert_eq!(page, Decision::Proxy, "{name}");
        }
    }
}
