//! The Worker entry point: reads the configuration, asks [`crate::gate::decide_request`],
//! and turns the decision into a response or a proxied fetch, with HSTS on https. Only JS plumbing lives here; every
//! rule is in the pure modules. (Calling these functions natively panics: they need the
//! Workers runtime.)

use js_sys::futures::JsFuture;
use shared::rules::NavigationHeaders;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Headers, Request, RequestInit, RequestRedirect, Response, ResponseInit, Url};
use worker::{Context, Env, console_error, event};

use crate::config::{ALL_VARS, ConfigError, EdgeConfig, EdgeSecret, HSTS_MAX_AGE, hsts_max_age};
use crate::forward::{forwarding_headers, hsts_value, is_dropped_request_header, target_url};
use crate::gate::{Decision, RequestFacts, decide_request};

const MISCONFIGURED: &str = r#"{"error":"Edge misconfigured"}"#;
const UNAUTHORIZED: &str = r#"{"error":"Unauthorized"}"#;
const NOT_FOUND: &str = r#"{"error":"Not found"}"#;
const BAD_REQUEST: &str = r#"{"error":"Bad request"}"#;
const BAD_GATEWAY: &str = r#"{"error":"Origin unreachable"}"#;
const HSTS: &str = "Strict-Transport-Security";

#[event(fetch)]
pub async fn fetch(request: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let url = Url::new(&request.url())?;
    let protocol = url.protocol();
    let config = match read_config(&env) {
        Ok(config) => config,
        Err(err) => {
            // Names the variable and the problem; ConfigError never carries key material.
            console_error!("edge-gate misconfigured, refusing all requests: {err}");
            // HTTPS still gets HSTS: the configured max age if that one is readable.
            let max_age = read_var(&env, HSTS_MAX_AGE)
                .and_then(|value| hsts_max_age(value.as_deref()))
                .unwrap_or(crate::config::DEFAULT_HSTS_MAX_AGE);
            let hsts = hsts_value(&protocol, max_age);
            return json(500, MISCONFIGURED, None, hsts.as_deref());
        }
    };
    let hsts = hsts_value(&protocol, config.hsts_max_age);
    let (path, search) = (url.pathname(), url.search());
    let query = search.strip_prefix('?');
    let incoming = request.headers();
    let method = request.method();
    let cookie = incoming.get("Cookie")?;
    let accept = incoming.get("Accept")?;
    let sec_fetch_mode = incoming.get("Sec-Fetch-Mode")?;
    let x_requested_with = incoming.get("X-Requested-With")?;
    let facts = RequestFacts {
        method: &method,
        path: &path,
        query,
        cookie: cookie.as_deref(),
        navigation: NavigationHeaders {
            accept: accept.as_deref(),
            sec_fetch_mode: sec_fetch_mode.as_deref(),
            x_requested_with: x_requested_with.as_deref(),
            upgrade: incoming.has("Upgrade")?,
        },
    };
    let now = (js_sys::Date::now() / 1000.0) as u64;

    match decide_request(&config, &facts, now) {
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
            if let Some(value) = &hsts {
                headers.set(HSTS, value)?;
            }
            respond(302, None, &headers)
        }
        Decision::Unauthorized { clear_cookie } => {
            let clear = clear_cookie.then(|| shared::cookie::clear_cookie(config.cookie_secure));
            json(401, UNAUTHORIZED, clear.as_deref(), hsts.as_deref())
        }
        Decision::NotFound => json(404, NOT_FOUND, None, hsts.as_deref()),
        Decision::BadRequest(_) => json(400, BAD_REQUEST, None, hsts.as_deref()),
        Decision::Proxy => {
            let target = target_url(&config.origin, &path, query);
            proxy(&request, &url, &target, &config, hsts.as_deref()).await
        }
    }
}

/// Reads every variable (vars and secrets alike live on `env`) and validates them.
fn read_config(env: &Env) -> Result<EdgeConfig, ConfigError> {
    let mut values = Vec::with_capacity(ALL_VARS.len());
    for name in ALL_VARS {
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

/// Forwards the request to the origin: same method, headers and (streamed) body, minus
/// every client-sent `X-Forwarded-*`, `Forwarded` and `X-Sessiongate-Edge`, plus the
/// forwarding headers the edge sets itself; redirects are not followed. The origin's
/// response is returned as it came (status, every header including repeated
/// `Set-Cookie`, streamed body), with HSTS added on https.
async fn proxy(
    incoming: &Request,
    url: &Url,
    target: &str,
    config: &EdgeConfig,
    hsts: Option<&str>,
) -> worker::Result<Response> {
    let source = incoming.headers();
    let headers = Headers::new_with_headers(&source)?;
    let mut dropped = Vec::new();
    for name in source.keys() {
        if let Some(name) = name?.as_string()
            && is_dropped_request_header(&name)
        {
            dropped.push(name);
        }
    }
    for name in dropped {
        headers.delete(&name)?;
    }
    let added = forwarding_headers(
        &url.protocol(),
        &url.host(),
        source.get("CF-Connecting-IP")?.as_deref(),
        config.edge_secret.as_ref().map(EdgeSecret::expose),
    );
    for (name, value) in added {
        headers.set(name, &value)?;
    }

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
        Ok(response) => {
            let response: Response = response.dyn_into()?;
            match hsts {
                // A fetched response's headers are immutable: re-wrap it around the same
                // body stream. Not a 101: that one carries the WebSocket and must pass as is.
                Some(value) if response.status() != 101 => with_header(&response, HSTS, value),
                _ => Ok(response),
            }
        }
        Err(err) => {
            console_error!("edge-gate: origin fetch failed: {err:?}");
            json(502, BAD_GATEWAY, None, hsts)
        }
    }
}

/// `response` with one more header; status, status text, every other header and the body
/// stream unchanged.
fn with_header(response: &Response, name: &str, value: &str) -> worker::Result<Response> {
    let headers = Headers::new_with_headers(&response.headers())?;
    headers.set(name, value)?;
    let init = ResponseInit::new();
    init.set_status(response.status());
    init.set_status_text(&response.status_text());
    init.set_headers(&headers);
    Ok(Response::new_with_opt_readable_stream_and_init(
        response.body().as_ref(),
        &init,
    )?)
}

/// A JSON response with `Cache-Control: no-store`, optionally clearing the cookie and
/// carrying HSTS.
fn json(
    status: u16,
    body: &str,
    set_cookie: Option<&str>,
    hsts: Option<&str>,
) -> worker::Result<Response> {
    let headers = Headers::new()?;
    headers.set("Content-Type", "application/json")?;
    headers.set("Cache-Control", "no-store")?;
    if let Some(value) = set_cookie {
        headers.set("Set-Cookie", value)?;
    }
    if let Some(value) = hsts {
        headers.set(HSTS, value)?;
    }
    respond(status, Some(body), &headers)
}

fn respond(status: u16, body: Option<&str>, headers: &Headers) -> worker::Result<Response> {
    let init = ResponseInit::new();
    init.set_status(status);
    init.set_headers(headers);
    Ok(Response::new_with_opt_str_and_init(body, &init)?)
}
