//! Access rules and the gateway decision (gateway-v1 "Access rules", "The decision"): one
//! implementation, so the edge and the origin judge every request alike.
//!
//! - [`AccessRules::parse`] reads `ACCESS_RULES`; [`AccessRules::from_protected`] turns the
//!   edge's `PROTECTED_PATHS` / `PROTECTED_API_PATHS` shorthand into rules.
//! - [`normalise_path`] gives the path the rules are matched on, or a [`PathRefusal`]
//!   (the caller answers `400`).
//! - [`AccessRules::policy`] picks the rule: longest prefix at a segment boundary, then a
//!   rule naming the method over one without, else `authenticated`.
//! - [`is_navigation`] and [`decide`] are the contract's navigation test and decision table.
//! - [`AccessRules::decide_request`] does all of it for one request, with the redirect's
//!   `Location` under the mount path.
//!
//! Everything here is pure; "live session" is the caller's verdict, passed in as the
//! session's [`Role`] (the origin's authoritative check; the edge passes `None` when the
//! cookie's signature does not verify and proxies everything else).

use std::fmt;

use crate::paths::{MountPath, PrefixList, prefix_matches};

/// A user's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    /// `USER` or `ADMIN`, as stored and as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "USER",
            Self::Admin => "ADMIN",
        }
    }

    /// Parses `USER` or `ADMIN` exactly.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "USER" => Some(Self::User),
            "ADMIN" => Some(Self::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a rule lets in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Anyone, with or without a session.
    Public,
    /// Any live session.
    Authenticated,
    /// A live session whose user has this role; `Role(User)` is any live session.
    Role(Role),
    /// Nobody: anonymous requests get the anonymous answers, live sessions `403`.
    Deny,
}

impl Policy {
    /// The policy as written in a rule.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Authenticated => "authenticated",
            Self::Role(Role::User) => "role:USER",
            Self::Role(Role::Admin) => "role:ADMIN",
            Self::Deny => "deny",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "public" => Self::Public,
            "authenticated" => Self::Authenticated,
            "deny" => Self::Deny,
            _ => Self::Role(Role::parse(text.strip_prefix("role:")?)?),
        })
    }

    /// True when a live session with `role` satisfies the policy.
    pub fn admits(self, role: Role) -> bool {
        match self {
            Self::Public | Self::Authenticated | Self::Role(Role::User) => true,
            Self::Role(Role::Admin) => role == Role::Admin,
            Self::Deny => false,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy of a request that no rule matches: deny-by-default for anonymous traffic.
pub const DEFAULT_POLICY: Policy = Policy::Authenticated;

/// One parsed rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Upper-case methods, or empty for every method.
    methods: Vec<String>,
    /// Normalised, without a trailing `/` (except the root `/`).
    prefix: String,
    policy: Policy,
}

impl Rule {
    pub fn methods(&self) -> &[String] {
        &self.methods
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    fn applies(&self, method: &str, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && prefix_matches(&self.prefix, path)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.methods.is_empty() {
            write!(f, "{} ", self.methods.join(","))?;
        }
        write!(f, "{} = {}", self.prefix, self.policy)
    }
}

/// Why `ACCESS_RULES` was refused. The message names the offending rule as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleError {
    /// No rule at all (only separators and whitespace).
    Empty,
    /// `rule` (as written) is unusable for `problem`.
    Invalid { rule: String, problem: String },
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str(
                "no rules given; expected `[METHODS ]PREFIX = POLICY` separated by ; or newlines",
            ),
            Self::Invalid { rule, problem } => write!(f, "rule `{rule}`: {problem}"),
        }
    }
}

impl std::error::Error for RuleError {}

/// A parsed rule set. Order of writing does not matter: the most specific rule wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessRules {
    rules: Vec<Rule>,
}

