//! `tokens-origin-edge`: the token corpus (`corpus/tokens.json`: HS256, HS512, `none`, bad
//! kids and sids, ...) minted by `tokens.mjs` with node's crypto, independently of the Rust
//! code, and sent to the origin directly and through the edge under `wrangler dev`
//! (started here through testkit), plus cookie formats and redirect tricks at the edge.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use testkit::{Edge, EdgeConfig};

use crate::cx::Cx;
use crate::report::{Outcome, Tally};

const NAME: &str = "tokens-origin-edge";

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub async fn run(cx: &Cx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::new(NAME);
    let live_user = cx.dedicated()?;
    let live = cx.login(live_user, NAME).await?;
    let revoked = cx.login(live_user, NAME).await?;
    let actor = cx.login(live_user, NAME).await?;
    revoked.update(|s| s.revoke_sent = Some(Instant::now()));
    let r = cx.api.revoke(&actor.token, &revoked.hash).await?;
    anyhow::ensure!(
        r.status == 200,
        "could not revoke the corpus's revoked session: {}",
        r.status
    );
    cx.ledger.add_revoke(&revoked, NAME);
    let edge = if cx.opts.edge {
        Some(start_edge(cx).await)
    } else {
        None
    };
    if let Some(Ok(edge)) = &edge {
        out.note(format!(
            "wrangler dev ready after {:.1} s",
            edge.ready_after().as_secs_f64()
        ));
    }
    let health = cx.ledger.user(cx.dedicated()?);
    let input = json!({
        "originUrl": cx.origin.url(),
        "edgeUrl": edge.as_ref().and_then(|e| e.as_ref().ok()).map(Edge::url),
        "kid": cx.kid,
        "key": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &cx.key),
        "liveToken": live.token,
        "revokedToken": revoked.token,
        "loginEmail": health.email,
        "loginPassword": health.password,
        "corpus": here().join("corpus/tokens.json"),
    });
    let result = run_node(cx, &input).await;
    if let Some(edge) = edge {
        match edge {
            Ok(edge) => edge.stop().await,
            Err(e) => out.check(
                "the edge ran",
                false,
                format!("{e:#}")
                    .lines()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
    }
    record(&mut out, &result?);
    Ok(out)
}

/// The edge in front of the run's origin, verifying with the run's key.
async fn start_edge(cx: &Cx) -> anyhow::Result<Edge> {
    let config = EdgeConfig::default()
        .var("ORIGIN_URL", cx.origin.url())
        .var("COOKIE_SECURE", "false")
        .secret("SESSION_KEYS", cx.session_keys());
    Edge::start(config).await
}

/// Runs `node tokens.mjs <input>`; its one JSON line of results.
async fn run_node(cx: &Cx, input: &Value) -> anyhow::Result<Value> {
    let input_path = cx.opts.run_dir.join("tokens-input.json");
    std::fs::write(&input_path, input.to_string())?;
    let output = tokio::process::Command::new("node")
        .arg(here().join("tokens.mjs"))
        .arg(&input_path)
        .output()
        .await
        .context("running node tokens.mjs")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
            anyhow!(
                "tokens.mjs printed no result (exit {:?}): {}",
                output.status.code(),
                tail.join(" | ")
            )
        })
}

/// One check per case, tallied by target and status.
fn record(out: &mut Outcome, result: &Value) {
    let tally = Tally::default();
    for case in result["cases"].as_array().cloned().unwrap_or_default() {
        let target = case["target"].as_str().unwrap_or("?");
        let status = case["status"]
            .as_u64()
            .map_or_else(|| "error".into(), |s| s.to_string());
        tally.add(target, &status);
        out.check(
            format!("{target}: {}", case["name"].as_str().unwrap_or("?")),
            case["ok"].as_bool() == Some(true),
            case["detail"].as_str().unwrap_or("").to_owned(),
        );
    }
    for n in result["notes"].as_array().into_iter().flatten() {
        out.note(n.as_str().unwrap_or("").to_owned());
    }
    out.absorb(&tally);
}
