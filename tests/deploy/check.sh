#!/usr/bin/env bash
# Deployment checks (ctest: deploy_checks, label "deploy"). Fails on the first error.
#   1. helm lint --strict + helm template: chart defaults, helm/anchord/ci/values-all-on.yaml and
#      helm/anchord/ci/values-database.yaml (replicas and HPAs on a PostgreSQL the user runs)
#   2. offline Kubernetes schema validation of every rendered manifest (kubernetes-models; the
#      prometheus-operator CRDs ServiceMonitor/PrometheusRule are skipped, by name) + the security
#      policy (non-root, read-only rootfs, drop ALL, seccomp RuntimeDefault)
#   3. what the renders contain (kinds, single-replica stateful services, no Secret objects, keys
#      only as files, the all-on providers/webhook/stall-fallback wiring)
#   3b. every render's flags and env vars accepted by the real binaries: each Deployment's program
#      is started with exactly its rendered args + ConfigMap env (tests/deploy/run-rendered.cjs);
#      for the database render against a real throwaway PostgreSQL (tests/support/pg_ctl.sh), so
#      the submitter and poller open, migrate and serve from it
#   4. Dockerfile lint (no container engine here: images are built by CI elsewhere; the same
#      CMake/Ninja build runs outside a container in .ci/build)
#   5. promtool check rules / test rules / check config; the chart's alerts copy is identical
#   6. dashboard JSON validity; its metric names extracted and checked against the names the
#      services export (deploy/exported-metrics.txt), and deploy/grafana/metric-names.txt is current;
#      the alert rules use only exported names too
#   7. self-test: a broken values file, a broken manifest, a flag the binaries do not know and a
#      broken alert rule must each fail; more than one submitter/poller replica (or their HPA)
#      without a database is refused by the schema, and by the templates when the schema is skipped
# Tools come from deploy/install-tools (run here when missing). Set ANCHORD_TOOLS to relocate them.
# Binaries: check.sh HASHER SUBMITTER POLLER SANDBOX (ctest passes them), else
# $ANCHORD_BUILD_DIR/services/<name>/anchord-<name> (default build dir: $ROOT/build).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TOOLS="${ANCHORD_TOOLS:-$HOME/.cache/anchord-tools}"
export ANCHORD_TOOLS="$TOOLS"
HELM="$TOOLS/bin/helm"
CHART="$ROOT/helm/anchord"
ALLON="$CHART/ci/values-all-on.yaml"
DBV="$CHART/ci/values-database.yaml"
PGCTL="$ROOT/tests/support/pg_ctl.sh"
PY="$(command -v python3 || echo /usr/bin/python3)"
if [ $# -eq 4 ]; then
  BINS=("$@")
elif [ $# -eq 0 ]; then
  BUILD="${ANCHORD_BUILD_DIR:-$ROOT/build}"
  BINS=()
  for s in hasher submitter poller sandbox; do BINS+=("$BUILD/services/$s/anchord-$s"); done
else
  echo "usage: $0 [HASHER SUBMITTER POLLER SANDBOX]" >&2; exit 2
fi

WORK="$(mktemp -d)"
# The throwaway PostgreSQL's directory is handed to the postgres user: not under $WORK (mode 700).
PGDIR="$(mktemp -d)"
trap 'bash "$PGCTL" stop "$PGDIR" >/dev/null 2>&1 || true; rm -rf "$WORK" "$PGDIR"' EXIT
# helm must not write to $HOME (or need a network): everything goes to a scratch dir.
export XDG_CACHE_HOME="$WORK/xdg/cache" XDG_CONFIG_HOME="$WORK/xdg/config" XDG_DATA_HOME="$WORK/xdg/data"
export HELM_NO_PLUGINS=1

step() { echo "== $*"; }
die() { echo "deploy check FAILED: $*" >&2; exit 1; }

if [ ! -x "$HELM" ] || ! command -v promtool >/dev/null 2>&1 ||
   [ ! -d "$TOOLS/node_modules/kubernetes-models" ] || [ ! -d "$TOOLS/node_modules/yaml" ]; then
  step "installing tools"
  bash "$ROOT/deploy/install-tools" || die "tools could not be installed"
fi

for b in "${BINS[@]}"; do
  [ -x "$b" ] || die "$b is not built (build the four services, or set ANCHORD_BUILD_DIR / pass their paths)"
done

step "helm lint"
"$HELM" lint --strict "$CHART" || die "helm lint (defaults)"
"$HELM" lint --strict "$CHART" -f "$ALLON" || die "helm lint (all-on)"
"$HELM" lint --strict "$CHART" -f "$DBV" || die "helm lint (database)"

step "helm template"
"$HELM" template anchord "$CHART" --namespace anchord > "$WORK/defaults.yaml" || die "helm template (defaults)"
"$HELM" template staging "$CHART" --namespace staging -f "$ALLON" > "$WORK/all-on.yaml" || die "helm template (all-on)"
"$HELM" template scale "$CHART" --namespace scale -f "$DBV" > "$WORK/database.yaml" || die "helm template (database)"

step "kubernetes schema validation"
node "$ROOT/tests/deploy/validate-manifests.cjs" "$TOOLS" "$WORK/defaults.yaml" "$WORK/all-on.yaml" "$WORK/database.yaml" ||
  die "rendered manifests are invalid"

step "render contents"
kinds() { grep -E '^kind: ' "$1" | sort | uniq -c | awk '{print $3"="$1}' | tr '\n' ' '; }
# Service: a ClusterIP and a headless "-peers" Service per component (+ the sandbox's).
# Secret=1: the internal token the chart makes (internalToken.existingSecret empty).
want_defaults="ConfigMap=3 Deployment=3 HorizontalPodAutoscaler=1 NetworkPolicy=3 PersistentVolumeClaim=2 PodDisruptionBudget=3 Secret=1 Service=6 ServiceAccount=1 "
[ "$(kinds "$WORK/defaults.yaml")" = "$want_defaults" ] ||
  die "defaults render: got kinds '$(kinds "$WORK/defaults.yaml")', want '$want_defaults'"
want_allon="ConfigMap=3 Deployment=4 HorizontalPodAutoscaler=1 NetworkPolicy=4 PersistentVolumeClaim=1 PodDisruptionBudget=3 PrometheusRule=1 Secret=1 Service=7 ServiceAccount=1 ServiceMonitor=1 "
[ "$(kinds "$WORK/all-on.yaml")" = "$want_allon" ] ||
  die "all-on render: got kinds '$(kinds "$WORK/all-on.yaml")', want '$want_allon'"
for f in "$WORK/defaults.yaml" "$WORK/all-on.yaml"; do
  # Only the hasher autoscales; the SQLite-backed services run exactly one replica.
  grep -Eq '^  name: (.*-)?anchord-hasher$' "$f" || die "$f: no hasher objects"
  if grep -A3 'scaleTargetRef:' "$f" | grep -Eq 'name: .*-(submitter|poller)$'; then die "$f: HPA on a stateful service"; fi
  [ "$(grep -c '^  replicas: 1$' "$f")" -ge 2 ] || die "$f: submitter/poller are not single-replica"
  # No provider key is ever in a chart-made Secret: the only Secret the chart makes is the random
  # internal token of the peer services (internal-token.yaml).
  if grep -A3 '^kind: Secret$' "$f" | grep -E '^  name: ' | grep -vq -- '-internal$'; then
    die "$f: the chart must not create Secrets other than the internal token"
  fi
  grep -q -- '--proofd-api-key-file\|ANCHORD_PROOFD_API_KEY_FILE' "$f" || die "$f: key file not passed"
  [ "$(grep -c 'grpc:$' "$f")" -ge 9 ] || die "$f: native gRPC probes missing"
done
# Peers reach every replica: headless Services, dns:/// targets (round_robin in the binaries).
for f in "$WORK/defaults.yaml" "$WORK/all-on.yaml" "$WORK/database.yaml"; do
  [ "$(grep -c '^  clusterIP: None$' "$f")" -eq 3 ] || die "$f: not one headless Service per component"
  grep -Eq 'ANCHORD_SUBMITTER_ADDR: "dns:///(.*-)?anchord-submitter-peers:50051"' "$f" || die "$f: hasher not pointed at the submitters' headless Service"
  grep -Eq 'ANCHORD_POLLER_ADDR: "dns:///(.*-)?anchord-poller-peers:50052"' "$f" || die "$f: submitter not pointed at the pollers' internal port (headless Service)"
  grep -q 'ANCHORD_MAX_CONNECTION_AGE_SECONDS: ' "$f" || die "$f: no connection age"
  # The internal port on the submitter's and poller's ClusterIP and headless Services (4).
  [ "$(grep -c '^      targetPort: internal$' "$f")" -eq 4 ] || die "$f: the -peers Services lack the internal port"
done
# Database render: 3 submitters, pollers under an HPA, the URL as a file from the Secret, no PVC
# (the one Secret is the chart-made internal token),
# rolling updates, egress to the database only.
want_db="ConfigMap=3 Deployment=3 HorizontalPodAutoscaler=2 NetworkPolicy=3 PodDisruptionBudget=3 Secret=1 Service=6 ServiceAccount=1 "
[ "$(kinds "$WORK/database.yaml")" = "$want_db" ] ||
  die "database render: got kinds '$(kinds "$WORK/database.yaml")', want '$want_db'"
for want in '  replicas: 3' 'name: scale-anchord-poller' 'secretName: anchord-db-app' 'cnpg.io/cluster: anchord-db'; do
  grep -qF -- "$want" "$WORK/database.yaml" || die "database render: '$want' missing"
done
[ "$(grep -cF -- '--database-url-file=/etc/anchord/database/uri' "$WORK/database.yaml")" -eq 2 ] ||
  die "database render: submitter and poller do not both get --database-url-file"
[ "$(grep -c 'type: RollingUpdate' "$WORK/database.yaml")" -eq 3 ] || die "database render: a Recreate strategy left"
if grep -A3 'scaleTargetRef:' "$WORK/database.yaml" | grep -Eq 'name: .*-submitter$'; then die "database render: submitter HPA not asked for"; fi
grep -A3 'scaleTargetRef:' "$WORK/database.yaml" | grep -Eq 'name: .*-poller$' || die "database render: no poller HPA"
if grep -q 'postgresql://\|anchord.io/single-replica' "$WORK/database.yaml"; then die "database render: a URL in the manifests, or the single-replica note"; fi
for f in "$WORK/defaults.yaml" "$WORK/all-on.yaml"; do
  if grep -q 'database-url' "$f"; then die "$f: database wiring without a database"; fi
done
grep -q 'ANCHORD_PROOFD_URL: "http://staging-anchord-sandbox:8080"' "$WORK/all-on.yaml" ||
  die "all-on: services are not pointed at the sandbox"
# All-on enables every provider: each keyed one gets its key as an optional file (both services),
# settings, and its per-service limit; the poller gets the webhook and the stall fallback.
for want in 'ANCHORD_PROOFLEDGER_API_KEY_FILE: "/etc/anchord/provider/proofledger-api-key"' \
            'ANCHORD_SIMPLEPROOF_API_KEY_FILE: "/etc/anchord/provider/simpleproof-token"' \
            'ANCHORD_PROOFLEDGER_URL: "http://staging-anchord-sandbox:8080"' \
            'ANCHORD_SIMPLEPROOF_URL: "http://staging-anchord-sandbox:8080"' \
            'ANCHORD_OTS_MIN_CALENDARS: "2"' '--providers=proofledger,simpleproof,ots'; do
  [ "$(grep -cF -- "$want" "$WORK/all-on.yaml")" -ge 2 ] || die "all-on: '$want' not given to both services"
done
for want in 'ANCHORD_SIMPLEPROOF_CALLBACK_URL: "http://staging-anchord-poller:8081/callbacks/simpleproof"' \
            'ANCHORD_WEBHOOK_LISTEN: "0.0.0.0:8081"' \
            'ANCHORD_SUBMITTER_ADDR: "dns:///staging-anchord-submitter-peers:50051"' \
            'ANCHORD_SUBMITTER_ADDR: "dns:///staging-anchord-submitter-peers:50052"' \
            'ANCHORD_POLLER_ADDR: "dns:///staging-anchord-poller-peers:50052"' 'targetPort: internal' \
            '--simpleproof-limit=10' '--simpleproof-limit=20' '--merkle-max-leaves=5000' \
            'targetPort: webhook' 'containerPort: 8081' 'name: anchord-staging-simpleproof'; do
  grep -qF -- "$want" "$WORK/all-on.yaml" || die "all-on: '$want' missing"
done
[ "$(grep -c '^ *optional: true$' "$WORK/all-on.yaml")" -ge 4 ] || die "all-on: extra provider keys are not optional"
if grep -Eq 'ANCHORD_(PROOFLEDGER|SIMPLEPROOF)_|WEBHOOK|port: 8081' "$WORK/defaults.yaml"; then
  die "defaults render enables more than proofd"
fi

step "rendered flags and env accepted by the binaries"
for f in "$WORK/defaults.yaml" "$WORK/all-on.yaml"; do
  node "$ROOT/tests/deploy/run-rendered.cjs" "$TOOLS" "$f" "${BINS[@]}" || die "$f: a binary rejected the rendered configuration"
done
PGPORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
bash "$PGCTL" start "$PGDIR" "$PGPORT" || die "cannot start the throwaway PostgreSQL for the database render"
ANCHORD_RENDERED_DATABASE_URL="$(bash "$PGCTL" url "$PGDIR" "$PGPORT")" \
  node "$ROOT/tests/deploy/run-rendered.cjs" "$TOOLS" "$WORK/database.yaml" "${BINS[@]}" ||
  die "database render: a binary rejected the rendered configuration or the database"
bash "$PGCTL" stop "$PGDIR"

step "Dockerfile lint"
"$PY" "$ROOT/deploy/docker/lint" || die "Dockerfile lint"

step "promtool"
promtool check rules "$ROOT/deploy/prometheus/alerts.yml" || die "promtool check rules"
(cd "$ROOT/deploy/prometheus" && promtool test rules alerts_test.yml) || die "promtool test rules"
promtool check config "$ROOT/deploy/prometheus/prometheus.yml" || die "promtool check config"
cmp -s "$ROOT/deploy/prometheus/alerts.yml" "$CHART/files/alerts.yml" ||
  die "helm/anchord/files/alerts.yml differs from deploy/prometheus/alerts.yml (copy it)"
# Every alert must have a unit test that expects it to fire and one that expects silence.
NODE_PATH="$TOOLS/node_modules" node -e '
  const YAML = require("yaml"); const fs = require("fs");
  const rules = YAML.parse(fs.readFileSync(process.argv[1], "utf8"));
  const tests = YAML.parse(fs.readFileSync(process.argv[2], "utf8"));
  const seen = {};
  for (const t of tests.tests || [])
    for (const c of t.alert_rule_test || []) {
      const s = (seen[c.alertname] = seen[c.alertname] || {fires: 0, silent: 0});
      if ((c.exp_alerts || []).length) s.fires++; else s.silent++;
    }
  let bad = 0;
  for (const g of rules.groups) for (const r of g.rules) if (r.alert) {
    const s = seen[r.alert] || {fires: 0, silent: 0};
    console.log(`${r.alert}: ${s.fires} firing, ${s.silent} not-firing cases`);
    if (!s.fires || !s.silent) { console.error(`alert ${r.alert} lacks a firing or a not-firing unit test`); bad = 1; }
  }
  process.exit(bad);' "$ROOT/deploy/prometheus/alerts.yml" "$ROOT/deploy/prometheus/alerts_test.yml" ||
  die "alert unit-test coverage"

step "dashboard"
DASH="$ROOT/deploy/grafana/anchord-dashboard.json"
ALLOWED="$ROOT/deploy/exported-metrics.txt"
"$PY" "$ROOT/deploy/grafana/extract-metric-names" --allowed "$ALLOWED" "$DASH" > "$WORK/metric-names.txt" ||
  die "dashboard is invalid or uses metrics the services do not export"
grep -v '^#' "$ROOT/deploy/grafana/metric-names.txt" | cmp -s - "$WORK/metric-names.txt" ||
  die "deploy/grafana/metric-names.txt is stale: run deploy/grafana/extract-metric-names --write $DASH"
echo "dashboard uses $(wc -l < "$WORK/metric-names.txt") metric names, all exported"
NODE_PATH="$TOOLS/node_modules" node -e '
  const YAML = require("yaml"); const fs = require("fs");
  for (const g of YAML.parse(fs.readFileSync(process.argv[1], "utf8")).groups)
    for (const r of g.rules) console.log(JSON.stringify(r.expr));' "$ROOT/deploy/prometheus/alerts.yml" \
  > "$WORK/alert-exprs.jsonl"
"$PY" "$ROOT/deploy/grafana/extract-metric-names" --exprs --allowed "$ALLOWED" < "$WORK/alert-exprs.jsonl" >/dev/null ||
  die "alert rules use metrics the services do not export"

step "self-test: broken inputs must fail"
# Replicas and HPAs of the stateful services need a database: refused by the schema (naming the
# value), and by the templates' own check when the schema is skipped (naming database.existingSecret).
for bad in 'submitter:\n  replicas: 2\n' 'poller:\n  replicas: 3\n' \
           'submitter:\n  autoscaling:\n    enabled: true\n' 'poller:\n  autoscaling:\n    enabled: true\n'; do
  printf "$bad" > "$WORK/bad-values.yaml"
  what="$(head -1 "$WORK/bad-values.yaml" | tr -d ':')"
  if out="$("$HELM" lint --strict "$CHART" -f "$WORK/bad-values.yaml" 2>&1)"; then die "helm lint accepted $(tr '\n' ' ' < "$WORK/bad-values.yaml")without a database"; fi
  echo "$out" | grep -q "at '/$what/" || die "the schema's refusal does not name $what: $out"
  if out="$("$HELM" template x "$CHART" --skip-schema-validation -f "$WORK/bad-values.yaml" 2>&1)"; then die "the templates accepted $(tr '\n' ' ' < "$WORK/bad-values.yaml")without a database"; fi
  echo "$out" | grep -q "need database.existingSecret" || die "the templates' refusal does not name database.existingSecret: $out"
  # The same values with a database are accepted.
  printf 'database:\n  existingSecret: db\n' >> "$WORK/bad-values.yaml"
  "$HELM" lint --strict "$CHART" -f "$WORK/bad-values.yaml" >/dev/null 2>&1 || die "helm lint refused $what replicas with a database"
done
for p in proofd proofledger simpleproof; do
  printf 'provider:\n  %s:\n    apiKey: plaintext\n' "$p" > "$WORK/bad-key.yaml"
  if "$HELM" template x "$CHART" -f "$WORK/bad-key.yaml" >/dev/null 2>&1; then die "the chart accepted a $p API key in values"; fi
done
printf 'provider:\n  simpleproof:\n    callbackUrl: https://x.example/callbacks/simpleproof\n' > "$WORK/bad-cb.yaml"
if "$HELM" template x "$CHART" -f "$WORK/bad-cb.yaml" >/dev/null 2>&1; then die "the chart accepted a callback URL without the webhook"; fi
sed 's/--merkle-max-leaves=/--merkle-max-leafs=/' "$WORK/all-on.yaml" > "$WORK/bad-flag.yaml"
if node "$ROOT/tests/deploy/run-rendered.cjs" "$TOOLS" "$WORK/bad-flag.yaml" "${BINS[@]}" >/dev/null 2>&1; then
  die "the binaries check accepted an unknown flag"
fi
sed 's/containerPort: 50051/containerPort: "50051"/' "$WORK/defaults.yaml" > "$WORK/bad.yaml"
if node "$ROOT/tests/deploy/validate-manifests.cjs" "$TOOLS" "$WORK/bad.yaml" >/dev/null 2>&1; then die "schema validation accepted a string containerPort"; fi
sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' "$WORK/defaults.yaml" > "$WORK/bad-sec.yaml"
if node "$ROOT/tests/deploy/validate-manifests.cjs" "$TOOLS" "$WORK/bad-sec.yaml" >/dev/null 2>&1; then die "policy check accepted a writable root filesystem"; fi
sed 's/> 12 \* 3600/> 12 * 3600)/' "$ROOT/deploy/prometheus/alerts.yml" > "$WORK/bad-alerts.yml"
if promtool check rules "$WORK/bad-alerts.yml" >/dev/null 2>&1; then die "promtool accepted a broken rule"; fi
mkdir -p "$WORK/rt" && cp "$ROOT/deploy/prometheus/alerts_test.yml" "$WORK/rt/"
sed 's/== 1$/== 2/' "$ROOT/deploy/prometheus/alerts.yml" > "$WORK/rt/alerts.yml"
if (cd "$WORK/rt" && promtool test rules alerts_test.yml >/dev/null 2>&1); then die "unit tests passed a wrong quota rule"; fi
printf '"rate(anchord_made_up_total[5m])"\n' |
  if "$PY" "$ROOT/deploy/grafana/extract-metric-names" --exprs --allowed "$ALLOWED" >/dev/null 2>&1; then die "unknown metric accepted"; fi
sed 's/USER 65532:65532/USER 0/' "$ROOT/deploy/docker/Dockerfile" > "$WORK/Dockerfile"
cp "$ROOT/deploy/docker/Dockerfile.dockerignore" "$WORK/Dockerfile.dockerignore"
if "$PY" "$ROOT/deploy/docker/lint" "$WORK/Dockerfile" >/dev/null 2>&1; then die "Dockerfile lint accepted USER 0"; fi

echo "deploy checks: all passed"