impl AccessRules {
    /// Parses `ACCESS_RULES`: rules separated by `;` or newlines, each
    /// `[METHODS ]PREFIX = POLICY` (`GET,HEAD /app/status = public`).
    ///
    /// - `METHODS`: comma-separated upper-case methods (`A-Z` and `-`); spaces after the
    ///   commas are allowed.
    /// - `PREFIX`: a path starting with `/`, printable ASCII without spaces, `?` or `#`
    ///   (write other characters percent-encoded). It is normalised like a request path
    ///   (`/%61pp/` is `/app`), and a trailing `/` is dropped: `/docs/` means `/docs`.
    /// - `POLICY`: `public`, `authenticated`, `role:ADMIN`, `role:USER` or `deny`.
    ///
    /// Two rules with the same prefix that could both apply to one method (both without
    /// methods, or sharing one) are refused as contradictory, whatever their policies.
    pub fn parse(spec: &str) -> Result<Self, RuleError> {
        let mut rules: Vec<Rule> = Vec::new();
        for text in spec
            .split([';', '\n', '\r'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let invalid = |problem: String| RuleError::Invalid {
                rule: text.to_owned(),
                problem,
            };
            let rule = parse_rule(text).map_err(invalid)?;
            if let Some(other) = rules.iter().find(|r| conflicts(r, &rule)) {
                return Err(invalid(format!("contradicts the earlier rule `{other}`")));
            }
            rules.push(rule);
        }
        if rules.is_empty() {
            return Err(RuleError::Empty);
        }
        Ok(Self { rules })
    }

    /// The edge's shorthand as rules: `/ = public`, then `PREFIX = authenticated` for every
    /// page and API prefix (a prefix in both lists is one rule).
    pub fn from_protected(pages: &PrefixList, api: &PrefixList) -> Self {
        let mut rules = vec![Rule {
            methods: Vec::new(),
            prefix: "/".to_owned(),
            policy: Policy::Public,
        }];
        for prefix in pages.as_slice().iter().chain(api.as_slice()) {
            let rule = Rule {
                methods: Vec::new(),
                prefix: canonical_prefix(prefix),
                policy: Policy::Authenticated,
            };
            // `/` listed as protected replaces the public root rather than contradicting it.
            rules.retain(|r| r.prefix != rule.prefix);
            rules.push(rule);
        }
        Self { rules }
    }

    /// The rules, in the order written.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The policy for `method` on `normalised_path` (a [`normalise_path`] result): the rule
    /// with the longest matching prefix; between equal prefixes the one naming the method;
    /// [`DEFAULT_POLICY`] when none matches.
    pub fn policy(&self, method: &str, normalised_path: &str) -> Policy {
        self.matching_rule(method, normalised_path)
            .map_or(DEFAULT_POLICY, Rule::policy)
    }

    /// The rule that decides `method` on `normalised_path`, if any (for logs).
    pub fn matching_rule(&self, method: &str, normalised_path: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .filter(|rule| rule.applies(method, normalised_path))
            // Parsing refused equal-prefix rules that could both apply, so the key is unique.
            .max_by_key(|rule| (rule.prefix.len(), !rule.methods.is_empty()))
    }

    /// The whole decision for one request to an app route (not one of sessiongate's own):
    /// path normalisation, the rule's policy, the navigation test and the decision table.
    /// `session` is the role of the live session that came with the request, if any.
    pub fn decide_request(
        &self,
        mount: &MountPath,
        request: &RequestFacts<'_>,
        session: Option<Role>,
    ) -> Verdict {
        let path = match normalise_path(request.path) {
            Ok(path) => path,
            Err(refusal) => return Verdict::BadRequest(refusal),
        };
        let policy = self.policy(request.method, &path);
        let navigation = is_navigation(request.method, &path, &request.headers);
        match decide(policy, session, navigation) {
            Decision::Allow => Verdict::Allow,
            Decision::Unauthorized => Verdict::Unauthorized,
            Decision::Forbidden => Verdict::Forbidden,
            Decision::Redirect => Verdict::Redirect {
                location: mount.login_location(&path_and_query(request.path, request.query)),
            },
        }
    }
}

/// Parses one rule's text (already trimmed, non-empty).
fn parse_rule(text: &str) -> Result<Rule, String> {
    let (target, policy) = text
        .rsplit_once('=')
        .ok_or_else(|| "expected `[METHODS ]PREFIX = POLICY`".to_owned())?;
    let policy = policy.trim();
    let policy = Policy::parse(policy).ok_or_else(|| {
        format!(
            "unknown policy `{policy}` (use public, authenticated, role:ADMIN, role:USER or deny)"
        )
    })?;
    let target = target.trim();
    // The prefix is the last word; anything before it lists the methods.
    let (methods_text, prefix) = match target.rfind(char::is_whitespace) {
        Some(at) => (target[..at].trim(), target[at..].trim()),
        None => ("", target),
    };
    if prefix.is_empty() {
        return Err("has no path prefix".to_owned());
    }
    if !prefix.starts_with('/') {
        return Err(format!("prefix `{prefix}` must start with /"));
    }
    if prefix.contains(['?', '#']) {
        return Err(format!(
            "prefix `{prefix}` must be a path, without a query or fragment"
        ));
    }
    if !prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "prefix `{prefix}` must be printable ASCII (percent-encode other characters)"
        ));
    }
    let normalised = normalise_path(prefix)
        .map_err(|refusal| format!("prefix `{prefix}` is not a usable path: {refusal}"))?;
    let mut methods: Vec<String> = Vec::new();
    if !methods_text.is_empty() {
        for method in methods_text.split(',').map(str::trim) {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') {
                return Err(format!(
                    "`{method}` is not a method (write methods in upper case, comma-separated: GET,HEAD)"
                ));
            }
            if !methods.iter().any(|m| m == method) {
                methods.push(method.to_owned());
            }
        }
    }
    Ok(Rule {
        methods,
        prefix: canonical_prefix(&normalised),
        policy,
    })
}

