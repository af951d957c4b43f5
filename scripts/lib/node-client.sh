# shellcheck shell=bash
# scripts/lib/node-client.sh — the packages of the Node.js client test.
#
# Sourced by tests/node/run.sh. `ensure_node_client` installs exactly what
# tests/node/package-lock.json pins (@grpc/grpc-js, @grpc/proto-loader,
# protobufjs) into tests/node/node_modules with `npm ci`, unless they are
# there already: a copy of the lockfile inside node_modules is the stamp, so
# a warm run costs one `cmp`. npm's download cache is kept under
# $SESSIOND_TOOLS (default ~/.cache/sessiond-tools), beside the other test
# tools, so that a machine or a CI cache keeps it between runs.

SESSIOND_TOOLS=${SESSIOND_TOOLS:-${HOME:?HOME or SESSIOND_TOOLS must be set}/.cache/sessiond-tools}

NODE_CLIENT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../tests/node" && pwd)

# The oldest node the test runs on (node:test with the result of each test
# in afterEach hooks).
NODE_CLIENT_MIN_NODE=20.12.0

ensure_node_client() {
  local modules=$NODE_CLIENT_DIR/node_modules
  local stamp=$modules/.installed-package-lock.json
  if ! node -e '
    const [have, need] = [process.versions.node, process.argv[1]].map((v) => v.split(".").map(Number));
    const older = have[0] - need[0] || have[1] - need[1] || have[2] - need[2];
    process.exit(older < 0 ? 1 : 0);' "$NODE_CLIENT_MIN_NODE"; then
    echo "error: the Node.js client test needs node $NODE_CLIENT_MIN_NODE or later, found $(node --version)" >&2
    return 1
  fi
  if cmp -s "$NODE_CLIENT_DIR/package-lock.json" "$stamp"; then
    echo "Node client: packages up to date in $modules"
    return
  fi
  echo "Node client: installing packages into $modules"
  # No package here needs an install script; --prefer-offline takes what the
  # cache holds without asking the registry again.
  (cd "$NODE_CLIENT_DIR" &&
    npm ci --cache "$SESSIOND_TOOLS/npm-cache" --prefer-offline --ignore-scripts \
      --no-audit --no-fund --loglevel=error)
  cp "$NODE_CLIENT_DIR/package-lock.json" "$stamp"
}
