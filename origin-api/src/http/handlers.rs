//! Thin handlers, one per row of the contract: read the request, call the lifecycle, shape
//! the answer.

use std::sync::Arc;

use hyper::header::HeaderName;
use serde_json::json;

use super::Ctx;
use super::request::query_param;
use super::response::{self, Resp, add_cookie, ok, ok_true, set_header};
use crate::app::App;
use crate::authz::{self, Need};
use crate::config::Limit;
use crate::error::{ApiError, ApiResult};
use crate::password;
use crate::session::{self, Authed, normalise_email, valid_email};
use crate::users::{self, Paging};

const NAME_MAX_CHARS: usize = 100;

fn password_field(body: &super::request::Json, field: &str, check_min: bool) -> ApiResult<String> {
    let value = body.string(field)?;
    if value.len() > password::MAX_BYTES {
        return Err(ApiError::invalid(field, "must be at most 1024 bytes"));
    }
    if check_min && value.len() < password::MIN_BYTES {
        return Err(ApiError::invalid(field, "must be at least 8 bytes"));
    }
    Ok(value)
}

fn email_field(body: &super::request::Json) -> ApiResult<String> {
    let email = normalise_email(&body.string("email")?);
    if !valid_email(&email) {
        return Err(ApiError::invalid("email", "is not a valid email address"));
    }
    Ok(email)
}

fn name_field(body: &super::request::Json) -> ApiResult<Option<Option<String>>> {
    Ok(match body.nullable_string("name")? {
        Some(Some(name)) => {
            let name = name.trim().to_owned();
            if name.chars().count() > NAME_MAX_CHARS {
                return Err(ApiError::invalid("name", "must be at most 100 characters"));
            }
            if name.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "name",
                    "must not contain control characters",
                ));
            }
            Some((!name.is_empty()).then_some(name))
        }
        other => other,
    })
}

