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
/// try each. Malformed pairs are skipped, not fatal.
pub fn cookie_values<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    Cookie::split_parse(header)
        .filter_map(Result::ok)
        .filter(move |c| c.name() == name)
        .filter_map(|c| c.value_raw())
        .map(|v| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
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
