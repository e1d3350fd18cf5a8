//! `example-app`: serves [`example_app::router`] on `BIND_ADDR` (default
//! `127.0.0.1:3000`), verifying assertions with the keys at `JWKS_URL` (default
//! `http://127.0.0.1:8080/.well-known/jwks.json`) for `APP_AUDIENCE` (default: the
//! request's `Host`).

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let bind = env("BIND_ADDR", "127.0.0.1:3000");
    let jwks = env("JWKS_URL", "http://127.0.0.1:8080/.well-known/jwks.json");
    let keys = example_app::Keys::fetch(&jwks)
        .await
        .with_context(|| format!("JWKS_URL: cannot fetch {jwks}"))?;
    let app = example_app::App {
        keys,
        audience: std::env::var("APP_AUDIENCE").ok(),
    };
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("BIND_ADDR: cannot listen on {bind}"))?;
    eprintln!("example-app listening on {bind}");
    axum::serve(listener, example_app::router(app))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
