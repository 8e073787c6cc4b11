#!/usr/bin/env bash
# The whole pipeline in one run, each figure next to its reference measured in the same run:
#
#   bash bench/pipeline_bench.sh [BUILD_DIR]        (writes bench/results/pipeline.md, or $OUT)
#
# 1. Merkle mode end to end: FILES (default 100,000) files of 1-4 KiB, `archive --merkle-batch
#    --wait submitted` through a local stack (real hasher, submitter, poller, the sandbox), with a
#    per-stage timeline sampled from the services' /metrics (hashed+recorded by the hasher, stored
#    by the submitter's intake, sealed into a batch, handed off, stored by the poller) and the
#    bytes the services wrote (write_bytes of /proc/PID/io). Reference: a dry run of the same files
#    through the same hasher (hash + record only), and `openssl dgst -sha256` over them.
# 2. Durable ingest: INGEST (default 200,000) precomputed digests streamed over Submit to a
#    submitter (STREAMS streams, PER_MESSAGE digests per SubmitRequest (default 256, the batch
#    form; 1 is the single form), acknowledged after commit, synchronous=FULL). Reference: the same
#    rows inserted into raw SQLite in 1,000-row transactions (WAL, synchronous=FULL). With
#    STRACE=1 a second, smaller ingest runs under `strace -c -f` for the commit (fdatasync) count.
# 3. Prompt exit: `archive --local --sandbox --dry-run` over EXIT_FILES (default 1,000) files,
#    wall time against the hashing inside it.
# BACKEND=postgresql: the Merkle run's submitter and poller keep their stores on a PostgreSQL 15
# server started here (tests/support/pg_ctl.sh, durable settings; PG_BINDIR names its binaries),
# one database for both as a deployment has it (ANCHORD_DATABASE_URL_FILE, which both read). The
# server's CPU through the Merkle run is reported beside the stack's; its disk writes are not in
# the stack's figure. The dry run, the ingest and the exit parts are as on SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_NAME=pipeline_bench  # read by bench/lib.sh
source bench/lib.sh
BUILD="$(cd "${1:-build}" && pwd)"
FILES="${FILES:-100000}"
INGEST="${INGEST:-200000}"
STREAMS="${STREAMS:-2}"
PER_MESSAGE="${PER_MESSAGE:-256}"
EXIT_FILES="${EXIT_FILES:-1000}"
WORK="$(mktemp -d /tmp/anchord-pipeline-bench.XXXXXX)"
# The bench clients (hasher_bench, ingest_bench) may come from another build than the services,
# to measure an older build of the services with today's clients: BENCH_BIN.
BENCH_BIN="$(cd "${BENCH_BIN:-$BUILD/bench}" && pwd)"
CTL="$BUILD/services/anchorctl/anchorctl"
# SUBMITTER_BIN=path runs another submitter binary (an A/B pair against an older build) in both
# the Merkle run and the ingest run; the other services come from BUILD.
SUBMITTER="$(realpath "${SUBMITTER_BIN:-$BUILD/services/submitter/anchord-submitter}")"
BACKEND="${BACKEND:-sqlite}"
PGDIR=""
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$PGDIR" ]; then bash tests/support/pg_ctl.sh stop "$PGDIR" > /dev/null 2>&1 || true; fi
  rm -rf "$WORK" ${PGDIR:+"$PGDIR"}
}
trap cleanup EXIT
mkdir -p bench/results

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

service_writes() {  # stack.json -> total write_bytes of the stack's processes
  /usr/bin/python3 - "$1" <<'PY'
import json, sys
pids = json.load(open(sys.argv[1]))["pids"]
total = 0
for name, pid in pids.items():
    try:
        for line in open(f"/proc/{pid}/io"):
            if line.startswith("write_bytes:"):
                total += int(line.split()[1])
    except OSError:
        pass
print(total)
PY
}

