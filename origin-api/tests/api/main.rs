//! The origin's integration tests, one binary: each test starts a real server
//! ([`support::TestApp`]) on an ephemeral port with its own database and cache (SQLite and
//! the in-process cache by default; Postgres and Redis when `DATABASE_URL` / `REDIS_URL`
//! are set) and talks to it over HTTP.

mod support;

mod account;
mod admin;
mod architecture;
mod audit_retry;
mod auth;
mod cli;
mod conn_killed;
mod gateway;
mod hardening;
mod ops;
mod pages;
mod proxies;
mod proxy_mode;
mod redis_servers;
mod revoke_race;
mod scale;
mod slow_body;
