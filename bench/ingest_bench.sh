#!/usr/bin/env bash
# Durable ingest alone (issue 11 goal 2), each figure next to its reference from the same run:
#
#   bash bench/ingest_bench.sh [BUILD_DIR]          (prints a Markdown table to stdout)
#
# 1. Reference: INGEST (default 200,000) rows inserted into raw SQLite in 1,000-row transactions
#    (WAL, synchronous=FULL), one row per digest keyed by the digest.
# 2. INGEST precomputed digests streamed over Submit to a fresh anchord-submitter (STREAMS
#    streams, a window of WINDOW items per stream, PER_MESSAGE digests per SubmitRequest: 1 is
#    the single-digest form, more uses `items`), each counted only when acknowledged, i.e. after
#    the synchronous=FULL commit that holds it.
# 3. The reference again (the machine is shared: two reference runs bracket the measurement).
# Options: PERF=1 records the submitter under `perf record -g` during the ingest (report in
# $OUT_DIR/perf.txt); STRACE=1 traces its fsync/fdatasync calls with their durations (count and
# total wall time in the table).
# OUT_DIR (default: a temporary directory, removed) keeps the logs and profiles.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="$(cd "${1:-build}" && pwd)"
INGEST="${INGEST:-200000}"
STREAMS="${STREAMS:-2}"
WINDOW="${WINDOW:-4096}"
PER_MESSAGE="${PER_MESSAGE:-256}"
BENCH_BIN="$(cd "${BENCH_BIN:-$BUILD/bench}" && pwd)"
WORK="$(mktemp -d /tmp/anchord-ingest-bench.XXXXXX)"
OUT_DIR="${OUT_DIR:-}"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
load() { cut -d' ' -f1-3 /proc/loadavg; }
field() { /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

LOAD_START="$(load)"
REF1=$("$BENCH_BIN/ingest_bench" reference "$WORK/reference1.db" "$INGEST" 7)

# No poller and no reachable provider are needed: Merkle leaves wait for a batch, and the batch
# limits are set so that none is sealed during the measurement.
mkdir -p "$WORK/sub"
"$BUILD/services/submitter/anchord-submitter" --listen 127.0.0.1:0 --port-file "$WORK/sub/port" \
  --data-dir "$WORK/sub" --poller 127.0.0.1:9 --provider ots --ots-calendars http://127.0.0.1:9 \
  --ots-min-calendars 1 --merkle-max-leaves 1000000 --merkle-window-seconds 86400 \
  --high-water 100000000 --log-level warning > "$WORK/sub/log" 2>&1 &
SUB_PID=$!
PIDS+=($SUB_PID)
for _ in $(seq 1 100); do [ -s "$WORK/sub/port" ] && break; sleep 0.1; done
SUB_ADDR="127.0.0.1:$(cat "$WORK/sub/port")"

PROF=""
if [ "${PERF:-0}" = 1 ]; then
  perf record -g -o "$WORK/perf.data" -p "$SUB_PID" 2> /dev/null > /dev/null &
  PROF=$!
elif [ "${STRACE:-0}" = 1 ]; then
  strace -f -T -e trace=fdatasync,fsync -o "$WORK/strace.txt" -p "$SUB_PID" &
  PROF=$!
fi
[ -n "$PROF" ] && sleep 1
LOAD_MID="$(load)"
sched() {  # every thread of the submitter: tid comm on-cpu-ns runqueue-wait-ns
  for t in /proc/$SUB_PID/task/*; do
    echo "$(basename "$t") $(tr ' ' '_' < "$t/comm") $(cut -d' ' -f1-2 "$t/schedstat")"
  done
}
sched > "$WORK/sched0"
T0=$(date +%s.%N)
SUBMIT=$("$BENCH_BIN/ingest_bench" submit "$SUB_ADDR" "$INGEST" "$STREAMS" "$WINDOW" 7 "$PER_MESSAGE")
if [ -n "$PROF" ]; then
  kill -INT "$PROF"
  wait "$PROF" 2> /dev/null || true
fi
T1=$(date +%s.%N)
sched > "$WORK/sched1"
CPU_TICKS=$(awk '{print $14 + $15}' "/proc/$SUB_PID/stat")
kill "$SUB_PID"; wait "$SUB_PID" 2> /dev/null || true
PIDS=()
REF2=$("$BENCH_BIN/ingest_bench" reference "$WORK/reference2.db" "$INGEST" 7)
LOAD_END="$(load)"

if [ -n "$OUT_DIR" ]; then
  mkdir -p "$OUT_DIR"
  cp "$WORK/sub/log" "$OUT_DIR/submitter.log"
  if [ -f "$WORK/perf.data" ]; then
    perf report -i "$WORK/perf.data" --no-children --percent-limit 0.7 --stdio -g none \
      > "$OUT_DIR/perf.txt" 2> /dev/null || true
    perf report -i "$WORK/perf.data" --no-children --sort dso --stdio -g none \
      > "$OUT_DIR/perf-dso.txt" 2> /dev/null || true
    cp "$WORK/perf.data" "$OUT_DIR/perf.data"
  fi
  [ -f "$WORK/strace.txt" ] && cp "$WORK/strace.txt" "$OUT_DIR/strace.txt"
fi

RATE=$(field "$SUBMIT" per_second)
R1=$(field "$REF1" per_second)
R2=$(field "$REF2" per_second)
HZ=$(getconf CLK_TCK)
/usr/bin/python3 - "$RATE" "$R1" "$R2" "$SUBMIT" "$CPU_TICKS" "$HZ" "$INGEST" "$WORK/sched0" \
  "$WORK/sched1" "$T0" "$T1" "$REF1" "$REF2" <<PY
import json, sys
rate, r1, r2 = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
sub = json.loads(sys.argv[4]); cpu = int(sys.argv[5]) / int(sys.argv[6]); n = int(sys.argv[7])
ref = (r1 + r2) / 2
print("| figure | value |")
print("|---|---|")
print(f"| Submit ingest ({sub['streams']} streams, window {sub['window']}, "
      f"{sub.get('per_message', 1)} per message, {sub['digests']:,} digests) | "
      f"**{rate:,.0f} digests/s** ({sub['failed']} failed, {sub['seconds']:.2f} s) |")
print(f"| raw SQLite, 1,000-row transactions, before / after | {r1:,.0f} / {r2:,.0f} rows/s |")
print(f"| ratio to the mean reference | {rate / ref:.2f}x |")
refs = [json.loads(sys.argv[12]), json.loads(sys.argv[13])]
ref_cpu = sum(r.get("cpu_seconds", 0) for r in refs) / sum(r["rows"] for r in refs)
print(f"| CPU per digest: the submitter (user+sys, all threads) / raw SQLite per row | "
      f"{cpu / n * 1e6:.1f} us / {ref_cpu * 1e6:.1f} us |")
import os, re
st = "$WORK/strace.txt"
if os.path.exists(st):
    times = [float(m) for m in re.findall(r"<([0-9.]+)>", open(st).read())]
    print(f"| fsync/fdatasync calls during the ingest (strace -T) | {len(times)}, "
          f"{sum(times):.2f} s in total, {n / max(1, len(times)):,.0f} digests per call |")
print(f"| load average (1/5/15) start / during / end | $LOAD_START / $LOAD_MID / $LOAD_END |")
# Where the busiest threads spent the measurement (from /proc/PID/task/TID/schedstat): running,
# runnable but waiting for a core (the machine's load), and the rest blocked (fsync, or no work).
def read(path):
    out = {}
    for line in open(path):
        tid, comm, run, wait = line.split()
        out[tid] = (comm, int(run), int(wait))
    return out
s0, s1 = read(sys.argv[8]), read(sys.argv[9])
wall = float(sys.argv[11]) - float(sys.argv[10])
rows = []
for tid, (comm, run, wait) in s1.items():
    r0, w0 = s0.get(tid, (comm, 0, 0))[1:]
    rows.append(((run - r0) / 1e9, (wait - w0) / 1e9, tid, comm))
rows.sort(reverse=True)
for run, wait, tid, comm in rows[:3]:
    print(f"| thread {tid} ({comm}) over the {wall:.2f} s | running {run:.2f} s ({run / wall:.0%}; "
          f"{run / n * 1e6:.1f} us per digest), "
          f"waiting for a core {wait:.2f} s ({wait / wall:.0%}), blocked or idle "
          f"{max(0.0, wall - run - wait):.2f} s |")
PY
