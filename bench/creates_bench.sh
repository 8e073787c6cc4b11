#!/usr/bin/env bash
# Per-file creates of one submitter (issue 11 goal 3), measured by the sandbox's own counters.
#
#   bash bench/creates_bench.sh [BUILD_DIR]      (writes bench/results/creates.md)
#   env: FILES (600), PACE_FILES (300), WORKERS (the submitter's default when empty),
#        SUBMITTER (another anchord-submitter binary, e.g. a build before a change)
#
# Two runs, each on a fresh sandbox (loopback), one anchord-submitter on SQLite (synchronous=FULL,
# its default) and one poller (the hand-off target):
#   unlimited  proofd's limits off in the sandbox (--general-limit 0 --create-key-limit 0
#              --create-ip-limit 0) and in both services (--proofd-create-limit 0
#              --proofd-general-limit 0). FILES digests handed over at once (per-file, no Merkle);
#              creates/s = creates between the first and the last create over that time.
#   window60x  the documented limits (30 creates per key per window) with the window compressed
#              60x to 1 s in the sandbox and in the services. Pace = creates after the first
#              window's burst, per window, over the create limit (1.0 = exactly at the limit).
# Both report the 429s served and the requests sent inside a Retry-After (early_requests_total).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="$(cd "${1:-build}" && pwd)"
FILES="${FILES:-600}"
PACE_FILES="${PACE_FILES:-300}"
LIMIT=30
PY=/usr/bin/python3
SUB="${SUBMITTER:-$BUILD/services/submitter/anchord-submitter}"
POL="$BUILD/services/poller/anchord-poller"
SBX="$BUILD/services/sandbox/anchord-sandbox"
BENCH="$BUILD/bench/submit_bench"
source bench/lib.sh
BENCH_NAME=creates_bench
require_built "$SUB" "$POL" "$SBX" "$BENCH"
WORK="$(mktemp -d /tmp/anchord-creates-bench.XXXXXX)"
PIDS=()
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT
printf 'proofd_live_sandbox' > "$WORK/key"; chmod 600 "$WORK/key"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

run() {  # label files window sandbox-limit-args... -- service-limit-args...
  local label="$1" files="$2" window="$3" dir="$WORK/$1"; shift 3
  local sbx_args=() svc_args=()
  while [ "$1" != "--" ]; do sbx_args+=("$1"); shift; done; shift
  svc_args=("$@")
  mkdir -p "$dir"
  "$SBX" --listen 127.0.0.1:0 --port-file "$dir/sandbox.port" --window-seconds "$window" \
    --confirm-after-seconds 2 "${sbx_args[@]}" > "$dir/sandbox.log" 2>&1 &
  PIDS+=($!)
  wait_file "$dir/sandbox.port" 20
  local sport; sport="$(cat "$dir/sandbox.port")"
  local provider=(--provider proofd --proofd-url "http://127.0.0.1:$sport"
                  --proofd-api-key-file "$WORK/key" --proofd-window-seconds "$window" "${svc_args[@]}")
  local pport piport sub_port
  pport="$(free_port)"; piport="$(free_port)"; sub_port="$(free_port)"
  "$POL" --listen "127.0.0.1:$pport" --port-file "$dir/poller.port" --data-dir "$dir/poller" \
    --internal-listen "127.0.0.1:$piport" --poll-interval-seconds 1 "${provider[@]}" \
    > "$dir/poller.log" 2>&1 &
  PIDS+=($!)
  wait_file "$dir/poller.port" 30
  local workers=()
  [ -n "${WORKERS:-}" ] && workers=(--workers "$WORKERS")
  "$SUB" --listen "127.0.0.1:$sub_port" --port-file "$dir/submitter.port" \
    --data-dir "$dir/submitter" --poller "127.0.0.1:$piport" "${provider[@]}" "${workers[@]}" \
    > "$dir/submitter.log" 2>&1 &
  PIDS+=($!)
  wait_file "$dir/submitter.port" 30
  "$BENCH" "127.0.0.1:$sub_port" "$files" 1 256 "creates-$label" > "$dir/submit.json"
  # Sampled every 50 ms, bounded by 120 s.
  "$PY" - "$sport" "$files" "$LIMIT" "$window" 120 > "$dir/result.json" <<'PY'
import json, sys, time, urllib.request
port, files, limit, window, budget = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                      float(sys.argv[4]), float(sys.argv[5]))
def stats():
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=5) as r:
        return json.load(r)["proofd"]
start = time.monotonic(); t_first = t_burst = t_done = None; c_first = 0; s = stats()
while time.monotonic() - start < budget:
    s = stats(); c = s["creates_total"]; now = time.monotonic()
    if t_first is None and c > 0: t_first, c_first = now, c
    if t_burst is None and c >= limit: t_burst = now
    if c >= files: t_done = now; break
    time.sleep(0.05)
out = {"creates": s["creates_total"], "rate_limited": s["rate_limited_total"],
       "early": s["early_requests_total"], "requests": s["requests_total"],
       "max_per_digest": s["max_creates_per_digest"]}
if t_first is not None and t_done is not None and t_done > t_first:
    out["seconds"] = t_done - t_first
    out["per_second"] = (files - c_first) / (t_done - t_first)
if t_burst is not None and t_done is not None and t_done > t_burst:
    out["pace"] = (files - limit) / ((t_done - t_burst) / window) / limit
print(json.dumps(out))
PY
  stop_all
  "$PY" - "$label" "$files" "$dir/result.json" <<'PY' >> "$WORK/rows.md"
import json, sys
label, files = sys.argv[1], int(sys.argv[2])
r = json.load(open(sys.argv[3]))
rate = f"{r['per_second']:.0f}" if "per_second" in r else "n/a (not all created)"
pace = f"{r['pace']:.2f}" if "pace" in r and label.startswith("window") else "-"
print(f"| {label} | {files} | {r['creates']} | {rate} | {pace} | {r['rate_limited']} | "
      f"{r['early']} | {r['max_per_digest']} | {r['requests']} |")
PY
}

: > "$WORK/rows.md"
run unlimited "$FILES" 60 --general-limit 0 --create-key-limit 0 --create-ip-limit 0 -- \
  --proofd-create-limit 0 --proofd-general-limit 0
run window60x "$PACE_FILES" 1 --
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p bench/results
{
  echo "# Per-file creates, one submitter (bench/creates_bench.sh)"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load before $LOAD_BEFORE, after $LOAD_AFTER," \
    "workers ${WORKERS:-default}"
  echo
  echo "| run | files | creates | creates/s | pace (1.0 = limit) | 429s | inside Retry-After | max creates/digest | provider requests |"
  echo "|---|---|---|---|---|---|---|---|---|"
  cat "$WORK/rows.md"
} | tee bench/results/creates.md
