#!/usr/bin/env bash
# The pages' end-to-end test in a real browser, through the edge:
#
#   headless Chromium (playwright-core) → wrangler dev (edge-gate) → origin-api
#                                                                     ├ Postgres (fresh database)
#                                                                     └ Redis (its own logical db)
#
# Idempotent: installs Chromium when missing (Debian packages), runs `npm ci` when
# node_modules is missing or older than the lockfile, installs the edge tools (skipped when
# present), builds the origin, then starts everything on free loopback ports, bootstraps
# an ADMIN with `origin-api create-admin`, runs the node:test suite against the edge's
# address only, and stops every process it started on exit. Every wait is time-boxed.
#
# Screenshots (desktop 1280x800 and phone 390x844) go to origin-api/tests/browser/screenshots/.
# Needs Postgres on 127.0.0.1:5432 (trust auth, user postgres) and Redis on 127.0.0.1:6379.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
REDIS_HOST=127.0.0.1
REDIS_PORT=6379

log() { printf 'browser-test: %s\n' "$*"; }
die() {
  printf 'browser-test: %s\n' "$*" >&2
  exit 1
}

# ---------------------------------------------------------------- tools

if [ ! -x "$CHROMIUM" ]; then
  log "installing Chromium (Debian packages chromium, chromium-driver)"
  command -v apt-get >/dev/null || die "$CHROMIUM is missing and apt-get is not available"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
[ -x "$CHROMIUM" ] || die "$CHROMIUM is still missing after the install"
log "$("$CHROMIUM" --version 2>/dev/null | head -n 1)"

cd "$here"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci (playwright-core from package-lock.json; no browser download)"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
  touch node_modules/.package-lock.json
fi

bash "$repo/edge-gate/scripts/install-tools.sh"

for tool in psql redis-cli curl node; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

log "building origin-api"
cargo build --manifest-path "$repo/Cargo.toml" -p origin-api --bin origin-api
origin_bin="${CARGO_TARGET_DIR:-$repo/target}/debug/origin-api"
[ -x "$origin_bin" ] || die "no binary at $origin_bin"

# ---------------------------------------------------------------- clean-up

work="$(mktemp -d "${TMPDIR:-/tmp}/sessiongate-browser.XXXXXX")"
db=""
origin_pid=""
edge_pid=""
redis_db=""
lease_key=""
lease_token=""

redis() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }

# Sends `signal` to pid (or, with a leading -, a process group), then waits up to
# `seconds` for it to go, then SIGKILLs it.
stop() {
  local target="$1" seconds="$2" probe="${1#-}"
  kill -TERM -- "$target" 2>/dev/null || return 0
  for _ in $(seq 1 $((seconds * 10))); do
    kill -0 -- "$target" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL -- "$target" 2>/dev/null || true
  wait "$probe" 2>/dev/null || true
}

