#!/usr/bin/env bash
# `archive --merkle-batch --wait submitted` A/B: how long archive takes to notice that the poller
# stored its last leaf, and what the waiting costs the poller, for two (or more) builds measured
# alternately over the same files (paired, so the load of a shared machine hits both alike):
#
#   bash bench/archive_wait_bench.sh BIN_A BIN_B [...]      (PAIRS=3, FILES=20000)
#
# A BIN is a build directory or a flat directory holding anchorctl and the anchord-* binaries.
# Each run starts a fresh local stack (sandbox, confirmations and polling pushed out of the way),
# samples the poller's /metrics every 50 ms for the moment its TRACKED count reached FILES
# ("store 100%"), and reads the poller's CPU seconds (/proc/PID/stat) before and after archive.
# Printed per run and as medians per build: archive wall, store 100%, the gap between them,
# poller CPU seconds, and the load average. CTL_ARGS adds global options to anchorctl (e.g.
# "--log-level debug"); KEEP_LOGS=DIR keeps each run's archive output and poller log.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_NAME=archive_wait_bench  # read by bench/lib.sh
source bench/lib.sh
[ $# -ge 1 ] || { echo "usage: $0 BIN_A [BIN_B ...]" >&2; exit 2; }
FILES="${FILES:-20000}"
PAIRS="${PAIRS:-3}"
WORK="$(mktemp -d /tmp/anchord-wait-bench.XXXXXX)"
PIDS=()
cleanup() {
  stop_all
  rm -rf "$WORK"
}
trap cleanup EXIT

ctl_of() {  # BIN -> path of anchorctl
  if [ -x "$1/anchorctl" ]; then echo "$1/anchorctl"; else echo "$1/services/anchorctl/anchorctl"; fi
}
for b in "$@"; do require_built "$(ctl_of "$b")"; done

make_tree "$WORK/root/tree" "$FILES" wait
warm_cache "$WORK/root/tree"

run_one() {  # label BIN -> one result line (JSON)
  local label="$1" ctl state run poller t0 t1 c0 c1
  ctl="$(ctl_of "$2")"
  state="$WORK/state-$RANDOM$RANDOM"
  run="$state/run"
  "$ctl" --data-dir "$state" local --sandbox --root "$WORK/root" --bin-dir "$(dirname "$ctl")" \
    --sandbox-confirm-after-seconds 3600 --poll-interval-seconds 3600 > "$WORK/local.log" 2>&1 &
  PIDS+=($!)
  wait_file "$run/stack.json" 30
  poller=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pids"]["poller"])' "$run/stack.json")
  /usr/bin/python3 - "$run" "$FILES" > "$WORK/store.json" <<'PY' &
import json, os, re, sys, time, urllib.request
run, n = sys.argv[1], int(sys.argv[2])
port = open(os.path.join(run, "poller.metrics.port")).read().strip()
def tracked():
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except Exception:
        return None
    return sum(float(m) for m in re.findall(r'anchord_poller_events_total\{type="tracked"\} ([0-9.e+]+)', text))
base = None
while base is None:
    base = tracked()
open(os.path.join(run, "sampler.ready"), "w").close()
while not os.path.exists(os.path.join(run, "archive.start")):
    time.sleep(0.005)
t0 = os.stat(os.path.join(run, "archive.start")).st_mtime
done = None
while time.time() - t0 < 600:
    c = tracked()
    if c is not None and c - base >= n:
        done = time.time() - t0
        break
    time.sleep(0.05)
print(json.dumps({"store100": done}))
PY
  local sampler=$!
  for _ in $(seq 1 400); do [ -e "$run/sampler.ready" ] && break; sleep 0.05; done
  c0=$(cpu_seconds "$poller")
  touch "$run/archive.start"
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086  # CTL_ARGS: extra global options, e.g. "--log-level debug"
  "$ctl" --data-dir "$state" ${CTL_ARGS:-} archive "$WORK/root/tree" --job bench --merkle-batch --wait submitted \
    --timeout-seconds 600 > "$WORK/archive.out" 2>&1 || echo "archive exit $?" >&2
  t1=$(date +%s.%N)
  c1=$(cpu_seconds "$poller")
  wait "$sampler" || true
  if [ -n "${KEEP_LOGS:-}" ]; then
    mkdir -p "$KEEP_LOGS"
    cp "$WORK/archive.out" "$KEEP_LOGS/archive-$(basename "$state").out"
    cp "$run/poller.log" "$KEEP_LOGS/poller-$(basename "$state").log" 2>/dev/null || true
  fi
  stop_all
  /usr/bin/python3 - "$label" "$t0" "$t1" "$c0" "$c1" "$WORK/store.json" <<'PY'
import json, sys
label, t0, t1, c0, c1, store = sys.argv[1:7]
wall = float(t1) - float(t0)
s = json.load(open(store))["store100"]
print(json.dumps({"build": label, "archive_s": round(wall, 2),
                  "store100_s": None if s is None else round(s, 2),
                  "gap_s": None if s is None else round(wall - s, 2),
                  "poller_cpu_s": round(float(c1) - float(c0), 2),
                  "load": open("/proc/loadavg").read().split()[0]}))
PY
}

RESULTS="$WORK/results.jsonl"
for _ in $(seq 1 "$PAIRS"); do
  i=0
  for b in "$@"; do
    i=$((i + 1))
    line=$(run_one "$i:$b" "$b")
    echo "$line" | tee -a "$RESULTS"
  done
done
/usr/bin/python3 - "$RESULTS" "$FILES" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\nmedians over {sys.argv[2]} files:")
for b in dict.fromkeys(r["build"] for r in rows):
    rs = [r for r in rows if r["build"] == b]
    med = lambda k: statistics.median([r[k] for r in rs if r[k] is not None]) if any(r[k] is not None for r in rs) else None
    print(f"  {b}: archive {med('archive_s')} s, store 100% {med('store100_s')} s, "
          f"gap {med('gap_s')} s, poller CPU {med('poller_cpu_s')} s, load {[r['load'] for r in rs]}")
PY
