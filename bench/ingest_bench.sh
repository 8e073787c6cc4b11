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
# BACKEND=pg does the same on PostgreSQL: a throwaway server (tests/support/pg_ctl.sh with
# PG_DURABLE=1: fsync, synchronous_commit and full_page_writes on) holds the submitter's store
# (--database-url-file), and the reference is a raw libpq client inserting the same rows, 1,000
# per multi-row INSERT, into a database of its own on the same server. The table then also gives
# the server's CPU (postmaster and backends) and the WAL it wrote, per digest.
# SUBMITTER=path runs another anchord-submitter binary (an A/B pair against an older build).
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
BACKEND="${BACKEND:-sqlite}"
SUBMITTER="${SUBMITTER:-$BUILD/services/submitter/anchord-submitter}"
PGBIN="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
PGDIR=""
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$PGDIR" ]; then bash tests/support/pg_ctl.sh stop "$PGDIR" > /dev/null 2>&1 || true; fi
  rm -rf "$WORK" "$PGDIR"
}
trap cleanup EXIT
load() { cut -d' ' -f1-3 /proc/loadavg; }
field() { /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

DB_ARGS=()
mkdir -p "$WORK/sub"
if [ "$BACKEND" = pg ]; then
  PGDIR="$(mktemp -d /tmp/anchord-ingest-pg.XXXXXX)"
  PGPORT="$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  PG_DURABLE=1 bash tests/support/pg_ctl.sh start "$PGDIR" "$PGPORT"
  PGURL="postgresql://postgres@127.0.0.1:$PGPORT"
  psql_q() { "$PGBIN/psql" -qAt -h 127.0.0.1 -p "$PGPORT" -U postgres -d "${2:-postgres}" -c "$1"; }
  for db in reference1 reference2 submitter; do psql_q "CREATE DATABASE $db" > /dev/null; done
  printf '%s/submitter\n' "$PGURL" > "$WORK/sub/database.url"
  DB_ARGS=(--database-url-file "$WORK/sub/database.url")
  reference() { "$BENCH_BIN/ingest_bench" reference-pg "$PGURL/reference$1" "$INGEST" 7; }
  # CPU ticks of the server: the postmaster and every process it started (the backends).
  pg_ticks() {
    local pm; pm="$(head -1 "$PGDIR/data/postmaster.pid")"
    { cat "/proc/$pm/stat"; for c in $(pgrep -P "$pm"); do cat "/proc/$c/stat" 2>/dev/null || true; done; } |
      awk '{ t += $14 + $15 + $16 + $17 } END { print t + 0 }'
  }
  wal_lsn() { psql_q "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"; }
else
  reference() { "$BENCH_BIN/ingest_bench" reference "$WORK/reference$1.db" "$INGEST" 7; }
  pg_ticks() { echo 0; }
  wal_lsn() { echo 0; }
fi

LOAD_START="$(load)"
REF_T0="$(pg_ticks)"
REF1=$(reference 1)
REF_T1="$(pg_ticks)"

# No poller and no reachable provider are needed: Merkle leaves wait for a batch, and the batch
# limits are set so that none is sealed during the measurement.
"$SUBMITTER" --listen 127.0.0.1:0 --port-file "$WORK/sub/port" \
  --data-dir "$WORK/sub" --poller 127.0.0.1:9 --provider ots --ots-calendars http://127.0.0.1:9 \
  --ots-min-calendars 1 --merkle-max-leaves 1000000 --merkle-window-seconds 86400 \
  --high-water 100000000 --log-level warning "${DB_ARGS[@]}" > "$WORK/sub/log" 2>&1 &
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
PG_T0="$(pg_ticks)"
WAL0="$(wal_lsn)"
T0=$(date +%s.%N)
SUBMIT=$("$BENCH_BIN/ingest_bench" submit "$SUB_ADDR" "$INGEST" "$STREAMS" "$WINDOW" 7 "$PER_MESSAGE")
if [ -n "$PROF" ]; then
  kill -INT "$PROF"
  wait "$PROF" 2> /dev/null || true
fi
T1=$(date +%s.%N)
sched > "$WORK/sched1"
CPU_TICKS=$(awk '{print $14 + $15}' "/proc/$SUB_PID/stat")
PG_T1="$(pg_ticks)"
WAL1="$(wal_lsn)"
kill "$SUB_PID"; wait "$SUB_PID" 2> /dev/null || true
PIDS=()
REF_T2="$(pg_ticks)"
REF2=$(reference 2)
REF_T3="$(pg_ticks)"
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
  "$WORK/sched1" "$T0" "$T1" "$REF1" "$REF2" "$BACKEND" "$PG_T0" "$PG_T1" "$WAL0" "$WAL1" \
  "$(( REF_T1 - REF_T0 + REF_T3 - REF_T2 ))" <<PY
import json, sys
rate, r1, r2 = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
sub = json.loads(sys.argv[4]); cpu = int(sys.argv[5]) / int(sys.argv[6]); n = int(sys.argv[7])
ref = (r1 + r2) / 2
print("| figure | value |")
print("|---|---|")
print(f"| Submit ingest ({sub['streams']} streams, window {sub['window']}, "
      f"{sub.get('per_message', 1)} per message, {sub['digests']:,} digests) | "
      f"**{rate:,.0f} digests/s** ({sub['failed']} failed, {sub['seconds']:.2f} s) |")
pg = sys.argv[14] == "pg"
raw = "raw PostgreSQL (libpq, 1,000-row INSERTs)" if pg else "raw SQLite"
print(f"| {raw}, 1,000-row transactions, before / after | {r1:,.0f} / {r2:,.0f} rows/s |")
print(f"| ratio to the mean reference | {rate / ref:.2f}x |")
refs = [json.loads(sys.argv[12]), json.loads(sys.argv[13])]
ref_cpu = sum(r.get("cpu_seconds", 0) for r in refs) / sum(r["rows"] for r in refs)
print(f"| CPU per digest: the submitter (user+sys, all threads) / {raw} client per row | "
      f"{cpu / n * 1e6:.1f} us / {ref_cpu * 1e6:.1f} us |")
if pg:
    server = (int(sys.argv[16]) - int(sys.argv[15])) / int(sys.argv[6])
    wal = int(float(sys.argv[18])) - int(float(sys.argv[17]))
    ref_server = int(sys.argv[19]) / int(sys.argv[6]) / (2 * n)
    print(f"| PostgreSQL server CPU per digest: the submitter's / the raw client's per row | "
          f"{server / n * 1e6:.1f} us / {ref_server * 1e6:.1f} us ({server / n / ref_server:.1f}x) |")
    print(f"| WAL written by the submitter's store per digest | {wal / n:,.0f} bytes |")
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