service_usage() {  # stack.json -> {service: [write_bytes, CPU seconds (user + system), minor faults, peak RSS bytes]}
  /usr/bin/python3 - "$1" <<'PY'
import json, sys
sys.path.insert(0, "bench")
from proc_stat import cpu_and_faults, peak_rss
pids = json.load(open(sys.argv[1]))["pids"]
out = {}
for name, pid in pids.items():
    try:
        wb = 0
        for line in open(f"/proc/{pid}/io"):
            if line.startswith("write_bytes:"):
                wb = int(line.split()[1])
        cpu, faults = cpu_and_faults(pid)
        out[name] = [wb, cpu, faults, peak_rss(pid)]
    except OSError:
        pass
print(json.dumps(out))
PY
}

# stack data dir -> {service: bytes} a checkpoint of each service's SQLite WAL still has to write
# into its database: the distinct pages of the WAL's current generation (frames with the header's
# salts, up to the last commit). write_bytes counts a checkpoint only when one ran inside the
# window; a service whose WAL had not reached its checkpoint size owes these writes.
checkpoint_owed() {
  /usr/bin/python3 - "$1" <<'PY'
import glob, json, os, struct, sys
out = {}
for wal in glob.glob(os.path.join(sys.argv[1], "*.db-wal")):
    name = os.path.basename(wal)[:-len(".db-wal")]
    try:
        data = open(wal, "rb").read()
    except OSError:
        continue
    if len(data) < 32:
        out[name] = 0
        continue
    psz = struct.unpack(">I", data[8:12])[0]
    salts = data[16:24]
    pages, committed, off = set(), set(), 32
    while off + 24 + psz <= len(data) and data[off + 8:off + 16] == salts:
        pgno, commit = struct.unpack(">II", data[off:off + 8])
        pages.add(pgno)
        if commit:
            committed |= pages
        off += 24 + psz
    out[name] = len(committed) * psz
print(json.dumps(out))
PY
}

echo "load before: $(load)" >&2
LOAD_START="$(load)"

# ---------------------------------------------------------------------------------------------
# 1. Merkle mode end to end
echo "making $FILES files..." >&2
make_tree "$WORK/root/tree" "$FILES" pipeline
warm_cache "$WORK/root/tree"
TREE_BYTES=$(du -sb "$WORK/root/tree" | cut -f1)

t0=$(now); find "$WORK/root/tree" -type f -print0 | xargs -0 -n 1000 openssl dgst -sha256 > /dev/null; t1=$(now)
OPENSSL_S=$(elapsed "$t0" "$t1")

mkdir -p "$WORK/bin"
for s in hasher poller sandbox; do ln -s "$BUILD/services/$s/anchord-$s" "$WORK/bin/anchord-$s"; done
ln -s "$SUBMITTER" "$WORK/bin/anchord-submitter"
LOCAL_ENV=()
PG_PID=""
case "$BACKEND" in
  sqlite) ;;
  postgresql)
    PGBIN="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
    PGDIR="$(mktemp -d /tmp/anchord-pipeline-pg.XXXXXX)"
    PGPORT="$(free_port)"
    PG_DURABLE=1 bash tests/support/pg_ctl.sh start "$PGDIR" "$PGPORT" >&2
    PG_PID="$(head -1 "$PGDIR/data/postmaster.pid")"
    "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c 'CREATE DATABASE pipeline' > /dev/null
    (umask 077; printf 'postgresql://postgres@127.0.0.1:%s/pipeline\n' "$PGPORT" > "$WORK/database.url")
    LOCAL_ENV=(env ANCHORD_DATABASE_URL_FILE="$WORK/database.url")
    ;;
  *) echo "$BENCH_NAME: BACKEND must be sqlite or postgresql, not '$BACKEND'" >&2; exit 2 ;;
