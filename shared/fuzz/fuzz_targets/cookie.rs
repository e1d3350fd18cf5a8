//! `Cookie` header parser fuzz target (`shared::cookie::cookie_values_bytes`, which the
//! `&str` form wraps): it must never panic on any bytes, every value it yields must be an
//! ASCII, `;`-free piece of the header, and junk before a well-formed session pair must
//! never hide it (a browser's other cookies, whatever their bytes, cannot log the user out).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::cookie::{INSECURE_NAME, SECURE_NAME, cookie_values_bytes};

/// A token-shaped value (the parser does not verify; any cookie-octet string would do).
const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzaWQiOiJ4In0.c2lnbmF0dXJl";

fuzz_target!(|header: &[u8]| {
    for name in [SECURE_NAME, INSECURE_NAME] {
        for value in cookie_values_bytes(header, name) {
            assert!(value.is_ascii(), "value {value:?} is not ASCII");
            assert!(!value.contains(';'), "value {value:?} spans a separator");
            assert!(
                header.windows(value.len().max(1)).any(|w| w == value.as_bytes()) || value.is_empty(),
                "value {value:?} not taken from the header"
            );
        }
        let combined = [header, b"; ", name.as_bytes(), b"=", TOKEN.as_bytes()].concat();
        assert!(
            cookie_values_bytes(&combined, name).any(|v| v == TOKEN),
            "junk {header:?} hid the {name} cookie"
        );
        let quoted = [header, b";", name.as_bytes(), b"=\"", TOKEN.as_bytes(), b"\""].concat();
        assert!(
            cookie_values_bytes(&quoted, name).any(|v| v == TOKEN),
            "junk {header:?} hid the quoted {name} cookie"
        );
    }
});
