#!/usr/bin/env bash
# sessiongate's benchmark, one command:
#
#   bash origin-api/bench/run.sh            # full run (~15 min): updates BENCHMARKS.md
#   bash origin-api/bench/run.sh --smoke    # CI: ~2 min, prints the table, asserts no timing
#
# Builds the origin in release mode (the same `cargo build --release -p origin-api` that
# everyone uses, so the binary is shared) plus the two bench-only examples (the ceiling and
# the token/argon2 helper), installs wrk from Debian when missing, then runs bench.py,
# which starts its own redis-server and a fresh Postgres database, drives the load with wrk
# and prints one table. Needs Postgres on 127.0.0.1:5432 (trust auth, user postgres).
# Other options: `python3 origin-api/bench/bench.py --help`.
# Exits non-zero only when the benchmark itself breaks, never because a figure is slow.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$repo"

need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v psql >/dev/null || need_apt+=(postgresql-client)
command -v python3 >/dev/null || need_apt+=(python3)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "bench: installing ${need_apt[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "bench: no Postgres on 127.0.0.1:5432" >&2; exit 1; }

echo "bench: cargo build --release -p origin-api"
cargo build --release -p origin-api
echo "bench: cargo build --release -p origin-api --example bench_ceiling --example bench_helper"
cargo build --release -p origin-api --example bench_ceiling --example bench_helper

exec python3 "$repo/origin-api/bench/bench.py" "$@"