/// Applies rate limits, recording the headers for the response.
async fn limit(
    app: &App,
    ctx: &mut Ctx,
    buckets: &[(&'static str, String, Limit)],
) -> ApiResult<()> {
    let decision = app.limiter.check(buckets).await;
    ctx.rate_headers = Some((decision.tightest.limit, decision.tightest.remaining));
    match decision.retry_after_secs {
        Some(retry_after) => Err(ApiError::RateLimited { retry_after }),
        None => Ok(()),
    }
}

async fn authed(app: &Arc<App>, ctx: &mut Ctx, need: Need) -> ApiResult<Authed> {
    let a = authz::require(app, ctx.cookie.as_deref(), need).await?;
    if let Some(issued) = &a.reissued {
        ctx.set_cookie = Some(shared::cookie::set_cookie(
            app.config.cookie_secure,
            &issued.token,
            issued.max_age,
        ));
    }
    Ok(a)
}

pub async fn register(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    // Every request counts and carries the rate-limit headers, unreadable or invalid ones
    // too: the limit is checked before the body is judged.
    let body = ctx.json().await;
    let rl = &app.config.rate_limits;
    limit(
        app,
        ctx,
        &[("register", ctx.client_ip.to_string(), rl.register)],
    )
    .await?;
    let body = body?;
    let email = email_field(&body)?;
    let password = password_field(&body, "password", true)?;
    let name = name_field(&body)?.flatten();
    let user = session::register(app, &ctx.client, email, password, name).await?;
    Ok(response::json(201, &json!({ "user": user.user_json() })))
}

pub async fn login(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    // Every request counts and carries the rate-limit headers, unreadable or invalid ones
    // too: the limits are checked before the body is judged. The per-account bucket applies
    // when the body names an account that could exist (no stored email exceeds 254 bytes,
    // and a counter is never keyed by a 64 KiB string).
    let body = ctx.json().await;
    let account = body
        .as_ref()
        .ok()
        .and_then(|b| b.string("email").ok())
        .map(|e| normalise_email(&e))
        .filter(|e| !e.is_empty() && e.len() <= 254);
    let rl = &app.config.rate_limits;
    let mut buckets = vec![("login", ctx.client_ip.to_string(), rl.login)];
    if let Some(account) = account {
        buckets.push(("login-account", account, rl.login_account));
    }
    limit(app, ctx, &buckets).await?;
    let body = body?;
    let email = normalise_email(&body.string("email")?);
    if email.is_empty() {
        return Err(ApiError::invalid("email", "is required"));
    }
    let password = password_field(&body, "password", false)?;
    let (user, issued) = session::login(app, &ctx.client, &email, password).await?;
    let mut resp = ok(&json!({ "user": user.user_json() }));
    add_cookie(
        &mut resp,
        &shared::cookie::set_cookie(app.config.cookie_secure, &issued.token, issued.max_age),
    );
    Ok(resp)
}

pub async fn logout(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    session::logout(app, &ctx.client, ctx.cookie.as_deref()).await?;
    let mut resp = ok_true();
    add_cookie(
        &mut resp,
        &shared::cookie::clear_cookie(app.config.cookie_secure),
    );
    set_header(
        &mut resp,
        HeaderName::from_static("clear-site-data"),
        "\"cookies\"",
    );
    Ok(resp)
}

pub async fn me(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    /// `{"user": {...}}`, serialized without building a `serde_json::Value` (the hot path).
    #[derive(serde::Serialize)]
    struct Body<'a> {
        user: session::UserView<'a>,
    }
    let a = authed(app, ctx, Need::User).await?;
    Ok(response::json_of(
        200,
        &Body {
            user: a.user.view(),
        },
    ))
}

pub async fn account(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    let a = authed(app, ctx, Need::User).await?;
    Ok(ok(&json!({ "profile": a.user.profile_json() })))
}

pub async fn update_account(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    let a = authed(app, ctx, Need::User).await?;
    let body = ctx.json().await;
    let rl = &app.config.rate_limits;
    limit(
        app,
        ctx,
        &[
            (
                "account-update",
                format!("ip:{}", ctx.client_ip),
                rl.account_update_ip,
            ),
            (
                "account-update",
                format!("user:{}", a.user.id),
                rl.account_update_user,
            ),
        ],
    )
    .await?;
    let body = body?;
    let name = name_field(&body)?;
    let email = match body.0.get("email") {
        None => None,
        Some(_) => Some(email_field(&body)?),
    };
    let profile = session::update_profile(app, &ctx.client, &a, name, email).await?;
    Ok(ok(&json!({ "profile": profile.profile_json() })))
}

pub async fn change_password(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    let a = authed(app, ctx, Need::User).await?;
    let body = ctx.json().await;
    let rl = &app.config.rate_limits;
    limit(app, ctx, &[("password", a.user.id.clone(), rl.password)]).await?;
    let body = body?;
    let current = password_field(&body, "currentPassword", false)?;
    let new = password_field(&body, "newPassword", true)?;
    let revoked = session::change_password(app, &ctx.client, &a, current, new).await?;
    Ok(ok(&json!({ "ok": true, "revoked": revoked })))
}

pub async fn sessions(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    let a = authed(app, ctx, Need::User).await?;
    let sessions = session::list_sessions(app, &a).await?;
    Ok(ok(&json!({ "sessions": sessions })))
}

pub async fn revoke_others(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    let a = authed(app, ctx, Need::User).await?;
    let revoked = session::revoke_others(app, &ctx.client, &a).await?;
    Ok(ok(&json!({ "ok": true, "revoked": revoked })))
}

pub async fn revoke_session(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    let a = authed(app, ctx, Need::User).await?;
    let id = ctx.id.clone().unwrap_or_default();
    session::revoke_one(app, &ctx.client, &a, &id).await?;
    Ok(ok_true())
}

pub async fn audit(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    let a = authed(app, ctx, Need::User).await?;
    let q = ctx.query.as_deref();
    let paging = Paging::parse(
        query_param(q, "page").as_deref(),
        query_param(q, "pageSize").as_deref(),
    );
    let (rows, total) = app
        .store
        .audit_of(&a.user.id, paging.page, paging.page_size)
        .await?;
    let items: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "action": r.action,
                "ipAddress": r.ip_address,
                "userAgent": r.user_agent,
                "metadata": r.metadata,
                "createdAt": crate::clock::rfc3339(r.created_at),
            })
        })
        .collect();
    Ok(ok(
        &json!({ "items": items, "pagination": paging.json(total) }),
    ))
}

