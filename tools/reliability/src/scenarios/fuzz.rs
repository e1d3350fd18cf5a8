//! `fuzz`: builds the token, cookie and `next` fuzz targets and replays their corpora
//! (short mode), or runs each for `--fuzz-seconds` (long mode). A crash fails the scenario
//! and leaves its input in shared/fuzz/artifacts.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::cx::Cx;
use crate::report::Outcome;

const NAME: &str = "fuzz";

/// `cargo fuzz <args>` in shared/fuzz (cargo-fuzz from tools/provision.sh).
async fn cargo_fuzz(repo: &Path, args: &[String]) -> anyhow::Result<Output> {
    Ok(tokio::process::Command::new("cargo")
        .arg("fuzz")
        .args(args)
        .current_dir(repo.join("shared/fuzz"))
        .env("RUSTC_BOOTSTRAP", "1")
        .output()
        .await?)
}

pub async fn run(cx: &Cx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::new(NAME);
    let repo = testkit::repo_root();
    let target_dir: PathBuf = testkit::target_dir().join("fuzz");
    let dir_args = ["--target-dir".to_owned(), target_dir.display().to_string()];
    let build = cargo_fuzz(&repo, &[&["build".to_owned()][..], &dir_args].concat()).await?;
    out.check(
        "cargo fuzz build (token, cookie, next)",
        build.status.success(),
        tail(&build.stderr),
    );
    if !build.status.success() {
        return Ok(out);
    }
    for target in ["token", "cookie", "next"] {
        let corpus = repo.join("shared/fuzz/corpus").join(target);
        let before = std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
        let libfuzzer = if cx.long() {
            format!("-max_total_time={}", cx.opts.fuzz_seconds)
        } else {
            "-runs=0".into()
        };
        let args = [
            &["run".to_owned(), target.to_owned()][..],
            &dir_args,
            &["--".to_owned(), libfuzzer],
        ]
        .concat();
        let r = cargo_fuzz(&repo, &args).await?;
        let after = std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
        let detail = if r.status.success() {
            format!(
                "{} executions; corpus {before} → {after} inputs",
                executions(&r.stderr)
            )
        } else {
            tail(&r.stderr)
        };
        out.check(
            format!("fuzz target {target}: no crash"),
            r.status.success(),
            detail,
        );
    }
    Ok(out)
}

/// libFuzzer's execution count from its last `Done N runs` (or `INITED`) line.
fn executions(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix("Done ")
                .and_then(|r| r.split(' ').next())
                .map(str::to_owned)
        })
        .or_else(|| {
            text.lines()
                .rev()
                .find(|l| l.contains("INITED"))
                .map(str::to_owned)
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().rev().take(4).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}
