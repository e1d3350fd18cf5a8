//! sessiongate's edge: a Cloudflare Worker that turns away requests for protected paths
//! that carry no valid session cookie, and proxies everything else to the origin.
//!
//! The edge checks only the cookie's signature and expiry (with the `shared` crate); it
//! never contacts a database or cache. Revoked sessions pass here and are caught by the
//! origin. With `ACCESS_RULES` it also bounces anonymous traffic for the app behind
//! sessiongate, by the same rules the origin applies (gateway-v1).
//!
//! - [`config`]: the wrangler vars and secrets, strictly validated.
//! - [`gate`]: the pure decision (redirect to login, 401, 400, 404, or proxy).
//! - [`forward`]: the origin URL, the forwarding headers and HSTS.
//! - `worker_glue`: the `#[event(fetch)]` entry point that wires those to the runtime.

pub mod config;
pub mod forward;
pub mod gate;
mod worker_glue;

pub use config::{ConfigError, EdgeConfig};
pub use gate::{CookieState, Decision, RequestFacts, decide, decide_request};
