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
#   venv-python-client/  a Python venv for clients/python's tests, holding
#           exactly clients/python/requirements-dev.txt (the client's pinned
#           dependencies, grpcio-tools, pytest, pytest-asyncio)
#   npm-cache/  npm's download cache, for tests/node and clients/node
#           (whose packages go to their own node_modules)
#   go/     Go's module and build caches, protoc-gen-go and protoc-gen-go-grpc
#   maven/  the Java client's Maven repository
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

# ensure_promtool: Prometheus' promtool, which checks and unit-tests the
# chart's alert rules: Debian's prometheus package (its service is kept
# from starting), installed when missing.
ensure_promtool() {
  if ! command -v promtool >/dev/null 2>&1; then
    echo "tools.sh: installing Debian's prometheus for promtool"
    # shellcheck source=scripts/lib/postgres.sh
    source "$TOOLS_REPO_ROOT/scripts/lib/postgres.sh"
    apt_install prometheus
  fi
  echo "promtool: $(promtool --version 2>&1 | head -n 1)"
}

# ensure_h2load: nghttp2's h2load, the C HTTP/2 loader of
# `sessiond-bench --h2load`: Debian's nghttp2-client, installed when missing.
ensure_h2load() {
  if ! command -v h2load >/dev/null 2>&1; then
    echo "tools.sh: installing Debian's nghttp2-client for h2load"
    # shellcheck source=scripts/lib/postgres.sh
    source "$TOOLS_REPO_ROOT/scripts/lib/postgres.sh"
    apt_install nghttp2-client
  fi
  echo "h2load: $(h2load --version 2>&1 | head -n 1)"
}

# ensure_valgrind: valgrind, whose callgrind counts the instructions per
# call of `scripts/callgrind-read-path`: Debian's valgrind, installed when
# missing.
ensure_valgrind() {
  if ! command -v callgrind_control >/dev/null 2>&1; then
    echo "tools.sh: installing Debian's valgrind for callgrind"
    # shellcheck source=scripts/lib/postgres.sh
    source "$TOOLS_REPO_ROOT/scripts/lib/postgres.sh"
    apt_install valgrind
  fi
  echo "valgrind: $(valgrind --version 2>&1 | head -n 1)"
}

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

# The protoc plugins that generate clients/go/sessiondv1, run by buf as
# local plugins (clients/go/buf.gen.yaml).
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
# The oldest Go that builds clients/go (its go.mod's `go` line).
GO_MIN_VERSION=1.26

# use_go_env: Go's module and build caches and installed commands under
# $SESSIOND_TOOLS/go (mod/, build/, bin/), shared by every run; never a
# toolchain download.
use_go_env() {
  export GOMODCACHE=$SESSIOND_TOOLS/go/mod GOCACHE=$SESSIOND_TOOLS/go/build
  export GOBIN=$SESSIOND_TOOLS/go/bin GOTOOLCHAIN=local
  export PATH="$GOBIN:$PATH"
}

# ensure_go_tools: checks the Go toolchain and installs the pinned
# protoc-gen-go and protoc-gen-go-grpc with `go install` unless present.
ensure_go_tools() {
  if ! command -v go >/dev/null; then
    echo "error: no 'go' on PATH: the Go client needs Go $GO_MIN_VERSION or later (https://go.dev/dl)" >&2
    return 1
  fi
  local have
  have=$(go env GOVERSION)
  have=${have#go}
  if [[ $(printf '%s\n%s\n' "$GO_MIN_VERSION" "$have" | sort -V | head -n1) != "$GO_MIN_VERSION" ]]; then
    echo "error: Go $have is too old: the Go client needs Go $GO_MIN_VERSION or later" >&2
    return 1
  fi
  use_go_env
  local stamp=$GOBIN/.installed-plugins want="$PROTOC_GEN_GO_VERSION $PROTOC_GEN_GO_GRPC_VERSION"
  if [[ $(cat "$stamp" 2>/dev/null) == "$want" && -x $GOBIN/protoc-gen-go && -x $GOBIN/protoc-gen-go-grpc ]]; then
    echo "Go tools: protoc-gen-go $PROTOC_GEN_GO_VERSION, protoc-gen-go-grpc $PROTOC_GEN_GO_GRPC_VERSION up to date in $GOBIN"
    return
  fi
  echo "Go tools: installing protoc-gen-go and protoc-gen-go-grpc into $GOBIN"
  go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
  go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
  echo "$want" >"$stamp"
}

# ensure_java_tools: checks for a JDK 17 or later, Maven, and openssl (the
# Java client's TLS test makes its certificates with it); as root, installs
# what is missing with apt-get.
ensure_java_tools() {
  local missing=() packages=()
  command -v javac >/dev/null || { missing+=("a JDK 17 or later"); packages+=(openjdk-17-jdk-headless); }
  command -v mvn >/dev/null || { missing+=("Maven 3.8 or later"); packages+=(maven); }
  command -v openssl >/dev/null || { missing+=("openssl"); packages+=(openssl); }
  if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      echo "Java tools: installing ${packages[*]} with apt-get"
      apt-get update -qq && apt-get install -y -qq "${packages[@]}" >/dev/null
    else
      local needs
      needs=$(printf '%s, ' "${missing[@]}")
      echo "error: the Java client needs ${needs%, } (Debian: ${packages[*]})" >&2
      return 1
    fi
  fi
  local release
  release=$(javac -version 2>&1 | sed -E 's/^javac ([0-9]+).*/\1/')
  if ((release < 17)); then
    echo "error: javac $release is too old: the Java client needs a JDK 17 or later" >&2
    return 1
  fi
  echo "Java tools: javac $release, $(mvn -v 2>/dev/null | head -n1 | sed -E 's/\x1b\[[0-9;]*m//g')"
}

# maven DIR ARGS...: runs Maven quietly in batch mode in DIR with its local
# repository under $SESSIOND_TOOLS/maven. Offline once a run with the same
# pom.xml has fetched everything (a stamp holds a copy of that pom), online
# otherwise.
maven() {
  local dir=$1
  shift
  local repo=$SESSIOND_TOOLS/maven/repository
  local stamp=$SESSIOND_TOOLS/maven/stamps/${dir//\//_}.pom.xml
  local offline=()
  cmp -s "$dir/pom.xml" "$stamp" && offline=(--offline)
  mkdir -p "$repo" "$(dirname "$stamp")"
  (cd "$dir" && mvn -q -B "${offline[@]}" -Dmaven.repo.local="$repo" "$@") &&
    cp "$dir/pom.xml" "$stamp"
}