/// A normalised prefix without its trailing `/` (the root stays `/`).
fn canonical_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() { "/" } else { trimmed }.to_owned()
}

/// True when two rules share a prefix and some method would match both, so neither
/// "longest prefix" nor "names the method" could choose between them.
fn conflicts(a: &Rule, b: &Rule) -> bool {
    a.prefix == b.prefix
        && match (a.methods.is_empty(), b.methods.is_empty()) {
            (true, true) => true,
            (false, false) => a.methods.iter().any(|m| b.methods.contains(m)),
            _ => false,
        }
}

/// Why a request path cannot be judged by the rules. The caller answers `400`: the app
/// might read the path differently from the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathRefusal {
    /// Not an absolute path (`*`, a full URL, empty).
    NotAbsolute,
    /// `%2F` or `%5C`: the app might decode it into a separator the rules never saw.
    EncodedSeparator,
    /// A raw backslash: some servers and frameworks treat it as `/` (browsers never send
    /// one in a path: they turn it into `/` themselves).
    Backslash,
    /// `%00` or a raw control character.
    ControlCharacter,
    /// `%` not followed by two hex digits: apps disagree on what it means.
    BadEscape,
    /// A `.` or `..` segment carrying `;` parameters (`/..;/admin`), which servlet
    /// containers resolve as a dot segment after the rules have matched.
    DotSegmentWithParameters,
}

impl PathRefusal {
    /// A stable snake_case name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAbsolute => "not_absolute",
            Self::EncodedSeparator => "encoded_separator",
            Self::Backslash => "backslash",
            Self::ControlCharacter => "control_character",
            Self::BadEscape => "bad_escape",
            Self::DotSegmentWithParameters => "dot_segment_with_parameters",
        }
    }
}

impl fmt::Display for PathRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAbsolute => "not an absolute path",
            Self::EncodedSeparator => "contains an encoded / or \\ (%2F, %5C)",
            Self::Backslash => "contains a backslash",
            Self::ControlCharacter => "contains NUL or a control character",
            Self::BadEscape => "contains a malformed percent escape",
            Self::DotSegmentWithParameters => "contains a . or .. segment with ; parameters",
        })
    }
}

impl std::error::Error for PathRefusal {}

