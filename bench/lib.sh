# Helpers the service benchmarks share; sourced, not run. The caller sets BENCH_NAME (for its
# messages) and keeps the pids of the processes it starts in the array PIDS (for stop_all).
# Processes, ports and files: require_built, stop_all, free_port, wait_file. Data and figures:
# make_tree (the benchmarks' trees of small files), warm_cache, cpu_seconds, write_bytes.

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

# Writes COUNT files of MIN-MAX bytes (default 1-4 KiB) under DIR, 500 to a folder
# (d000/f000000.bin ...): TAG then random bytes, so trees with different tags share no digest.
# The sizes come from a fixed SEED (default 13), so every run of a benchmark hashes the same
# amount.
#   make_tree DIR COUNT TAG [MIN MAX [SEED]]
make_tree() {
  /usr/bin/python3 - "$1" "$2" "$3" "${4:-1024}" "${5:-4096}" "${6:-13}" <<'PY'
import os, sys, random
root, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lo, hi, seed = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rnd = random.Random(seed)
for i in range(n):
    d = os.path.join(root, f"d{i // 500:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}.bin"), "wb") as f:
        f.write(tag.encode() + os.urandom(rnd.randint(lo, hi)))
PY
}

# Reads every file under DIR once, so that a measurement starts with them in the page cache.
warm_cache() {
  find "$1" -type f -print0 | xargs -0 cat > /dev/null
}

# User + system CPU seconds a process has used so far (/proc/PID/stat; the name field may hold
# spaces, so the fields are counted after its closing parenthesis).
cpu_seconds() {
  awk -v tick="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); split($0, f, " ");
    printf "%.2f\n", (f[12] + f[13]) / tick }' "/proc/$1/stat"
}

# Bytes a process has caused to be written to disk so far (write_bytes of /proc/PID/io).
write_bytes() {
  awk '$1 == "write_bytes:" { print $2 }' "/proc/$1/io"
}