esac
# The server's CPU seconds so far: the postmaster's own and its reaped children's, and its live
# children's (backends, the WAL writer, the checkpointer).
pg_cpu() {
  [ -n "$PG_PID" ] || { echo 0; return; }
  /usr/bin/python3 - "$PG_PID" <<'PY'
import os, sys
root = sys.argv[1]
hz = os.sysconf("SC_CLK_TCK")
def fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()
ticks = sum(int(x) for x in fields(root)[11:15])  # utime stime cutime cstime
for pid in os.listdir("/proc"):
    if not pid.isdigit() or pid == root:
        continue
    try:
        f = fields(pid)
    except OSError:
        continue
    if f[1] == root:  # ppid
        ticks += int(f[11]) + int(f[12])
print(ticks / hz)
PY
}
# Each run has a stack of its own, started fresh: both begin with empty databases and services
# that have not run yet. (Until session 33 the Merkle run followed the dry run on its stack: its
# hasher.db held the dry run's 100,000 rows, and a second dry run of the same files on one stack
# takes 0.92 s against the first's 0.70, while its hasher had its heap grown already. The two
# about cancelled: 0.40-0.41x either way; bench/RESULTS.md, issue 11 session 33.)
start_stack() {  # data_dir [env...] -> its anchorctl in STACK_PID, its hasher's address in HASHER
  local dir="$1"
  shift
  "$@" "$CTL" --data-dir "$dir" local --sandbox --root "$WORK/root" \
    --bin-dir "$WORK/bin" --sandbox-confirm-after-seconds 3600 --poll-interval-seconds 3600 \
    > "$dir.local.log" 2>&1 &
  STACK_PID=$!
  PIDS+=($STACK_PID)
  for _ in $(seq 1 200); do [ -s "$dir/run/stack.json" ] && break; sleep 0.1; done
  HASHER="127.0.0.1:$(cat "$dir/run/hasher.port")"
}
stop_stack() {  # the stack of start_stack: SIGTERM to its anchorctl, which stops the services
  kill "$STACK_PID" 2>/dev/null || true
  wait "$STACK_PID" 2>/dev/null || true
  local left=()
  for p in "${PIDS[@]}"; do [ "$p" != "$STACK_PID" ] && left+=("$p"); done
  PIDS=(${left[@]+"${left[@]}"})
}

# The dry run hashes and records every file (hasher.db) and streams the results back: the rate
# the Merkle run is held to (at least half of it).
# Each thread name's CPU through the dry run as well (bench/proc_stat.py), to set beside the
# Merkle run's. (The dry run uses only the hasher, whose store is SQLite with either BACKEND.)
start_stack "$WORK/dry" env
/usr/bin/python3 bench/proc_stat.py threads "$WORK/dry/run/stack.json" "$WORK/dry.done" \
  > "$WORK/dry_threads.json" &
