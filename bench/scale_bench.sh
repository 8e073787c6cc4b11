#!/usr/bin/env bash
# Scale-out on PostgreSQL: 1 and 3 submitter replicas on PostgreSQL, and 1 on SQLite, side by side
# in one run against the same sandbox limit (proofd.id's 30 creates per window per key, the window
# scaled to WINDOW seconds), plus PostgreSQL's own pgbench TPC-B figure as the machine's reference.
#
#   bash bench/scale_bench.sh [BUILD_DIR]      (writes bench/results/scale.md)
#   env: WINDOW (2 s), FILES (300), INGEST (20000), CONFIGS ("postgresql-1 postgresql-3 sqlite-1")
#
# Per configuration (a fresh sandbox and, for PostgreSQL, a fresh database on one throwaway
# server started here with tests/support/pg_ctl.sh):
#   pace    FILES digests handed to the submitter(s) at once (submit_bench); the sandbox's
#           creates_total is sampled until every one was created. Pace = creates after the first
#           window's burst, per window, over the create limit (1.0 = exactly at the limit), plus
#           the 429s served and all provider requests per file (the poller's checks included).
#   ingest  INGEST more digests over 2 streams per replica (round_robin over the replicas): digests
#           acknowledged durable per second (the Submit ingest rate).
# Everything listens on 127.0.0.1; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BUILD="$(cd "${1:-build}" && pwd)"
WINDOW="${WINDOW:-2}"
FILES="${FILES:-300}"      # 10 windows' worth of creates at 30 per window
INGEST="${INGEST:-20000}"
LIMIT=30
PGBIN="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
PGCTL="${PGCTL:-$ROOT/tests/support/pg_ctl.sh}"
PY=/usr/bin/python3
SUB="$BUILD/services/submitter/anchord-submitter"
POL="$BUILD/services/poller/anchord-poller"
SBX="$BUILD/services/sandbox/anchord-sandbox"
BENCH="$BUILD/bench/submit_bench"
source bench/lib.sh
BENCH_NAME=scale_bench
require_built "$SUB" "$POL" "$SBX" "$BENCH"
WORK="$(mktemp -d /tmp/anchord-scale-bench.XXXXXX)"
PGDIR="$(mktemp -d /tmp/anchord-scale-pg.XXXXXX)"
PIDS=()
cleanup() { stop_all; bash "$PGCTL" stop "$PGDIR" >/dev/null 2>&1 || true; rm -rf "$WORK" "$PGDIR"; }
trap cleanup EXIT
printf 'proofd_live_sandbox' > "$WORK/key"; chmod 600 "$WORK/key"

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
PGPORT="$(free_port)"
bash "$PGCTL" start "$PGDIR" "$PGPORT"
PGURL_BASE="postgresql://postgres@127.0.0.1:$PGPORT"

# The machine's reference: pgbench TPC-B (scale 10, 4 clients, 2 threads, 20 s) on this server.
"$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c 'CREATE DATABASE pgbench' >/dev/null
"$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT" -U postgres -i -s 10 -q pgbench > "$WORK/pgbench-init.log" 2>&1
"$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT" -U postgres -c 4 -j 2 -T 20 pgbench > "$WORK/pgbench.log" 2>&1
TPS="$(grep -Eo 'tps = [0-9.]+' "$WORK/pgbench.log" | head -1 | cut -d' ' -f3 | xargs printf '%.0f')"
LAT="$(grep -Eo 'latency average = [0-9.]+ ms' "$WORK/pgbench.log" | head -1 | cut -d' ' -f4)"

