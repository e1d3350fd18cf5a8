//! The Worker entry point: reads the configuration, asks [`crate::gate::decide`], and turns
//! the decision into a response or a proxied fetch. Only JS plumbing lives here; every
//! rule is in the pure modules. (Calling these functions natively panics: they need the
//! Workers runtime.)

use js_sys::futures::JsFuture;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Headers, Request, RequestInit, RequestRedirect, Response, ResponseInit, Url};
use worker::{Context, Env, console_error, event};

use crate::config::{
    COOKIE_SECURE, ConfigError, EdgeConfig, ORIGIN_URL, PROTECTED_API_PATHS, PROTECTED_PATHS,
    SESSION_KEYS,
};
use crate::forward::{forwarded_for, forwarded_proto, target_url};
use crate::gate::{Decision, decide};

const MISCONFIGURED: &str = r#"{"error":"Edge misconfigured"}"#;
const UNAUTHORIZED: &str = r#"{"error":"Unauthorized"}"#;
const BAD_GATEWAY: &str = r#"{"error":"Origin unreachable"}"#;

#[event(fetch)]
pub async fn fetch(request: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let config = match read_config(&env) {
        Ok(config) => config,
        Err(err) => {
            // Names the variable and the problem; ConfigError never carries key material.
            console_error!("edge-gate misconfigured, refusing all requests: {err}");
            return json(500, MISCONFIGURED, None);
        }
    };
    let url = Url::new(&request.url())?;
    let (path, search) = (url.pathname(), url.search());
    let query = search.strip_prefix('?');
    let cookie = request.headers().get("Cookie")?;
    let now = (js_sys::Date::now() / 1000.0) as u64;

    match decide(&config, &path, query, cookie.as_deref(), now) {
        Decision::Redirect {
            location,
            clear_cookie,
        } => {
            let headers = Headers::new()?;
            headers.set("Location", &location)?;
            headers.set("Cache-Control", "no-store")?;
            if clear_cookie {
                headers.set(
                    "Set-Cookie",
                    &shared::cookie::clear_cookie(config.cookie_secure),
                )?;
            }
            respond(302, None, &headers)
        }
        Decision::Unauthorized { clear_cookie } => {
            let clear = clear_cookie.then(|| shared::cookie::clear_cookie(config.cookie_secure));
            json(401, UNAUTHORIZED, clear.as_deref())
        }
        Decision::Proxy => {
            let target = target_url(&config.origin, &path, query);
            proxy(&request, &url, &target).await
        }
    }
}

/// Reads the five variables (vars and secrets alike live on `env`) and validates them.
fn read_config(env: &Env) -> Result<EdgeConfig, ConfigError> {
    let mut values = Vec::with_capacity(5);
    for name in [
        ORIGIN_URL,
        SESSION_KEYS,
        PROTECTED_PATHS,
        PROTECTED_API_PATHS,
        COOKIE_SECURE,
    ] {
        values.push((name, read_var(env, name)?));
    }
    EdgeConfig::from_vars(|wanted| {
        values
            .iter()
            .find(|(name, _)| *name == wanted)
            .and_then(|(_, value)| value.clone())
    })
}

/// A variable as a string: unset is `None`; a TOML boolean becomes `"true"`/`"false"`;
/// any other type is an error.
fn read_var(env: &Env, name: &'static str) -> Result<Option<String>, ConfigError> {
    let value = js_sys::Reflect::get(env, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED);
    if value.is_undefined() || value.is_null() {
        Ok(None)
    } else if let Some(text) = value.as_string() {
        Ok(Some(text))
    } else if let Some(flag) = value.as_bool() {
        Ok(Some(flag.to_string()))
    } else {
        Err(ConfigError {
            var: name,
            problem: "must be a string".to_owned(),
        })
    }
}

/// Forwards the request to the origin: same method, headers and (streamed) body, plus the
/// `X-Forwarded-*` headers; redirects are not followed. The origin's response is returned
/// as it came (status, every header including repeated `Set-Cookie`, streamed body).
async fn proxy(incoming: &Request, url: &Url, target: &str) -> worker::Result<Response> {
    let source = incoming.headers();
    let headers = Headers::new_with_headers(&source)?;
    let forwarded = forwarded_for(
        source.get("X-Forwarded-For")?.as_deref(),
        source.get("CF-Connecting-IP")?.as_deref(),
    );
    if let Some(chain) = forwarded {
        headers.set("X-Forwarded-For", &chain)?;
    }
    headers.set("X-Forwarded-Proto", forwarded_proto(&url.protocol()))?;
    let host = source.get("Host")?.unwrap_or_else(|| url.host());
    headers.set("X-Forwarded-Host", &host)?;

    let init = RequestInit::new();
    init.set_method(&incoming.method());
    init.set_headers(&headers);
    init.set_redirect(RequestRedirect::Manual);
    if let Some(body) = incoming.body() {
        init.set_body(&body);
    }
    let outgoing = Request::new_with_str_and_init(target, &init)?;

    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    match JsFuture::from(global.fetch_with_request(&outgoing)).await {
        Ok(response) => Ok(response.dyn_into()?),
        Err(err) => {
            console_error!("edge-gate: origin fetch failed: {err:?}");
            json(502, BAD_GATEWAY, None)
        }
    }
}

/// A JSON response with `Cache-Control: no-store`, optionally clearing the cookie.
fn json(status: u16, body: &str, set_cookie: Option<&str>) -> worker::Result<Response> {
    let headers = Headers::new()?;
    headers.set("Content-Type", "application/json")?;
    headers.set("Cache-Control", "no-store")?;
    if let Some(value) = set_cookie {
        headers.set("Set-Cookie", value)?;
    }
    respond(status, Some(body), &headers)
}

fn respond(status: u16, body: Option<&str>, headers: &Headers) -> worker::Result<Response> {
    let init = ResponseInit::new();
    init.set_status(status);
    init.set_headers(headers);
    Ok(Response::new_with_opt_str_and_init(body, &init)?)
}