/// The path the rules are matched on, from the raw request path (without the query).
///
/// - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded; every other
///   escape is kept, its hex digits upper-cased; raw non-ASCII is percent-encoded;
/// - empty segments are dropped (`//` collapses), `.` and `..` segments resolved (`..`
///   never climbs above `/`); a trailing `/` is kept;
/// - refused ([`PathRefusal`]): `%2F`, `%5C`, `%00`, raw backslashes and control characters,
///   malformed escapes, and `.`/`..` segments with `;` parameters.
///
/// So `/public/../admin`, `//admin`, `/%61dmin` and `/x/%2e%2e/admin` all give `/admin`.
pub fn normalise_path(raw: &str) -> Result<String, PathRefusal> {
    if !raw.starts_with('/') {
        return Err(PathRefusal::NotAbsolute);
    }
    let decoded = decode_unreserved(raw)?;
    let ends_with_slash = decoded.ends_with('/');
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = ends_with_slash;
    let mut parts = decoded[1..].split('/').peekable();
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            "" => {}
            "." => trailing_slash |= last,
            ".." => {
                segments.pop();
                trailing_slash |= last;
            }
            _ => {
                let bare = segment.split(';').next().unwrap_or(segment);
                if bare == "." || bare == ".." {
                    return Err(PathRefusal::DotSegmentWithParameters);
                }
                segments.push(segment);
            }
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for segment in &segments {
        path.push('/');
        path.push_str(segment);
    }
    if path.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(path)
}

/// First pass of [`normalise_path`]: decode unreserved escapes, canonicalise the rest,
/// refuse what must be refused.
fn decode_unreserved(raw: &str) -> Result<String, PathRefusal> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hex = |at: usize| bytes.get(at).and_then(|&h| (h as char).to_digit(16));
                let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(PathRefusal::BadEscape);
                };
                let value = (high * 16 + low) as u8;
                match value {
                    b'/' | b'\\' => return Err(PathRefusal::EncodedSeparator),
                    0 => return Err(PathRefusal::ControlCharacter),
                    v if is_unreserved(v) => out.push(v as char),
                    v => push_escape(&mut out, v),
                }
                i += 3;
            }
            b'\\' => return Err(PathRefusal::Backslash),
            b if b.is_ascii_control() => return Err(PathRefusal::ControlCharacter),
            b if b.is_ascii() => {
                out.push(b as char);
                i += 1;
            }
            b => {
                push_escape(&mut out, b);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xf)] as char);
}

/// The request headers the navigation test reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NavigationHeaders<'a> {
    pub accept: Option<&'a str>,
    pub sec_fetch_mode: Option<&'a str>,
    pub x_requested_with: Option<&'a str>,
    /// True when the request carries an `Upgrade` header (any value).
    pub upgrade: bool,
}

/// The contract's navigation test: GET or HEAD, the path (normalised) not under `/api/`,
/// no `X-Requested-With: XMLHttpRequest`, no `Upgrade`, and no `Accept`, an `Accept`
/// containing `text/html`, or `Sec-Fetch-Mode: navigate`. Header values are compared
/// case-insensitively (media types and these tokens are case-insensitive in practice).
pub fn is_navigation(method: &str, normalised_path: &str, headers: &NavigationHeaders<'_>) -> bool {
    let xhr = headers
        .x_requested_with
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("XMLHttpRequest"));
    let wants_html = match headers.accept {
        None => true,
        Some(accept) => accept.to_ascii_lowercase().contains("text/html"),
    };
    let navigate = headers
        .sec_fetch_mode
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("navigate"));
    matches!(method, "GET" | "HEAD")
        && !prefix_matches("/api", normalised_path)
        && !xhr
        && !headers.upgrade
        && (wants_html || navigate)
}

/// The decision table's answer, before any HTTP is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Let the request through (with identity when a live session came with it).
    Allow,
    /// `302` to the login page with `next`, `Cache-Control: no-store`.
    Redirect,
    /// `401 {"error":"Unauthorized"}`.
    Unauthorized,
    /// `403 {"error":"Forbidden"}`.
    Forbidden,
}

