#!/usr/bin/env bash
# Builds the edge worker for wrangler: edge-gate/build/index.js + index_bg.wasm.
# wrangler.toml's [build] runs this; so does scripts/e2e.sh. Tools come from
# tools/provision.sh. No downloads: wasm-bindgen is the cargo-installed CLI,
# esbuild is the npm one, wasm-opt is disabled in Cargo.toml.
set -euo pipefail

crate_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

if [ -z "${WASM_BINDGEN_BIN:-}" ]; then
  WASM_BINDGEN_BIN="$(command -v wasm-bindgen || true)"
fi
if [ -z "$WASM_BINDGEN_BIN" ] || ! command -v worker-build >/dev/null; then
  echo "edge-gate build: wasm-bindgen or worker-build missing; run tools/provision.sh" >&2
  exit 1
fi
# The real wasm-bindgen, behind a wrapper that drops the name and producers sections.
if [ "$WASM_BINDGEN_BIN" != "$crate_dir/scripts/wasm-bindgen.sh" ]; then
  export SESSIONGATE_WASM_BINDGEN="$WASM_BINDGEN_BIN"
fi
export WASM_BINDGEN_BIN="$crate_dir/scripts/wasm-bindgen.sh"
export ESBUILD_BIN="${ESBUILD_BIN:-$crate_dir/node_modules/.bin/esbuild}"
if [ ! -x "$ESBUILD_BIN" ]; then
  echo "edge-gate build: $ESBUILD_BIN missing; run tools/provision.sh" >&2
  exit 1
fi

cd "$crate_dir"
worker-build --release

wasm="$crate_dir/build/index_bg.wasm"
raw=$(wc -c <"$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "edge-gate: build/index_bg.wasm is $raw bytes ($((raw / 1024)) KiB) raw, $gz bytes ($((gz / 1024)) KiB) gzipped"