cleanup() {
  local status=$?
  set +e
  # wrangler's node process and its workerd children share one process group.
  [ -n "$edge_pid" ] && stop "-$edge_pid" 10
  [ -n "$origin_pid" ] && stop "$origin_pid" 15
  if [ -n "$db" ]; then
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  fi
  if [ -n "$lease_key" ]; then
    redis -n "$redis_db" flushdb >/dev/null 2>&1
    # Release the lease only if it is still ours.
    redis -n 0 eval "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0" \
      1 "$lease_key" "$lease_token" >/dev/null 2>&1
  fi
  if [ "$status" -ne 0 ]; then
    for f in origin.log edge.log; do
      if [ -s "$work/$f" ]; then
        printf '\n--- last lines of %s ---\n' "$f" >&2
        tail -n 40 "$work/$f" >&2
      fi
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# Waits until `curl` of $1 answers 200, the process $2 is alive, for at most $3 seconds.
wait_ready() {
  local url="$1" pid="$2" seconds="$3" name="$4"
  for _ in $(seq 1 $((seconds * 4))); do
    kill -0 "$pid" 2>/dev/null || die "$name exited before it was ready"
    if [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)" = 200 ]; then
      return 0
    fi
    sleep 0.25
  done
  die "$name not ready after ${seconds}s"
}

random_b64url() { head -c "$1" /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '='; }

# ---------------------------------------------------------------- origin on Postgres + Redis

db="sessiongate_browser_$(date +%s)_$$"
psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "CREATE DATABASE $db" >/dev/null

# A logical Redis database of its own (1..15), leased with the same lock keys as the Rust
# test harness (origin-api/tests/common), and emptied before and after the run, so no
# rate-limit window or cached page of another run leaks in, and no other run's is touched.
lease_token="browser-$(random_b64url 12)"
for _ in $(seq 1 120); do
  for candidate in $(seq 15 -1 1); do
    if [ "$(redis -n 0 set "sessiongate-test-lease:$candidate" "$lease_token" EX 3600 NX)" = OK ]; then
      redis_db="$candidate"
      lease_key="sessiongate-test-lease:$candidate"
      break 2
    fi
  done
  sleep 0.5
done
[ -n "$lease_key" ] || die "no free Redis database (1..15) to lease"
redis -n "$redis_db" flushdb >/dev/null

session_keys="browser:$(random_b64url 32)"
origin_port="$(free_port)"
origin_env=(
  "DATABASE_URL=postgres://$PG_USER@$PG_HOST:$PG_PORT/$db"
  "REDIS_URL=redis://$REDIS_HOST:$REDIS_PORT/$redis_db"
  "SESSION_KEYS=$session_keys"
  "COOKIE_SECURE=false"
  "TRUSTED_PROXIES=127.0.0.1/32"
  "BIND_ADDR=127.0.0.1:$origin_port"
  "RUST_LOG=${RUST_LOG:-info}"
)

log "starting origin-api on 127.0.0.1:$origin_port (database $db, redis db $redis_db)"
env "${origin_env[@]}" "$origin_bin" serve >"$work/origin.log" 2>&1 &
origin_pid=$!
wait_ready "http://127.0.0.1:$origin_port/readyz" "$origin_pid" 60 "origin-api"

admin_email="admin-$(date +%s)@example.test"
admin_password="admin-$(random_b64url 18)"
printf '%s\n' "$admin_password" | env "${origin_env[@]}" "$origin_bin" create-admin --email "$admin_email"

# ---------------------------------------------------------------- edge (wrangler dev)

edge_port="$(free_port)"
inspector_port="$(free_port)"
printf 'SESSION_KEYS="%s"\n' "$session_keys" >"$work/edge.env"
log "starting wrangler dev on 127.0.0.1:$edge_port in front of the origin"
(
  cd "$repo"
  # setsid: a process group of its own, so clean-up ends workerd too.
  exec env WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false \
    CLOUDFLARE_CF_FETCH_ENABLED=false NO_COLOR=1 FORCE_COLOR=0 CI=true \
    setsid "$repo/edge-gate/node_modules/.bin/wrangler" dev \
    --ip 127.0.0.1 --port "$edge_port" --inspector-port "$inspector_port" \
    --persist-to "$work/wrangler-state" --env-file "$work/edge.env" \
    --show-interactive-dev-session=false --log-level log \
    --var "ORIGIN_URL:http://127.0.0.1:$origin_port" --var "COOKIE_SECURE:false"
) >"$work/edge.log" 2>&1 </dev/null &
edge_pid=$!
# The first start builds the worker (cargo, release wasm): allow for it.
wait_ready "http://127.0.0.1:$edge_port/healthz" "$edge_pid" 600 "wrangler dev"
log "edge ready"

# ---------------------------------------------------------------- the browser test

cd "$here"
set +e
EDGE_URL="http://127.0.0.1:$edge_port" ADMIN_EMAIL="$admin_email" ADMIN_PASSWORD="$admin_password" \
  CHROMIUM="$CHROMIUM" SCREENSHOT_DIR="$here/screenshots" \
  timeout 900 node --test --test-concurrency=1 --test-reporter=spec pages.test.mjs
status=$?
set -e
if [ "$status" -ne 0 ]; then
  die "browser test failed (exit $status)"
fi
log "screenshots in origin-api/tests/browser/screenshots/"
