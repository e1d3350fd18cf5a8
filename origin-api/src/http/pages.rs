//! The browser pages: HTML shells, CSS, JavaScript and the logo, compiled into the binary
//! (`include_str!`/`include_bytes!`, no runtime file paths), served with strict security
//! headers ([`SECURITY_HEADERS`], set by one layer on the pages' routes).
//!
//! The pages hold no session logic: each shell loads its script, which calls `/api/v1`
//! and renders every state itself (loading, empty, error, session ended, no access). The
//! one server-side decision is the login redirect target: `next` is sanitised with
//! `shared::paths::safe_next` and embedded HTML-escaped in the page's `data-next`.

use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;
use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH, LOCATION,
};
use axum::http::{Response, StatusCode};
use shared::paths::MountPath;

/// The Content-Security-Policy of every page and asset: same-origin scripts, styles,
/// fetches and form targets only; no inline script or style; never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// Headers sent with every page and asset response (a layer on the pages' routes).
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// `Cache-Control` of HTML pages.
pub const HTML_CACHE_CONTROL: &str = "no-store";

/// `Cache-Control` of assets: cache, but revalidate (ETag) so a new build shows at once.
pub const ASSET_CACHE_CONTROL: &str = "no-cache";

/// Where `/login` sends a user who arrived without a usable `next` (under the mount).
pub const DEFAULT_NEXT: &str = "/account";

/// The placeholder in the shells that receives the mount path without its trailing `/`
/// (`""` or `/auth`): every link, script and stylesheet URL starts with it, and the pages'
/// scripts read it from `<html data-mount>`.
const MOUNT_SLOT: &str = "{{mount}}";

const HTML: &str = "text/html; charset=utf-8";

/// A page the origin serves at a fixed path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// `/`: redirects to `/account` (the edge sends anonymous visitors on to `/login`).
    Home,
    Login,
    Register,
    Account,
    Users,
}

impl Page {
    /// Every page with its path, for the router.
    pub const ALL: [(&'static str, Page); 5] = [
        ("/", Page::Home),
        ("/login", Page::Login),
        ("/register", Page::Register),
        ("/account", Page::Account),
        ("/users", Page::Users),
    ];
}

/// One embedded static file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/app.css"),
    },
    Asset {
        name: "common.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/common.js"),
    },
    Asset {
        name: "login.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/login.js"),
    },
    Asset {
        name: "register.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/register.js"),
    },
    Asset {
        name: "account.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/account.js"),
    },
    Asset {
        name: "users.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/users.js"),
    },
    Asset {
        name: "logo.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../assets/logo.svg"),
    },
];

const LOGIN_HTML: &str = include_str!("../../assets/login.html");
const REGISTER_HTML: &str = include_str!("../../assets/register.html");
const ACCOUNT_HTML: &str = include_str!("../../assets/account.html");
const USERS_HTML: &str = include_str!("../../assets/users.html");

/// The placeholder in the login and register shells that receives the sanitised `next`.
const NEXT_SLOT: &str = "{{next}}";

fn respond(
    status: StatusCode,
    content_type: &'static str,
    cache: &'static str,
    body: Bytes,
) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

/// The page shells rendered for the configured mount path, once at start-up.
pub struct Pages {
    home: HeaderValue,
    login: String,
    register: String,
    account: String,
    users: String,
}

impl Pages {
    pub fn new(mount: &MountPath) -> Pages {
        let base = mount.as_str().trim_end_matches('/');
        let render = |template: &str| template.replace(MOUNT_SLOT, base);
        Pages {
            home: HeaderValue::from_str(&mount.join(DEFAULT_NEXT))
                .unwrap_or_else(|_| HeaderValue::from_static(DEFAULT_NEXT)),
            login: render(LOGIN_HTML),
            register: render(REGISTER_HTML),
            account: render(ACCOUNT_HTML),
            users: render(USERS_HTML),
        }
    }

    /// The response for a page; `query` is the raw query string (only the login and
    /// register pages read it, for `next`).
    pub fn page(&self, page: Page, query: Option<&str>) -> Response<Body> {
        let html = match page {
            Page::Home => {
                let mut resp = respond(StatusCode::FOUND, HTML, HTML_CACHE_CONTROL, Bytes::new());
                resp.headers_mut().insert(LOCATION, self.home.clone());
                return resp;
            }
            Page::Login => with_next(&self.login, query),
            Page::Register => with_next(&self.register, query),
            Page::Account => self.account.clone(),
            Page::Users => self.users.clone(),
        };
        respond(StatusCode::OK, HTML, HTML_CACHE_CONTROL, Bytes::from(html))
    }
}

/// `GET <MOUNT>/`: on to the account page.
pub async fn home(State(pages): State<Arc<Pages>>) -> Response<Body> {
    pages.page(Page::Home, None)
}

/// `GET <MOUNT>/login` (honours a safe `next`).
pub async fn login(State(pages): State<Arc<Pages>>, RawQuery(query): RawQuery) -> Response<Body> {
    pages.page(Page::Login, query.as_deref())
}

