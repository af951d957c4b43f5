# shellcheck shell=bash
# scripts/lib/tools.sh — installs the tools sessiond's test suites need.
#
# Sourced by scripts/test-all. Everything goes under $SESSIOND_TOOLS
# (default ~/.cache/sessiond-tools), outside target/, so that a machine or a
# CI cache keeps it between runs:
#
#   venv/   a Python venv with tests/python/requirements.txt
#           (grpcio, grpcio-tools, pytest, grpcurl, ...)
#   node/   an npm prefix with @bufbuild/buf and playwright-core
#
# Each is installed only when missing or when its pins changed, so a warm run
# costs a few milliseconds. `use_tools` then puts both on PATH.

SESSIOND_TOOLS=${SESSIOND_TOOLS:-${HOME:?HOME or SESSIOND_TOOLS must be set}/.cache/sessiond-tools}

# The buf release that lints proto/.
BUF_VERSION=1.75.0

# The playwright-core release that drives Debian's chromium in
# tests/console (playwright-core never downloads a browser).
PLAYWRIGHT_CORE_VERSION=1.57.0

TOOLS_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON_REQUIREMENTS=$TOOLS_REPO_ROOT/tests/python/requirements.txt

# ensure_python_tools: (re)creates the venv unless it already holds exactly
# the pinned requirements (its stamp file is a copy of requirements.txt).
ensure_python_tools() {
  local venv=$SESSIOND_TOOLS/venv
  local stamp=$venv/.installed-requirements.txt
  if cmp -s "$PYTHON_REQUIREMENTS" "$stamp" && "$venv/bin/python" -c '' 2>/dev/null; then
    echo "Python tools: up to date in $venv"
    return
  fi
  echo "Python tools: installing into $venv"
  rm -rf "$venv"
  make_venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --requirement "$PYTHON_REQUIREMENTS"
  cp "$PYTHON_REQUIREMENTS" "$stamp"
}

# make_venv DIR: python3 -m venv, installing Debian's python3-venv first when
# the interpreter lacks it and we may use apt-get (as root, e.g. in CI).
make_venv() {
  local python=${PYTHON:-python3}
  "$python" -m venv "$1" && return
  rm -rf "$1"
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "Python tools: installing python3-venv with apt-get"
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    "$python" -m venv "$1"
  else
    echo "error: '$python -m venv' failed; install your system's venv package (Debian: python3-venv)" >&2
    return 1
  fi
}

# ensure_node_tools: installs buf with npm unless the pinned version is there.
ensure_node_tools() {
  local prefix=$SESSIOND_TOOLS/node
  if [[ $("$prefix/node_modules/.bin/buf" --version 2>/dev/null) == "$BUF_VERSION" ]]; then
    echo "Node tools: buf $BUF_VERSION up to date in $prefix"
    return
  fi
  echo "Node tools: installing buf $BUF_VERSION into $prefix"
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
    "@bufbuild/buf@$BUF_VERSION"
}

# ensure_browser_tools: Debian's chromium (apt_install, from
# scripts/lib/postgres.sh) unless /usr/bin/chromium is there, and
# playwright-core in the npm prefix beside buf unless the pinned version is.
ensure_browser_tools() {
  if [[ ! -x /usr/bin/chromium ]]; then
    echo "Browser tools: installing Debian's chromium"
    apt_install chromium
  fi
  local prefix=$SESSIOND_TOOLS/node
  local installed
  installed=$(node -p 'require(process.argv[1]).version' \
    "$prefix/node_modules/playwright-core/package.json" 2>/dev/null || true)
  if [[ $installed == "$PLAYWRIGHT_CORE_VERSION" ]]; then
    echo "Browser tools: chromium and playwright-core $PLAYWRIGHT_CORE_VERSION up to date"
    return
  fi
  echo "Browser tools: installing playwright-core $PLAYWRIGHT_CORE_VERSION into $prefix"
  mkdir -p "$prefix"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
    "playwright-core@$PLAYWRIGHT_CORE_VERSION"
}

# use_tools: puts the venv's and the npm prefix's executables first on PATH,
# so that the suites call plain `python`, `pytest`, `grpcurl` and `buf`.
use_tools() {
  export PATH="$SESSIOND_TOOLS/venv/bin:$SESSIOND_TOOLS/node/node_modules/.bin:$PATH"
}
