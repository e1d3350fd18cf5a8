//! `Cookie` header parser fuzz target (`shared::cookie::cookie_values`): it must never
//! panic, every value it yields must be a `;`-free piece of the header, and junk before a
//! well-formed session pair must never hide it (a browser's other cookies cannot log the
//! user out).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::cookie::{INSECURE_NAME, SECURE_NAME, cookie_values};

/// A token-shaped value (the parser does not verify; any cookie-octet string would do).
const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzaWQiOiJ4In0.c2lnbmF0dXJl";

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    for name in [SECURE_NAME, INSECURE_NAME] {
        for value in cookie_values(header, name) {
            assert!(!value.contains(';'), "value {value:?} spans a separator");
            assert!(header.contains(value), "value {value:?} not taken from the header");
        }
        let combined = format!("{header}; {name}={TOKEN}");
        assert!(
            cookie_values(&combined, name).any(|v| v == TOKEN),
            "junk {header:?} hid the {name} cookie"
        );
        let quoted = format!("{header};{name}=\"{TOKEN}\"");
        assert!(
            cookie_values(&quoted, name).any(|v| v == TOKEN),
            "junk {header:?} hid the quoted {name} cookie"
        );
    }
});