DRY_THREADS_PID=$!
sleep 0.2  # its first sample, the baseline, before the run
DU0=$(service_usage "$WORK/dry/run/stack.json")
DRY_JSON=$("$BENCH_BIN/hasher_bench" "$HASHER" tree)
DU1=$(service_usage "$WORK/dry/run/stack.json")
touch "$WORK/dry.done"
wait "$DRY_THREADS_PID" || true
DRY_S=$(echo "$DRY_JSON" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
stop_stack

start_stack "$WORK/state" "${LOCAL_ENV[@]}"
W0=$(service_writes "$WORK/state/run/stack.json")
U0=$(service_usage "$WORK/state/run/stack.json")
PG_CPU0=$(pg_cpu)
/usr/bin/python3 - "$WORK/state/run" "$FILES" "${TIMELINE:-}" > "$WORK/timeline.json" <<'PY' &
# Samples every service's /metrics every 100 ms and records when each stage's count first reached
# 50% and 100% of the files, until every stage is complete (or 600 s); with each sample, each
# service's CPU seconds so far (/proc/PID/stat), from which the cores each one kept busy over
# time are printed. TIMELINE=FILE keeps every sample there (one JSON line each: seconds, each
# stage's count, each service's CPU seconds).
import json, os, re, sys, time, urllib.request
sys.path.insert(0, "bench")
from proc_stat import ThreadTracker, cpu_and_faults
run, n = sys.argv[1], int(sys.argv[2])
ports = {s: open(os.path.join(run, f"{s}.metrics.port")).read().strip()
         for s in ("hasher", "submitter", "poller")}
stages = [
    ("hash + hasher record", "hasher", r'anchord_hasher_files_total\{result="hashed"\}'),
    ("submitter intake", "submitter", r'anchord_submitter_intake_total\{result="stored"\}'),
    ("batch seal", "submitter", r'anchord_submitter_merkle_leaves_total\{[^}]*\}'),
    ("hand-off", "submitter", r'anchord_submitter_handoffs_total\{result="ok"\}'),
    ("poller store", "poller", r'anchord_poller_events_total\{type="tracked"\}'),
]
pids = json.load(open(os.path.join(run, "stack.json")))["pids"]
threads = ThreadTracker()  # each thread name's CPU through the run
def cpu_seconds():
    out = {}
    for s in ports:
        try:
            out[s] = cpu_and_faults(pids[s])[0]
        except (OSError, KeyError, IndexError, ValueError):
            out[s] = None
    threads.sample({s: pids[s] for s in ports if s in pids})
    return out
t0 = time.time()
marks = {name: {} for name, _, _ in stages}
samples = []  # [seconds, {stage: count}, {service: CPU seconds}]
base = None
raw = open(sys.argv[3], "w") if len(sys.argv) > 3 and sys.argv[3] else None  # every sample
while time.time() - t0 < 600:
    texts = {}
    for s, p in ports.items():
        try:
            texts[s] = urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=2).read().decode()
        except Exception:
            texts[s] = ""
    counts = {}
    for name, svc, pat in stages:
        counts[name] = sum(float(m) for m in re.findall(pat + r' ([0-9.e+]+)', texts[svc]))
    if base is None:
        base = counts  # the dry run before counted too
        open(os.path.join(run, "sampler.ready"), "w").close()  # archive starts after this
    t = time.time() - t0
    cpu = cpu_seconds()
    samples.append([round(t, 3), {k: counts[k] - base[k] for k in counts}, cpu])
    if raw is not None:
        raw.write(json.dumps({"t": round(t, 3), **{k: counts[k] - base[k] for k in counts},
                              "cpu": cpu}) + "\n")
    for name in counts:
        c = counts[name] - base[name]
        for frac in (0.5, 1.0):
            if c >= frac * n and frac not in marks[name]:
                marks[name][frac] = t
    if all(1.0 in m for m in marks.values()):
        break
    time.sleep(0.1)
print(json.dumps({"marks": {name: {str(k): v for k, v in m.items()} for name, m in marks.items()},
                  "samples": samples, "threads": threads.by_name()}))
PY
SAMPLER=$!
# PERF=1 (with KEEP_LOGS): a CPU profile of the submitter and the poller during the Merkle run.
PERFS=()
if [ "${PERF:-0}" = 1 ] && [ -n "${KEEP_LOGS:-}" ] && command -v perf > /dev/null; then
  mkdir -p "$KEEP_LOGS"
  for svc in ${PERF_SERVICES:-submitter poller}; do
    pid=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pids"][sys.argv[2]])' \
      "$WORK/state/run/stack.json" "$svc")
    # PERF_EVENT=page-faults (say): every such event instead of CPU samples.
    if [ -n "${PERF_EVENT:-}" ]; then rate=(-e "$PERF_EVENT" -c 1); else rate=(-F "${PERF_FREQ:-199}"); fi
    perf record "${rate[@]}" ${PERF_CALLGRAPH:--g} -o "$KEEP_LOGS/$svc.perf" -p "$pid" > /dev/null 2>&1 &
    PERFS+=($!)
  done
fi
# SCHED=FILE: each service's threads' time on a core and waiting for one, every 50 ms through the
# Merkle run (bench/sched_sample.py; its summary is added to the results).
if [ -n "${SCHED:-}" ]; then
  /usr/bin/python3 bench/sched_sample.py sample "$WORK/state/run/stack.json" "$SCHED" 600 &
  SCHED_PID=$!