run_config() {  # label backend replicas
  local label="$1" backend="$2" n="$3" dir="$WORK/$1" db_args=()
  mkdir -p "$dir"
  if [ "$backend" = pg ]; then
    local db="scale_${n}"
    "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE DATABASE $db" >/dev/null
    printf '%s/%s\n' "$PGURL_BASE" "$db" > "$dir/database.url"; chmod 600 "$dir/database.url"
    db_args=(--database-url-file "$dir/database.url")
  fi
  "$SBX" --listen 127.0.0.1:0 --port-file "$dir/sandbox.port" --window-seconds "$WINDOW" \
    --confirm-after-seconds 2 > "$dir/sandbox.log" 2>&1 &
  PIDS+=($!)
  wait_file "$dir/sandbox.port" 20
  local sport; sport="$(cat "$dir/sandbox.port")"
  local provider=(--provider proofd --proofd-url "http://127.0.0.1:$sport" --proofd-api-key-file "$WORK/key"
                  --proofd-window-seconds "$WINDOW")
  local pport; pport="$(free_port)"
  # Track is served on the poller's internal port only (loopback, so no token is needed).
  local piport; piport="$(free_port)"
  "$POL" --listen "127.0.0.1:$pport" --port-file "$dir/poller.port" --data-dir "$dir/poller" \
    --internal-listen "127.0.0.1:$piport" --poll-interval-seconds 1 "${provider[@]}" "${db_args[@]}" > "$dir/poller.log" 2>&1 &
  PIDS+=($!)
  wait_file "$dir/poller.port" 30
  local targets=()
  for i in $(seq 1 "$n"); do
    local port; port="$(free_port)"
    # SQLite: one replica, its own data dir. PostgreSQL: every replica on the same database.
    "$SUB" --listen "127.0.0.1:$port" --port-file "$dir/submitter$i.port" --data-dir "$dir/submitter$i" \
      --poller "127.0.0.1:$piport" "${provider[@]}" "${db_args[@]}" > "$dir/submitter$i.log" 2>&1 &
    PIDS+=($!)
    wait_file "$dir/submitter$i.port" 30
    targets+=("127.0.0.1:$port")
  done
  local target; target="ipv4:$(IFS=,; echo "${targets[*]}")"

  # Pace: FILES digests at once, creates sampled every 0.1 s (bounded: 30 windows + 60 s).
  "$BENCH" "$target" "$FILES" 1 256 pace "pace-$label" > "$dir/pace-submit.json"
  "$PY" - "$sport" "$FILES" "$LIMIT" "$WINDOW" "$(( 30 * WINDOW + 60 ))" > "$dir/pace.json" <<'PY'
import json, sys, time, urllib.request
port, files, limit, window, budget = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                      float(sys.argv[4]), float(sys.argv[5]))
def stats():
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=5) as r:
        return json.load(r)
start = time.monotonic(); t_burst = t_done = None; s = stats()
while time.monotonic() - start < budget:
    s = stats(); c = s["creates_total"]; now = time.monotonic()
    if t_burst is None and c >= limit: t_burst = now
    if c >= files: t_done = now; break
    time.sleep(0.1)
out = {"creates": s["creates_total"], "rate_limited": s["rate_limited_total"],
       "early": s["early_requests_total"], "requests": s["requests_total"],
       "max_per_digest": s["max_creates_per_digest"]}
if t_burst is not None and t_done is not None and t_done > t_burst:
    out["fraction"] = (files - limit) / ((t_done - t_burst) / window) / limit
print(json.dumps(out))
PY
  # Ingest: INGEST more digests, 2 streams per replica.
  "$BENCH" "$target" "$INGEST" $(( 2 * n )) 256 ingest "ingest-$label" > "$dir/ingest.json"
  stop_all
  "$PY" - "$label" "$n" "$FILES" "$dir/pace.json" "$dir/ingest.json" <<'PY' >> "$WORK/rows.md"
import json, sys
label, n, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
p, i = json.load(open(sys.argv[4])), json.load(open(sys.argv[5]))
frac = f"{p['fraction']:.2f}" if "fraction" in p else "n/a (not all created)"
print(f"| {label} | {n} | {frac} | {p['rate_limited']} | {p['early']} | {p['max_per_digest']} | "
      f"{p['requests'] / files:.2f} | {i['per_second']:.0f} digests/s ({i['acked']} in {i['seconds']:.1f} s) |")
PY
}

: > "$WORK/rows.md"
for c in ${CONFIGS:-postgresql-1 postgresql-3 sqlite-1}; do
  case "$c" in
    postgresql-*) run_config "$c" pg "${c#postgresql-}" ;;
    sqlite-1) run_config "$c" sqlite 1 ;;
    *) echo "scale_bench: unknown configuration $c" >&2; exit 2 ;;
  esac
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p bench/results
{
  echo "## Scale-out on PostgreSQL (sandbox at 30 creates per ${WINDOW} s window) — \`bash bench/scale_bench.sh\`"
  echo
  echo "Machine: $(nproc) cores, $(uname -m); load average (1/5/15 min) $LOAD_BEFORE before, $LOAD_AFTER after."
  echo "Reference in the same run: PostgreSQL 15 \`pgbench\` TPC-B (scale 10, 4 clients, 2 threads, 20 s,"
  echo "fsync off as in the tests): **${TPS} tps**, ${LAT} ms average latency."
  echo
  echo "| configuration | submitter replicas | pace / create limit | 429s | requests inside a Retry-After | max creates per digest | provider requests per file | Submit ingest (acknowledged durable) |"
  echo "|---|---|---|---|---|---|---|---|"
  cat "$WORK/rows.md"
  echo
  echo "Pace: $FILES digests handed over at once; creates after the first window's burst, per window,"
  echo "over the limit. Requests per file: every proofd request the sandbox served until the last create"
  echo "(the poller's status checks included). Ingest: $INGEST digests over 2 streams per replica."
} > bench/results/scale.md
cat bench/results/scale.md
