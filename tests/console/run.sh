#!/usr/bin/env bash
# tests/console/run.sh — the web console in headless Chromium.
#
# Installs Debian's chromium and playwright-core (scripts/lib/tools.sh) and
# the Node.js client's packages (scripts/lib/node-client.sh) when missing,
# then runs console.test.js with node's test runner. The test starts its
# own sessiond with API keys and the console on free ports. Screenshots go
# to $SESSIOND_CONSOLE_SCREENSHOTS (default: a new temporary directory).
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
source scripts/lib/tools.sh
source scripts/lib/postgres.sh
source scripts/lib/node-client.sh

ensure_node_client
ensure_browser_tools
export PLAYWRIGHT_CORE=$SESSIOND_TOOLS/node/node_modules/playwright-core
cd tests/console
node --test --test-reporter=spec --test-concurrency=1 console.test.js