fi
# The sampler's baseline first (python starts slowly on a loaded machine).
for _ in $(seq 1 200); do [ -e "$WORK/state/run/sampler.ready" ] && break; sleep 0.05; done
t0=$(now)
# anchorctl's own CPU (user + system, from bash's `time`): it shares the cores with the services.
TIMEFORMAT='%U %S'
{ time "$CTL" --data-dir "$WORK/state" archive "$WORK/root/tree" --job pipeline --merkle-batch \
  --wait submitted --timeout-seconds 1200 > "$WORK/archive.out" 2>&1 || echo "archive exit $?" >&2; } \
  2> "$WORK/archive.time"
t1=$(now)
CTL_CPU=$(tail -1 "$WORK/archive.time" | awk '{ printf "%.2f", $1 + $2 }')
MERKLE_S=$(elapsed "$t0" "$t1")
W1=$(service_writes "$WORK/state/run/stack.json")
U1=$(service_usage "$WORK/state/run/stack.json")
PG_CPU1=$(pg_cpu)
PG_LINE=""
if [ "$BACKEND" = postgresql ]; then
  PG_MB="$("$PGBIN/psql" -qtA -h 127.0.0.1 -p "$PGPORT" -U postgres -c \
    "SELECT pg_database_size('pipeline') / 1048576" pipeline)"
  # PG_STATEMENTS=N: the N statements the server spent most time on through the run (from
  # pg_stat_statements, which tests/support/pg_ctl.sh loads), to stderr; a long column list shows as
  # "...".
  if [ -n "${PG_STATEMENTS:-}" ]; then
    "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d pipeline \
      -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c \
      "SELECT calls, round(total_exec_time) AS ms, rows, shared_blks_hit + shared_blks_read AS blks,
              left(regexp_replace(regexp_replace(query, '\\s+', ' ', 'g'),
                                  '(SELECT|RETURNING) ([a-z_.]+, ){6,}[a-z_.]+', '\\1 ...', 'g'),
                   160) AS query
         FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT ${PG_STATEMENTS}" >&2 || true
  fi
  PG_LINE="The submitter's and the poller's stores on PostgreSQL (\`BACKEND=postgresql\`, durable settings): the server spent $(printf "%.2f" "$(echo "$PG_CPU1 - $PG_CPU0" | bc)") CPU s during the Merkle run (not in the stack's figures below); the database is $PG_MB MiB after it."
fi
export PG_LINE
OWED=$(checkpoint_owed "$WORK/state/state")
wait "$SAMPLER" || true
for p in "${PERFS[@]}"; do kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
# KEEP_LOGS=DIR keeps the services' logs of the Merkle run (batch seals, creates, hand-off errors).
if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS"; cp "$WORK/state/run/"*.log "$KEEP_LOGS/" || true; fi
LOAD_MID="$(load)"
if [ -n "${SCHED:-}" ]; then kill "$SCHED_PID" 2>/dev/null || true; wait "$SCHED_PID" 2>/dev/null || true; fi
stop_stack