/// `GET <MOUNT>/register` (honours a safe `next`).
pub async fn register(
    State(pages): State<Arc<Pages>>,
    RawQuery(query): RawQuery,
) -> Response<Body> {
    pages.page(Page::Register, query.as_deref())
}

/// `GET <MOUNT>/account`.
pub async fn account(State(pages): State<Arc<Pages>>) -> Response<Body> {
    pages.page(Page::Account, None)
}

/// `GET <MOUNT>/users`.
pub async fn users(State(pages): State<Arc<Pages>>) -> Response<Body> {
    pages.page(Page::Users, None)
}

/// `GET <MOUNT>/assets/{*path}`.
pub async fn asset_file(Path(name): Path<String>, headers: HeaderMap) -> Response<Body> {
    asset(&name, headers.get(IF_NONE_MATCH))
}

/// The safe `next` from a query string: percent-decoded, then kept only when
/// `shared::paths::safe_next` accepts it.
pub fn next_from_query(query: Option<&str>) -> Option<String> {
    let raw = form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == "next")
        .map(|(_, value)| value.into_owned())?;
    shared::paths::safe_next(&raw).map(str::to_owned)
}

fn with_next(template: &str, query: Option<&str>) -> String {
    let next = next_from_query(query).unwrap_or_default();
    template.replace(NEXT_SLOT, &escape_attribute(&next))
}

/// Escapes text for a double-quoted HTML attribute.
fn escape_attribute(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Strong ETags of the assets, computed once (a hash of the embedded bytes; the bytes
/// only change with a new build).
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let mut hasher = DefaultHasher::new();
                hasher.write(asset.body);
                let tag = format!("\"{:016x}-{:x}\"", hasher.finish(), asset.body.len());
                HeaderValue::from_str(&tag).expect("hex digits form a valid header value")
            })
            .collect()
    })
}

