#!/usr/bin/env bash
# tests/web/run.sh — sessiond's HTTP faces as curl and a browser see them.
#
# Installs what tests/web/package-lock.json pins (playwright-core, the
# Connect-ES packages, protoc-gen-es, esbuild) into tests/web/node_modules
# when missing or changed, Debian's chromium and curl when missing
# (scripts/lib/web-tools.sh), generates the page's code from proto/ with buf
# and protoc-gen-es, bundles it with esbuild, and runs web.test.mjs with
# node's test runner. The test starts its own sessiond.
#
# Builds nothing: needs a built target/debug/sessiond (SESSIOND_BIN
# overrides), buf on PATH (scripts/test-all's tools), node 20.12 or later
# and npm.
set -euo pipefail
shopt -s inherit_errexit

if [[ -n ${SESSIOND_BIN:-} ]]; then
  SESSIOND_BIN=$(realpath "$SESSIOND_BIN")
  export SESSIOND_BIN
fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/lib/web-tools.sh

ensure_web_tools
cd tests/web
rm -rf gen
buf generate ../../proto --path ../../proto/sessiond/v1 --template buf.gen.yaml
node_modules/.bin/esbuild page/app.ts --bundle --format=iife --target=es2022 --log-level=warning \
  --outfile=page/app.js
node --test --test-reporter=spec web.test.mjs
