#!/usr/bin/env bash
# tests/helm/run.sh — tests the Helm chart helm/sessiond.
#
#   1. lint      `helm lint`, plain and --strict, with each values file in
#                tests/helm/values/
#   2. render    `helm template` with each of them, for every Kubernetes
#                minor in $KUBE_VERSIONS (the oldest is Chart.yaml's
#                kubeVersion, and an older one must be refused); every
#                manifest validated strictly against that version's API
#                schemas (kubernetes-validate, offline), and the chart's
#                promises asserted (check_manifests.py)
#   3. refuse    each values file in tests/helm/values-invalid/ must fail to
#                render, with the message its `# expect:` line names (the
#                chart's own checks and values.schema.json)
#   4. run       sessiond started as tests/helm/values/default.yaml and
#                extras.yaml (TLS) render it: the Deployment's command, args
#                and environment, its mounted files (run_rendered.py); it
#                must serve grpc.health.v1, pass its exec probes and the
#                helm test Pod's command, and exit 0 on SIGTERM
#   5. binary    the names `settings` accepts are sessiond's own variables
#                (check_settings.py, from `sessiond --help`); Chart.yaml's
#                appVersion is `sessiond --version`'s, and so is the image
#                tag in README.md and the Dockerfile
#   6. alerts    helm/sessiond/files/alerts.yaml passes `promtool check
#                rules` and its unit tests (tests/helm/alerts.test.yaml,
#                `promtool test rules`); promtool is Debian's prometheus
#                package, installed when missing
#
# Installs its tools first (scripts/lib/helm.sh) under $SESSIOND_TOOLS.
# Runs $SESSIOND_BIN, default target/debug/sessiond: build it first.
# Ends with `helm: N passed, M failed`, counting checks, and exits
# non-zero when any failed.
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
source scripts/lib/helm.sh

CHART=helm/sessiond
# The version helm lint checks against, and every minor the chart supports.
KUBE_VERSION=1.30.0
KUBE_VERSIONS=(1.27.0 1.28.0 1.29.0 1.30.0 1.31.0 1.32.0 1.33.0)
# A release name and namespace other than the chart's name, as an operator's.
RELEASE=sessions
NAMESPACE=sessiond-test
SESSIOND_BIN=${SESSIOND_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/sessiond}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sessiond-helm-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

passed=0
failed=0

step() { printf '\n==== %s ====\n' "$*"; }

# check WHAT COMMAND...: runs COMMAND in a subshell with errexit on and
# counts it. Never call it as a condition (see scripts/test-all's run_suite).
check() {
  local what=$1 status
  shift
  echo "-- $what"
  set +e
  ( set -e; "$@" )
  status=$?
  set -e
  if (( status == 0 )); then
    passed=$((passed + 1))
    echo "[pass] $what"
  else
    failed=$((failed + 1))
    echo "[FAIL] $what (exit $status)"
  fi
}

# render VALUES_FILE OUT [KUBE_VERSION]: helm template, for $KUBE_VERSION
# unless another version is given.
render() {
  helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" \
    --kube-version "${3:-$KUBE_VERSION}" --values "$1" >"$2"
}

render_and_check() {
  local values=$1 version=$2 out
  out=$WORK/$(basename "$values" .yaml)-$version.rendered.yaml
  render "$values" "$out" "$version"
  echo "rendered: $(awk '/^kind:/ {print $2}' "$out" | sort | uniq -c | awk '{print $2 " x" $1}' | paste -sd, -)"
  python tests/helm/check_manifests.py "$version" "$values" "$out"
}

# kube_version_is_true: Chart.yaml's kubeVersion starts at the oldest
# version validated here, and helm refuses the minor before it.
kube_version_is_true() {
  local declared oldest=${KUBE_VERSIONS[0]} before output
  declared=$(sed -n 's/^kubeVersion: *"\(.*\)"$/\1/p' "$CHART/Chart.yaml")
  if [[ $declared != ">=${oldest}-0" ]]; then
    echo "Chart.yaml kubeVersion is '$declared', but the oldest version validated is $oldest" >&2
    return 1
  fi
  before="1.$(( $(cut -d. -f2 <<<"$oldest") - 1 )).0"
  if output=$(render tests/helm/values/default.yaml /dev/null "$before" 2>&1); then
    echo "rendered for Kubernetes $before, below kubeVersion '$declared'" >&2
    return 1
  fi
  [[ $output == *"chart requires kubeVersion"* ]] || { echo "$output" >&2; return 1; }
  echo "kubeVersion '$declared'; $before refused: $output"
}

