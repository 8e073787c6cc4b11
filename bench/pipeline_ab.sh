#!/usr/bin/env bash
# bench/pipeline_bench.sh for two builds, paired: PAIRS pairs (default 4), each one run of build A
# and one of build B, which of them runs first alternating from pair to pair. The run in a pair's
# first place was 5-20% slower in every service in session 25 (bench/RESULTS.md, "Issue 11,
# session 25": an order effect), so pairs that always put the same build first are biased.
#
#   bash bench/pipeline_ab.sh BUILD_A BUILD_B [OUT_DIR]     (env: PAIRS=4, and pipeline_bench's)
#
# Each run's table goes to OUT_DIR (default a new temporary directory) as a-N.md and b-N.md; the
# means of the run's time, its ratio to the dry run and each service's CPU are printed. The bench
# clients come from BUILD_B (BENCH_BIN), so both builds are driven by the same ones.
set -euo pipefail
cd "$(dirname "$0")/.."
A="$(cd "$1" && pwd)"
B="$(cd "$2" && pwd)"
OUT_DIR="${3:-$(mktemp -d)}"
PAIRS="${PAIRS:-4}"
mkdir -p "$OUT_DIR"
for i in $(seq 1 "$PAIRS"); do
  order=(a b)
  if [ $((i % 2)) = 0 ]; then order=(b a); fi
  for side in "${order[@]}"; do
    if [ "$side" = a ]; then build="$A"; else build="$B"; fi
    echo "pair $i: $side ($build)" >&2
    BENCH_BIN="${BENCH_BIN:-$B/bench}" OUT="$OUT_DIR/$side-$i.md" \
      bash bench/pipeline_bench.sh "$build" > "$OUT_DIR/$side-$i.log" 2>&1 ||
      { echo "pipeline_ab: run $side-$i failed (see $OUT_DIR/$side-$i.log)" >&2; exit 1; }
  done
done
/usr/bin/python3 - "$OUT_DIR" "$PAIRS" <<'PY'
import re, sys
out, pairs = sys.argv[1], int(sys.argv[2])
def figures(path):
    t = open(path).read()
    run = re.search(r"SUBMITTED \| ([0-9.]+) s .*?\| ([0-9.]+)x dry run", t)
    f = {"run s": float(run.group(1)), "ratio": float(run.group(2))}
    for svc in ("hasher", "submitter", "poller"):
        m = re.search(r"\| " + svc + r" \| [0-9.]+ KiB[^|]*\| ([0-9.]+) \|", t)
        if m:
            f[svc + " CPU s"] = float(m.group(1))
    return f
print(f"| build | pairs | " + " | ".join(figures(f"{out}/a-1.md")) + " |")
print("|---|---|" + "---|" * len(figures(f"{out}/a-1.md")))
for side in ("a", "b"):
    runs = [figures(f"{out}/{side}-{i}.md") for i in range(1, pairs + 1)]
    means = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
    print(f"| {side} | {pairs} | " + " | ".join(f"{v:.3f}" for v in means.values()) + " |")
print(f"(each run's table: {out}/a-N.md, b-N.md)")
PY
