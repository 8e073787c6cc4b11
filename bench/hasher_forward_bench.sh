#!/usr/bin/env bash
# The hasher's forwarding path (hash, send to the submitter over Submit, wait for its
# acknowledgement, record the row in hasher.db, answer the caller) next to a dry run of the same
# files through the same hasher (hash and record only), RUNS times, each run on fresh data
# directories so that no file counts as unchanged:
#
#   bash bench/hasher_forward_bench.sh [BUILD_DIR]     (writes bench/results/hasher_forward.md)
#
# FILES (default 20,000) files of 1-4 KiB as in pipeline_bench.sh, MODE merkle (default) or
# per-file. The submitter runs without a poller and with Merkle limits that seal no batch during
# the run, so what is measured is hashing, recording, forwarding and the submitter's durable intake
# (acknowledged after its synchronous=FULL commit). CPU seconds and bytes written to disk per
# process come from /proc (write_bytes of /proc/PID/io). HASHER_BIN (default: the build's) runs
# another hasher binary against the same build's submitter and client, for paired A/B runs.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="$(cd "${1:-build}" && pwd)"
FILES="${FILES:-20000}"
RUNS="${RUNS:-3}"
MODE="${MODE:-merkle}"
DATA="${BENCH_DIR:-/tmp/anchord-bench}/forward"
# The bench client may come from another build than the services (to measure an older hasher).
BENCH_BIN="$(cd "${BENCH_BIN:-$BUILD/bench}" && pwd)"
WORK="$(mktemp -d /tmp/anchord-forward-bench.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p bench/results "$DATA"
HASHER_BIN="${HASHER_BIN:-$BUILD/services/hasher/anchord-hasher}"

if [ "$(find "$DATA/tree" -type f 2>/dev/null | wc -l)" -ne "$FILES" ]; then
  rm -rf "$DATA/tree"
  /usr/bin/python3 - "$DATA/tree" "$FILES" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(13)
for i in range(n):
    d = os.path.join(root, f"d{i // 500:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}.bin"), "wb") as f:
        f.write(b"forward" + os.urandom(rnd.randint(1024, 4096)))
PY
fi
find "$DATA/tree" -type f -print0 | xargs -0 cat > /dev/null  # warm the page cache

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # clock ticks (1/100 s) of user + system
wbytes() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }
field() { echo "$1" | sed -E "s/.*\"$2\":([0-9.]+).*/\1/"; }
wait_port() { for _ in $(seq 1 200); do [ -s "$1" ] && return 0; sleep 0.05; done; return 1; }

ROWS=()
for run in $(seq 1 "$RUNS"); do
  R="$WORK/run$run"
  mkdir -p "$R/sub" "$R/hasher"
  "$BUILD/services/submitter/anchord-submitter" --listen 127.0.0.1:0 --port-file "$R/sub/port" \
    --data-dir "$R/sub" --poller 127.0.0.1:9 --provider ots --ots-calendars http://127.0.0.1:9 \
    --ots-min-calendars 1 --merkle-max-leaves 1000000 --merkle-window-seconds 86400 \
    --high-water 100000000 --log-level warning > "$R/sub/log" 2>&1 &
  SUB=$!
  PIDS+=($SUB)
  wait_port "$R/sub/port"
  "$HASHER_BIN" --root "$DATA" --listen 127.0.0.1:0 \
    --port-file "$R/hasher/port" --data-dir "$R/hasher" --workers 2 \
    --submitter "127.0.0.1:$(cat "$R/sub/port")" --log-level warning > "$R/hasher/log" 2>&1 &
  HAS=$!
  PIDS+=($HAS)
  wait_port "$R/hasher/port"
  ADDR="127.0.0.1:$(cat "$R/hasher/port")"
  load=$(cut -d' ' -f1 /proc/loadavg)

  h0=$(cpu "$HAS"); hw0=$(wbytes "$HAS")
  dry=$("$BENCH_BIN/hasher_bench" "$ADDR" tree dry dry)
  h1=$(cpu "$HAS"); s1=$(cpu "$SUB"); hw1=$(wbytes "$HAS"); sw1=$(wbytes "$SUB")
  fwd=$("$BENCH_BIN/hasher_bench" "$ADDR" tree "$MODE" forward)
  h2=$(cpu "$HAS"); s2=$(cpu "$SUB")
  hw2=$(wbytes "$HAS"); sw2=$(wbytes "$SUB")
  kill "$HAS" "$SUB"; wait "$HAS" "$SUB" 2>/dev/null || true
  PIDS=()
  n=$(field "$fwd" files)
  if [ "$n" != "$FILES" ] || [ "$(field "$dry" files)" != "$FILES" ]; then
    echo "run $run: expected $FILES files, got dry=$dry forward=$fwd" >&2
    exit 1
  fi
  ROWS+=("$run $(field "$dry" seconds) $(field "$fwd" seconds) $((h1 - h0)) $((h2 - h1)) $((s2 - s1)) $load $((hw1 - hw0)) $((hw2 - hw1)) $((sw2 - sw1))")
done

printf '%s\n' "${ROWS[@]}" | /usr/bin/python3 -c '
import sys, statistics
files, mode = int(sys.argv[1]), sys.argv[2]
rows = [l.split() for l in sys.stdin if l.strip()]
print(f"## Hasher forwarding ({mode}), {files:,} files of 1-4 KiB, {len(rows)} runs, services from {sys.argv[3]}, hasher {sys.argv[4]}")
print()
print("| run | dry run | forwarding | forwarding / dry run | hasher CPU s per 1,000 files (dry / forwarding) | submitter CPU s per 1,000 files | hasher disk KiB per file (dry / forwarding) | submitter disk KiB per file | load (1 min) |")
print("|---|---|---|---|---|---|---|---|---|")
dr, fr = [], []
for run, d, f, hd, hf, sf, load, wd, wf, ws in rows:
    d, f = float(d), float(f)
    dr.append(files / d); fr.append(files / f)
    k = files / 1000 * 100
    print(f"| {run} | {d:.2f} s ({files / d:,.0f} files/s) | {f:.2f} s ({files / f:,.0f} files/s) | "
          f"{d / f:.2f}x | {int(hd) / k:.3f} / {int(hf) / k:.3f} | {int(sf) / k:.3f} | "
          f"{int(wd) / files / 1024:.2f} / {int(wf) / files / 1024:.2f} | {int(ws) / files / 1024:.2f} | {load} |")
print()
print(f"Median: dry run {statistics.median(dr):,.0f} files/s, forwarding {statistics.median(fr):,.0f} files/s "
      f"({statistics.median(fr) / statistics.median(dr):.2f}x).")
' "$FILES" "$MODE" "$BUILD" "$HASHER_BIN" | tee "${OUT:-bench/results/hasher_forward.md}"
