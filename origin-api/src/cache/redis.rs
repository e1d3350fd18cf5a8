//! The Redis cache (fred): standalone (`redis://`), Cluster (`redis-cluster://`) or
//! Sentinel (`redis-sentinel://`), chosen by the URL ([`fred_url`] also takes the comma
//! form of a host list). Fails fast so callers fall back to the database at once: while
//! fred is disconnected (it reconnects in the background), and while the [`Breaker`]
//! pauses calls after one failed (a hung server would otherwise make every request wait
//! for the command timeout).
//!
//! A warm verify is one plain `GET`, which fred pipelines across tasks on its connection.
//! The few scripts (guarded writes, rate-limit windows) touch one hash slot each and only
//! the keys they are given. Behind Sentinel, [`Cache::replicated`] tells whether writes
//! will survive a failover.

use std::future::Future;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand, FromValue};
use metrics::Counter;

use super::breaker::{Breaker, Pass};
use super::{Cache, CacheError};

/// Fixed-window hit: INCR, start the expiry on the first hit, report the time left.
const HIT_WINDOW: &str = r#"
local c = redis.call('INCR', KEYS[1])
local t = redis.call('PTTL', KEYS[1])
if c == 1 or t < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  t = tonumber(ARGV[1])
end
return {c, t}
"#;

/// A window's count and time left, without counting.
const PEEK_WINDOW: &str = r#"
local c = redis.call('GET', KEYS[1])
local t = redis.call('PTTL', KEYS[1])
return {tonumber(c) or 0, t}
"#;

/// Writes an entry unless its guard is present (KEYS: entry, guard; ARGV: value, TTL in
/// ms, "1" to write only where no entry is).
const SET_UNLESS_GUARDED: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if ARGV[3] == '1' then
  if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return 1 end
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// Sets a guard, then deletes the entry (KEYS: guard, entry; ARGV: the guard's TTL in ms).
const GUARD_AND_DELETE: &str = r#"
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"#;

pub struct RedisCache {
    client: Client,
    hit_window: Script,
    peek_window: Script,
    set_unless_guarded: Script,
    guard_and_delete: Script,
    /// Behind Sentinel: [`Cache::replicated`] asks the master for its replicas.
    sentinel: bool,
    breaker: Breaker,
    /// The breaker's clock starts here.
    epoch: Instant,
    /// `sessiongate_cache_round_trips_total`: one per command or script sent.
    round_trips: Counter,
}

fn fail(e: Error) -> CacheError {
    CacheError(e.to_string())
}

impl RedisCache {
    /// Builds the client and starts connecting; a Redis that is down at start-up is not
    /// fatal (the service degrades and fred keeps reconnecting).
    pub async fn connect(url: &str, round_trips: Counter) -> Result<RedisCache, CacheError> {
        let config = Config::from_url(&fred_url(url)?).map_err(fail)?;
        let sentinel = matches!(config.server, ServerConfig::Sentinel { .. });
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                c.max_command_attempts = 2;
                c.unresponsive = fred::types::config::UnresponsiveConfig {
                    max_timeout: Some(Duration::from_secs(1)),
                    interval: Duration::from_millis(250),
                };
            })
            .with_performance_config(|c| {
                c.default_command_timeout = Duration::from_millis(1500);
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()
            .map_err(fail)?;
        client.connect();
        if let Err(e) = tokio::time::timeout(Duration::from_secs(3), client.wait_for_connect())
            .await
            .map_err(|_| CacheError("timed out".into()))
            .and_then(|r| r.map_err(fail))
        {
            tracing::warn!(error = %e, "redis not reachable at start-up; continuing degraded");
        }
        Ok(RedisCache {
            client,
            hit_window: Script::from_lua(HIT_WINDOW),
            peek_window: Script::from_lua(PEEK_WINDOW),
            set_unless_guarded: Script::from_lua(SET_UNLESS_GUARDED),
            guard_and_delete: Script::from_lua(GUARD_AND_DELETE),
            sentinel,
            breaker: Breaker::default(),
            epoch: Instant::now(),
            round_trips,
        })
    }

    /// Whether `url` is a URL this cache can connect with (checked at start-up).
    pub fn check_url(url: &str) -> Result<(), CacheError> {
        Config::from_url(&fred_url(url)?).map(drop).map_err(fail)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// One round trip (counted) with the client: an error at once while disconnected or
    /// while the breaker pauses calls; a failure pauses them.
    async fn call<'a, T, Fut>(
        &'a self,
        round_trip: impl FnOnce(&'a Client) -> Fut,
    ) -> Result<T, CacheError>
    where
        Fut: Future<Output = Result<T, Error>>,
    {
        if !self.client.is_connected() {
            return Err(CacheError("not connected".into()));
        }
        let pass = self
            .breaker
            .admit(self.now_ms())
            .ok_or_else(|| CacheError("paused after a failure".into()))?;
        let mut ticket = Ticket {
            breaker: &self.breaker,
            pass: Some(pass),
        };
        self.round_trips.increment(1);
        let result = round_trip(&self.client).await;
        if let Some(pass) = ticket.pass.take() {
            self.breaker.record(pass, result.is_ok(), self.now_ms());
        }
        result.map_err(fail)
    }

    pub async fn quit(&self) {
        let _ = self.client.quit().await;
    }

    /// Runs `script` on `keys` with `EVALSHA`, pipelined like any other command.
    ///
    /// fred never pipelines its own `EVALSHA` (a `NOSCRIPT` reply in the middle of a pipeline
    /// could be retried out of order), so every script call waited for the previous reply
    /// on the shared connection. Sent as a custom command it pipelines. In a cluster the
    /// command goes to the slot of its first key, and every script's keys share that slot.
    ///
    /// `NOSCRIPT` (a new, restarted or promoted server, `SCRIPT FLUSH`) sends the script
    /// whole with `EVAL` to that same node, which also caches it for the next `EVALSHA`.
    /// (fred's `SCRIPT LOAD` goes to every primary, and fails while any one is down.) These
    /// scripts are correct in any order.
    async fn eval<R: FromValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: Vec<Value>,
    ) -> Result<R, CacheError> {
        let command = |name| CustomCommand::new_static(name, ClusterHash::Offset(2), false);
        let lua = script
            .lua()
            .cloned()
            .ok_or_else(|| CacheError("script without its source".into()))?;
        let mut all = Vec::with_capacity(2 + keys.len() + args.len());
        all.push(Value::from(script.sha1().clone()));
        all.push(Value::Integer(keys.len() as i64));
        all.extend(keys.iter().map(|k| Value::from(*k)));
        all.extend(args);
        self.call(|client| async move {
            match client.custom(command("EVALSHA"), all.clone()).await {
                Err(e) if e.details().starts_with("NOSCRIPT") => {
                    self.round_trips.increment(1);
                    all[0] = Value::from(lua);
                    client.custom(command("EVAL"), all).await
                }
                result => result,
            }
        })
        .await
    }
}

