//! The OpenAPI document, generated from the handlers' annotations. Served at
//! `/api/v1/openapi.json` and committed as `origin-api/openapi.json`; a test fails when the
//! committed file is not current (`UPDATE_OPENAPI=1 cargo test -p origin-api openapi`
//! rewrites it).

use std::sync::OnceLock;

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::http::{account, admin, auth, gateway, ops};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sessiongate origin",
        description = "Session authentication: the origin's HTTP contract, version 1. \
            Sessions are carried by the `__Host-session` cookie (or `session` with \
            `COOKIE_SECURE=false`). Every error body is `{\"error\": \"...\"}`. Paths are \
            relative to `MOUNT_PATH` (default `/`).",
        version = "1"
    ),
    paths(
        auth::register, auth::login, auth::logout, auth::me,
        account::profile, account::update, account::change_password, account::sessions,
        account::revoke_others, account::revoke_session, account::audit,
        admin::list, admin::change_role, admin::delete, admin::revoke_sessions,
        ops::cleanup, ops::healthz, ops::readyz, ops::metrics, ops::openapi,
        gateway::forward_auth, gateway::auth_request, gateway::jwks,
    ),
    modifiers(&Bearer),
    tags(
        (name = "auth", description = "Register, sign in and out, who am I"),
        (name = "account", description = "The caller's own data"),
        (name = "users", description = "User management (ADMIN only)"),
        (name = "operations", description = "Health, readiness, metrics, maintenance"),
        (name = "gateway", description = "Protecting another app: forward-auth decisions and the assertion's keys"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON with a trailing newline (the committed file's form).
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut text = ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        text.push('\n');
        text
    })
}

#[cfg(test)]
mod tests {
    /// The committed `origin-api/openapi.json` is the generated document.
    #[test]
    fn committed_openapi_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let generated = super::document();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, generated).expect("write openapi.json");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "origin-api/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test -p origin-api openapi`"
        );
    }
}
