#!/usr/bin/env bash
# Large poller backlogs (issue 11 goal 5): peak RSS and per-round database work of the poller
# over N PENDING proofs.
#
#   bash bench/backlog_bench.sh [BUILD_DIR]       (prints a Markdown table)
#   env: SIZES ("10000 100000 1000000"), LEAVES (0: per-file proofs; K: Merkle leaves, K per
#        root, each with its own path; -K: the same in the batch form), ROUNDS (3), LOOKUPS (100,
#        max lookups per round), REF_MMAP_MIB (1024: the reference poller run's
#        --sqlite-mmap-mib, the mmap every store had before; 0 skips it), BACKEND (sqlite, or
#        postgresql: a PostgreSQL 15 server started here with tests/support/pg_ctl.sh, durable
#        settings, a database per size; PG_BINDIR names its binaries)
#
# Per size: backlog_bench fills a fresh poller.db through the store's API (20,000 proofs per
# transaction); then backlog_bench runs ROUNDS rounds in its own process with every store call
# counted (calls, rows returned, time), against anchord-sandbox's proofd API (limits off; it knows
# none of the proofs, so its pending list is empty and every lookup is a 404: the store work is
# the whole round's work); then a real anchord-poller runs on the same database with a 1 s poll
# interval until it has walked ROUNDS+1 times (metric anchord_poller_lookups_total list_ok), and
# its VmHWM / RssAnon / RssFile are read from /proc; then again with --sqlite-mmap-mib
# REF_MMAP_MIB as the reference. On PostgreSQL the rounds also report the server's CPU time
# (its processes' utime + stime from /proc), the database's size is pg_database_size, and the
# gauges' reference is the former GROUP BY on the server. Loopback only; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="$(cd "${1:-build}" && pwd)"
SIZES="${SIZES:-10000 100000 1000000}"
LEAVES="${LEAVES:-0}"
ROUNDS="${ROUNDS:-3}"
LOOKUPS="${LOOKUPS:-100}"
REF_MMAP_MIB="${REF_MMAP_MIB:-1024}"
BACKEND="${BACKEND:-sqlite}"
case "$BACKEND" in
  sqlite | postgresql) ;;
  *) echo "backlog_bench.sh: BACKEND must be sqlite or postgresql, not '$BACKEND'" >&2; exit 2 ;;
esac
PGBIN="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
POL="$BUILD/services/poller/anchord-poller"
SBX="$BUILD/services/sandbox/anchord-sandbox"
BENCH="$BUILD/bench/backlog_bench"
source bench/lib.sh
BENCH_NAME=backlog_bench
require_built "$POL" "$SBX" "$BENCH"
WORK="$(mktemp -d /tmp/anchord-backlog-bench.XXXXXX)"
PIDS=()
SBX_PID=""
PGDIR=""
# The sandbox serves every size (it is not in PIDS, which each size's poller run stops), so it is
# stopped here too: a run cut short must not leave it behind.
cleanup() {
  stop_all
  if [ -n "$SBX_PID" ]; then kill "$SBX_PID" 2>/dev/null || true; wait "$SBX_PID" 2>/dev/null || true; fi
  if [ "$BACKEND" = postgresql ]; then bash tests/support/pg_ctl.sh stop "$PGDIR" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK" ${PGDIR:+"$PGDIR"}
}
trap cleanup EXIT
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
# run_poller DIR EXTRA_FLAGS: a real anchord-poller on DIR/poller.db (or EXTRA_FLAGS' database) until it has walked ROUNDS+1
# times (at most 120 s); sets hwm_mb, anon_mb, file_mb (from /proc at the end) and walks.
run_poller() {
  local dir="$1" extra="$2" pid mport
  rm -f "$dir/poller.port" "$dir/metrics.port"
  # shellcheck disable=SC2086  # extra holds whole flags
  "$POL" --listen 127.0.0.1:0 --port-file "$dir/poller.port" --metrics-listen 127.0.0.1:0 \
    --metrics-port-file "$dir/metrics.port" --data-dir "$dir" --poll-interval-seconds 1 \
    --providers proofd --proofd-url "$URL" --proofd-api-key-file "$WORK/key" \
    --proofd-general-limit 100000 --max-lookups-per-round "$LOOKUPS" --log-level error $extra \
    > "$dir/poller.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_file "$dir/metrics.port" 120
  mport="$(cat "$dir/metrics.port")"
  walks=0
  for _ in $(seq 1 1200); do  # at most 120 s
    walks="$(curl -s "http://127.0.0.1:$mport/metrics" |
      awk '/^anchord_poller_lookups_total/ && /result="list_ok"/ { s += $2 } END { print s + 0 }')"
    walks="${walks%.*}"
    [ "$walks" -ge $(( ROUNDS + 1 )) ] && break
    sleep 0.1
  done
  hwm_mb=$(( $(status_kb "$pid" VmHWM) / 1024 ))
  anon_mb=$(( $(status_kb "$pid" RssAnon) / 1024 ))
  file_mb=$(( $(status_kb "$pid" RssFile) / 1024 ))
  stop_all
}
printf 'proofd_live_sandbox' > "$WORK/key"; chmod 600 "$WORK/key"

