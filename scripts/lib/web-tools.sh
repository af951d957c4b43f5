# shellcheck shell=bash
# scripts/lib/web-tools.sh — what the HTTP faces' test (tests/web) needs.
#
# Sourced by tests/web/run.sh. `ensure_web_tools` installs:
#   - Debian's chromium and curl, with apt-get (apt_install from
#     scripts/lib/postgres.sh), when missing: the browser is never
#     downloaded by playwright, which drives the system's;
#   - exactly what tests/web/package-lock.json pins (playwright-core, the
#     Connect-ES packages, protoc-gen-es, esbuild) into
#     tests/web/node_modules with `npm ci`, unless they are there already: a
#     copy of the lockfile inside node_modules is the stamp. npm's download
#     cache is kept under $SESSIOND_TOOLS, beside the other test tools.

SESSIOND_TOOLS=${SESSIOND_TOOLS:-${HOME:?HOME or SESSIOND_TOOLS must be set}/.cache/sessiond-tools}

WEB_TOOLS_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WEB_TEST_DIR=$WEB_TOOLS_REPO_ROOT/tests/web

ensure_web_tools() {
  local missing=()
  [[ -x ${SESSIOND_CHROMIUM:-/usr/bin/chromium} ]] || missing+=(chromium)
  command -v curl >/dev/null || missing+=(curl)
  if (( ${#missing[@]} )); then
    echo "Web tools: installing ${missing[*]} with apt-get"
    source "$WEB_TOOLS_REPO_ROOT/scripts/lib/postgres.sh"
    apt_install "${missing[@]}"
  fi
  local modules=$WEB_TEST_DIR/node_modules
  local stamp=$modules/.installed-package-lock.json
  if cmp -s "$WEB_TEST_DIR/package-lock.json" "$stamp"; then
    echo "Web tools: packages up to date in $modules"
    return
  fi
  echo "Web tools: installing packages into $modules"
  # esbuild's install script only checks its binary, which npm installs as
  # the optional package of this platform.
  (cd "$WEB_TEST_DIR" &&
    npm ci --cache "$SESSIOND_TOOLS/npm-cache" --prefer-offline --ignore-scripts \
      --no-audit --no-fund --loglevel=error)
  cp "$WEB_TEST_DIR/package-lock.json" "$stamp"
}