# ---------------------------------------------------------------------------------------------
# 2. Durable ingest
echo "ingest: $INGEST digests..." >&2
REF_JSON=$("$BENCH_BIN/ingest_bench" reference "$WORK/reference.db" "$INGEST" 7)
mkdir -p "$WORK/ingest"
start_submitter() {  # data_dir -> sets SUB_PID, SUB_ADDR
  # No poller and no reachable provider are needed: Merkle leaves wait for a batch, and the batch
  # limits are set so that none is sealed during the measurement.
  "$SUBMITTER" --listen 127.0.0.1:0 --port-file "$1/port" \
    --data-dir "$1" --poller 127.0.0.1:9 --provider ots --ots-calendars http://127.0.0.1:9 --ots-min-calendars 1 \
    --merkle-max-leaves 1000000 --merkle-window-seconds 86400 --high-water 100000000 \
    --log-level warning > "$1/log" 2>&1 &
  SUB_PID=$!
  PIDS+=($SUB_PID)
  for _ in $(seq 1 100); do [ -s "$1/port" ] && break; sleep 0.1; done
  SUB_ADDR="127.0.0.1:$(cat "$1/port")"
}
start_submitter "$WORK/ingest"
INGEST_JSON=$("$BENCH_BIN/ingest_bench" submit "$SUB_ADDR" "$INGEST" "$STREAMS" 4096 7 "$PER_MESSAGE")
SYNC_LINE=""
if [ "${STRACE:-0}" = 1 ] && command -v strace > /dev/null; then
  mkdir -p "$WORK/ingest2"
  start_submitter "$WORK/ingest2"
  strace -f -c -e trace=fsync,fdatasync,write,pwrite64,writev,sendmsg -o "$WORK/strace.txt" -p "$SUB_PID" &
  ST=$!
  sleep 0.5
  "$BENCH_BIN/ingest_bench" submit "$SUB_ADDR" 20000 "$STREAMS" 4096 8 "$PER_MESSAGE" > /dev/null
  kill -INT "$ST"; wait "$ST" 2>/dev/null || true
  SYNC_LINE="$(grep -E 'fdatasync|fsync' "$WORK/strace.txt" | awk '{print $4" "$NF}' | tr '\n' ' ')"
fi
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
PIDS=()

# ---------------------------------------------------------------------------------------------
# 3. Prompt exit
make_tree "$WORK/exit/tree" "$EXIT_FILES" exit
t0=$(now)
"$CTL" --json --data-dir "$WORK/exit/state" archive "$WORK/exit/tree" --local --sandbox --dry-run \
  > "$WORK/exit.out" 2>&1 || echo "dry-run exit $?" >&2
t1=$(now)
EXIT_S=$(elapsed "$t0" "$t1")
LOAD_END="$(load)"

/usr/bin/python3 - "$FILES" "$TREE_BYTES" "$OPENSSL_S" "$DRY_S" "$MERKLE_S" "$W0" "$W1" \
  "$WORK/timeline.json" "$REF_JSON" "$INGEST_JSON" "$EXIT_FILES" "$EXIT_S" "$LOAD_START" "$LOAD_MID" \
  "$LOAD_END" "$SYNC_LINE" "$U0" "$U1" "$DU0" "$DU1" "$CTL_CPU" "$(nproc)" "$OWED" \
  "$WORK/dry_threads.json" <<'PY' | tee "${OUT:-bench/results/pipeline.md}"
import json, sys
(files, tree_bytes, openssl_s, dry_s, merkle_s, w0, w1, timeline, ref, ingest, exit_files, exit_s,
 load0, load1, load2, sync, u0, u1, du0, du1, ctl_cpu, cores, owed, dry_threads_file) = sys.argv[1:25]
files, tree_bytes = int(files), int(tree_bytes)
openssl_s, dry_s, merkle_s, exit_s = map(float, (openssl_s, dry_s, merkle_s, exit_s))
owed = json.loads(owed)
# What the services wrote in the window plus the checkpoints their WALs still owe (see
# checkpoint_owed): the goal's figure.
writes = int(w1) - int(w0) + sum(owed.values())
tl_all = json.load(open(timeline))
tl, samples = tl_all["marks"], tl_all["samples"]
ref, ingest = json.loads(ref), json.loads(ingest)
print(f"## Pipeline (`bench/pipeline_bench.sh`), load average {load0} / {load1} / {load2} (start / after the Merkle run / end)")
print()
import os
if os.environ.get("PG_LINE"):
    print(os.environ["PG_LINE"])
    print()
print("| figure | anchord | reference (same run) | ratio | goal |")
print("|---|---|---|---|---|")
print(f"| Merkle mode, {files:,} files of 1-4 KiB, archive start to every leaf SUBMITTED | "
      f"{merkle_s:.2f} s ({files / merkle_s:,.0f} files/s) | dry run {dry_s:.2f} s "
      f"({files / dry_s:,.0f} files/s); openssl dgst {openssl_s:.2f} s ({files / openssl_s:,.0f} files/s) | "
      f"{dry_s / merkle_s:.2f}x dry run | <= 10 s, >= 0.5x dry run |")
