#!/usr/bin/env bash
# tests/node/run.sh — sessiond as a Node.js client sees it.
#
# Installs the pinned client packages into tests/node/node_modules when
# they are missing or changed (scripts/lib/node-client.sh), then runs
# flow.test.js with node's test runner. The test starts its own sessiond
# with API keys on a free port and stops it at the end.
#
# Builds nothing: needs a built target/debug/sessiond (SESSIOND_BIN
# overrides), node 20.12 or later and npm.
set -euo pipefail
shopt -s inherit_errexit

if [[ -n ${SESSIOND_BIN:-} ]]; then
  SESSIOND_BIN=$(realpath "$SESSIOND_BIN")
  export SESSIOND_BIN
fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/lib/node-client.sh

ensure_node_client
cd tests/node
node --test --test-reporter=spec flow.test.js
