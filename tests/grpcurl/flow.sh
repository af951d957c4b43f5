#!/usr/bin/env bash
# tests/grpcurl/flow.sh — sessiond from the command line, with grpcurl.
#
# Starts a fresh sessiond and walks a session's life with grpcurl using
# server reflection only (no .proto files): list the services, create a
# session, log, check a privilege, compare-and-set storage, close, and see a
# call on the closed session refused; then a channel message from a post to
# a subscriber. Every answer is checked.
#
# These are the commands README.md shows under "Using it with grpcurl" (and,
# for the last step, under "Messages"); change both together.
#
# Needs grpcurl and python on PATH and a built target/debug/sessiond
# (SESSIOND_BIN overrides); scripts/test-all provides all three.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/lib/server.sh

# expect TEXT PATTERN...: fails unless TEXT contains every PATTERN.
expect() {
  local text=$1 pattern
  shift
  for pattern in "$@"; do
    if [[ $text != *"$pattern"* ]]; then
      printf 'FAIL: expected %s in:\n%s\n' "$pattern" "$text" >&2
      return 1
    fi
  done
  printf '  ok: %s\n' "$*"
}

step() { printf '\n-- %s\n' "$*"; }

start_sessiond
ADDR=$SESSIOND_ADDR

# Reads one field of grpcurl's JSON answer: `field token`, `field session sessionId`.
field() {
  python3 -c 'import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1:]: value = value[key]
print(value)' "$@"
}

step "What sessiond serves"
SERVICES=$(grpcurl -plaintext "$ADDR" list)
expect "$SERVICES" sessiond.v1.SessionService sessiond.v1.PrivilegeService \
  sessiond.v1.StorageService sessiond.v1.LogService grpc.health.v1.Health
HEALTH=$(grpcurl -plaintext "$ADDR" grpc.health.v1.Health/Check)
expect "$HEALTH" '"status": "SERVING"'

step "Start a session for alice, a Manager, with a cart in its storage"
CREATED=$(grpcurl -plaintext -d @ "$ADDR" sessiond.v1.SessionService/CreateSession <<'EOF'
{"kind": "SESSION_KIND_WEB_USER", "userId": "alice", "idleTimeout": "1800s",
 "roles": ["Manager"],
 "storage": {"cart": {"items": ["book", "pen"], "total": 12.5}}}
EOF
)
TOKEN=$(echo "$CREATED" | field token)
SESSION_ID=$(echo "$CREATED" | field session sessionId)
expect "$CREATED" '"state": "SESSION_STATE_OPEN"' '"userId": "alice"'

step "Log two entries"
LOGGED=$(grpcurl -plaintext -d @ "$ADDR" sessiond.v1.LogService/Log <<EOF
{"session": {"token": "$TOKEN"},
 "entries": [{"level": "LOG_LEVEL_INFO", "message": "cart opened"},
             {"level": "LOG_LEVEL_WARNING", "message": "price lookup took 900 ms"}]}
EOF
)
expect "$LOGGED" '"accepted": 2'

step "Manager includes viewBasic"
GRANTED=$(grpcurl -plaintext -d @ "$ADDR" sessiond.v1.PrivilegeService/HasPrivilege <<EOF
{"session": {"token": "$TOKEN"}, "privilege": "viewBasic"}
EOF
)
expect "$GRANTED" '"granted": true'

step "Authenticate: who and what, in one call"
WHO=$(grpcurl -plaintext -d @ "$ADDR" sessiond.v1.SessionService/Authenticate <<EOF
{"token": "$TOKEN", "privileges": ["viewSales", "admin"]}
EOF
)
expect "$WHO" '"userId": "alice"'
[[ $(echo "$WHO" | field roles) == "['manager']" ]] || { echo "roles: $WHO" >&2; exit 1; }
[[ $(echo "$WHO" | field granted) == "[True, False]" ]] || { echo "granted: $WHO" >&2; exit 1; }

step "Compare-and-set the storage"
VERSION=$(grpcurl -plaintext -emit-defaults -d @ "$ADDR" sessiond.v1.StorageService/GetStorage <<EOF | field version
{"session": {"token": "$TOKEN"}}
EOF
)
PUT=$(grpcurl -plaintext -d @ "$ADDR" sessiond.v1.StorageService/PutStorage <<EOF
{"session": {"token": "$TOKEN"}, "expectedVersion": "$VERSION",
 "values": {"cart": {"items": ["book"], "total": 9.5}}}
EOF
)
expect "$PUT" "\"version\": \"$((VERSION + 1))\""
# The same expectedVersion again is now stale: ABORTED.
STALE=$(grpcurl -plaintext -d @ "$ADDR" sessiond.v1.StorageService/PutStorage <<EOF 2>&1 || true
{"session": {"token": "$TOKEN"}, "expectedVersion": "$VERSION",
 "values": {"cart": {"items": [], "total": 0}}}
EOF
)
expect "$STALE" 'Code: Aborted'

step "Close the session"
CLOSED=$(grpcurl -plaintext -d @ "$ADDR" sessiond.v1.SessionService/CloseSession <<EOF
{"session": {"token": "$TOKEN"}}
EOF
)
expect "$CLOSED" "\"sessionId\": \"$SESSION_ID\"" '"endReason": "END_REASON_CLOSED"'

step "A closed session refuses calls"
REFUSED=$(grpcurl -plaintext -d @ "$ADDR" sessiond.v1.SessionService/GetSession <<EOF 2>&1 || true
{"session": {"token": "$TOKEN"}}
EOF
)
expect "$REFUSED" 'Code: FailedPrecondition' \
  '"@type":"type.googleapis.com/google.rpc.ErrorInfo"' '"reason":"SESSION_CLOSED"'

step "Authenticate answers a closed session's token: sign in again"
SIGN_IN=$(grpcurl -plaintext -d @ "$ADDR" sessiond.v1.SessionService/Authenticate <<EOF 2>&1 || true
{"token": "$TOKEN"}
EOF
)
expect "$SIGN_IN" 'Code: Unauthenticated' '"reason":"SESSION_CLOSED"'

step "Messages: a subscriber receives a post (README, Messages)"
SUBSCRIBED=$(mktemp)
grpcurl -plaintext -max-time 20 -d '{"channels": [{"channel": "chat/room-42"}]}' \
  "$ADDR" sessiond.v1.MessageService/Subscribe >"$SUBSCRIBED" 2>&1 &
SUBSCRIBER=$!
# The first item says the subscription is in place.
for _ in $(seq 100); do grep -q '"subscribed"' "$SUBSCRIBED" && break; sleep 0.1; done
POSTED=$(grpcurl -plaintext -d '{"channel": "chat/room-42", "typeName": "chat.Line",
  "payload": {"from": "alice", "text": "hello"}}' "$ADDR" sessiond.v1.MessageService/Post)
expect "$POSTED" '"sequence": "1"' '"localDeliveries": 1'
for _ in $(seq 100); do grep -q '"hello"' "$SUBSCRIBED" && break; sleep 0.1; done
kill "$SUBSCRIBER" 2>/dev/null || true
wait "$SUBSCRIBER" 2>/dev/null || true
expect "$(cat "$SUBSCRIBED")" '"channel": "chat/room-42"' '"sequence": "1"' '"text": "hello"'
rm -f "$SUBSCRIBED"

printf '\ngrpcurl flow: all steps passed\n'
