#!/usr/bin/env bash
# tests/helm/run.sh — tests the Helm chart helm/sessiond.
#
#   1. lint      `helm lint`, plain and --strict, with each values file in
#                tests/helm/values/
#   2. render    `helm template` with each of them, for Kubernetes
#                $KUBE_VERSION; every manifest validated strictly against
#                that version's API schemas (kubernetes-validate, offline),
#                and the chart's promises asserted (check_manifests.py)
#   3. refuse    each values file in tests/helm/values-invalid/ must fail to
#                render, with the message its `# expect:` line names (the
#                chart's own checks and values.schema.json)
#   4. run       sessiond started as the default values render it: the
#                Deployment's command, args and environment, its mounted
#                files (run_rendered.py); it must serve grpc.health.v1 and
#                exit 0 on SIGTERM
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
KUBE_VERSION=1.30.0
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

# render VALUES_FILE OUT: helm template for $KUBE_VERSION.
render() {
  helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" \
    --kube-version "$KUBE_VERSION" --values "$1" >"$2"
}

render_and_check() {
  local values=$1 out
  out=$WORK/$(basename "$values" .yaml).rendered.yaml
  render "$values" "$out"
  echo "rendered: $(awk '/^kind:/ {print $2}' "$out" | sort | uniq -c | awk '{print $2 " x" $1}' | paste -sd, -)"
  python tests/helm/check_manifests.py "$KUBE_VERSION" "$values" "$out"
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

run_rendered() {
  local out=$WORK/run.rendered.yaml
  render tests/helm/values/default.yaml "$out"
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

step "2. helm template, validated for Kubernetes $KUBE_VERSION"
for values in "${values_files[@]}"; do
  check "render and check $values" render_and_check "$values"
done

step "3. values the chart refuses"
for values in "${invalid_files[@]}"; do
  check "refuse $values" expect_refusal "$values"
done

step "4. sessiond as the chart runs it"
check "run $SESSIOND_BIN as tests/helm/values/default.yaml renders it" run_rendered

echo
echo "helm: $passed passed, $failed failed"
(( failed == 0 ))
