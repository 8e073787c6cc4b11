#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests, benchmarks and chaos runs (loopback only).
#
#   pg_ctl.sh start   DIR PORT   initdb DIR/data on first use, then start on 127.0.0.1:PORT
#   pg_ctl.sh stop    DIR        fast shutdown (no-op when not running)
#   pg_ctl.sh kill    DIR        immediate shutdown (a crash: no checkpoint)
#   pg_ctl.sh restart DIR PORT   stop then start
#   pg_ctl.sh status  DIR        exit 0 when running
#   pg_ctl.sh url     DIR PORT [DB]  print the connection URL (user postgres, trust auth)
#
# PostgreSQL refuses to run as root: as root the server runs as the `postgres` user (runuser) and
# DIR is handed to that user. The socket lives in DIR, never in /var/run. fsync is off: the data
# only has to survive a restart of the server, not of the machine (PG_DURABLE=1 turns fsync,
# synchronous_commit and full_page_writes on, and shared_buffers at PostgreSQL's default of
# 128MB, for benchmarks that claim durability). Binaries come from PG_BINDIR (default
# /usr/lib/postgresql/15/bin, Debian's `postgresql` package). With PG_TEMPLATE set, a new DIR is
# a copy of an initdb made once in that directory.
set -euo pipefail

BIN="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop|kill|restart|status|url DIR [PORT] [DB]" >&2
  exit 2
fi
if [ ! -x "$BIN/pg_ctl" ]; then
  echo "pg_ctl.sh: $BIN/pg_ctl not found (install Debian's postgresql package)" >&2
  exit 2
fi

as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

need_port() {
  if ! [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    echo "pg_ctl.sh: PORT must be a number" >&2
    exit 2
  fi
}

start() {
  local port="$1"
  need_port "$port"
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; chmod 700 "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    if [ -n "${PG_TEMPLATE:-}" ]; then
      # Many short-lived servers (one per test process): initdb once into the template (under a
      # lock), then copy it, which is several times faster than initdb.
      (
        flock 9
        if [ ! -f "$PG_TEMPLATE/done" ]; then
          rm -rf "$PG_TEMPLATE"
          mkdir -p "$PG_TEMPLATE"
          if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$PG_TEMPLATE"; fi
          as_pg "$BIN/initdb" -D "$PG_TEMPLATE/data" -U postgres --auth=trust -E UTF8 \
            --no-locale --no-sync >"$PG_TEMPLATE.log" 2>&1 || { cat "$PG_TEMPLATE.log" >&2; exit 1; }
          touch "$PG_TEMPLATE/done"
        fi
      ) 9>"$PG_TEMPLATE.lock"
      cp -a "$PG_TEMPLATE/data" "$dir/data"
    else
      as_pg "$BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale \
        --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
  fi
  local durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  if [ "${PG_DURABLE:-0}" = 1 ]; then
    durability="-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c shared_buffers=128MB"
  fi
  # -w waits until the server accepts connections (bounded by -t seconds). pg_stat_statements:
  # tests read how many buffers a store's statements touch (a polling round's work must not
  # grow with the backlog); it costs a hash of each statement.
  as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -o \
    "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 \
     -c shared_buffers=32MB -c shared_preload_libraries=pg_stat_statements $durability" \
    start >/dev/null || { tail -n 20 "$dir/server.log" >&2; exit 1; }
}

stop() {
  local mode="$1"
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$BIN/pg_ctl" -D "$dir/data" -m "$mode" -w -t 30 stop >/dev/null 2>&1 || true
  fi
}

case "$cmd" in
  start) start "${3:-}" ;;
  stop) stop fast ;;
  kill) stop immediate ;;
  restart) need_port "${3:-}"; stop fast; start "$3" ;;
  status) as_pg "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 ;;
  url) need_port "${3:-}"; echo "postgresql://postgres@127.0.0.1:$3/${4:-postgres}" ;;
  *) echo "pg_ctl.sh: unknown command $cmd" >&2; exit 2 ;;
esac
