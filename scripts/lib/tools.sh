# shellcheck shell=bash
# scripts/lib/tools.sh — installs the tools sessiond's test suites need.
#
# Sourced by scripts/test-all. Everything goes under $SESSIOND_TOOLS
# (default ~/.cache/sessiond-tools), outside target/, so that a machine or a
# CI cache keeps it between runs:
#
#   venv/   a Python venv with tests/python/requirements.txt
#           (grpcio, grpcio-tools, pytest, grpcurl, ...)
#   node/   an npm prefix with @bufbuild/buf
#   venv-python-client/  a Python venv for clients/python's tests, holding
#           exactly clients/python/requirements-dev.txt (the client's pinned
#           dependencies, grpcio-tools, pytest, pytest-asyncio)
#   npm-cache/  npm's download cache, for tests/node and clients/node
#           (whose packages go to their own node_modules)
#
# Each is installed only when missing or when its pins changed, so a warm run
# costs a few milliseconds. `use_tools` then puts both on PATH.

SESSIOND_TOOLS=${SESSIOND_TOOLS:-${HOME:?HOME or SESSIOND_TOOLS must be set}/.cache/sessiond-tools}

# The buf release that lints proto/.
BUF_VERSION=1.75.0

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

# use_tools: puts the venv's and the npm prefix's executables first on PATH,
# so that the suites call plain `python`, `pytest`, `grpcurl` and `buf`.
use_tools() {
  export PATH="$SESSIOND_TOOLS/venv/bin:$SESSIOND_TOOLS/node/node_modules/.bin:$PATH"
}

# ensure_python_client_tools: (re)creates the Python client's test venv
# unless it already holds exactly clients/python/requirements-dev.txt (its
# stamp file is a copy). The client itself is installed into it by its suite,
# from the working tree, on every run.
ensure_python_client_tools() {
  local venv=$SESSIOND_TOOLS/venv-python-client
  local requirements=$TOOLS_REPO_ROOT/clients/python/requirements-dev.txt
  local stamp=$venv/.installed-requirements.txt
  if cmp -s "$requirements" "$stamp" && "$venv/bin/python" -c '' 2>/dev/null; then
    echo "Python client tools: up to date in $venv"
    return
  fi
  echo "Python client tools: installing into $venv"
  rm -rf "$venv"
  make_venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --requirement "$requirements"
  cp "$requirements" "$stamp"
}

# ensure_node_client_packages: installs exactly what
# clients/node/package-lock.json pins (@grpc/grpc-js, @bufbuild/protobuf,
# ts-proto, typescript, express, ...) into clients/node/node_modules with
# `npm ci`, unless a copy of the lockfile there says they are installed.
# The package's own build (buf generate, tsc) is left to its suite.
ensure_node_client_packages() {
  local dir=$TOOLS_REPO_ROOT/clients/node
  local stamp=$dir/node_modules/.installed-package-lock.json
  if cmp -s "$dir/package-lock.json" "$stamp"; then
    echo "Node client packages: up to date in $dir/node_modules"
    return
  fi
  echo "Node client packages: installing into $dir/node_modules"
  (cd "$dir" &&
    npm ci --cache "$SESSIOND_TOOLS/npm-cache" --prefer-offline --ignore-scripts \
      --no-audit --no-fund --loglevel=error)
  cp "$dir/package-lock.json" "$stamp"
}