# versions_agree: Chart.yaml's appVersion, `sessiond --version`, and the
# image tags README.md and the Dockerfile show.
versions_agree() {
  local binary app tags
  binary=$("$SESSIOND_BIN" --version | awk '{print $2}')
  app=$(sed -n 's/^appVersion: *"\(.*\)"$/\1/p' "$CHART/Chart.yaml")
  echo "sessiond --version: $binary; Chart.yaml appVersion: $app"
  [[ -n $binary && $app == "$binary" ]] || { echo "appVersion $app is not sessiond's version $binary" >&2; return 1; }
  tags=$(grep -ho 'ghcr.io/sessiond/sessiond:[^ ]*' README.md Dockerfile | sort -u)
  echo "image tags in README.md and Dockerfile: $(paste -sd' ' <<<"$tags")"
  [[ -n $tags && $tags == "ghcr.io/sessiond/sessiond:$binary" ]] || {
    echo "image tags other than ghcr.io/sessiond/sessiond:$binary" >&2
    return 1
  }
}

# expect_refusal VALUES_FILE: rendering must fail with every message named
# by the file's `# expect: MESSAGE` lines.
expect_refusal() {
  local values=$1 output expected
  local -a expectations
  mapfile -t expectations < <(sed -n 's/^# expect: //p' "$values")
  if (( ${#expectations[@]} == 0 )); then
    echo "$values has no '# expect: MESSAGE' line" >&2
    return 1
  fi
  if output=$(render "$values" /dev/null 2>&1); then
    echo "rendered, but should have been refused with: ${expectations[*]}" >&2
    return 1
  fi
  local -a patterns=()
  for expected in "${expectations[@]}"; do
    if [[ $output != *"$expected"* ]]; then
      printf 'refused, but not with %s:\n%s\n' "$expected" "$output" >&2
      return 1
    fi
    patterns+=(-e "$expected")
  done
  printf '%s\n' "$output" | grep -F "${patterns[@]}" | sed 's/^/refused: /'
}

# run_rendered VALUES_FILE: sessiond as that values file renders it.
run_rendered() {
  local out
  out=$WORK/run-$(basename "$1" .yaml).rendered.yaml
  render "$1" "$out"
  python tests/helm/run_rendered.py "$out" "$SESSIOND_BIN"
}

step "tools"
ensure_python_tools
ensure_helm_tools
use_tools
use_helm_tools
echo "helm $(helm version --short), kubernetes-validate $(python -c 'import kubernetes_validate.version as v; print(v.__version__)')"

values_files=(tests/helm/values/*.yaml)
invalid_files=(tests/helm/values-invalid/*.yaml)

step "1. helm lint"
check "helm lint (chart defaults, serving open on purpose)" helm lint "$CHART" --strict --kube-version "$KUBE_VERSION" \
  --set auth.allowUnauthenticated=true
for values in "${values_files[@]}"; do
  check "helm lint $values" helm lint "$CHART" --kube-version "$KUBE_VERSION" --values "$values"
  check "helm lint --strict $values" helm lint "$CHART" --strict --kube-version "$KUBE_VERSION" --values "$values"
done

step "2. helm template, validated for Kubernetes ${KUBE_VERSIONS[*]}"
check "Chart.yaml kubeVersion starts at ${KUBE_VERSIONS[0]}" kube_version_is_true
for values in "${values_files[@]}"; do
  for version in "${KUBE_VERSIONS[@]}"; do
    check "render and check $values for Kubernetes $version" render_and_check "$values" "$version"
  done
done

step "3. values the chart refuses"
for values in "${invalid_files[@]}"; do
  check "refuse $values" expect_refusal "$values"
done

step "4. sessiond as the chart runs it"
for values in tests/helm/values/default.yaml tests/helm/values/extras.yaml; do
  check "run $SESSIOND_BIN as $values renders it" run_rendered "$values"
done

step "5. the chart and the binary agree"
check "settings accept exactly sessiond's own SESSIOND_* variables" \
  python tests/helm/check_settings.py "$SESSIOND_BIN"
check "appVersion, sessiond --version and the image tags agree" versions_agree

step "6. alerts"
ensure_promtool
check "promtool check rules helm/sessiond/files/alerts.yaml" promtool check rules "$CHART/files/alerts.yaml"
check "promtool test rules tests/helm/alerts.test.yaml" promtool test rules tests/helm/alerts.test.yaml

echo
echo "helm: $passed passed, $failed failed"
(( failed == 0 ))
