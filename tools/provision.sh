#!/usr/bin/env bash
# Installs and starts what building, testing, benchmarking and the reliability suite need,
# skipping whatever is already in place (fast on a machine that has it all). The only
# script in the repository that runs apt-get. `.ci/run` calls it first; so can anyone:
#
#   bash tools/provision.sh        (or: cargo xtask provision)
#
#   - Debian packages: redis-server, postgresql, wrk, chromium + chromium-driver, nginx,
#     caddy, nodejs + npm, python3-yaml (compose check), gzip, curl;
#   - Rust: rustfmt and clippy, the wasm32-unknown-unknown target, wasm-bindgen-cli at
#     exactly the version locked in Cargo.lock, worker-build (pinned below), cargo-fuzz;
#   - npm packages: edge-gate/ (wrangler, its workerd and esbuild) and the browser test's
#     (playwright-core; no browser download: Debian's chromium is used), whenever
#     node_modules is missing or older than its lockfile;
#   - services: Postgres on 127.0.0.1:5432 (trust auth) and Redis on 127.0.0.1:6379, the
#     machine's shared ones (the README's test command uses them), started when stopped.
#     The harnesses start private instances of their own through testkit.
set -euo pipefail

WORKER_BUILD_VERSION=0.8.7

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
say() { printf 'provision: %s\n' "$*"; }

# ---------------------------------------------------------------- Debian packages

missing=()
need() { # need PACKAGE TEST...: queue PACKAGE unless the test command succeeds
  local package="$1"
  shift
  "$@" >/dev/null 2>&1 || missing+=("$package")
}
need redis-server command -v redis-server
need postgresql sh -c 'ls /usr/lib/postgresql/*/bin/initdb && command -v pg_ctlcluster && command -v psql'
need wrk command -v wrk
need chromium test -x /usr/bin/chromium
need chromium-driver command -v chromedriver
need nginx command -v nginx
need caddy command -v caddy
need nodejs command -v node
need npm command -v npm
need python3-yaml python3 -c 'import yaml'
need gzip command -v gzip
need curl command -v curl
if [ "${#missing[@]}" -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------- Rust tools

installed_components="$(rustup component list --installed 2>/dev/null || true)"
for component in rustfmt clippy; do
  grep -q "^$component" <<<"$installed_components" || rustup component add "$component"
done
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

bindgen_want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$repo/Cargo.lock")"
[ -n "$bindgen_want" ] || { echo "provision: no wasm-bindgen in Cargo.lock" >&2; exit 1; }
bindgen_have="$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)"
if [ "$bindgen_have" != "$bindgen_want" ]; then
  say "installing wasm-bindgen-cli $bindgen_want (found: ${bindgen_have:-none}; takes several minutes)"
  # Not --locked: its lockfile pins a crate version the registry mirror lacks.
  cargo install wasm-bindgen-cli --version "=$bindgen_want"
fi

worker_build_have="$(worker-build --version 2>/dev/null || true)"
if [ "$worker_build_have" != "$WORKER_BUILD_VERSION" ]; then
  say "installing worker-build $WORKER_BUILD_VERSION (found: ${worker_build_have:-none}; takes about 12 minutes)"
  cargo install worker-build --version "=$WORKER_BUILD_VERSION" --locked
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# ---------------------------------------------------------------- npm packages

npm_ci() { # npm_ci DIR: when node_modules is missing or older than the lockfile
  local dir="$1"
  if [ ! -f "$dir/node_modules/.package-lock.json" ] \
    || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    say "npm ci in ${dir#"$repo"/}"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
    touch "$dir/node_modules/.package-lock.json"
  fi
}
npm_ci "$repo/edge-gate"
wrangler_want="$(cd "$repo/edge-gate" && node -p 'require("./package.json").devDependencies.wrangler')"
wrangler_have="$(cd "$repo/edge-gate" && node -p 'require("./node_modules/wrangler/package.json").version' 2>/dev/null || true)"
if [ "$wrangler_have" != "$wrangler_want" ]; then
  rm -f "$repo/edge-gate/node_modules/.package-lock.json"
  npm_ci "$repo/edge-gate"
fi
npm_ci "$repo/origin-api/tests/browser"

# ---------------------------------------------------------------- shared services

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    pg_createcluster "$(ls /usr/lib/postgresql | sort -n | tail -1)" main
  fi
  version=$(ls /etc/postgresql | sort -n | tail -1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  pg_isready -h 127.0.0.1 -p 5432
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null
fi

say "ready: wasm-bindgen $bindgen_want, worker-build $WORKER_BUILD_VERSION, wrangler $wrangler_want, cargo-fuzz, Postgres :5432, Redis :6379"
