//! The benchmark's helper (`bench.py` runs it; no HTTP, no database):
//!
//! - `bench_helper mint SEED FROM COUNT IAT EXP` prints one signed session token per line
//!   (signed with `SESSION_KEYS`) for the session ids `SEED:FROM` … `SEED:FROM+COUNT-1`.
//!   Session id `SEED:i` is base64url(SHA-256("SEED:i")), so the script can insert the
//!   matching rows with SQL `generate_series` (the row id is the id's storage hash), and
//!   1M sessions never need 1M logins.
//! - `bench_helper argon2 N` verifies a password N times, one at a time, through the
//!   origin's own hashing pool (see `Pool`) and prints the median
//!   milliseconds per hash (the argon2 bound of the login benchmark, cores ÷ that time, is
//!   measured in the same run), then the hashes per second when the same N verifications are
//!   submitted at once (the pool runs one per core).
//! - `bench_helper key session HASH` prints the origin's cache key name (from
//!   `testkit::keys`, the one place the tools keep them).
//! - `bench_helper sign N` signs N identity assertions with `ASSERTION_KEYS`
//!   (`shared::assertion::AssertionKeys::sign`, what a gateway decision does when it cannot
//!   reuse one), then verifies each as an app would (`shared::assertion::verify`), and
//!   prints the median microseconds of a sign and of a verify.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use shared::{KeyRing, SessionId};

const PASSWORD: &str = "bench-password-1";

/// The origin's own hashing pool. This is the one place that names the origin's password
/// API; when that API is renamed, adjust the three calls below.
struct Pool(origin_api::passwords::Passwords);

fn offered(password: &str) -> anyhow::Result<origin_api::domain::types::Password> {
    Ok(origin_api::domain::types::Password::offered(
        "password",
        password.into(),
    )?)
}

impl Pool {
    /// A pool whose queue holds every job the measurement submits at once.
    async fn new(jobs: usize) -> anyhow::Result<Pool> {
        Ok(Pool(
            origin_api::passwords::Passwords::new(
                jobs.max(64),
                origin_api::passwords::PoolMetrics::detached(),
            )
            .await?,
        ))
    }

    async fn hash(&self, password: &str) -> anyhow::Result<String> {
        Ok(self.0.hash(offered(password)?).await?)
    }

    async fn verify(&self, password: &str, stored: String) -> anyhow::Result<bool> {
        Ok(self.0.verify(offered(password)?, Some(stored)).await?.ok)
    }
}

/// The median milliseconds of `n` verifications one at a time, then the rate of the same
/// `n` submitted at once (the pool runs one per core).
async fn argon2(n: usize) -> anyhow::Result<(f64, f64)> {
    let passwords = Arc::new(Pool::new(n).await?);
    let stored = passwords.hash(PASSWORD).await?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let checked = passwords.verify(PASSWORD, stored.clone()).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(checked, "the password must verify");
    }
    times.sort_by(f64::total_cmp);
    let started = Instant::now();
    let jobs: Vec<_> = (0..n)
        .map(|_| {
            let (passwords, stored) = (passwords.clone(), stored.clone());
            tokio::spawn(async move { passwords.verify(PASSWORD, stored).await })
        })
        .collect();
    for job in jobs {
        anyhow::ensure!(job.await??, "the password must verify");
    }
    Ok((
        times[times.len() / 2],
        n as f64 / started.elapsed().as_secs_f64(),
    ))
}

/// The median microseconds of `n` assertion signatures and of `n` verifications.
fn sign(n: usize) -> anyhow::Result<(f64, f64)> {
    use shared::assertion::{Assertion, AssertionKeys, Identity, verify};
    let keys = AssertionKeys::parse(&std::env::var("ASSERTION_KEYS")?)
        .map_err(|e| anyhow::anyhow!("ASSERTION_KEYS: {e}"))?;
    let jwks = keys.jwks();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let assertion = |i: usize| Assertion {
        issuer: "http://app.bench".into(),
        audience: "app.bench".into(),
        identity: Identity {
            user_id: format!("bench-owner-{i}"),
            email: format!("owner{i}@bench.test"),
            name: String::new(),
            role: shared::rules::Role::User,
            session: session_id("sign", i as u64).storage_hash(),
        },
        issued_at: now,
        jwt_id: format!("bench-jti-{i:016}"),
    };
    let (mut signs, mut verifies) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let claims = assertion(i);
        let started = Instant::now();
        let token = std::hint::black_box(keys.sign(std::hint::black_box(&claims)));
        signs.push(started.elapsed().as_secs_f64() * 1e6);
        let started = Instant::now();
        let verified = verify(&jwks, &token, "app.bench", now);
        verifies.push(started.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(verified.is_ok(), "the assertion must verify");
    }
    signs.sort_by(f64::total_cmp);
    verifies.sort_by(f64::total_cmp);
    Ok((signs[n / 2], verifies[n / 2]))
}

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
            let (median, rate) = tokio::runtime::Runtime::new()?.block_on(argon2(n.max(1)))?;
            println!("{median:.3} {rate:.2}");
            Ok(())
        }
        Some("sign") => {
            let n: usize = arg(&args, 1, "N")?;
            let (sign, verify) = sign(n.max(1))?;
            println!("{sign:.2} {verify:.2}");
            Ok(())
        }
        // The origin's cache key names, from their one place (testkit::keys).
        Some("key") => {
            let name: String = arg(&args, 2, "NAME")?;
            match args.get(1).map(String::as_str) {
                Some("session") => println!("{}", testkit::keys::session(&name)),
                _ => anyhow::bail!("usage: bench_helper key session HASH"),
            }
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: bench_helper mint SEED FROM COUNT IAT EXP | argon2 N | sign N | key session NAME"
        ),
    }
}
