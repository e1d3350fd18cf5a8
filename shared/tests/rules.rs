//! Properties of the access rules: every request gets exactly one answer, percent-encoding
//! of unreserved characters never changes it, and no spelling trick moves a path out from
//! under a longer prefix without being refused.

use proptest::prelude::*;
use shared::paths::MountPath;
use shared::rules::{
    AccessRules, NavigationHeaders, PathRefusal, Policy, RequestFacts, Role, RuleError, Verdict,
    normalise_path,
};

const RULES: &str = "/ = public; /app = authenticated; /admin = role:ADMIN; \
                     GET,HEAD /app/status = public; /admin/public = public; DELETE /docs = deny";

fn rules() -> AccessRules {
    AccessRules::parse(RULES).unwrap()
}

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
    ])
}

fn session() -> impl Strategy<Value = Option<Role>> {
    prop::sample::select(vec![None, Some(Role::User), Some(Role::Admin)])
}

/// Path pieces that matter to the rules, plus the spelling tricks an attacker would try.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "app",
            "admin",
            "status",
            "public",
            "docs",
            "x",
            "ADMIN",
            "%61dmin",
            "%41dmin",
            "adm%69n",
            ".",
            "..",
            "%2e",
            "%2E",
            "%2e%2e",
            ".%2e",
            "%2E.",
            "",
            "%2F",
            "%2f",
            "%5C",
            "%5c",
            "\\",
            "%00",
            "..;",
            "a;b",
            "%3B",
            "%25",
            "%252F",
            "%zz",
            "admin%2F..",
            "caf%C3%A9",
            "~",
            "%7e",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9._~-]{0,6}",
    ]
}

fn raw_path() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 0..7), any::<bool>()).prop_map(|(segments, trailing)| {
        let mut path = format!("/{}", segments.join("/"));
        if trailing {
            path.push('/');
        }
        path
    })
}

/// How a lenient app might read a path: every escape decoded (so `%2F` becomes `/`),
/// backslashes as `/`, dot segments resolved, empty segments dropped. `None` when the
/// bytes are not UTF-8 after decoding.
fn lenient_reading(raw: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?
        .replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    Some(format!("/{}", segments.join("/")))
}

fn under(prefix: &str, path: &str) -> bool {
    shared::paths::prefix_matches(prefix, path)
}

