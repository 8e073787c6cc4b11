#!/usr/bin/env bash
# `anchorctl bundle` and `verify-bundle` over one Merkle job of FILES files, time and peak memory,
# each beside a reference on the same bundle in the same run:
#
#   FILES=100000 bash bench/bundle_bench.sh [BUILD_DIR]     (writes bench/results/bundle.md)
#
# The job: FILES (default 20,000) files of 1-4 KiB archived through a local sandbox stack with
# `--provider tsa --merkle-batch --wait confirmed` (each file a .tsrm proof). References: bsdtar
# writing a ZIP of the same entries (the bundle extracted, zipped again with deflate), and
# `unzip -tq` reading and inflating every entry of the bundle; `report` (its verification column
# reads every proof as `bundle` does) is timed beside them. CTL_B=/path/to/anchorctl runs the
# same commands (bundle, verify-bundle, report) with another anchorctl (an older build) against the same stack, for a
# before/after. KEEP=1 keeps the work directory (the tree, the stack's data, the bundles). Figures
# from /usr/bin/time (elapsed seconds, maximum resident set size).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="$(cd "${1:-build}" && pwd)"
FILES="${FILES:-20000}"
OUT="${OUT:-bench/results/bundle.md}"
BENCH_NAME=bundle_bench
. bench/lib.sh
CTL="$BUILD/services/anchorctl/anchorctl"
require_built "$CTL" /usr/bin/bsdtar /usr/bin/unzip /usr/bin/time
WORK="$(mktemp -d /tmp/anchord-bundle-bench.XXXXXX)"
PIDS=()
cleanup() {
  stop_all
  if [ -n "${KEEP:-}" ]; then echo "$BENCH_NAME: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

make_tree "$WORK/root/tree" "$FILES" bundle
warm_cache "$WORK/root/tree"
"$CTL" --data-dir "$WORK/ctl" local --sandbox --root "$WORK/root" > "$WORK/local.log" 2>&1 &
PIDS+=($!)
wait_file "$WORK/ctl/run/stack.json" 60
t0=$(date +%s.%N)
"$CTL" --data-dir "$WORK/ctl" archive "$WORK/root/tree" --job b --provider tsa --merkle-batch \
  --wait confirmed --timeout-seconds 600 > "$WORK/archive.log" 2>&1
t1=$(date +%s.%N)

stack_cpu() {  # CPU seconds the stack's services have used so far
  /usr/bin/python3 -c '
import json, sys
sys.path.insert(0, "bench")
from proc_stat import cpu_and_faults
total = 0.0
pids = json.load(open(sys.argv[1]))["pids"]
for pid in (pids.values() if isinstance(pids, dict) else pids):
    try:
        total += cpu_and_faults(pid)[0]
    except OSError:
        pass
print(f"{total:.2f}")' "$WORK/ctl/run/stack.json"
}

# label command... -> "label seconds peak_MiB cpu_s stack_cpu_s" (the command's output in
# $WORK/label.out): its own CPU (user + system) and what the stack's services spent meanwhile.
timed() {
  local label="$1"
  shift
  local before
  before=$(stack_cpu)
  /usr/bin/time -f "%e %M %U %S" -o "$WORK/$label.time" "$@" > "$WORK/$label.out" 2>&1 || {
    echo "$BENCH_NAME: $label failed:" >&2
    tail -5 "$WORK/$label.out" >&2
    exit 1
  }
  awk -v l="$label" -v s="$(echo "$(stack_cpu) - $before" | bc)" \
    '{ printf "%s %s %.1f %.2f %.2f\n", l, $1, $2 / 1024, $3 + $4, s }' "$WORK/$label.time"
}

ROWS=()
ROWS+=("$(timed bundle "$CTL" --data-dir "$WORK/ctl" bundle --job b -o "$WORK/b.zip")")
ROWS+=("$(timed verify "$CTL" verify-bundle "$WORK/b.zip")")
# The report's verification column reads every proof the same way `bundle` does.
ROWS+=("$(timed report "$CTL" --data-dir "$WORK/ctl" report --job b -o "$WORK/report.csv")")
mkdir -p "$WORK/x"
bsdtar -xf "$WORK/b.zip" -C "$WORK/x"
ENTRIES=$(unzip -Z1 "$WORK/b.zip" | wc -l)
ROWS+=("$(timed ref_zip bsdtar --options zip:compression=deflate -a -cf "$WORK/ref.zip" -C "$WORK/x" .)")
ROWS+=("$(timed ref_test unzip -tq "$WORK/b.zip")")
if [ -n "${CTL_B:-}" ]; then
  ROWS+=("$(timed bundle_b "$CTL_B" --data-dir "$WORK/ctl" bundle --job b -o "$WORK/b_old.zip")")
  ROWS+=("$(timed report_b "$CTL_B" --data-dir "$WORK/ctl" report --job b -o "$WORK/report_b.csv")")
  # An older verify-bundle may refuse a large bundle: its row is then left out.
  if r=$(timed verify_b "$CTL_B" verify-bundle "$WORK/b_old.zip"); then ROWS+=("$r"); fi
fi
verified=$(grep -c ",VERIFIED " "$WORK/report.csv" || true)
[ "$verified" = "$FILES" ] || {
  echo "$BENCH_NAME: the report verified $verified of $FILES proofs" >&2
  exit 1
}
grep -q "proofs verified, 0 mismatches, 0 pending" "$WORK/verify.out" || {
  echo "$BENCH_NAME: verify-bundle did not verify every proof:" >&2
  tail -3 "$WORK/verify.out" >&2
  exit 1
}

{
  echo "# bundle_bench: $FILES files, one Merkle job (tsa), $ENTRIES ZIP entries, $(stat -c %s "$WORK/b.zip") bytes"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg);"
  echo "archive to confirmed: $(echo "$t1 - $t0" | bc) s."
  echo
  echo "| command | seconds | peak RSS MiB | its CPU s | the stack's CPU s meanwhile |"
  echo "|---|---|---|---|---|"
  for r in "${ROWS[@]}"; do
    set -- $r
    case "$1" in
      bundle) name="anchorctl bundle" ;;
      verify) name="anchorctl verify-bundle" ;;
      ref_zip) name="reference: bsdtar writing the same entries as a ZIP" ;;
      ref_test) name="reference: unzip -tq (inflate every entry)" ;;
      bundle_b) name="anchorctl bundle (CTL_B)" ;;
      report) name="anchorctl report (CSV, every proof verified)" ;;
      report_b) name="anchorctl report (CTL_B)" ;;
      verify_b) name="anchorctl verify-bundle (CTL_B)" ;;
    esac
    echo "| $name | $2 | $3 | $4 | $5 |"
  done
  echo
  tail -1 "$WORK/verify.out"
  if [ -n "${CTL_B:-}" ]; then echo; echo "CTL_B verify-bundle: $(grep -m1 -E 'files,|error' "$WORK/verify_b.out")"; fi
} | tee "$OUT"
