//! `next` sanitiser fuzz target (`shared::paths::safe_next` and `login_location`): an
//! accepted `next`, resolved the way a browser resolves a link on the site, must stay on
//! the site; the login `Location` must be a same-site `/login` URL made of printable ASCII
//! only (no header injection), whose `next` query value decodes back to exactly the
//! accepted input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::paths::{MAX_NEXT_LEN, login_location, safe_next};
use url::Url;

const SITE: &str = "https://app.example/login";

fn stays_on_site(url: &Url) {
    assert_eq!(url.scheme(), "https", "{url} changed scheme");
    assert_eq!(url.host_str(), Some("app.example"), "{url} left the site");
    assert_eq!(url.port(), None, "{url} changed port");
    assert!(url.username().is_empty() && url.password().is_none(), "{url} gained userinfo");
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let site = Url::parse(SITE).expect("site URL");

    if let Some(next) = safe_next(input) {
        assert_eq!(next, input, "safe_next must return its input unchanged");
        assert!(input.len() <= MAX_NEXT_LEN);
        if let Ok(resolved) = site.join(next) {
            stays_on_site(&resolved);
        }
    }

    let location = login_location(input);
    assert!(
        location.bytes().all(|b| b.is_ascii_graphic()),
        "Location {location:?} has a byte a header must not carry"
    );
    let resolved = site.join(&location).expect("Location resolves");
    stays_on_site(&resolved);
    assert_eq!(resolved.path(), "/login");
    let next = resolved
        .query_pairs()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned());
    match safe_next(input) {
        Some(accepted) => assert_eq!(next.as_deref(), Some(accepted), "next did not round-trip"),
        None => {
            assert_eq!(location, "/login", "an unsafe next must be dropped");
        }
    }
});