/// The response for `/assets/<name>`: the file, `304` when `If-None-Match` names its
/// current ETag, or a JSON `404` for an unknown name.
pub fn asset(name: &str, if_none_match: Option<&HeaderValue>) -> Response<Body> {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        let body = Bytes::from_static(br#"{"error":"Not found"}"#);
        return respond(
            StatusCode::NOT_FOUND,
            "application/json",
            HTML_CACHE_CONTROL,
            body,
        );
    };
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let fresh = if_none_match
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == etag.to_str().unwrap_or("") || t.trim() == "*")
        });
    let (status, body) = if fresh {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        (StatusCode::OK, Bytes::from_static(asset.body))
    };
    let mut resp = respond(status, asset.content_type, ASSET_CACHE_CONTROL, body);
    resp.headers_mut().insert(ETAG, etag.clone());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(resp: Response<Body>) -> String {
        let bytes = ready(axum::body::to_bytes(resp.into_body(), usize::MAX))
            .expect("an in-memory body cannot fail");
        String::from_utf8(bytes.to_vec()).expect("utf-8 body")
    }

    /// Polls a ready future (an in-memory body is always ready) without a runtime.
    fn ready<F: std::future::Future>(fut: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut fut = std::pin::pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("an in-memory body is always ready"),
        }
    }

    fn root() -> Pages {
        Pages::new(&MountPath::root())
    }

    fn header<'a>(resp: &'a Response<Body>, name: &str) -> &'a str {
        resp.headers()
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}"))
            .to_str()
            .expect("ascii header")
    }

    fn login_next(query: &str) -> String {
        let html = body(root().page(Page::Login, Some(query)));
        let start = html.find("data-next=\"").expect("data-next") + "data-next=\"".len();
        let end = start + html[start..].find('"').expect("closing quote");
        html[start..end].to_owned()
    }

    #[test]
    fn every_page_is_uncached_html() {
        for (path, page_kind) in Page::ALL {
            let resp = root().page(page_kind, None);
            assert_eq!(header(&resp, "cache-control"), "no-store", "{path}");
            assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
            if page_kind == Page::Home {
                assert_eq!(resp.status(), StatusCode::FOUND);
                assert_eq!(header(&resp, "location"), "/account");
            } else {
                assert_eq!(resp.status(), StatusCode::OK, "{path}");
                assert_eq!(header(&resp, "content-type"), "text/html; charset=utf-8");
            }
        }
    }

    #[test]
    fn login_keeps_only_a_safe_relative_next() {
        assert_eq!(login_next("next=/account"), "/account");
        assert_eq!(
            login_next("next=/users%3Fsearch%3Dann%26page%3D2"),
            "/users?search=ann&amp;page=2"
        );
        assert_eq!(login_next("a=1&next=%2Faccount"), "/account");
        for bad in [
            "next=//evil.example",
            "next=%2F%2Fevil.example",
            "next=https://evil.example/",
            "next=https%3A%2F%2Fevil.example",
            "next=/%5Cevil.example",
            "next=/%09/evil.example",
            "next=/a%0D%0ASet-Cookie:x",
            "next=javascript:alert(1)",
            "next=account",
            "next=",
            "",
        ] {
            assert_eq!(login_next(bad), "", "{bad}");
        }
        assert_eq!(next_from_query(None), None);
    }

    #[test]
    fn next_is_escaped_inside_the_attribute() {
        let next = login_next("next=/x%22%3E%3Cscript%3Ealert(1)%3C/script%3E%27");
        assert_eq!(
            next,
            "/x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&#39;"
        );
        let html = body(root().page(Page::Login, Some("next=/x%22%3E%3Cscript%3E")));
        assert!(!html.contains("\"><script>"));
    }

    #[test]
    fn every_own_url_honours_the_mount_path() {
        for html in [LOGIN_HTML, REGISTER_HTML, ACCOUNT_HTML, USERS_HTML] {
            for reference in references(html) {
                assert!(
                    reference.starts_with("{{mount}}/") || !reference.starts_with('/'),
                    "{reference} ignores the mount path"
                );
            }
        }
        let mounted = Pages::new(&MountPath::parse("/auth").unwrap());
        let html = body(mounted.page(Page::Login, Some("next=/app/x")));
        assert!(
            html.contains(r#"<html lang="en" data-mount="/auth">"#),
            "{html}"
        );
        assert!(html.contains(r#"src="/auth/assets/login.js""#));
        assert!(!html.contains("{{mount}}"));
        assert!(html.contains(r#"data-next="/app/x""#));
        let home = mounted.page(Page::Home, None);
        assert_eq!(header(&home, "location"), "/auth/account");
        let root_html = body(root().page(Page::Account, None));
        assert!(root_html.contains(r#"src="/assets/account.js""#));
        assert!(root_html.contains(r#"data-mount="""#));
    }

    #[test]
    fn register_carries_next_too() {
        let html = body(root().page(Page::Register, Some("next=/users")));
        assert!(html.contains("data-next=\"/users\""));
        assert!(!body(root().page(Page::Account, None)).contains(NEXT_SLOT));
    }

    /// `(attr, value)` for every `src="…"` / `href="…"` in an HTML document.
    fn references(html: &str) -> Vec<String> {
        let mut out = Vec::new();
        for attr in ["src=\"", "href=\""] {
            let mut rest = html;
            while let Some(i) = rest.find(attr) {
                rest = &rest[i + attr.len()..];
                let end = rest.find('"').expect("closing quote");
                out.push(rest[..end].to_owned());
            }
        }
        out
    }

    #[test]
    fn shells_need_no_inline_script_or_style() {
        for html in [LOGIN_HTML, REGISTER_HTML, ACCOUNT_HTML, USERS_HTML] {
            let lower = html.to_ascii_lowercase();
            assert!(!lower.contains("<style"), "inline <style>");
            assert!(!lower.contains(" style="), "inline style attribute");
            assert!(!lower.contains("javascript:"), "javascript: URL");
            let mut rest = lower.as_str();
            while let Some(i) = rest.find("<script") {
                let tag_end = rest[i..].find('>').expect("tag end") + i;
                assert!(
                    rest[i..tag_end].contains(" src=\"{{mount}}/assets/"),
                    "inline <script>"
                );
                rest = &rest[tag_end..];
            }
            for attr in [
                " onclick=",
                " onload=",
                " onerror=",
                " onsubmit=",
                " oninput=",
                " onchange=",
            ] {
                assert!(!lower.contains(attr), "inline handler {attr}");
            }
        }
    }

    #[test]
    fn every_referenced_asset_is_embedded() {
        for html in [LOGIN_HTML, REGISTER_HTML, ACCOUNT_HTML, USERS_HTML] {
            for reference in references(html) {
                if let Some(name) = reference.strip_prefix("{{mount}}/assets/") {
                    assert_eq!(asset(name, None).status(), StatusCode::OK, "{reference}");
                }
            }
        }
        for asset_file in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset_file.body).expect("utf-8 js");
            for line in text.lines().filter(|l| l.contains("from './")) {
                let start = line.find("from './").expect("import") + "from './".len();
                let end = start + line[start..].find('\'').expect("quote");
                let name = &line[start..end];
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "{} imports {name}",
                    asset_file.name
                );
            }
            assert!(
                !text.contains("innerHTML"),
                "{} sets innerHTML",
                asset_file.name
            );
        }
    }

    #[test]
    fn assets_have_types_headers_and_etags() {
        let css = asset("app.css", None);
        assert_eq!(css.status(), StatusCode::OK);
        assert_eq!(header(&css, "content-type"), "text/css; charset=utf-8");
        assert_eq!(header(&css, "cache-control"), ASSET_CACHE_CONTROL);
        let etag = HeaderValue::from_str(header(&css, "etag")).expect("etag");
        assert_eq!(
            asset("app.css", Some(&etag)).status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(body(asset("app.css", Some(&etag))), "");
        let other = HeaderValue::from_static("\"nope\"");
        assert_eq!(asset("app.css", Some(&other)).status(), StatusCode::OK);
        assert_eq!(
            header(&asset("account.js", None), "content-type"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            header(&asset("logo.svg", None), "content-type"),
            "image/svg+xml"
        );
        for missing in ["", "nope.js", "../Cargo.toml", "app.css/x"] {
            let resp = asset(missing, None);
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{missing}");
            assert_eq!(header(&resp, "content-type"), "application/json");
        }
    }
}