"$SBX" --listen 127.0.0.1:0 --port-file "$WORK/sandbox.port" --general-limit 0 \
  --create-key-limit 0 --create-ip-limit 0 --log-level warning > "$WORK/sandbox.log" 2>&1 &
SBX_PID=$!
wait_file "$WORK/sandbox.port" 20
URL="http://127.0.0.1:$(cat "$WORK/sandbox.port")"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
if [ "$BACKEND" = postgresql ]; then
  # Its own directory: WORK is private to this user, and the server runs as postgres under root.
  PGDIR="$(mktemp -d /tmp/anchord-backlog-pg.XXXXXX)"
  PGPORT="$(free_port)"
  PG_DURABLE=1 bash tests/support/pg_ctl.sh start "$PGDIR" "$PGPORT" >&2
  BACKLOG_PG_PID="$(head -1 "$PGDIR/data/postmaster.pid")"
  export BACKLOG_PG_PID
  REF_MMAP_MIB=0  # a SQLite setting
fi

echo "| N pending | leaves/root | db MiB | round ms (in-process, rounds 1..$ROUNDS) | store calls/round | store rows/round | slowest store calls (round $ROUNDS) | gauges: Stats now / GROUP BY before (time, file pages mapped) | poller VmHWM / RssAnon / RssFile MiB | same, --sqlite-mmap-mib $REF_MMAP_MIB (reference) | poller rounds | load (1 min) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for n in $SIZES; do
  dir="$WORK/n$n"; mkdir -p "$dir"
  db="$dir/poller.db"; poller_db=""
  if [ "$BACKEND" = postgresql ]; then
    "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE DATABASE backlog_$n" >/dev/null
    db="postgresql://postgres@127.0.0.1:$PGPORT/backlog_$n"; poller_db="--database-url $db"
  fi
  "$BENCH" fill "$db" "$n" "$LEAVES" >&2
  out="$("$BENCH" rounds "$db" "$URL" "$ROUNDS" "$LOOKUPS")"
  echo "$out" >&2
  ms="$(echo "$out" | awk '/^round/ { for (i = 1; i <= NF; i++) if ($i ~ /^ms=/) { sub("ms=", "", $i); printf "%s%s", sep, $i; sep = " / " } }')"
  last="$(echo "$out" | grep '^round' | tail -1)"
  calls="$(echo "$last" | tr ' ' '\n' | sed -n 's/^store_calls=//p')"
  rows="$(echo "$last" | tr ' ' '\n' | sed -n 's/^store_rows=//p')"
  slow="$(echo "$last" | tr ' ' '\n' | grep -E '^[A-Za-z]+=[0-9]+x/' | tr '\n' ' ')"
  if [ "$BACKEND" = postgresql ]; then
    dbmb="$("$PGBIN/psql" -qtA -h 127.0.0.1 -p "$PGPORT" -U postgres -c \
      "SELECT pg_database_size('backlog_$n') / 1048576")"
    server="$(echo "$out" | awk '/^round/ { for (i = 1; i <= NF; i++) if ($i ~ /^server_cpu_ms=/) { sub("server_cpu_ms=", "", $i); printf "%s%s", sep, $i; sep = " / " } }')"
    ms="$ms (server CPU $server)"
  else
    dbmb="$(du -m "$dir/poller.db" | cut -f1)"
  fi
  gauges="$(echo "$out" | grep '^gauges' | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^(ms|rss_file_added_kb)=/) { split($i, kv, "="); v[++n] = kv[2] } } END { printf "%s ms, +%d MiB / %s ms, +%d MiB", v[1], v[2] / 1024, v[3], v[4] / 1024 }')"
  if [ "$BACKEND" = postgresql ]; then
    gauges="$gauges (server CPU $(echo "$out" | grep '^gauges' | sed -n 's/.*server_cpu_ms=\([0-9-]*\).*/\1/p') ms)"
  fi
  # The real poller on the same database: with its default SQLite settings, then (the
  # reference) with the 1 GiB mmap every store had before.
  run_poller "$dir" "$poller_db"; def="$hwm_mb / $anon_mb / $file_mb"; def_walks="$walks"
  if [ "$REF_MMAP_MIB" -gt 0 ]; then
    run_poller "$dir" "--sqlite-mmap-mib $REF_MMAP_MIB"; ref="$hwm_mb / $anon_mb / $file_mb"
  else
    ref="-"
  fi
  load="$(cut -d' ' -f1 /proc/loadavg)"
  echo "| $n | $LEAVES | $dbmb | $ms | $calls | $rows | $slow | $gauges | $def | $ref | $def_walks | $load |"
  rm -rf "$dir"
done
kill "$SBX_PID" 2>/dev/null || true; wait "$SBX_PID" 2>/dev/null || true
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
