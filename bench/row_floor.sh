#!/usr/bin/env bash
# SQLite's own cost of what a Merkle leaf stores in each service, against what the services spend
# per leaf: the floor under the store paths, from the stores' real schemas.
#
#   bash bench/row_floor.sh [BUILD_DIR]        (env: N=100000 REPS=3; writes $OUT if set)
#
# 1. A small archive (20 files) through the real local stack (`anchorctl archive --local --sandbox
#    --merkle-batch --wait submitted`) leaves submitter.db, poller.db and hasher.db as the services
#    made them.
# 2. bench/row_floor.py copies each store's schema (tables, indexes, triggers) to a fresh database
#    and writes N copies of one real leaf's rows there (fresh random digests, the next ids) with
#    one INSERT ... SELECT per 10,000 rows, WAL and synchronous=FULL: no binding, no statement per
#    row, no application code. CPU microseconds per leaf, the lowest of REPS runs. Layouts the
#    stores do not have ("alt:") are measured the same way.
# Compare the figures with the services' CPU per leaf in bench/pipeline_bench.sh's table (CPU
# seconds per 100,000 files = microseconds per leaf x 0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_NAME=row_floor  # read by bench/lib.sh
source bench/lib.sh
BUILD="$(cd "${1:-build}" && pwd)"
N="${N:-100000}"
CTL="$BUILD/services/anchorctl/anchorctl"
require_built "$CTL" "$BUILD/services/hasher/anchord-hasher" "$BUILD/services/submitter/anchord-submitter" \
  "$BUILD/services/poller/anchord-poller" "$BUILD/services/sandbox/anchord-sandbox"
WORK="$(mktemp -d /tmp/anchord-row-floor.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

make_tree "$WORK/tree" 20 floor
"$CTL" --data-dir "$WORK/state" archive "$WORK/tree" --local --sandbox --merkle-batch \
  --wait submitted > "$WORK/archive.log" 2>&1 ||
  { tail -20 "$WORK/archive.log" >&2; echo "$BENCH_NAME: the archive failed" >&2; exit 1; }
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
JSON=$(/usr/bin/python3 bench/row_floor.py "$WORK/state/state" "$N" "$WORK/floor")
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

TABLE=$(/usr/bin/python3 - "$JSON" "$N" "$LOAD0" "$LOAD1" <<'PY'
import json, sys
rows, n = json.loads(sys.argv[1]), int(sys.argv[2])
print(f"## SQLite's floor per leaf (`bench/row_floor.sh`), {n:,} leaves, load average "
      f"{sys.argv[3]} / {sys.argv[4]} (start / end)\n")
print("| rows of one leaf | CPU us per leaf | CPU s per 100,000 |")
print("|---|---|---|")
for name, us in rows.items():
    print(f"| {name} | {us:.2f} | {us / 10:.2f} |")
PY
)
echo "$TABLE"
if [ -n "${OUT:-}" ]; then echo "$TABLE" > "$OUT"; fi
