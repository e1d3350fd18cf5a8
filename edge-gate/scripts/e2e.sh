#!/usr/bin/env bash
# End-to-end test of the edge: installs missing tools, builds the release worker, checks
# its size budget, then runs tests/e2e/ (node:test) which starts a recording origin and
# `wrangler dev` on loopback and checks every edge rule with real HTTP. Exits non-zero
# on any failure. Loopback only; no Cloudflare account.
set -euo pipefail

crate_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false CLOUDFLARE_CF_FETCH_ENABLED=false

# Gzipped .wasm budget (the issue asks for under 300 KiB).
MAX_WASM_GZIP_BYTES=$((300 * 1024))

bash "$crate_dir/scripts/install-tools.sh"
bash "$crate_dir/scripts/build.sh"

gz=$(gzip -9 -c "$crate_dir/build/index_bg.wasm" | wc -c)
if [ "$gz" -gt "$MAX_WASM_GZIP_BYTES" ]; then
  echo "edge-gate: index_bg.wasm is $gz bytes gzipped, over the $MAX_WASM_GZIP_BYTES-byte budget" >&2
  exit 1
fi

cd "$crate_dir"
# Time box for the whole run; each wrangler start has its own deadline inside the test.
timeout --kill-after=30 900 node --test --test-reporter=spec tests/e2e/
