#!/usr/bin/env bash
# The poller's Track (hand-off) path, A/B paired: N Merkle leaves (and their roots) streamed by
# track_bench to a fresh anchord-poller of build A, then of build B, alternately, PAIRS times; for
# each run the poller's CPU seconds (user + system, /proc/PID/stat) and bytes written
# (write_bytes, /proc/PID/io) while it stored them, per leaf. Medians over the pairs.
#
#   bash bench/track_bench.sh BUILD_A [BUILD_B]     (env: N=100000 PAIRS=3 WINDOW=4096
#                                                   PER_ROOT=10000 FORM=leaf PER_REQUEST=4096;
#                                                   writes $OUT if set)
#
# WATCH=1 keeps a Watch of the bench's job open on the poller's public port during each run (batch,
# brief, grouped: what `anchorctl archive --wait` opens; WATCH_GROUPED=0 without grouped), so the
# poller also builds and sends the events of every proof; the wall time is then until the last
# leaf's event arrived.
#
# RECORD=provider gives each root a provider's record of proofd.id's shapes (a UUID, certificate
# and verify URLs, a request id: about 200 bytes that each of its leaves repeats, as in
# bench/pipeline_bench.sh's runs); unset, a root carries a short proof id only.
#
# FORM=batch hands the same leaves off over TrackBatch (the root with its tree and up to
# PER_REQUEST leaves per request) instead of one Track request per leaf; FORM_A / FORM_B set it per
# side, e.g. FORM_A=leaf FORM_B=batch with one build compares the two forms in the same minutes.
#
# PG=1 runs each poller on PostgreSQL: a server started here (tests/support/pg_ctl.sh, durable
# settings; PG_BINDIR names its binaries), a fresh database per run. Most of the work is then the
# server's, which the poller's CPU does not show: compare the wall times.
#
# Track is served on the poller's internal port (no token configured). The bench client comes from BUILD_B (or BUILD_A alone), so an older poller is measured with
# today's client. The machine's load average is printed with every run.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
BENCH_NAME=track_bench
A="$(cd "$1" && pwd)"
B="$(cd "${2:-$1}" && pwd)"
N="${N:-100000}"
PAIRS="${PAIRS:-3}"
WINDOW="${WINDOW:-4096}"
PER_ROOT="${PER_ROOT:-10000}"
FORM="${FORM:-leaf}"
FORM_A="${FORM_A:-$FORM}"
FORM_B="${FORM_B:-$FORM}"
PER_REQUEST="${PER_REQUEST:-4096}"
CLIENT="$B/bench/track_bench"
require_built "$A/services/poller/anchord-poller" "$B/services/poller/anchord-poller" "$CLIENT"
WORK="$(mktemp -d /tmp/anchord-track-bench.XXXXXX)"
PIDS=()
PGDIR=""
cleanup() {
  stop_all
  if [ -n "$PGDIR" ]; then bash tests/support/pg_ctl.sh stop "$PGDIR" >/dev/null 2>&1 || true; rm -rf "$PGDIR"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ "${PG:-0}" = 1 ]; then
  # Its own directory: WORK is private to this user, and the server runs as postgres under root.
  PGDIR="$(mktemp -d /tmp/anchord-track-pg.XXXXXX)"
  PGPORT="$(free_port)"
  PG_DURABLE=1 bash tests/support/pg_ctl.sh start "$PGDIR" "$PGPORT" >&2
fi

usage() {  # pid -> "write_bytes cpu_seconds"
  echo "$(write_bytes "$1") $(cpu_seconds "$1")"
}

run_one() {  # build label form -> one result line
  local build="$1" label="$2" form="$3" dir pid before after json
  dir="$WORK/$label.$RANDOM"; mkdir -p "$dir"
  local db=()
  if [ -n "$PGDIR" ]; then
    local name="track_${label,,}_$RANDOM"  # lower case: psql folds an unquoted name
    "${PG_BINDIR:-/usr/lib/postgresql/15/bin}/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres \
      -c "CREATE DATABASE $name" >/dev/null
    db=(--database-url "postgresql://postgres@127.0.0.1:$PGPORT/$name")
  fi
  "$build/services/poller/anchord-poller" "${db[@]}" --listen 127.0.0.1:0 --port-file "$dir/public.port" \
    --internal-listen 127.0.0.1:0 --internal-port-file "$dir/port" \
    --metrics-listen 127.0.0.1:0 --metrics-port-file "$dir/metrics.port" --data-dir "$dir" \
    --poll-interval-seconds 3600 --providers ots --ots-calendars http://127.0.0.1:9 --ots-min-calendars 1 \
    --log-level warning > "$dir/poller.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_file "$dir/port" 60 || { cat "$dir/poller.log" >&2; exit 1; }
  before=$(usage "$pid")
  local watch=()
  if [ "${WATCH:-0}" = 1 ]; then wait_file "$dir/public.port" 60; watch=("127.0.0.1:$(cat "$dir/public.port")"); fi
  json=$("$CLIENT" "127.0.0.1:$(cat "$dir/port")" "$N" "$WINDOW" "$PER_ROOT" 7 "$form" "$PER_REQUEST" "${watch[@]}")
  after=$(usage "$pid")
  stop_all
  /usr/bin/python3 - "$label" "$N" "$before" "$after" "$json" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
label, n, before, after, js, load = sys.argv[1:7]
n = int(n)
wb0, cpu0 = before.split(); wb1, cpu1 = after.split()
j = json.loads(js)
cpu = float(cpu1) - float(cpu0)
print(f"{label} cpu_s={cpu:.2f} us_per_leaf={cpu / n * 1e6:.1f} "
      f"kib_per_leaf={(int(wb1) - int(wb0)) / n / 1024:.2f} wall_s={max(j['seconds'], j['events_seconds']):.2f} "
      f"acked={j['acked']} failed={j['failed']} load={load}")
PY
  rm -rf "$dir"
}

echo "track_bench: N=$N window=$WINDOW leaves/root=$PER_ROOT forms A=$FORM_A B=$FORM_B (batch: $PER_REQUEST leaves/request), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
{
  for i in $(seq 1 "$PAIRS"); do
    run_one "$A" A "$FORM_A"
    run_one "$B" B "$FORM_B"
  done
} | tee "$WORK/lines"
/usr/bin/python3 - "$WORK/lines" <<'PY' | tee -a "${OUT:-/dev/null}"
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    parts = line.split()
    vals = dict(p.split("=") for p in parts[1:])
    runs.setdefault(parts[0], []).append(vals)
for label, rs in sorted(runs.items()):
    med = lambda k: statistics.median(float(r[k]) for r in rs)
    print(f"{label}: median of {len(rs)}: cpu {med('cpu_s'):.2f} s ({med('us_per_leaf'):.1f} us/leaf), "
          f"disk {med('kib_per_leaf'):.2f} KiB/leaf, wall {med('wall_s'):.2f} s, load {med('load'):.2f}")
PY