print(f"| disk writes of the stack during the Merkle run, with the checkpoints still owed | "
      f"{writes / 2**20:,.0f} MiB ({writes / files / 1024:.1f} KiB per file) | files: {tree_bytes / 2**20:,.0f} MiB | "
      f"{writes / tree_bytes:.2f}x the files | <= 4 KiB per file |")
print(f"| durable ingest over Submit ({ingest['streams']} streams, {ingest.get('per_message', 1)} per message, {ingest['digests']:,} digests, "
      f"acked after commit, synchronous=FULL) | {ingest['per_second']:,.0f} digests/s "
      f"({ingest['failed']} failed) | raw SQLite, 1,000-row transactions: "
      f"{ref['per_second']:,.0f} rows/s | {ingest['per_second'] / ref['per_second']:.2f}x | "
      f">= 50,000/s |")
print(f"| `archive --local --sandbox --dry-run`, {int(exit_files):,} files, wall | {exit_s:.2f} s | "
      f"| | returns within 1 s of the work |")
print()
print("Merkle run, per stage: seconds from the start of `archive` until the stage had handled "
      "half / all of the files (from the services' /metrics, sampled every 100 ms):")
print()
print("| stage | 50% | 100% | files/s over the second half |")
print("|---|---|---|---|")
for name, m in tl.items():
    half, full = m.get("0.5"), m.get("1.0")
    rate = f"{files / 2 / (full - half):,.0f}" if half is not None and full is not None and full > half else "-"
    fmt = lambda v: f"{v:.1f}" if v is not None else "not reached"
    print(f"| {name} | {fmt(half)} | {fmt(full)} | {rate} |")
# Where the cores went over the run: each service's CPU between samples about 0.5 s apart, with
# how far the first and the last stage had got. A stage that runs alone at one core after the
# others finished is the pipeline's serial tail.
if samples:
    print()
    print("Merkle run, cores each service kept busy over time (CPU seconds per second, from "
          "/proc/PID/stat at the samples; anchorctl not included):")
    print()
    first, last = next(iter(tl)), list(tl)[-1]
    print(f"| seconds | {first} | {last} | hasher | submitter | poller | sum |")
    print("|---|---|---|---|---|---|---|")
    prev = samples[0]
    for cur in samples[1:]:
        if cur[0] - prev[0] < 0.45 and cur is not samples[-1]:
            continue
        dt = cur[0] - prev[0]
        busy = {}
        for svc in ("hasher", "submitter", "poller"):
            a, b = prev[2].get(svc), cur[2].get(svc)
            busy[svc] = (b - a) / dt if a is not None and b is not None and dt > 0 else None
        cell = lambda v: f"{v:.2f}" if v is not None else "-"
        total = sum(v for v in busy.values() if v is not None)
        print(f"| {prev[0]:.1f}-{cur[0]:.1f} | {cur[1].get(first, 0):,.0f} | {cur[1].get(last, 0):,.0f} | "
              f"{cell(busy['hasher'])} | {cell(busy['submitter'])} | {cell(busy['poller'])} | "
              f"{total:.2f} |")
        prev = cur
u0, u1 = json.loads(u0), json.loads(u1)
print()
print("Merkle run, per service (from /proc/PID/io and /proc/PID/stat, between the start and the end "
      "of `archive`):")
