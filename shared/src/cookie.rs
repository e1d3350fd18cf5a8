//! The session cookie on the wire: its name, finding it in a `Cookie` header, and the
//! `Set-Cookie` values that set and clear it.
//!
//! The name is `__Host-session`; when `Secure` is switched off (plain-http development
//! only) it is `session`, because the `__Host-` prefix requires `Secure`.

use cookie::{Cookie, SameSite};

pub const SECURE_NAME: &str = "__Host-session";
pub const INSECURE_NAME: &str = "session";

/// The cookie name for this `Secure` setting.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_NAME } else { INSECURE_NAME }
}

/// Every value of the cookie `name` in a `Cookie` header, in order, with surrounding
/// quotes removed. Browsers may send duplicates (same name, different paths); callers
/// try each. Malformed pairs are skipped, not fatal. [`cookie_values_bytes`] on the
/// header's bytes.
pub fn cookie_values<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    cookie_values_bytes(header.as_bytes(), name)
}

/// Every value of the cookie `name` in a `Cookie` header given as raw bytes (one header
/// field's value; call it once per `Cookie` field), in order, with surrounding quotes
/// removed.
///
/// Pairs are separated by `;`; whitespace around names and values is ignored. A pair with
/// no `=`, an empty name, or any byte that is not ASCII or is a control character (tab
/// aside, which is whitespace) is skipped on its own: a browser's unrelated cookie (latin-1 or UTF-8 text, stray bytes)
/// never hides the session cookie. Yielded values are ASCII.
pub fn cookie_values_bytes<'a>(
    header: &'a [u8],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    header.split(|&b| b == b';').filter_map(move |pair| {
        let pair = pair.trim_ascii();
        if pair
            .iter()
            .any(|&b| !b.is_ascii() || (b.is_ascii_control() && b != b'\t'))
        {
            return None;
        }
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (found, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
        if found.is_empty() || found != name.as_bytes() {
            return None;
        }
        let value = std::str::from_utf8(value).ok()?;
        Some(
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value),
        )
    })
}

/// `Set-Cookie` value carrying `token`, living `max_age_secs`.
pub fn set_cookie(secure: bool, token: &str, max_age_secs: u64) -> String {
    build(secure, token, max_age_secs)
}

/// `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(secure: bool) -> String {
    build(secure, "", 0)
}

fn build(secure: bool, value: &str, max_age_secs: u64) -> String {
    let max_age = i64::try_from(max_age_secs).unwrap_or(i64::MAX);
    Cookie::build((cookie_name(secure), value))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age))
        .build()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(header: &'a str, name: &'a str) -> Vec<&'a str> {
        cookie_values(header, name).collect()
    }

    #[test]
    fn names() {
        assert_eq!(cookie_name(true), "__Host-session");
        assert_eq!(cookie_name(false), "session");
    }

    #[test]
    fn finds_among_many_with_odd_spacing_quotes_and_duplicates() {
        assert_eq!(values("a=1; __Host-session=tok; b=2", SECURE_NAME), ["tok"]);
        assert_eq!(values("a=1;__Host-session=tok;b=2", SECURE_NAME), ["tok"]);
        assert_eq!(values("  __Host-session =  tok  ;", SECURE_NAME), ["tok"]);
        assert_eq!(values("__Host-session=\"tok\"", SECURE_NAME), ["tok"]);
        assert_eq!(
            values("__Host-session=one; __Host-session=two", SECURE_NAME),
            ["one", "two"]
        );
        assert!(values("session=tok", SECURE_NAME).is_empty());
        assert!(values("__Host-sessionx=tok", SECURE_NAME).is_empty());
        assert!(values("", SECURE_NAME).is_empty());
        assert!(values(";;;=;", SECURE_NAME).is_empty());
        assert_eq!(values("junk; session=tok", INSECURE_NAME), ["tok"]);
        assert_eq!(values("a=1;\t__Host-session=tok\t", SECURE_NAME), ["tok"]);
        assert_eq!(values("__Host-session=a=b", SECURE_NAME), ["a=b"]);
    }

    fn byte_values<'a>(header: &'a [u8], name: &'a str) -> Vec<&'a str> {
        cookie_values_bytes(header, name).collect()
    }

    #[test]
    fn non_ascii_neighbours_never_hide_the_session_cookie() {
        for header in [
            &b"lang=caf\xe9; __Host-session=tok"[..],
            b"__Host-session=tok; lang=caf\xe9",
            b"\xff\xfe; __Host-session=tok; \x80=\x81",
            "name=Zo\u{eb}; __Host-session=tok".as_bytes(),
            b"a=\x01; __Host-session=tok; b=\x7f",
        ] {
            assert_eq!(byte_values(header, SECURE_NAME), ["tok"], "{header:?}");
        }
        // The session pair itself must be clean; a clean duplicate still counts.
        assert!(byte_values(b"__Host-session=t\xe9k", SECURE_NAME).is_empty());
        assert!(byte_values(b"__Host-session=t\x00k", SECURE_NAME).is_empty());
        assert_eq!(
            byte_values(b"__Host-session=\xe9; __Host-session=tok", SECURE_NAME),
            ["tok"]
        );
        // The str form is the same parser.
        assert_eq!(
            values("lang=caf\u{e9}; __Host-session=tok", SECURE_NAME),
            ["tok"]
        );
    }

    #[test]
    fn set_and_clear_attributes() {
        let set = set_cookie(true, "a.b.c", 3600);
        assert!(set.starts_with("__Host-session=a.b.c"), "{set}");
        for attribute in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(
                set.split("; ").any(|p| p == attribute),
                "{attribute} in {set}"
            );
        }
        assert!(!set.contains("Domain"));

        let clear = clear_cookie(true);
        assert!(clear.starts_with("__Host-session=;"), "{clear}");
        assert!(clear.split("; ").any(|p| p == "Max-Age=0"), "{clear}");
        assert!(clear.split("; ").any(|p| p == "Path=/"), "{clear}");

        let insecure = set_cookie(false, "t", 5);
        assert!(insecure.starts_with("session=t"));
        assert!(!insecure.contains("Secure"));
    }
}
