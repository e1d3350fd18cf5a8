//! sessiongate's origin: the authoritative session service (hyper + tokio).
//!
//! Layers, outermost first: [`http`] (the only module that knows HTTP) → [`authz`],
//! [`session`], [`users`], [`cleanup`] (the lifecycle as plain async functions) →
//! [`store`] (Postgres/SQLite via sea-orm), [`cache`] (Redis or in-process),
//! [`password`] (argon2id pool), [`ratelimit`], [`audit`]. [`config`] reads the
//! environment, [`clock`] tells the time, [`metrics`] counts.
//!
//! Entry points: [`serve`] / [`serve_with`] (tests start a server on an ephemeral port),
//! [`run`] (the binary), and the one-shot commands [`migrate`], [`create_admin`],
//! [`cleanup_once`].

pub mod app;
pub mod audit;
pub mod authz;
pub mod cache;
pub mod cleanup;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod pages;
pub mod password;
pub mod ratelimit;
pub mod session;
pub mod store;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use app::{App, Options};
pub use cache::FaultSwitch;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, LogFormat};

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    app: Arc<App>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    cleanup: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The running service's state (tests read metrics through HTTP, not this).
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Stops accepting, finishes in-flight requests, stops the cleanup job and closes
    /// connections to the database and cache.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        let _ = self.cleanup.await;
        self.app.close().await;
    }
}

/// Starts the service on `listener` with the given clock.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<ServerHandle> {
    serve_with(
        config,
        listener,
        Options {
            clock,
            cache_faults: None,
        },
    )
    .await
}

/// Starts the service on `listener` with explicit [`Options`].
pub async fn serve_with(
    config: Config,
    listener: TcpListener,
    options: Options,
) -> anyhow::Result<ServerHandle> {
    let addr = listener.local_addr().context("listener address")?;
    let app = App::start(config, options).await?;
    let (stop, stopped) = watch::channel(false);
    let mut server_stop = stopped.clone();
    let server = tokio::spawn(http::run(app.clone(), listener, async move {
        let _ = server_stop.wait_for(|s| *s).await;
    }));
    let cleanup = tokio::spawn(cleanup::periodic(app.clone(), stopped));
    Ok(ServerHandle {
        addr,
        app,
        stop,
        server,
        cleanup,
    })
}

/// Sets up logging: JSON lines or human-readable, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

fn warn_local_key(config: &Config) {
    if let config::KeySource::LocalFile(path) = &config.key_source {
        tracing::warn!(
            path = %path.display(),
            "SESSION_KEYS not set: using a generated signing key kept in the data directory; for local use only"
        );
    }
}

/// The service: binds `BIND_ADDR` and serves until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    warn_local_key(&config);
    let listener = TcpListener::bind(config.bind_addr)
        .await
        .with_context(|| format!("BIND_ADDR: cannot listen on {}", config.bind_addr))?;
    let production = config.is_production();
    let handle = serve(config, listener, Arc::new(SystemClock)).await?;
    tracing::info!(addr = %handle.addr(), production, "origin-api listening");
    shutdown_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

async fn open_store(config: &Config) -> anyhow::Result<store::Store> {
    let metrics = metrics::Metrics::new();
    let store = store::Store::connect(&config.database_url, metrics.db_queries.clone())
        .await
        .map_err(|e| anyhow!("cannot open the database: {}", error::short(&e)))?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow!("cannot migrate the database: {}", error::short(&e)))?;
    Ok(store)
}

/// Applies migrations and returns.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    open_store(config).await?.close().await;
    Ok(())
}

/// Creates the user as ADMIN, or promotes (and sets the password of) an existing one.
/// Returns true when created.
pub async fn create_admin(config: &Config, email: &str, password: String) -> anyhow::Result<bool> {
    let email = session::normalise_email(email);
    if !session::valid_email(&email) {
        return Err(anyhow!("--email: not a valid email address"));
    }
    if password.len() < password::MIN_BYTES || password.len() > password::MAX_BYTES {
        return Err(anyhow!("password: must be 8 to 1024 bytes"));
    }
    let store = open_store(config).await?;
    let metrics = metrics::Metrics::new();
    let passwords = password::Passwords::new(metrics.password_queue.clone())
        .await
        .map_err(|e| anyhow!("password hashing: {e}"))?;
    let hash = passwords
        .hash(password)
        .await
        .map_err(|e| anyhow!("password hashing: {e}"))?;
    let now = session::whole_seconds(chrono::Utc::now());
    let created = store
        .upsert_admin(store::user::Model {
            id: uuid::Uuid::now_v7().to_string(),
            email: email.clone(),
            name: None,
            password_hash: hash,
            role: "ADMIN".into(),
            created_at: now,
            updated_at: now,
        })
        .await
        .map_err(|e| match e {
            store::WriteError::Duplicate => anyhow!("email already registered"),
            store::WriteError::Db(e) => anyhow!("database: {}", error::short(&e)),
        })?;
    if let Some(url) = &config.redis_url {
        let user = store
            .user_by_email(&email)
            .await
            .map_err(|e| anyhow!("database: {}", error::short(&e)))?;
        if let Some(user) = user {
            forget_cached_user(url, &metrics, &user.id).await;
        }
    }
    store.close().await;
    Ok(created)
}

/// Drops a user's entry and bumps the users-list version in Redis, so running instances
/// see a promotion on the user's very next request. (The embedded in-process cache belongs
/// to the serving process; there the entry expires within its 300 s TTL.) A Redis that
/// cannot be reached is reported, not fatal: the entry then expires by its TTL.
async fn forget_cached_user(url: &str, metrics: &metrics::Metrics, user_id: &str) {
    use cache::Cache;
    let result = async {
        let redis = cache::RedisCache::connect(url, metrics.cache_round_trips.clone()).await?;
        let outcome = async {
            redis
                .users_changed(&[user_id.to_owned()], session::USER_CHANGED_TTL)
                .await?;
            redis.incr(cache::keys::USERS_VERSION).await.map(drop)
        }
        .await;
        redis.quit().await;
        outcome
    }
    .await;
    if let Err(e) = result {
        eprintln!(
            "origin-api: warning: cache not updated ({e}); running instances see the change within 300 s"
        );
    }
}

/// Deletes expired sessions once; returns how many.
pub async fn cleanup_once(config: &Config) -> anyhow::Result<u64> {
    let store = open_store(config).await?;
    let n = store
        .delete_expired(session::whole_seconds(chrono::Utc::now()))
        .await
        .map_err(|e| anyhow!("database: {}", error::short(&e)))?;
    store.close().await;
    Ok(n)
}