print()
# Peak RSS: memory a process touches for the first time is a fault (on the virtual machines
# measured, one the host serves too): 0.4-0.9 ms of CPU per MiB in 4 KiB pages, 2.1-2.6 in huge
# pages (bench/RESULTS.md, issue 11 session 28), so a fresh service's high-water mark is CPU
# spent in the run.
print("| service | disk writes per file (in the window + checkpoint owed) | CPU seconds | page faults per file | peak RSS before -> after (MiB) |")
print("|---|---|---|---|---|")
cpu_sum = float(ctl_cpu)
for name in sorted(u1):
    if name in u0:
        cpu_sum += u1[name][1] - u0[name][1]
        window, due = u1[name][0] - u0[name][0], owed.get(name, 0)
        print(f"| {name} | {(window + due) / files / 1024:.2f} KiB ({window / files / 1024:.2f} + "
              f"{due / files / 1024:.2f}) | {u1[name][1] - u0[name][1]:.2f} | "
              f"{(u1[name][2] - u0[name][2]) / files:.2f} | {u0[name][3] / 2**20:.0f} -> {u1[name][3] / 2**20:.0f} |")
print(f"| anchorctl (archive --wait) | - | {float(ctl_cpu):.2f} | - | - |")
print(f"| all | {writes / files / 1024:.2f} KiB | {cpu_sum:.2f} ({cpu_sum / merkle_s:.2f} of "
      f"{cores} cores) | | |")
# Each stage's own CPU: the services name their threads (libs/common/thread_name.h), so the
# submitter's intake, batcher and hand-off, say, are told apart.
try:
    dry_threads = json.load(open(dry_threads_file))
except (OSError, ValueError):
    dry_threads = {}
thread_cpu = tl_all.get("threads", {})
if thread_cpu:
    print()
    print("CPU seconds per thread name (/proc/PID/task/*/stat sampled through each run; 0.01 s "
          "and more):")
    print()
    print("| service | Merkle run | dry run |")
    print("|---|---|---|")
    def cell(by_thread):
        shown = sorted(((v, t) for t, v in by_thread.items() if v >= 0.01), reverse=True)
        return ", ".join(f"{t} {v:.2f}" for v, t in shown) or "-"
    for name in sorted(set(thread_cpu) | set(dry_threads)):
        print(f"| {name} | {cell(thread_cpu.get(name, {}))} | {cell(dry_threads.get(name, {}))} |")
# A floor for the Merkle run on this machine, from references measured in this run: the dry
# run's CPU (hashing and the hasher's record row: the hasher's CPU) plus, for each file, the two
# other durable rows the pipeline must write (submitter intake, poller proof) at raw SQLite's CPU
# per row (the ingest reference: 1,000-row transactions, synchronous=FULL), spread over every
# core. Everything else (two gRPC hops, batching, hand-off, the file rows, indexes, the Watch)
# comes on top. (Before session 8 the record row was counted twice: in the dry run's CPU and as
# one of three rows.)
du0, du1 = json.loads(du0), json.loads(du1)
dry_cpu = du1.get("hasher", [0, 0])[1] - du0.get("hasher", [0, 0])[1]
row_cpu = ref["cpu_seconds"] / ref["rows"]
floor_cpu = dry_cpu + 2 * files * row_cpu
print()
print(f"Floor (same run): the dry run's {dry_cpu:.1f} CPU s (hashing + the hasher's record) + 2 "
      f"more durable rows per file (submitter, poller) at raw "
      f"SQLite's {row_cpu * 1e6:.1f} us of CPU per row = {floor_cpu:.1f} CPU s, "
      f"{floor_cpu / int(cores):.2f} s on {cores} cores; 0.5x the dry run is "
      f"{2 * dry_s:.2f} s; the run spent {cpu_sum:.1f} CPU s ({cpu_sum / floor_cpu:.1f}x the floor).")
if sync:
    print()
    print(f"strace -c of a 20,000-digest ingest (calls, syscall): {sync}")
PY
if [ -n "${SCHED:-}" ]; then
  { echo
    echo "Merkle run, each service's threads on a core / runnable and waiting for one (cores; SCHED, bench/sched_sample.py):"
    echo
    /usr/bin/python3 bench/sched_sample.py summary "$SCHED" 0.5
  } | tee -a "${OUT:-bench/results/pipeline.md}"
fi
