#!/usr/bin/env bash
# Starts, stops and pokes the reliability suite's own Redis and Postgres: extra instances
# on their own loopback ports, data under $RUN_DIR, so the shared 6379/5432 services are
# never touched. Called by run.sh (set-up, teardown) and by the driver (fault injection).
#
#   svc.sh redis-start | redis-stop | redis-cli ARGS... | pg-init | pg-start | pg-stop | teardown
#
# Environment: RUN_DIR (required), REDIS_PORT (default 6392), PG_PORT (default 5442).
set -euo pipefail

: "${RUN_DIR:?RUN_DIR is required}"
REDIS_PORT="${REDIS_PORT:-6392}"
PG_PORT="${PG_PORT:-5442}"
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
redis_dir="$RUN_DIR/redis"
pg_dir="$RUN_DIR/pg"

# initdb and postgres refuse to run as root: use the postgres account then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

case "${1:-}" in
  redis-start)
    mkdir -p "$redis_dir"
    # --save '' and no AOF: a restart comes back empty, like a replaced cache node.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
      --daemonize yes --dir "$redis_dir" --pidfile "$redis_dir/redis.pid" \
      --logfile "$redis_dir/redis.log" --enable-debug-command local >/dev/null
    for _ in $(seq 1 100); do
      rcli ping >/dev/null 2>&1 && exit 0
      sleep 0.05
    done
    echo "svc: redis on $REDIS_PORT did not answer" >&2
    exit 1
    ;;
  redis-stop)
    rcli shutdown nosave >/dev/null 2>&1 || true
    for _ in $(seq 1 100); do
      rcli ping >/dev/null 2>&1 || exit 0
      sleep 0.05
    done
    echo "svc: redis on $REDIS_PORT did not stop" >&2
    exit 1
    ;;
  redis-cli)
    shift
    rcli "$@"
    ;;
  pg-init)
    mkdir -p "$pg_dir/sock"
    if [ "$(id -u)" = 0 ]; then chown -R postgres "$pg_dir"; chmod 755 "$RUN_DIR"; fi
    as_pg "$PG_BIN/initdb" -D "$pg_dir/data" -U postgres -A trust -E UTF8 --no-sync >"$pg_dir/initdb.log" 2>&1 \
      || { cat "$pg_dir/initdb.log" >&2; exit 1; }
    ;;
  pg-start)
    as_pg "$PG_BIN/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/postgres.log" -w -t 60 \
      -o "-p $PG_PORT -k $pg_dir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
      start >/dev/null
    ;;
  pg-stop)
    as_pg "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m fast -w -t 60 stop >/dev/null
    ;;
  teardown)
    rcli shutdown nosave >/dev/null 2>&1 || true
    if [ -f "$pg_dir/data/postmaster.pid" ]; then
      as_pg "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    ;;
  *)
    echo "usage: svc.sh redis-start|redis-stop|redis-cli ARGS|pg-init|pg-start|pg-stop|teardown" >&2
    exit 2
    ;;
esac
