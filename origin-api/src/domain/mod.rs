//! The domain: sessions, accounts, administration and the audit log as plain async
//! functions over a [`core::Core`], with no HTTP in them. Tests call them directly.
//!
//! - [`types`]: ids, emails, roles, passwords, the user (parsing is validation).
//! - [`error`]: what can go wrong, in the domain's words.
//! - [`core`]: what every operation needs (storage, caches, pools, policy).
//! - [`sessions`]: login, authenticate + refresh + touch, logout, revoke.
//! - [`accounts`]: register, profile, password, create-admin.
//! - [`admin`]: the users list, role changes, deletion.
//! - [`limits`]: which rate-limit buckets each action counts in.
//! - [`audit`]: the append-only log.

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod core;
pub mod error;
pub mod limits;
pub mod sessions;
pub mod types;

#[cfg(test)]
mod tests;