/// Percent-encodes the unreserved characters of `path` picked by `mask`, with upper- or
/// lower-case hex. Existing escapes are copied as they are.
fn encode_some(path: &str, mask: &[bool], lower: &[bool]) -> String {
    let mut out = String::new();
    let mut chars = path.chars().enumerate();
    while let Some((i, c)) = chars.next() {
        if c == '%' {
            out.push(c);
            out.extend(chars.by_ref().take(2).map(|(_, c)| c));
            continue;
        }
        let pick = mask[i % mask.len()];
        if pick && (c.is_ascii_alphanumeric() || "-._~".contains(c)) {
            let hex = format!("%{:02X}", c as u32);
            out.push_str(&if lower[i % lower.len()] {
                hex.to_lowercase()
            } else {
                hex
            });
        } else {
            out.push(c);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Any rule set and any path: one answer, no panic; a redirect always goes to the login
    /// page under the mount.
    #[test]
    fn every_request_gets_exactly_one_answer(
        spec in prop::collection::vec(
            (prop::sample::select(vec!["", "GET ", "POST,PUT "]), raw_path(),
             prop::sample::select(vec!["public", "authenticated", "role:ADMIN", "role:USER", "deny"])),
            0..6,
        ),
        path in raw_path(),
        any_path in "\\PC{0,40}",
        method in method(),
        session in session(),
        accept in prop::option::of(prop::sample::select(vec!["text/html", "application/json", "*/*"])),
        mount in prop::sample::select(vec!["/", "/auth"]),
    ) {
        let text: Vec<String> = spec.iter().map(|(m, p, pol)| format!("{m}{p} = {pol}")).collect();
        // A random rule set may be refused (conflicting or unusable prefixes): that is an
        // answer too. A refused set must name one of its rules.
        let rules = match AccessRules::parse(&text.join(";")) {
            Ok(rules) => rules,
            Err(RuleError::Empty) => {
                prop_assert!(text.is_empty());
                AccessRules::parse("/ = deny").unwrap()
            }
            Err(err @ RuleError::Invalid { .. }) => {
                let RuleError::Invalid { rule, .. } = &err else { unreachable!() };
                prop_assert!(text.join(";").contains(rule.as_str()), "{}", err);
                prop_assert!(err.to_string().contains(rule.as_str()));
                AccessRules::parse("/ = deny").unwrap()
            }
        };
        let mount = MountPath::parse(mount).unwrap();
        let rooted = format!("/{any_path}");
        for path in [path.as_str(), any_path.as_str(), rooted.as_str()] {
            let request = RequestFacts {
                method,
                path,
                query: Some("q=1"),
                headers: NavigationHeaders { accept, ..NavigationHeaders::default() },
            };
            match rules.decide_request(&mount, &request, session) {
                Verdict::Redirect { location } => {
                    prop_assert!(session.is_none());
                    prop_assert!(location.starts_with(&mount.join("/login")), "{location}");
                }
                Verdict::Forbidden => prop_assert!(session.is_some()),
                Verdict::Unauthorized => prop_assert!(session.is_none()),
                Verdict::Allow | Verdict::BadRequest(_) => {}
            }
        }
    }

    /// Normalising is idempotent, and encoding any unreserved characters of a normalised
    /// path (either hex case) changes neither the normalised form nor the decision.
    #[test]
    fn unreserved_encoding_changes_nothing(
        path in raw_path(),
        mask in prop::collection::vec(any::<bool>(), 1..8),
        lower in prop::collection::vec(any::<bool>(), 1..4),
        method in method(),
        session in session(),
    ) {
        let Ok(normalised) = normalise_path(&path) else { return Ok(()); };
        prop_assert_eq!(normalise_path(&normalised), Ok(normalised.clone()));
        let encoded = encode_some(&normalised, &mask, &lower);
        prop_assert_eq!(normalise_path(&encoded), Ok(normalised.clone()), "{}", encoded);
        let rules = rules();
        let mount = MountPath::root();
        let facts = |path| RequestFacts { method, path, query: None, headers: NavigationHeaders::default() };
        let plain = rules.decide_request(&mount, &facts(normalised.as_str()), session);
        let spelled = rules.decide_request(&mount, &facts(encoded.as_str()), session);
        // Only a redirect's `next` may differ: it keeps the original spelling.
        match (plain, spelled) {
            (Verdict::Redirect { .. }, Verdict::Redirect { .. }) => {}
            (a, b) => prop_assert_eq!(a, b),
        }
    }

    /// Whatever a lenient app would route under `/admin` (or `/app`), the rules judge as
    /// `/admin` (or `/app`, or one of its longer rules), or the path is refused. No `..`,
    /// `//`, `%2e%2e`, `%2F`, `%5C` or backslash spelling slips out from under a prefix.
    #[test]
    fn no_spelling_escapes_a_prefix(path in raw_path(), method in method()) {
        let rules = rules();
        let Some(app_reads) = lenient_reading(&path) else { return Ok(()); };
        match normalise_path(&path) {
            Err(refusal) => {
                // Refusals only ever come from the dangerous spellings.
                let lower = path.to_ascii_lowercase();
                prop_assert!(
                    lower.contains("%2f") || lower.contains("%5c") || lower.contains('\\')
                        || lower.contains("%00") || lower.contains("%zz") || lower.contains(";"),
                    "{} refused as {:?}", path, refusal
                );
            }
            Ok(normalised) => {
                // Without escapes of separators, the rules and the app read the same path
                // (up to escapes of non-unreserved characters, which both keep as bytes).
                let policy = rules.policy(method, &normalised);
                if under("/admin", &app_reads) && !under("/admin/public", &app_reads) {
                    prop_assert_eq!(policy, Policy::Role(Role::Admin), "{} → {} / app: {}", path, normalised, app_reads);
                }
                if under("/app", &app_reads) && !under("/app/status", &app_reads) {
                    prop_assert_eq!(policy, Policy::Authenticated, "{} → {}", path, normalised);
                }
                if policy == Policy::Role(Role::Admin) {
                    prop_assert!(under("/admin", &app_reads), "{} → {}", path, normalised);
                }
            }
        }
    }
}

#[test]
fn encoding_tricks_are_refused_or_resolved() {
    let rules = rules();
    for (raw, expected) in [
        ("/public/../admin", Ok("/admin")),
        ("/public/%2e%2e/admin", Ok("/admin")),
        ("/public/%2E%2E/admin", Ok("/admin")),
        ("/public/.%2e/admin", Ok("/admin")),
        ("//admin", Ok("/admin")),
        ("/./admin", Ok("/admin")),
        ("/%61dmin", Ok("/admin")),
        ("/public%2F..%2Fadmin", Err(PathRefusal::EncodedSeparator)),
        ("/public/..%2fadmin", Err(PathRefusal::EncodedSeparator)),
        ("/public/..%5Cadmin", Err(PathRefusal::EncodedSeparator)),
        ("/public\\..\\admin", Err(PathRefusal::Backslash)),
        ("/admin%00", Err(PathRefusal::ControlCharacter)),
        (
            "/public/..;/admin",
            Err(PathRefusal::DotSegmentWithParameters),
        ),
        ("/public/%252e%252e/admin", Ok("/public/%252e%252e/admin")),
    ] {
        assert_eq!(
            normalise_path(raw).as_deref().map_err(|r| *r),
            expected,
            "{raw}"
        );
        if let Ok(path) = expected
            && path == "/admin"
        {
            assert_eq!(rules.policy("GET", path), Policy::Role(Role::Admin));
        }
    }
}
