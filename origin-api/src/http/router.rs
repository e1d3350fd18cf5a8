//! The route table (matchit): path → route, and which methods each route answers.

use hyper::Method;

use crate::pages::Page;

/// Every route of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Register,
    Login,
    Logout,
    Me,
    Account,
    AccountPassword,
    AccountSessions,
    AccountSession,
    AccountAudit,
    Users,
    User,
    UserSessions,
    CronCleanup,
    Healthz,
    Readyz,
    Metrics,
    /// A browser page (`crate::pages`).
    Page(Page),
    /// An embedded static asset; the name is the `{*path}` parameter.
    Asset,
}

const ROUTES: &[(&str, Route)] = &[
    ("/api/v1/auth/register", Route::Register),
    ("/api/v1/auth/login", Route::Login),
    ("/api/v1/auth/logout", Route::Logout),
    ("/api/v1/auth/me", Route::Me),
    ("/api/v1/account", Route::Account),
    ("/api/v1/account/password", Route::AccountPassword),
    ("/api/v1/account/sessions", Route::AccountSessions),
    ("/api/v1/account/sessions/{id}", Route::AccountSession),
    ("/api/v1/account/audit", Route::AccountAudit),
    ("/api/v1/users", Route::Users),
    ("/api/v1/users/{id}", Route::User),
    ("/api/v1/users/{id}/sessions", Route::UserSessions),
    ("/api/v1/cron/cleanup-sessions", Route::CronCleanup),
    ("/healthz", Route::Healthz),
    ("/readyz", Route::Readyz),
    ("/metrics", Route::Metrics),
    ("/", Route::Page(Page::Home)),
    ("/login", Route::Page(Page::Login)),
    ("/register", Route::Page(Page::Register)),
    ("/account", Route::Page(Page::Account)),
    ("/users", Route::Page(Page::Users)),
    (crate::pages::ASSET_ROUTE, Route::Asset),
];

impl Route {
    /// The route's pattern, used as the metrics label and in logs (never the raw path,
    /// which may carry ids).
    pub fn pattern(self) -> &'static str {
        ROUTES
            .iter()
            .find(|(_, r)| *r == self)
            .map_or("unknown", |(p, _)| p)
    }

    /// The methods this route answers.
    pub fn methods(self) -> &'static [Method] {
        match self {
            Route::Register
            | Route::Login
            | Route::Logout
            | Route::AccountPassword
            | Route::CronCleanup => &[Method::POST],
            Route::Me
            | Route::AccountAudit
            | Route::Users
            | Route::Healthz
            | Route::Readyz
            | Route::Metrics
            | Route::Page(_)
            | Route::Asset => &[Method::GET],
            Route::Account => &[Method::GET, Method::PATCH],
            Route::AccountSessions => &[Method::GET, Method::DELETE],
            Route::AccountSession | Route::UserSessions => &[Method::DELETE],
            Route::User => &[Method::PATCH, Method::DELETE],
        }
    }
}

/// The compiled route table.
pub struct Router {
    inner: matchit::Router<Route>,
}

/// A matched route with its `{id}` parameter, if any.
pub struct Matched {
    pub route: Route,
    pub id: Option<String>,
}

impl Router {
    pub fn new() -> Router {
        let mut inner = matchit::Router::new();
        for (pattern, route) in ROUTES {
            // The table is static and its patterns are distinct.
            if let Err(e) = inner.insert(*pattern, *route) {
                panic!("route table: {pattern}: {e}");
            }
        }
        Router { inner }
    }

    pub fn at(&self, path: &str) -> Option<Matched> {
        let m = self.inner.at(path).ok()?;
        Some(Matched {
            route: *m.value,
            id: m
                .params
                .get("id")
                .or_else(|| m.params.get("path"))
                .map(str::to_owned),
        })
    }
}

impl Default for Router {
    fn default() -> Self {
        Router::new()
    }
}
