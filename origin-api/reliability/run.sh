#!/usr/bin/env bash
# sessiongate reliability suite (issue 7): faults, load, abuse and fuzzing against the
# release origin with its own Redis and Postgres.
#
#   bash origin-api/reliability/run.sh [--short | --long] [--no-edge] [--no-fuzz]
#                                      [--only a,b] [--fuzz-seconds N] [--keep]
#
# --short (the default, CI) runs every scenario with short fault phases and builds the
# fuzz targets and replays their corpus; --long runs longer phases, three load rounds and
# each fuzz target for --fuzz-seconds (default 300). Starts Redis on 127.0.0.1:6392 and
# Postgres on 127.0.0.1:5442 under a temporary directory (the shared 6379/5432 services
# are never touched), the origin on 127.0.0.1:18480, and the edge under `wrangler dev` on
# a free port. Loopback only. Exits non-zero when any check fails; the last line is
# "N passed, M failed". Results: origin-api/reliability/results/latest-<mode>.json.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$repo/origin-api/reliability"
export PATH="$HOME/.cargo/bin:$PATH"
export REDIS_PORT="${REDIS_PORT:-6392}" PG_PORT="${PG_PORT:-5442}"
ORIGIN_PORT="${ORIGIN_PORT:-18480}"

mode=short
driver_args=()
keep=0
edge=1
fuzz=1
while [ $# -gt 0 ]; do
  case "$1" in
    --short) mode=short ;;
    --long) mode=long ;;
    --no-edge) edge=0; driver_args+=(--no-edge) ;;
    --no-fuzz) fuzz=0; driver_args+=(--no-fuzz) ;;
    --only) driver_args+=(--only "$2"); shift ;;
    --fuzz-seconds) driver_args+=(--fuzz-seconds "$2"); shift ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

step() { printf '\n--- %s (%ss)\n' "$*" "$SECONDS"; }

step "tools"
for tool in redis-server redis-cli node; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (apt-get install redis-server nodejs)" >&2; exit 1; }
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || { echo "run.sh: Postgres server binaries missing (apt-get install postgresql)" >&2; exit 1; }
for port in "$REDIS_PORT" "$PG_PORT" "$ORIGIN_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run.sh: 127.0.0.1:$port is already in use; set REDIS_PORT / PG_PORT / ORIGIN_PORT" >&2
    exit 1
  fi
done
if [ "$fuzz" = 1 ] && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "run.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
if [ "$edge" = 1 ]; then
  bash "$repo/edge-gate/scripts/install-tools.sh"
fi

step "build (release origin and the driver)"
cd "$repo"
cargo build --release -p origin-api
cargo build --release -p origin-api --example reliability

RUN_DIR="$(mktemp -d /tmp/sessiongate-reliability.XXXXXX)"
export RUN_DIR
status=1
cleanup() {
  if [ -f "$RUN_DIR/origin.pid" ]; then
    kill -KILL "$(cat "$RUN_DIR/origin.pid")" 2>/dev/null || true
  fi
  bash "$here/svc.sh" teardown || true
  if [ "$keep" = 1 ] || [ "$status" != 0 ]; then
    echo "run.sh: logs and data kept in $RUN_DIR"
  else
    rm -rf "$RUN_DIR"
  fi
}
trap cleanup EXIT

step "services: Redis :$REDIS_PORT, Postgres :$PG_PORT"
bash "$here/svc.sh" redis-start
bash "$here/svc.sh" pg-init
bash "$here/svc.sh" pg-start
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc 'CREATE DATABASE sessiongate'

step "scenarios ($mode)"
mkdir -p "$here/results"
set +e
"$repo/target/release/examples/reliability" \
  --mode "$mode" \
  --origin-bin "$repo/target/release/origin-api" \
  --run-dir "$RUN_DIR" \
  --svc "$here/svc.sh" \
  --repo "$repo" \
  --redis-port "$REDIS_PORT" --pg-port "$PG_PORT" --origin-port "$ORIGIN_PORT" \
  --results "$here/results/latest-$mode.json" \
  "${driver_args[@]}"
status=$?
set -e
step "done"
exit "$status"
