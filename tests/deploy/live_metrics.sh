#!/usr/bin/env bash
# Live metrics check (ctest: live_metrics, label "deploy"): the dashboard and alerts against a real
# local stack, not against a list of names someone wrote down.
#   1. anchorctl local --sandbox (hasher, submitter, poller, proofd sandbox on loopback), then
#      anchorctl archive --wait confirmed on ~10 small files
#   2. curl each service's /metrics; `promtool check metrics` must be clean; every name in
#      deploy/grafana/metric-names.txt (override: ANCHORD_METRIC_NAMES) must be exported by at
#      least one service (`up` is Prometheus's own and skipped)
#   3. a real Prometheus (scrape_interval 1s, alerts.yml loaded) scraping the three services: `up`
#      is 1 for all three, the poller's confirmed backlog equals the files anchored, and every alert
#      rule evaluates with health "ok" (i.e. its PromQL works on real series)
# Usage: live_metrics.sh ANCHORCTL HASHER SUBMITTER POLLER SANDBOX
# (the service binaries are passed so ctest runs this only against built ones; anchorctl finds
# them itself in the build tree's layout.)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
[ $# -eq 5 ] || { echo "usage: $0 ANCHORCTL HASHER SUBMITTER POLLER SANDBOX" >&2; exit 2; }
CTL="$1"
for b in "$@"; do [ -x "$b" ] || { echo "live metrics FAILED: no executable $b" >&2; exit 1; }; done
NAMES="${ANCHORD_METRIC_NAMES:-$ROOT/deploy/grafana/metric-names.txt}"
ALERTS="$ROOT/deploy/prometheus/alerts.yml"
PY=/usr/bin/python3
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 ||
  bash "$ROOT/deploy/install-tools" || { echo "live metrics FAILED: promtool/prometheus missing" >&2; exit 1; }

WORK="$(mktemp -d /tmp/anchord-live-metrics.XXXXXX)"
STATE="$WORK/state"
LOCAL_PID=""
PROM_PID=""
cleanup() {
  # Only the processes this script started, by pid; anchorctl local stops its own children.
  for p in $PROM_PID $LOCAL_PID; do kill "$p" 2>/dev/null || true; done
  for p in $PROM_PID $LOCAL_PID; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
die() {
  echo "live metrics FAILED: $*" >&2
  for f in "$WORK"/local.log "$STATE"/run/*.log "$WORK"/prometheus.log; do
    [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }
  done
  exit 1
}
step() { echo "== $*"; }

step "local stack"
EVIDENCE="$WORK/evidence"
mkdir -p "$EVIDENCE/a" "$EVIDENCE/b"
NFILES=10
for i in $(seq 1 $NFILES); do
  printf 'live metrics evidence %s\n' "$i" > "$EVIDENCE/$([ $((i % 2)) -eq 0 ] && echo a || echo b)/file-$i.txt"
done
"$CTL" --data-dir "$STATE" local --sandbox --root "$EVIDENCE" \
  --sandbox-window-seconds 10 --sandbox-confirm-after-seconds 2 --poll-interval-seconds 1 \
  > "$WORK/local.log" 2>&1 &
LOCAL_PID=$!
for _ in $(seq 1 150); do [ -s "$STATE/run/stack.json" ] && break; sleep 0.2; done
[ -s "$STATE/run/stack.json" ] || die "the local stack did not start within 30 s"
"$CTL" --data-dir "$STATE" archive "$EVIDENCE" --job live --wait confirmed --timeout-seconds 60 \
  > "$WORK/archive.log" 2>&1 || { cat "$WORK/archive.log" >&2; die "archive did not confirm every file"; }

step "scrape /metrics"
SERVICES="hasher submitter poller"
TARGETS=""
for s in $SERVICES; do
  f="$STATE/run/$s.metrics.port"
  [ -s "$f" ] || die "no metrics port file $f"
  port="$(tr -d '[:space:]' < "$f")"
  [[ "$port" =~ ^[0-9]+$ ]] || die "bad metrics port in $f: '$port'"
  curl -fsS --max-time 10 "http://127.0.0.1:$port/metrics" > "$WORK/$s.prom" || die "scrape $s failed"
  [ -s "$WORK/$s.prom" ] || die "$s exported nothing"
  out="$(promtool check metrics < "$WORK/$s.prom" 2>&1)" || die "promtool check metrics ($s): $out"
  [ -z "$out" ] || die "promtool check metrics ($s) complains: $out"
  TARGETS="$TARGETS${TARGETS:+, }\"127.0.0.1:$port\""
done

step "dashboard metric names ($NAMES)"
[ -f "$NAMES" ] || die "no names file $NAMES"
checked=0
missing=""
while IFS= read -r line || [ -n "$line" ]; do
  name="${line%%#*}"
  name="$(echo "$name" | tr -d '[:space:]')"
  [ -z "$name" ] || [ "$name" = up ] && continue
  checked=$((checked + 1))
  # A sample line is NAME{...} VALUE or NAME VALUE; histograms export NAME_bucket/_sum/_count,
  # which the dashboard names as such.
  if ! grep -qE "^${name}(\{| )" "$WORK"/hasher.prom "$WORK"/submitter.prom "$WORK"/poller.prom; then
    missing="$missing $name"
  fi
done < "$NAMES"
[ "$checked" -gt 0 ] || die "no metric names in $NAMES"
[ -z "$missing" ] || die "names the dashboard uses but no service exports:$missing"

step "prometheus"
PROM_PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
mkdir -p "$WORK/prom"
cp "$ALERTS" "$WORK/prom/alerts.yml"
cat > "$WORK/prom/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - alerts.yml
scrape_configs:
  - job_name: anchord-live
    static_configs:
      - targets: [$TARGETS]
EOF
promtool check config "$WORK/prom/prometheus.yml" > "$WORK/promcheck.log" 2>&1 ||
  { cat "$WORK/promcheck.log" >&2; die "promtool check config"; }
prometheus --config.file="$WORK/prom/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" > "$WORK/prometheus.log" 2>&1 &
PROM_PID=$!

API="http://127.0.0.1:$PROM_PORT/api/v1"
query() { curl -fsS --max-time 5 -G "$API/query" --data-urlencode "query=$1" 2>/dev/null; }
# Prints "ok" when the JSON on stdin answers what the check named by $1 wants, else why not.
judge() {
  "$PY" -c '
import json, sys
kind, want = sys.argv[1], sys.argv[2]
try:
    d = json.load(sys.stdin)
except Exception as e:
    print("bad JSON:", e); sys.exit(0)
if d.get("status") != "success":
    print("status", d.get("status")); sys.exit(0)
data = d.get("data", {})
if kind == "up":
    r = data.get("result", [])
    vals = sorted((x["metric"].get("instance", "?"), x["value"][1]) for x in r)
    ok = len(r) == int(want) and all(v == "1" for _, v in vals)
    print("ok" if ok else "up=%s" % vals)
elif kind == "confirmed":
    r = data.get("result", [])
    v = r[0]["value"][1] if r else None
    print("ok" if v is not None and float(v) == float(want) else "confirmed=%s want %s" % (v, want))
elif kind == "rules":
    rules = [r for g in data.get("groups", []) for r in g.get("rules", [])]
    bad = ["%s: %s %s" % (r.get("name"), r.get("health"), r.get("lastError", ""))
           for r in rules if r.get("health") != "ok"]
    if not rules:
        print("no rules loaded")
    elif bad:
        print("rules not ok: " + "; ".join(bad))
    else:
        print("ok %d" % len(rules))
' "$1" "$2"
}
up_state="" confirmed_state="" rules_state=""
deadline=$((SECONDS + 30))
for _ in $(seq 1 60); do
  [ "$SECONDS" -lt "$deadline" ] || break
  kill -0 "$PROM_PID" 2>/dev/null || die "prometheus exited"
  # Prometheus may not be listening yet: a failed curl is "not yet", not a failure (|| true).
  up_state="$(query 'up' | judge up 3 || true)"
  confirmed_state="$(query 'sum(anchord_backlog_digests{service="poller",state=~"(?i)confirmed"})' | judge confirmed "$NFILES" || true)"
  rules_state="$(curl -fsS --max-time 5 "$API/rules" 2>/dev/null | judge rules 0 || true)"
  [ "$up_state" = ok ] && [ "$confirmed_state" = ok ] && [ "${rules_state%% *}" = ok ] && break
  sleep 0.5
done
[ "$up_state" = ok ] || die "prometheus: up is not 1 for the three targets ($up_state)"
[ "$confirmed_state" = ok ] || die "prometheus: anchord_backlog_digests query ($confirmed_state)"
[ "${rules_state%% *}" = ok ] || die "prometheus: alert rules ($rules_state)"
firing="$(query 'ALERTS{alertstate="firing"}' | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print(" ".join(sorted({r["metric"].get("alertname", "?") for r in d["data"]["result"]})))' 2>/dev/null || true)"
[ -z "$firing" ] || echo "note: alerts firing on the live stack: $firing"
echo "live metrics: $checked names checked, promtool clean, prometheus query ok (${rules_state#ok } alert rules evaluate ok)"
