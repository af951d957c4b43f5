# shellcheck shell=bash
# scripts/lib/server.sh — a throwaway sessiond for shell test flows.
#
# Sourced by tests/grpcurl/flow.sh. Needs `python` with the test venv's
# packages on PATH (scripts/test-all arranges that).
#
#   start_sessiond   starts $SESSIOND_BIN (default target/debug/sessiond) on a
#                    free loopback port with a fresh data dir and
#                    config/roles.yaml, waits until it is serving, and sets
#                    SESSIOND_ADDR. It stops by itself when the shell exits,
#                    showing the end of its log if the shell failed.
#   stop_sessiond    stops it now and removes its data dir.

SERVER_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

start_sessiond() {
  local binary=${SESSIOND_BIN:-$SERVER_REPO_ROOT/target/debug/sessiond}
  SESSIOND_HOME=$(mktemp -d "${TMPDIR:-/tmp}/sessiond.XXXXXX")
  trap 'on_exit_stop_sessiond $?' EXIT
  local port
  port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  SESSIOND_ADDR=127.0.0.1:$port
  "$binary" --listen "$SESSIOND_ADDR" --data-dir "$SESSIOND_HOME/data" \
    --roles-file "$SERVER_REPO_ROOT/config/roles.yaml" \
    </dev/null >"$SESSIOND_HOME/sessiond.log" 2>&1 &
  SESSIOND_PID=$!
  python "$SERVER_REPO_ROOT/tests/python/sessiond_server.py" wait-until-serving "$SESSIOND_ADDR" "$SESSIOND_PID"
  echo "sessiond serving on $SESSIOND_ADDR (pid $SESSIOND_PID, log $SESSIOND_HOME/sessiond.log)"
}

# on_exit_stop_sessiond STATUS: the EXIT trap; shows the server's log when
# the shell is exiting with a failure.
on_exit_stop_sessiond() {
  if (( $1 != 0 )) && [[ -n ${SESSIOND_HOME:-} ]]; then
    show_sessiond_log
  fi
  stop_sessiond
}

show_sessiond_log() {
  echo "---- sessiond log (last 40 lines) ----" >&2
  tail -n 40 "$SESSIOND_HOME/sessiond.log" >&2 || true
  echo "--------------------------------------" >&2
}

stop_sessiond() {
  if [[ -n ${SESSIOND_PID:-} ]]; then
    kill "$SESSIOND_PID" 2>/dev/null || true
    wait "$SESSIOND_PID" 2>/dev/null || true
    SESSIOND_PID=
  fi
  if [[ -n ${SESSIOND_HOME:-} ]]; then
    rm -rf "$SESSIOND_HOME"
    SESSIOND_HOME=
  fi
}
