//! Bench-only helper for `origin-api/bench/run.sh` (no HTTP, no database):
//!
//! - `bench_helper mint SEED FROM COUNT IAT EXP` prints one signed session token per line
//!   (signed with `SESSION_KEYS`) for the session ids `SEED:FROM` … `SEED:FROM+COUNT-1`.
//!   Session id `SEED:i` is base64url(SHA-256("SEED:i")), so the script can insert the
//!   matching rows with SQL `generate_series` (the row id is the id's storage hash), and
//!   1M sessions never need 1M logins.
//! - `bench_helper argon2 N` verifies a password N times, one at a time, through the
//!   origin's own hashing pool ([`origin_api::password::Passwords`]) and prints the median
//!   milliseconds per hash (the argon2 bound of the login benchmark, cores ÷ that time, is
//!   measured in the same run), then the hashes per second when the same N verifications are
//!   submitted at once (the pool runs one per core).

use std::io::Write;
use std::time::Instant;

use base64::Engine;
use shared::{KeyRing, SessionId};

fn session_id(seed: &str, i: u64) -> SessionId {
    let digest = hmac_sha256::Hash::hash(format!("{seed}:{i}").as_bytes());
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    SessionId::parse(&text).expect("32 bytes always make a valid session id")
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str) -> anyhow::Result<T> {
    args.get(i)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("missing or invalid {name}"))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("mint") => {
            let ring = KeyRing::parse(&std::env::var("SESSION_KEYS")?)
                .map_err(|e| anyhow::anyhow!("SESSION_KEYS: {e}"))?;
            let seed: String = arg(&args, 1, "SEED")?;
            let from: u64 = arg(&args, 2, "FROM")?;
            let count: u64 = arg(&args, 3, "COUNT")?;
            let iat: u64 = arg(&args, 4, "IAT")?;
            let exp: u64 = arg(&args, 5, "EXP")?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for i in from..from + count {
                writeln!(
                    out,
                    "{}",
                    shared::sign(&ring, &session_id(&seed, i), iat, exp)
                )?;
            }
            out.flush()?;
            Ok(())
        }
        Some("argon2") => {
            let n: usize = arg(&args, 1, "N")?;
            let runtime = tokio::runtime::Runtime::new()?;
            let (median, rate) = runtime.block_on(async move {
                let passwords = std::sync::Arc::new(
                    origin_api::passwords::Passwords::new(
                        n.max(64),
                        origin_api::passwords::PoolMetrics::detached(),
                    )
                    .await?,
                );
                let password = || {
                    origin_api::domain::types::Password::offered(
                        "password",
                        "bench-password-1".into(),
                    )
                };
                let stored = passwords.hash(password()?).await?;
                let mut times = Vec::with_capacity(n);
                for _ in 0..n.max(1) {
                    let started = Instant::now();
                    let checked = passwords.verify(password()?, Some(stored.clone())).await?;
                    times.push(started.elapsed().as_secs_f64() * 1000.0);
                    anyhow::ensure!(checked.ok, "the password must verify");
                }
                times.sort_by(f64::total_cmp);
                // The same N hashes again, all submitted at once: the pool runs one per core.
                let started = Instant::now();
                let jobs: Vec<_> = (0..n.max(1))
                    .map(|_| {
                        let passwords = passwords.clone();
                        let stored = stored.clone();
                        let password = password();
                        tokio::spawn(async move { passwords.verify(password?, Some(stored)).await })
                    })
                    .collect();
                for job in jobs {
                    anyhow::ensure!(job.await??.ok, "the password must verify");
                }
                let rate = n.max(1) as f64 / started.elapsed().as_secs_f64();
                Ok::<_, anyhow::Error>((times[times.len() / 2], rate))
            })?;
            println!("{median:.3} {rate:.2}");
            Ok(())
        }
        _ => anyhow::bail!("usage: bench_helper mint SEED FROM COUNT IAT EXP | argon2 N"),
    }
}