/// The contract's decision table. `session` is the live session's role, `None` when there
/// is no live session; `navigation` is [`is_navigation`]'s answer.
pub fn decide(policy: Policy, session: Option<Role>, navigation: bool) -> Decision {
    match (policy, session) {
        (Policy::Public, _) => Decision::Allow,
        (_, None) if navigation => Decision::Redirect,
        (_, None) => Decision::Unauthorized,
        (policy, Some(role)) if policy.admits(role) => Decision::Allow,
        (_, Some(_)) => Decision::Forbidden,
    }
}

/// One request as [`AccessRules::decide_request`] needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The raw path as sent (percent-encoding intact), without the query.
    pub path: &'a str,
    /// The raw query without `?`; `None` or empty when absent.
    pub query: Option<&'a str>,
    pub headers: NavigationHeaders<'a>,
}

/// [`AccessRules::decide_request`]'s answer, ready to be written as HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// `302` to `location` with `Cache-Control: no-store` (clear an invalid cookie).
    Redirect {
        location: String,
    },
    Unauthorized,
    Forbidden,
    /// `400`: the path cannot be judged safely.
    BadRequest(PathRefusal),
}

/// `path?query`, or `path` when the query is absent or empty.
pub fn path_and_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str =
        "/ = public; /app = authenticated; /admin = role:ADMIN; GET,HEAD /app/status = public";

    fn example() -> AccessRules {
        AccessRules::parse(EXAMPLE).unwrap()
    }

    fn policy_of(rules: &AccessRules, method: &str, raw: &str) -> Policy {
        rules.policy(method, &normalise_path(raw).unwrap())
    }

    #[test]
    fn the_contract_example() {
        let rules = example();
        assert_eq!(rules.rules().len(), 4);
        for (method, path, expected) in [
            ("GET", "/", Policy::Public),
            ("GET", "/docs/x", Policy::Public),
            ("GET", "/app", Policy::Authenticated),
            ("POST", "/app/x", Policy::Authenticated),
            ("GET", "/application", Policy::Public),
            ("GET", "/admin", Policy::Role(Role::Admin)),
            ("DELETE", "/admin/users/1", Policy::Role(Role::Admin)),
            ("GET", "/app/status", Policy::Public),
            ("HEAD", "/app/status/deep", Policy::Public),
            ("POST", "/app/status", Policy::Authenticated),
            ("GET", "/app/statusx", Policy::Authenticated),
            // Normalised before matching.
            ("GET", "/public/../admin", Policy::Role(Role::Admin)),
            ("GET", "/%61dmin", Policy::Role(Role::Admin)),
            ("GET", "//admin//x", Policy::Role(Role::Admin)),
            ("GET", "/app/%73tatus", Policy::Public),
            // Case-sensitive, like HTTP paths.
            ("GET", "/ADMIN", Policy::Public),
        ] {
            assert_eq!(policy_of(&rules, method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn no_match_is_authenticated() {
        let rules = AccessRules::parse("/docs = public").unwrap();
        assert_eq!(policy_of(&rules, "GET", "/"), Policy::Authenticated);
        assert_eq!(policy_of(&rules, "GET", "/docsx"), Policy::Authenticated);
        assert_eq!(policy_of(&rules, "GET", "/docs/a"), Policy::Public);
        assert_eq!(DEFAULT_POLICY, Policy::Authenticated);
    }

    #[test]
    fn longest_prefix_then_method_wins_whatever_the_order() {
        let forward = "/a = public; /a/b = deny; POST /a/b = role:ADMIN; GET /a/b/c = public";
        let backward = "GET /a/b/c = public; POST /a/b = role:ADMIN; /a/b = deny; /a = public";
        for spec in [forward, backward] {
            let rules = AccessRules::parse(spec).unwrap();
            assert_eq!(policy_of(&rules, "GET", "/a/x"), Policy::Public, "{spec}");
            assert_eq!(policy_of(&rules, "GET", "/a/b"), Policy::Deny, "{spec}");
            assert_eq!(
                policy_of(&rules, "POST", "/a/b/z"),
                Policy::Role(Role::Admin)
            );
            assert_eq!(policy_of(&rules, "GET", "/a/b/c/d"), Policy::Public);
            assert_eq!(
                policy_of(&rules, "POST", "/a/b/c"),
                Policy::Role(Role::Admin)
            );
            let rule = rules.matching_rule("POST", "/a/b/c").unwrap().to_string();
            assert_eq!(rule, "POST /a/b = role:ADMIN");
        }
    }

    #[test]
    fn parsing_accepts_the_documented_spellings() {
        let rules = AccessRules::parse(
            "\n  GET, HEAD   /x/  =  public \r\n/y=deny;;\nPUT,PATCH,M-SEARCH /z = role:USER\n;",
        )
        .unwrap();
        let shown: Vec<String> = rules.rules().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "GET,HEAD /x = public",
                "/y = deny",
                "PUT,PATCH,M-SEARCH /z = role:USER"
            ]
        );
        // A prefix is normalised like a request path.
        let rules = AccessRules::parse("/%61pp//./x/ = public; / = deny").unwrap();
        assert_eq!(rules.rules()[0].prefix(), "/app/x");
        assert_eq!(rules.rules()[1].prefix(), "/");
        assert_eq!(policy_of(&rules, "GET", "/app/x/1"), Policy::Public);
    }

    #[test]
    fn bad_rules_are_named() {
        for (spec, rule, says) in [
            (
                "/a = public; /b = maybe",
                "/b = maybe",
                "unknown policy `maybe`",
            ),
            ("/a public", "/a public", "expected"),
            ("= public", "= public", "no path prefix"),
            ("app = public", "app = public", "must start with /"),
            ("get /a = public", "get /a = public", "upper case"),
            (
                "GET,,HEAD /a = public",
                "GET,,HEAD /a = public",
                "not a method",
            ),
            ("/a?x = public", "/a?x = public", "query"),
            ("/a%2Fb = public", "/a%2Fb = public", "encoded"),
            ("/caf\u{e9} = public", "/caf\u{e9} = public", "ASCII"),
            ("/a = role:admin", "/a = role:admin", "unknown policy"),
            ("/a = Public", "/a = Public", "unknown policy"),
            (
                "/a = public; /a/ = deny",
                "/a/ = deny",
                "contradicts the earlier rule `/a = public`",
            ),
            (
                "GET /a = public; GET,POST /a = deny",
                "GET,POST /a = deny",
                "contradicts",
            ),
        ] {
            let err = AccessRules::parse(spec).unwrap_err();
            let RuleError::Invalid { rule: named, .. } = &err else {
                panic!("{spec}: {err:?}");
            };
            assert_eq!(named, rule, "{spec}");
            let message = err.to_string();
            assert!(message.contains(&format!("`{rule}`")), "{message}");
            assert!(message.contains(says), "{spec}: {message}");
        }
        assert_eq!(AccessRules::parse(" ;\n ; "), Err(RuleError::Empty));
        // Same prefix, disjoint methods: fine.
        assert!(AccessRules::parse("GET /a = public; POST /a = deny; /a = role:ADMIN").is_ok());
    }

    #[test]
    fn protected_lists_become_rules() {
        let pages = PrefixList::parse("/account,/users").unwrap();
        let api = PrefixList::parse("/api/v1/account,/api/v1/users,/api/v1/auth/me").unwrap();
        let rules = AccessRules::from_protected(&pages, &api);
        let shown: Vec<String> = rules.rules().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "/ = public",
                "/account = authenticated",
                "/users = authenticated",
                "/api/v1/account = authenticated",
                "/api/v1/users = authenticated",
                "/api/v1/auth/me = authenticated",
            ]
        );
        assert_eq!(policy_of(&rules, "GET", "/accounting"), Policy::Public);
        assert_eq!(
            policy_of(&rules, "GET", "/account/x"),
            Policy::Authenticated
        );

        let everything = AccessRules::from_protected(
            &PrefixList::parse("/").unwrap(),
            &PrefixList::parse("/api,/api").unwrap(),
        );
        assert_eq!(everything.rules().len(), 2);
        assert_eq!(policy_of(&everything, "GET", "/x"), Policy::Authenticated);
    }

    #[test]
    fn normalisation() {
        for (raw, normalised) in [
            ("/", "/"),
            ("//", "/"),
            ("/a", "/a"),
            ("/a/", "/a/"),
            ("/a//b///", "/a/b/"),
            ("/a/./b", "/a/b"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/../../../b", "/b"),
            ("/..", "/"),
            ("/%2e%2E/a", "/a"),
            ("/x/%2e%2e/admin", "/admin"),
            ("/x/.%2e/admin", "/admin"),
            ("/%61%41%30%2D%2E%5F%7E", "/aA0-._~"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb%3Bc", "/a%3Fb%3Bc"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a;b/c", "/a;b/c"),
            ("/a/...", "/a/..."),
            ("/%25", "/%25"),
            ("/%252F", "/%252F"),
        ] {
            assert_eq!(normalise_path(raw).as_deref(), Ok(normalised), "{raw:?}");
        }
    }

    #[test]
    fn refused_paths() {
        for (raw, refusal) in [
            ("", PathRefusal::NotAbsolute),
            ("*", PathRefusal::NotAbsolute),
            ("http://h/a", PathRefusal::NotAbsolute),
            ("/a%2Fb", PathRefusal::EncodedSeparator),
            ("/a%2fb", PathRefusal::EncodedSeparator),
            ("/a%5Cb", PathRefusal::EncodedSeparator),
            ("/a%5cb", PathRefusal::EncodedSeparator),
            ("/a\\b", PathRefusal::Backslash),
            ("/a%00", PathRefusal::ControlCharacter),
            ("/a\0", PathRefusal::ControlCharacter),
            ("/a\r\nb", PathRefusal::ControlCharacter),
            ("/a%zz", PathRefusal::BadEscape),
            ("/a%4", PathRefusal::BadEscape),
            ("/a%", PathRefusal::BadEscape),
            ("/public/..;/admin", PathRefusal::DotSegmentWithParameters),
            ("/public/.;x/admin", PathRefusal::DotSegmentWithParameters),
            (
                "/public/%2e%2e;/admin",
                PathRefusal::DotSegmentWithParameters,
            ),
        ] {
            assert_eq!(normalise_path(raw), Err(refusal), "{raw:?}");
        }
    }

    #[test]
    fn navigation_test() {
        let none = NavigationHeaders::default();
        let html = NavigationHeaders {
            accept: Some("text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"),
            ..none
        };
        let json = NavigationHeaders {
            accept: Some("application/json"),
            ..none
        };
        assert!(is_navigation("GET", "/app", &none));
        assert!(is_navigation("HEAD", "/app", &html));
        assert!(is_navigation(
            "GET",
            "/app",
            &NavigationHeaders {
                accept: Some("TEXT/HTML"),
                ..none
            }
        ));
        assert!(!is_navigation("GET", "/app", &json));
        assert!(is_navigation(
            "GET",
            "/app",
            &NavigationHeaders {
                sec_fetch_mode: Some("navigate"),
                ..json
            }
        ));
        assert!(!is_navigation(
            "GET",
            "/app",
            &NavigationHeaders {
                sec_fetch_mode: Some("cors"),
                ..json
            }
        ));
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "get"] {
            assert!(!is_navigation(method, "/app", &html), "{method}");
        }
        assert!(!is_navigation("GET", "/api", &html));
        assert!(!is_navigation("GET", "/api/v1/x", &html));
        assert!(is_navigation("GET", "/apix", &html));
        assert!(!is_navigation(
            "GET",
            "/app",
            &NavigationHeaders {
                x_requested_with: Some("XMLHttpRequest"),
                ..html
            }
        ));
        assert!(is_navigation(
            "GET",
            "/app",
            &NavigationHeaders {
                x_requested_with: Some("com.example.app"),
                ..html
            }
        ));
        assert!(!is_navigation(
            "GET",
            "/app",
            &NavigationHeaders {
                upgrade: true,
                ..html
            }
        ));
        assert!(!is_navigation(
            "GET",
            "/app",
            &NavigationHeaders {
                accept: Some(""),
                ..none
            }
        ));
    }

    #[test]
    fn decision_table() {
        use Decision::*;
        let admin = Some(Role::Admin);
        let user = Some(Role::User);
        for (policy, session, navigation, expected) in [
            // public → allow, session or not
            (Policy::Public, None, true, Allow),
            (Policy::Public, None, false, Allow),
            (Policy::Public, user, false, Allow),
            // no live session, not public: navigation → redirect, else 401
            (Policy::Authenticated, None, true, Redirect),
            (Policy::Authenticated, None, false, Unauthorized),
            (Policy::Role(Role::Admin), None, true, Redirect),
            (Policy::Role(Role::User), None, false, Unauthorized),
            (Policy::Deny, None, true, Redirect),
            (Policy::Deny, None, false, Unauthorized),
            // live session, satisfied → allow
            (Policy::Authenticated, user, true, Allow),
            (Policy::Role(Role::User), user, false, Allow),
            (Policy::Role(Role::User), admin, false, Allow),
            (Policy::Role(Role::Admin), admin, true, Allow),
            // live session, not satisfied → 403, navigation or not
            (Policy::Role(Role::Admin), user, true, Forbidden),
            (Policy::Role(Role::Admin), user, false, Forbidden),
            (Policy::Deny, admin, true, Forbidden),
            (Policy::Deny, user, false, Forbidden),
        ] {
            assert_eq!(
                decide(policy, session, navigation),
                expected,
                "{policy} {session:?} navigation={navigation}"
            );
        }
    }

    #[test]
    fn whole_request_decisions() {
        let rules = example();
        let root = MountPath::root();
        let auth = MountPath::parse("/auth").unwrap();
        let json = NavigationHeaders {
            accept: Some("application/json"),
            ..NavigationHeaders::default()
        };
        let get = |path, query| RequestFacts {
            method: "GET",
            path,
            query,
            headers: NavigationHeaders::default(),
        };
        assert_eq!(
            rules.decide_request(&root, &get("/docs", None), None),
            Verdict::Allow
        );
        assert_eq!(
            rules.decide_request(&auth, &get("/app/x", Some("a=1&b=%20")), None),
            Verdict::Redirect {
                location: "/auth/login?next=/app/x%3Fa%3D1%26b%3D%2520".into()
            }
        );
        // `next` is the original spelling, not the normalised one.
        assert_eq!(
            rules.decide_request(&root, &get("/x/../%61pp", None), None),
            Verdict::Redirect {
                location: "/login?next=/x/../%2561pp".into()
            }
        );
        let api = RequestFacts {
            headers: json,
            ..get("/app/data", None)
        };
        assert_eq!(
            rules.decide_request(&root, &api, None),
            Verdict::Unauthorized
        );
        assert_eq!(
            rules.decide_request(&root, &get("/admin", None), Some(Role::User)),
            Verdict::Forbidden
        );
        assert_eq!(
            rules.decide_request(&root, &get("/admin", None), Some(Role::Admin)),
            Verdict::Allow
        );
        // Refused even where the rules would let anyone in.
        assert_eq!(
            rules.decide_request(&root, &get("/docs/a%2Fb", None), Some(Role::Admin)),
            Verdict::BadRequest(PathRefusal::EncodedSeparator)
        );
        let status = RequestFacts {
            method: "POST",
            ..get("/app/status", None)
        };
        assert_eq!(
            rules.decide_request(&root, &status, None),
            Verdict::Unauthorized
        );
    }

    #[test]
    fn roles_and_policies_round_trip_their_names() {
        for role in [Role::User, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
        for policy in [
            Policy::Public,
            Policy::Authenticated,
            Policy::Role(Role::User),
            Policy::Role(Role::Admin),
            Policy::Deny,
        ] {
            assert_eq!(Policy::parse(policy.as_str()), Some(policy));
        }
    }
}
