//! The gateway: sessiongate protecting the team's own app (`gateway-v1.md`). For a request
//! to the app, described as plain data ([`Described`]), [`Gateway::decide`] applies the
//! access rules (`shared::rules`, the same code the edge runs), authenticates the session
//! exactly as `GET /api/v1/auth/me` does, and answers allow (with the identity and its
//! signed assertion), redirect to login, 401, 403, 400 or 503. The forward-auth endpoints
//! (`http::gateway`) ask it on behalf of nginx, Caddy and Traefik.

pub mod assertions;
pub mod watch;

use std::sync::Arc;

use shared::paths::MountPath;
use shared::rules::{
    AccessRules, DEFAULT_POLICY, Decision, NavigationHeaders, PathRefusal, Policy, decide,
    is_navigation, normalise_path, path_and_query,
};

use crate::config::Config;
use crate::domain::core::Core;
use crate::domain::error::DomainError;
use crate::domain::sessions::{self, Issued, Session};
use crate::domain::types::Role;
use assertions::Assertions;
use shared::SessionId;
use watch::Watcher;

/// One request to the app, as the gateway needs it.
pub struct Described<'a> {
    pub method: &'a str,
    /// The raw path as sent (percent-encoding intact).
    pub path: &'a str,
    /// The raw query without `?`.
    pub query: Option<&'a str>,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The authority the client addressed (`Host`).
    pub host: &'a str,
    pub navigation: NavigationHeaders<'a>,
    /// The session cookie's values.
    pub tokens: Vec<&'a str>,
}

/// The gateway's answer.
pub enum Outcome {
    /// Let it through: with the session's identity and assertion when a live one came.
    Allow {
        session: Option<Box<Session>>,
        assertion: Option<String>,
        /// The session id, for watching a long-lived connection.
        sid: Option<SessionId>,
        /// The policy that allowed it (a connection closes when its user no longer
        /// satisfies it).
        policy: Policy,
    },
    /// `302` to the login page (a navigation without a live session).
    Redirect {
        location: String,
        clear_cookie: bool,
    },
    /// `401`: no live session.
    Unauthorized { clear_cookie: bool },
    /// `403`: a live session the rule does not admit.
    Forbidden,
    /// `400`: the path cannot be judged safely.
    BadRequest(PathRefusal),
    /// `503`: neither the cache nor the database can say whether the session lives.
    Unavailable,
}

impl Outcome {
    /// The metrics label of the outcome.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Allow { .. } => "allow",
            Outcome::Redirect { .. } => "redirect",
            Outcome::Unauthorized { .. } => "401",
            Outcome::Forbidden => "403",
            Outcome::BadRequest(_) => "400",
            Outcome::Unavailable => "503",
        }
    }

    /// The cookie to re-issue with the answer (the sliding refresh fired).
    pub fn reissued(&self) -> Option<&Issued> {
        match self {
            Outcome::Allow {
                session: Some(session),
                ..
            } => session.reissued.as_ref(),
            _ => None,
        }
    }
}

pub struct Gateway {
    pub mount: MountPath,
    rules: Option<AccessRules>,
    pub assertions: Assertions,
    /// Proxy mode: long-lived connections, closed when their session ends.
    pub watcher: Arc<Watcher>,
}

fn role_of(session: &Session) -> shared::rules::Role {
    match session.user.role {
        Role::Admin => shared::rules::Role::Admin,
        Role::User => shared::rules::Role::User,
    }
}

impl Gateway {
    pub fn from_config(config: &Config) -> Gateway {
        Gateway {
            watcher: Arc::new(Watcher::default()),
            mount: config.mount.clone(),
            rules: config.access_rules.clone(),
            assertions: Assertions::new(
                config.assertion_keys.clone(),
                config.public_url.as_ref().map(|u| u.origin()),
                config.assertion_audience.clone(),
                config.memory_cache_capacity,
            ),
        }
    }

    /// The policy of a normalised path: sessiongate's own routes decide for themselves
    /// (the contract's own answers apply whatever the rules say), so the gateway lets them
    /// through; the app's routes follow the rules, deny-by-default.
    fn policy(&self, method: &str, path: &str) -> Policy {
        if self.mount.is_own_route(path) {
            return Policy::Public;
        }
        self.rules
            .as_ref()
            .map_or(DEFAULT_POLICY, |rules| rules.policy(method, path))
    }

    /// The decision for one request to the app.
    pub async fn decide(&self, core: &Arc<Core>, request: &Described<'_>) -> Outcome {
        let path = match normalise_path(request.path) {
            Ok(path) => path,
            Err(refusal) => return Outcome::BadRequest(refusal),
        };
        let policy = self.policy(request.method, &path);
        let presented = !request.tokens.is_empty();
        let sid = sessions::session_id(core, request.tokens.iter().copied());
        let session = match &sid {
            None => Ok(None),
            Some(sid) => sessions::authenticate(core, sid).await,
        };
        let session = match session {
            Ok(session) => session,
            // A public path is served anonymously when the session cannot be checked.
            Err(DomainError::Unavailable(_)) if policy == Policy::Public => None,
            Err(DomainError::Unavailable(detail)) => {
                tracing::warn!(error = %detail, "gateway decision: session store unavailable");
                return Outcome::Unavailable;
            }
            Err(e) => {
                tracing::error!(error = %e, "gateway decision failed");
                return Outcome::Unavailable;
            }
        };
        let navigation = is_navigation(request.method, &path, &request.navigation);
        let clear_cookie = presented && session.is_none();
        match decide(policy, session.as_ref().map(role_of), navigation) {
            Decision::Allow => {
                let assertion = session.as_ref().map(|s| {
                    self.assertions.for_session(
                        s,
                        request.scheme,
                        request.host,
                        core.clock.now_unix(),
                    )
                });
                Outcome::Allow {
                    sid: session.as_ref().and(sid),
                    session: session.map(Box::new),
                    assertion,
                    policy,
                }
            }
            Decision::Redirect => Outcome::Redirect {
                location: self
                    .mount
                    .login_location(&path_and_query(request.path, request.query)),
                clear_cookie,
            },
            Decision::Unauthorized => Outcome::Unauthorized { clear_cookie },
            Decision::Forbidden => Outcome::Forbidden,
        }
    }
}
