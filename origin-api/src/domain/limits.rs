//! The contract's rate-limit buckets, one function per route family: which buckets a
//! request counts in, with which identifier. Counting happens before the request body is
//! judged, so unreadable and invalid requests count too.

use crate::domain::core::Core;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::types::{Client, UserId};
use crate::ratelimit::{Bucket, Decision};

/// The per-IP login bucket (the per-account bucket is judged inside the login).
pub async fn login(core: &Core, client: &Client) -> Decision {
    let limit = core.policy.limits.login;
    core.limiter
        .hit(&[Bucket::new("login", client.rate_key.clone(), limit)])
        .await
}

pub async fn register(core: &Core, client: &Client) -> Decision {
    let limit = core.policy.limits.register;
    core.limiter
        .hit(&[Bucket::new("register", client.rate_key.clone(), limit)])
        .await
}

pub async fn account_update(core: &Core, client: &Client, user: &UserId) -> Decision {
    let l = &core.policy.limits;
    core.limiter
        .hit(&[
            Bucket::new(
                "account-update",
                format!("ip:{}", client.rate_key),
                l.account_update_ip,
            ),
            Bucket::new(
                "account-update",
                format!("user:{}", user.as_str()),
                l.account_update_user,
            ),
        ])
        .await
}

pub async fn password(core: &Core, user: &UserId) -> Decision {
    let limit = core.policy.limits.password;
    core.limiter
        .hit(&[Bucket::new("password", user.as_str(), limit)])
        .await
}

/// `Err(RateLimited)` when the decision refuses.
pub fn enforce(decision: &Decision) -> DomainResult<()> {
    match decision.retry_after {
        Some(retry_after) => Err(DomainError::RateLimited { retry_after }),
        None => Ok(()),
    }
}
