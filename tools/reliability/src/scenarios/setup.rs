//! `setup`: registers the traffic and dedicated users and gives each traffic user two
//! sessions; the origin is ready.

use testkit::Reply;
use testkit::api::{UserBody, reqwest};
use tokio::task::JoinSet;

use crate::cx::{Cx, DEDICATED_USERS, TRAFFIC_USERS};
use crate::report::{Outcome, Tally};
use crate::status_key;

const NAME: &str = "setup";

pub async fn run(cx: &Cx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::new(NAME);
    let tally = Tally::default();
    let users = cx
        .register_users(TRAFFIC_USERS + DEDICATED_USERS, "u", &tally)
        .await?;
    out.check(
        "users registered",
        users.len() == TRAFFIC_USERS + DEDICATED_USERS,
        format!("{} users", users.len()),
    );
    let mut set = JoinSet::new();
    let mut logins = 0;
    for _round in 0..2 {
        for user in 0..TRAFFIC_USERS {
            let api = cx.client();
            let u = cx.ledger.user(user);
            set.spawn(async move { (user, api.login(&u.email, &u.password).await) });
            if set.len() >= 16
                && let Some(done) = set.join_next().await
            {
                logins += record_login(cx, &tally, done?);
            }
        }
    }
    while let Some(done) = set.join_next().await {
        logins += record_login(cx, &tally, done?);
    }
    out.check(
        "traffic users hold two sessions each",
        logins == 2 * TRAFFIC_USERS,
        format!("{logins} sessions"),
    );
    let ready = cx.api.readyz().await?;
    out.check(
        "/readyz is 200",
        ready.status == 200,
        ready.json().to_string(),
    );
    out.absorb(&tally);
    Ok(out)
}

fn record_login(
    cx: &Cx,
    tally: &Tally,
    (user, r): (usize, Result<Reply<UserBody>, reqwest::Error>),
) -> usize {
    tally.add("login", &status_key(&r));
    match r {
        Ok(reply) if reply.status == 200 => reply
            .token()
            .and_then(|t| cx.ledger.add_session(user, t, NAME))
            .map_or(0, |_| 1),
        _ => 0,
    }
}
