//! `postgres-conn-killed`: the database connection dies in the middle of a multi-statement
//! write. A password change (new hash, then every other session revoked) has its session
//! delete held by a trigger while the driver terminates that backend, as a failover or an
//! operator would. The answer must be 503 with `Retry-After`, the change all or nothing.

use std::time::Duration;

use crate::cx::Cx;
use crate::report::{Outcome, Tally};

const NAME: &str = "postgres-conn-killed";
const NEW_PASSWORD: &str = "a password after the fault";

pub async fn run(cx: &Cx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::new(NAME);
    let tally = Tally::default();
    let user = cx.dedicated()?;
    let u = cx.ledger.user(user);
    let actor = cx.login(user, NAME).await?;
    let others = [cx.login(user, NAME).await?, cx.login(user, NAME).await?];
    for s in &others {
        s.update(|st| st.uncertain = true);
    }
    hold_session_deletes_of(cx, &u.id).await?;
    let api = cx.client();
    let change = api.change_password(&actor.token, &u.password, NEW_PASSWORD);
    let (reply, terminated) = tokio::join!(change, terminate_held_delete(cx));
    let (reply, terminated) = (reply?, terminated?);
    tally.add("password", &reply.status.to_string());
    cx.execute("DROP TRIGGER reliability_hold ON sessions; DROP FUNCTION reliability_hold();")
        .await?;
    out.check(
        "the write's database connection was terminated mid-statement",
        terminated > 0,
        format!("{terminated} backend(s) terminated"),
    );
    out.check(
        "a connection lost mid-write answers 503 with Retry-After, never 500",
        reply.status == 503 && reply.retry_after().is_some(),
        format!("{} {}", reply.status, reply.text()),
    );

    let old_ok = cx.client().login(&u.email, &u.password).await?;
    let new_ok = cx.client().login(&u.email, NEW_PASSWORD).await?;
    tally.add("login", &old_ok.status.to_string());
    tally.add("login", &new_ok.status.to_string());
    let mut alive = 0;
    for s in &others {
        let r = cx.api.me(&s.token).await?;
        tally.add("verify", &r.status.to_string());
        alive += usize::from(r.status == 200);
    }
    let changed = new_ok.status == 200;
    let whole =
        (changed && alive == 0) || (!changed && old_ok.status == 200 && alive == others.len());
    out.check(
        "nothing half-written: the password change happened entirely or not at all",
        whole,
        format!(
            "password changed: {changed} (old password {}, new {}); other sessions alive: {alive}/{}",
            old_ok.status,
            new_ok.status,
            others.len()
        ),
    );
    // Sessions opened by the two logins above belong to no scenario check.
    out.absorb(&tally);
    Ok(out)
}

/// A trigger that holds every delete of `user_id`'s sessions for 5 s.
async fn hold_session_deletes_of(cx: &Cx, user_id: &str) -> anyhow::Result<()> {
    let victim = user_id.replace('\'', "''");
    cx.execute(&format!(
        "CREATE OR REPLACE FUNCTION reliability_hold() RETURNS trigger AS $$ \
         BEGIN PERFORM pg_sleep(5); RETURN OLD; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER reliability_hold BEFORE DELETE ON sessions FOR EACH ROW \
         WHEN (OLD.user_id = '{victim}') EXECUTE FUNCTION reliability_hold();"
    ))
    .await
}

/// Waits until the delete is held by the trigger, then cuts that connection; how many
/// backends it terminated.
async fn terminate_held_delete(cx: &Cx) -> anyhow::Result<i64> {
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let terminated = cx
            .count(
                "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND state = 'active' AND query ILIKE '%DELETE%sessions%'",
            )
            .await?;
        if terminated > 0 {
            return Ok(terminated);
        }
    }
    Ok(0)
}
