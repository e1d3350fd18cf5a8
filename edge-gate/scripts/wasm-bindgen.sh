#!/usr/bin/env bash
# worker-build runs wasm-bindgen with arguments of its own; build.sh points it here to add
# two: drop the `name` section (function names for stack traces: the gzipped worker is
# 198 KiB with it, 165 KiB without; BENCHMARKS.md) and the `producers` section
# (toolchain telemetry). A panic still logs its message; only the
# symbolised wasm frames of a stack trace are lost.
set -euo pipefail
case "${1:-}" in
  --version | -V | --help | -h) exec "$SESSIONGATE_WASM_BINDGEN" "$@" ;;
esac
exec "$SESSIONGATE_WASM_BINDGEN" --remove-name-section --remove-producers-section "$@"