/// A call let through the breaker; a probe dropped before its outcome is given back.
struct Ticket<'a> {
    breaker: &'a Breaker,
    pass: Option<Pass>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(pass) = self.pass.take() {
            self.breaker.abandon(pass);
        }
    }
}

/// `url` in the form fred parses. fred names extra Cluster nodes and extra sentinels with
/// `?node=host:port` query parameters; the common comma form
/// (`redis-cluster://h1:p1,h2:p2,h3:p3`) is rewritten to it. `rediss` schemes are refused:
/// this build has no TLS, and fred would silently connect in plain text.
pub fn fred_url(url: &str) -> Result<String, CacheError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| CacheError("expected scheme://host:port".into()))?;
    if scheme.starts_with("rediss") {
        return Err(CacheError(
            "TLS (rediss) is not supported by this build; use a TLS tunnel".into(),
        ));
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let mut hosts = hosts.split(',');
    let first = hosts.next().unwrap_or_default();
    let others: Vec<&str> = hosts.collect();
    if others.is_empty() {
        return Ok(url.to_owned());
    }
    if first.is_empty() || others.iter().any(|h| h.is_empty()) {
        return Err(CacheError("empty host in the host list".into()));
    }
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let mut params: Vec<String> = others.iter().map(|h| format!("node={h}")).collect();
    if !query.is_empty() {
        params.push(query.to_owned());
    }
    Ok(format!(
        "{scheme}://{user}{first}{path}?{}",
        params.join("&")
    ))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn window_reply(reply: Vec<i64>) -> (u64, Duration) {
    let count = reply.first().copied().unwrap_or(0).max(0);
    let left = reply.get(1).copied().unwrap_or(0).max(0);
    (
        u64::try_from(count).unwrap_or(0),
        Duration::from_millis(u64::try_from(left).unwrap_or(0)),
    )
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        self.call(|c| c.get(key)).await
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), CacheError> {
        let expire = ttl.map(|d| Expiration::PX(millis(d)));
        self.call(|c| c.set::<(), _, _>(key, value, expire, None, false))
            .await
    }

    async fn set_unless_guarded(
        &self,
        key: &str,
        guard: &str,
        value: &str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> Result<bool, CacheError> {
        let written: i64 = self
            .eval(
                &self.set_unless_guarded,
                &[key, guard],
                vec![
                    Value::from(value),
                    Value::Integer(millis(ttl)),
                    Value::from(if only_if_absent { "1" } else { "0" }),
                ],
            )
            .await?;
        Ok(written == 1)
    }

    async fn guard_and_delete(
        &self,
        guard: &str,
        key: &str,
        guard_ttl: Duration,
    ) -> Result<(), CacheError> {
        self.eval::<i64>(
            &self.guard_and_delete,
            &[guard, key],
            vec![Value::Integer(millis(guard_ttl))],
        )
        .await
        .map(drop)
    }

    async fn del(&self, keys: &[String]) -> Result<(), CacheError> {
        // One DEL per key, sent together (fred pipelines them): a multi-key DEL would be
        // refused by a cluster when the keys live in different slots.
        self.call(|client| async move {
            self.round_trips
                .increment(keys.len().saturating_sub(1) as u64);
            let deletes = keys.iter().map(|key| client.del::<i64, _>(key.as_str()));
            futures_util::future::join_all(deletes)
                .await
                .into_iter()
                .try_for_each(|r| r.map(drop))
        })
        .await
    }

    async fn incr(&self, key: &str) -> Result<i64, CacheError> {
        self.call(|c| c.incr(key)).await
    }

    async fn hit_window(&self, key: &str, window: Duration) -> Result<(u64, Duration), CacheError> {
        let reply: Vec<i64> = self
            .eval(
                &self.hit_window,
                &[key],
                vec![Value::Integer(millis(window))],
            )
            .await?;
        Ok(window_reply(reply))
    }

    async fn peek_window(&self, key: &str) -> Result<(u64, Duration), CacheError> {
        let reply: Vec<i64> = self.eval(&self.peek_window, &[key], Vec::new()).await?;
        Ok(window_reply(reply))
    }

    async fn ping(&self) -> Result<(), CacheError> {
        self.call(|c| c.ping::<String>(None)).await.map(drop)
    }

    /// Behind Sentinel, `ROLE` on the connection that took the writes: they survive a
    /// failover while the master lists a replica in sync. A master without one is, in
    /// the seconds after a failover, the demoted master that fred is still connected to
    /// (fred follows a failover only when that connection closes, which the sentinel
    /// does when it converts the old master into a replica, about 10 s later); its
    /// writes are dropped then.
    async fn replicated(&self) -> Result<(), CacheError> {
        if !self.sentinel {
            return Ok(());
        }
        let role = CustomCommand::new_static("ROLE", ClusterHash::FirstKey, false);
        let role: Value = self.call(|c| c.custom(role, Vec::<Value>::new())).await?;
        if has_replica(&role) {
            Ok(())
        } else {
            Err(CacheError("the master has no replica in sync".into()))
        }
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

/// Whether a `ROLE` reply is a master's with at least one replica in sync:
/// `["master", offset, [[ip, port, offset], …]]`.
fn has_replica(role: &Value) -> bool {
    let Value::Array(parts) = role else {
        return false;
    };
    let master = parts.first().and_then(Value::as_str).as_deref() == Some("master");
    let replicas = matches!(parts.get(2), Some(Value::Array(r)) if !r.is_empty());
    master && replicas
}

#[cfg(test)]
mod tests {
    use super::fred_url;

    #[test]
    fn comma_separated_hosts_become_fred_node_parameters() {
        assert_eq!(
            fred_url("redis-cluster://10.0.0.1:7000,10.0.0.2:7001,10.0.0.3:7002").unwrap(),
            "redis-cluster://10.0.0.1:7000?node=10.0.0.2:7001&node=10.0.0.3:7002"
        );
        assert_eq!(
            fred_url("redis-sentinel://u:p@s1:26379,s2:26380/2?sentinelServiceName=m").unwrap(),
            "redis-sentinel://u:p@s1:26379/2?node=s2:26380&sentinelServiceName=m"
        );
        for same in [
            "redis://127.0.0.1:6379/3",
            "redis-cluster://h:7000?node=h:7001",
            "redis-sentinel://s:26379/0?sentinelServiceName=m",
        ] {
            assert_eq!(fred_url(same).unwrap(), same);
        }
        for bad in [
            "rediss://h:6379",
            "rediss-cluster://h:1,h:2",
            "redis-cluster://h:1,",
            "h:1",
        ] {
            assert!(fred_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn role_replies() {
        use super::has_replica;
        use fred::types::Value;
        let s = |t: &str| Value::from(t);
        let replica = Value::Array(vec![s("127.0.0.1"), s("6380"), s("50")]);
        let master = |replicas: Vec<Value>| {
            Value::Array(vec![
                s("master"),
                Value::Integer(50),
                Value::Array(replicas),
            ])
        };
        assert!(has_replica(&master(vec![replica])));
        assert!(!has_replica(&master(Vec::new())));
        let slave = Value::Array(vec![
            s("slave"),
            s("127.0.0.1"),
            Value::Integer(6379),
            s("connected"),
            Value::Integer(50),
        ]);
        assert!(!has_replica(&slave));
        assert!(!has_replica(&Value::Null));
    }

    #[test]
    fn fred_reads_every_node_of_the_rewritten_url() {
        use fred::types::config::{Config, ServerConfig};
        let url = fred_url("redis-cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002").unwrap();
        let ServerConfig::Clustered { hosts, .. } = Config::from_url(&url).unwrap().server else {
            panic!("not a cluster config");
        };
        let mut ports: Vec<u16> = hosts.iter().map(|h| h.port).collect();
        ports.sort_unstable();
        assert_eq!(ports, [7000, 7001, 7002]);
        // fred alone cannot read the comma form.
        assert!(Config::from_url("redis-cluster://127.0.0.1:7000,127.0.0.1:7001").is_err());
    }
}
