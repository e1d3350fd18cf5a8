#!/usr/bin/env bash
# Installs what building and testing the edge worker needs, skipping whatever is already
# in place (fast on a machine that has it all):
#   - the wasm32-unknown-unknown Rust target;
#   - wasm-bindgen-cli at exactly the wasm-bindgen version locked in Cargo.lock;
#   - worker-build (pinned below);
#   - the npm packages of edge-gate/package-lock.json (wrangler, its workerd and esbuild),
#     when node_modules is missing or older than the lockfile.
set -euo pipefail

WORKER_BUILD_VERSION=0.8.7

crate_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo_dir="$(cd "$crate_dir/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "install-tools: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

bindgen_want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$repo_dir/Cargo.lock")"
if [ -z "$bindgen_want" ]; then
  echo "install-tools: no wasm-bindgen in Cargo.lock" >&2
  exit 1
fi
bindgen_have="$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)"
if [ "$bindgen_have" != "$bindgen_want" ]; then
  echo "install-tools: installing wasm-bindgen-cli $bindgen_want (found: ${bindgen_have:-none}; takes several minutes)"
  # Not --locked: its lockfile pins a crate version the registry mirror lacks.
  cargo install wasm-bindgen-cli --version "=$bindgen_want"
fi

worker_build_have="$(worker-build --version 2>/dev/null || true)"
if [ "$worker_build_have" != "$WORKER_BUILD_VERSION" ]; then
  echo "install-tools: installing worker-build $WORKER_BUILD_VERSION (found: ${worker_build_have:-none}; takes about 12 minutes)"
  cargo install worker-build --version "=$WORKER_BUILD_VERSION" --locked
fi

cd "$crate_dir"
wrangler_want="$(node -p 'require("./package.json").devDependencies.wrangler')"
wrangler_have="$(node -p 'require("./node_modules/wrangler/package.json").version' 2>/dev/null || true)"
if [ ! -f node_modules/.package-lock.json ] \
  || [ package-lock.json -nt node_modules/.package-lock.json ] \
  || [ "$wrangler_have" != "$wrangler_want" ]; then
  echo "install-tools: npm ci in edge-gate (wrangler $wrangler_want)"
  npm ci --no-audit --no-fund
  touch node_modules/.package-lock.json
fi
echo "install-tools: wasm32 target, wasm-bindgen $bindgen_want, worker-build $WORKER_BUILD_VERSION, wrangler $wrangler_want ready"
