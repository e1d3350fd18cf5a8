//! sessiongate's origin: the authoritative session service (axum on hyper + tokio).
//!
//! Layers, outermost first: [`http`] (the only module that knows HTTP: the router,
//! extractors, handlers, pages) → [`domain`] (the session lifecycle, accounts,
//! administration and the audit log as plain async functions over a
//! [`domain::core::Core`]) → [`store`] (Postgres/SQLite via sea-orm), [`cache`] (Redis or
//! in-process, with the session-entry protocol), [`passwords`] (the argon2id pool),
//! [`ratelimit`], [`background`] (tracked off-path work). [`config`] reads the environment,
//! [`app`] composes the parts, [`clock`] tells the time, [`metrics`] counts.
//!
//! Entry points: [`serve`] / [`serve_with`] (tests start a server on an ephemeral port),
//! [`run`] (the binary), and the one-shot commands [`migrate`], [`create_admin`],
//! [`cleanup_once`].

pub mod app;
pub mod background;
pub mod cache;
pub mod cleanup;
pub mod clock;
pub mod config;
pub mod domain;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod passwords;
pub mod ratelimit;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use app::{App, Options};
pub use cache::FaultSwitch;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, LogFormat};

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    app: Arc<App>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    metrics_server: Option<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `METRICS_ADDR` is served, when it is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The running service (tests reach the cache through it to stage races).
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Stops accepting, finishes in-flight requests (up to `SHUTDOWN_GRACE`), finishes
    /// background work (bounded) and closes the database and cache connections.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.server.await;
        if let Some(m) = self.metrics_server {
            let _ = m.await;
        }
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

/// Starts the service on `listener` with explicit [`Options`] (and the `METRICS_ADDR`
/// listener when configured).
pub async fn serve_with(
    config: Config,
    listener: TcpListener,
    options: Options,
) -> anyhow::Result<ServerHandle> {
    let addr = listener.local_addr().context("listener address")?;
    let metrics_listener = match config.metrics_addr {
        Some(at) => Some(
            TcpListener::bind(at)
                .await
                .with_context(|| format!("METRICS_ADDR: cannot listen on {at}"))?,
        ),
        None => None,
    };
    let app = Arc::new(App::start(config, options).await?);
    app.start_jobs();
    let stop = CancellationToken::new();
    let c = &app.config;
    let server = tokio::spawn(http::serve(
        http::service(http::router(app.state())),
        listener,
        c.header_read_timeout,
        c.body_read_timeout,
        c.shutdown_grace,
        stop.clone().cancelled_owned(),
    ));
    let mut metrics_addr = None;
    let metrics_server = match metrics_listener {
        Some(listener) => {
            metrics_addr = listener.local_addr().ok();
            Some(tokio::spawn(http::serve(
                http::service(http::metrics_router(app.state())),
                listener,
                c.header_read_timeout,
                c.body_read_timeout,
                c.shutdown_grace,
                stop.clone().cancelled_owned(),
            )))
        }
        None => None,
    };
    Ok(ServerHandle {
        addr,
        metrics_addr,
        app,
        stop,
        server,
        metrics_server,
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

fn warn_about(config: &Config) {
    if let config::KeySource::LocalFile(path) = &config.key_source {
        tracing::warn!(
            path = %path.display(),
            "SESSION_KEYS not set: using a generated signing key kept in the data directory; for local use only"
        );
    }
    if let config::KeySource::LocalFile(path) = &config.assertion_key_source
        && config.is_production()
    {
        tracing::warn!(
            path = %path.display(),
            "ASSERTION_KEYS not set: identity assertions are signed with a key kept in the data directory; set ASSERTION_KEYS when running several instances"
        );
    }
    if !config.caches_sessions() {
        tracing::info!(
            "Postgres without REDIS_URL: sessions are verified against the database on every request, so several instances see each other's revocations at once; rate limits count per instance"
        );
    }
}

/// The service: binds `BIND_ADDR` and serves until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    warn_about(&config);
    let listener = TcpListener::bind(config.bind_addr)
        .await
        .with_context(|| format!("BIND_ADDR: cannot listen on {}", config.bind_addr))?;
    let production = config.is_production();
    let handle = serve(config, listener, Arc::new(SystemClock)).await?;
    tracing::info!(addr = %handle.addr(), production, "origin-api listening");
    if let Some(at) = handle.metrics_addr() {
        tracing::info!(addr = %at, "metrics listening");
    }
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

/// Applies migrations and returns.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let metrics = metrics::Metrics::new();
    app::open_store(config, &metrics).await?.close().await;
    Ok(())
}

/// Creates the user as ADMIN, or promotes (and sets the password of) an existing one.
/// Returns true when created. With Redis, running instances see a promotion on the user's
/// very next request; the embedded in-process cache belongs to the serving process, where
/// a cached session keeps the old role for at most `SESSION_CACHE_TTL`.
pub async fn create_admin(config: &Config, email: &str, password: String) -> anyhow::Result<bool> {
    use domain::types::{Email, Password};
    let email = Email::parse(email).map_err(|_| anyhow!("--email: not a valid email address"))?;
    let password = Password::new_password("password", password)
        .map_err(|_| anyhow!("password: must be 8 to 1024 bytes"))?;
    let app = App::start(config.clone(), Options::default()).await?;
    let result = domain::accounts::create_admin(&app.core, email, password).await;
    app.close().await;
    result.map_err(|e| match e {
        domain::error::DomainError::Conflict(m) => anyhow!("{}", m.to_lowercase()),
        e => anyhow!("{e}"),
    })
}

/// Deletes expired sessions once; returns how many.
pub async fn cleanup_once(config: &Config) -> anyhow::Result<u64> {
    let metrics = metrics::Metrics::new();
    let store = app::open_store(config, &metrics).await?;
    let n = store
        .delete_expired(clock::whole_seconds(chrono::Utc::now()))
        .await
        .map_err(|e| anyhow!("database: {}", domain::error::short(&e)))?;
    store.close().await;
    Ok(n)
}
