# shellcheck shell=bash
# scripts/lib/pg-cluster.sh — a throwaway PostgreSQL cluster for a script's
# lifetime (the benchmark's Postgres scenarios), like the one the Rust tests
# start (tests/support/postgres.rs): initdb into a temporary directory, a
# server on a free loopback port, run as the `postgres` user when the caller
# is root (initdb and postgres refuse root).
#
#   start_throwaway_postgres   starts it; exports PG_CLUSTER_URL (a
#                              superuser URL to database `postgres`) and
#                              PG_CLUSTER_DIR
#   stop_throwaway_postgres    stops it and removes its directory
#
# Needs ensure_postgres_binaries (scripts/lib/postgres.sh) first.

start_throwaway_postgres() {
  local bin=${SESSIOND_PG_BIN:?run ensure_postgres_binaries first}
  local run=()
  PG_CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sessiond-bench-pg.XXXXXX")
  if (( EUID == 0 )); then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres: "$PG_CLUSTER_DIR"
    run=(setpriv --reuid postgres --regid postgres --init-groups --)
  fi
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${run[@]}" "$bin/initdb" -D "$PG_CLUSTER_DIR/data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
    >"$PG_CLUSTER_DIR/initdb.log" 2>&1 || { cat "$PG_CLUSTER_DIR/initdb.log" >&2; return 1; }
  # Durable commits, as production runs them: synchronous_commit stays on.
  "${run[@]}" "$bin/pg_ctl" -D "$PG_CLUSTER_DIR/data" -l "$PG_CLUSTER_DIR/postgres.log" -w -t 30 \
    -o "-p $port -c listen_addresses=127.0.0.1 -c max_connections=300 -k $PG_CLUSTER_DIR" start >/dev/null
  PG_CLUSTER_URL="postgres://postgres@127.0.0.1:$port/postgres"
  PG_CLUSTER_RUN=("${run[@]}")
  export PG_CLUSTER_URL PG_CLUSTER_DIR
}

stop_throwaway_postgres() {
  [[ -n ${PG_CLUSTER_DIR:-} ]] || return 0
  "${PG_CLUSTER_RUN[@]}" "$SESSIOND_PG_BIN/pg_ctl" -D "$PG_CLUSTER_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_CLUSTER_DIR"
  PG_CLUSTER_DIR=
}
