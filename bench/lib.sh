# Helpers the service benchmarks share; sourced, not run. The caller sets BENCH_NAME (for its
# messages) and keeps the pids of the processes it starts in the array PIDS.

# Exits 2 naming the first of the given binaries that is not built.
require_built() {
  local b
  for b in "$@"; do
    [ -x "$b" ] || { echo "$BENCH_NAME: $b is not built" >&2; exit 2; }
  done
}

# Stops every process in PIDS: SIGTERM, up to 10 s for each to exit, then SIGKILL.
stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  PIDS=()
}

# A free TCP port on the loopback address.
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits up to $2 seconds for file $1 to be non-empty (a service writes its port there).
wait_file() {
  for _ in $(seq 1 $(( $2 * 10 ))); do [ -s "$1" ] && return 0; sleep 0.1; done
  echo "$BENCH_NAME: $1 did not appear within $2 s" >&2; return 1
}