pub async fn list_users(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    authed(app, ctx, Need::Admin).await?;
    let q = ctx.query.as_deref();
    let paging = Paging::parse(
        query_param(q, "page").as_deref(),
        query_param(q, "pageSize").as_deref(),
    );
    let search = query_param(q, "search").unwrap_or_default();
    let search: String = search.trim().chars().take(200).collect();
    Ok(ok(&users::list(app, paging, &search).await?))
}

pub async fn change_role(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    let a = authed(app, ctx, Need::Admin).await?;
    let body = ctx.json().await?;
    let role = body.string("role")?;
    if role != "USER" && role != "ADMIN" {
        return Err(ApiError::invalid("role", "must be USER or ADMIN"));
    }
    let target = ctx.id.clone().unwrap_or_default();
    let user = users::change_role(app, &ctx.client, &a, &target, &role).await?;
    Ok(ok(&json!({ "user": user.user_json() })))
}

pub async fn delete_user(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    let a = authed(app, ctx, Need::Admin).await?;
    let target = ctx.id.clone().unwrap_or_default();
    users::delete(app, &ctx.client, &a, &target).await?;
    Ok(ok_true())
}

pub async fn revoke_user_sessions(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    let a = authed(app, ctx, Need::Admin).await?;
    let target = ctx.id.clone().unwrap_or_default();
    let revoked = users::revoke_sessions(app, &ctx.client, &a, &target).await?;
    Ok(ok(&json!({ "ok": true, "revoked": revoked })))
}

pub async fn cron_cleanup(app: &Arc<App>, ctx: &mut Ctx) -> ApiResult<Resp> {
    let Some(secret) = app.config.cron_secret.as_deref() else {
        return Err(ApiError::Unauthorized);
    };
    let presented = ctx
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    if !constant_time_eq(presented, secret) {
        return Err(ApiError::Unauthorized);
    }
    let deleted = crate::cleanup::run_once(app).await?;
    Ok(ok(&json!({ "deleted": deleted })))
}

/// The token of an `Authorization: Bearer <token>` value: the scheme is case-insensitive
/// and separated by one or more spaces (RFC 7235, RFC 6750).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Compares secrets in constant time (hashing first, so length leaks nothing either).
fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    let a = hmac_sha256::Hash::hash(a.as_bytes());
    let b = hmac_sha256::Hash::hash(b.as_bytes());
    a.ct_eq(&b).into()
}

pub async fn healthz() -> ApiResult<Resp> {
    Ok(ok(&json!({ "status": "ok" })))
}

pub async fn readyz(app: &Arc<App>) -> ApiResult<Resp> {
    let (db, cache) = tokio::join!(app.store.ping(), app.cache.ping());
    let status = |ok: bool| if ok { "ok" } else { "unavailable" };
    let body = json!({ "database": status(db.is_ok()), "cache": status(cache.is_ok()) });
    if db.is_ok() && cache.is_ok() {
        return Ok(ok(&body));
    }
    let failing: Vec<&str> = [("database", db.is_ok()), ("cache", cache.is_ok())]
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    let mut body = body;
    body["error"] = json!(format!("Not ready: {} unavailable", failing.join(" and ")));
    let mut resp = response::json(503, &body);
    set_header(
        &mut resp,
        hyper::header::RETRY_AFTER,
        &response::RETRY_AFTER_UNAVAILABLE.to_string(),
    );
    Ok(resp)
}

pub async fn metrics(app: &Arc<App>) -> ApiResult<Resp> {
    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(
        app.metrics.render(),
    )));
    set_header(
        &mut resp,
        hyper::header::CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8",
    );
    Ok(resp)
}
