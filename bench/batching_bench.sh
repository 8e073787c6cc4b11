#!/usr/bin/env bash
# Merkle batching vs per-file anchoring of the same small files, through the real services and
# the proofd.id sandbox with its documented limits (30 creates and 120 requests per key per
# window) scaled to a short window, in one run:
#
#   bash bench/batching_bench.sh [BUILD_DIR]     (writes bench/results/batching.md)
#
# FILES (default 2000) files of 1-4 KiB; WINDOW (default 1) seconds per rate window. Per-file
# mode needs FILES/30 windows at best; batching needs one create per 10,000 files.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_NAME=batching_bench  # read by bench/lib.sh
source bench/lib.sh
BUILD="$(cd "${1:-build}" && pwd)"
FILES="${FILES:-2000}"
# Per-file mode is bounded by the create limit (FILES/30 windows at best), so it may run on fewer
# files than batching: PERFILE_FILES (default FILES). The table shows both counts.
PERFILE_FILES="${PERFILE_FILES:-$FILES}"
WINDOW="${WINDOW:-1}"
WORK="$(mktemp -d /tmp/anchord-batch-bench.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p bench/results

run_mode() {  # mode -> prints "seconds creates requests rate_limited"
  local mode="$1" dir="$WORK/$1"
  local count="$FILES"
  [ "$mode" = perfile ] && count="$PERFILE_FILES"
  # Distinct content per mode (the tag), so the two runs never share a digest.
  make_tree "$dir/tree" "$count" "$mode" 1024 4096 11
  local extra=()
  [ "$mode" = batch ] && extra=(--merkle-batch)
  "$CTL" --data-dir "$dir/state" local --sandbox --root "$dir/tree" --bin-dir "$BUILD/services/anchorctl" \
    --sandbox-window-seconds "$WINDOW" --sandbox-confirm-after-seconds 1 --poll-interval-seconds 1 \
    > "$dir/local.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do [ -s "$dir/state/run/stack.json" ] && break; sleep 0.2; done
  local start end rc=0
  start=$(date +%s.%N)
  "$CTL" --data-dir "$dir/state" archive "$dir/tree" --job bench --wait submitted \
    --timeout-seconds 3600 "${extra[@]}" > "$dir/archive.out" 2>&1 || rc=$?
  end=$(date +%s.%N)
  local port stats
  port=$(cat "$dir/state/run/sandbox.port")
  curl -s "http://127.0.0.1:$port/_sandbox/stats" > "$dir/stats.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  /usr/bin/python3 - "$mode" "$(echo "$end - $start" | bc)" "$rc" "$dir/stats.json" <<'PY'
import json, sys
mode, secs, rc = sys.argv[1], float(sys.argv[2]), sys.argv[3]
stats = json.load(open(sys.argv[4]))
print(f"{mode} {secs:.1f} {stats.get('creates_total')} {stats.get('requests_total')} "
      f"{stats.get('rate_limited_total')} {rc} {stats.get('records_total')}")
PY
}

CTL="$BUILD/services/anchorctl/anchorctl"
echo "per-file mode: $PERFILE_FILES files..." >&2
read -r _ per_s per_creates per_req per_429 per_rc _ < <(run_mode perfile)
echo "batch mode: $FILES files..." >&2
read -r _ bat_s bat_creates bat_req bat_429 bat_rc _ < <(run_mode batch)

{
  echo "## Merkle batching vs per-file (proofd limits per ${WINDOW} s window)"
  echo
  echo "| mode | files | wall time to SUBMITTED | files/s | provider creates (quota units) | sandbox requests | 429s | exit |"
  echo "|---|---|---|---|---|---|---|---|"
  echo "| per-file | ${PERFILE_FILES} | ${per_s} s | $(echo "scale=1; $PERFILE_FILES / $per_s" | bc) | ${per_creates} | ${per_req} | ${per_429} | ${per_rc} |"
  echo "| Merkle batch | ${FILES} | ${bat_s} s | $(echo "scale=1; $FILES / $bat_s" | bc) | ${bat_creates} | ${bat_req} | ${bat_429} | ${bat_rc} |"
} | tee bench/results/batching.md
