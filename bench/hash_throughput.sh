#!/usr/bin/env bash
# Hashing throughput of the hasher service next to `openssl dgst -sha256` and `sha256sum` on the
# same data in the same run, and the hasher's peak RSS while hashing a 4 GiB file.
#
#   bash bench/hash_throughput.sh [BUILD_DIR]      (writes bench/results/hash_throughput.md)
#
# Every tool reads the same files from a warm page cache, so the figures compare hashing and I/O
# paths, not the disk. Data lives under $BENCH_DIR (default /tmp/anchord-bench) and is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
DATA="${BENCH_DIR:-/tmp/anchord-bench}"
SMALL_FILES="${SMALL_FILES:-20000}"
mkdir -p "$DATA/big" "$DATA/small" "$DATA/huge" bench/results

if [ ! -f "$DATA/big/1GiB.bin" ]; then
  head -c 1073741824 /dev/urandom > "$DATA/big/1GiB.bin"
fi
if [ "$(find "$DATA/small" -type f | wc -l)" -lt "$SMALL_FILES" ]; then
  /usr/bin/python3 - "$DATA/small" "$SMALL_FILES" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
for i in range(n):
    d = os.path.join(root, f"d{i // 500:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}.bin"), "wb") as f:
        f.write(os.urandom(rnd.randint(1024, 16384)))
PY
fi
if [ ! -f "$DATA/huge/4GiB.bin" ]; then
  # Sparse: the point is the hasher's memory while streaming 4 GiB, not the disk.
  truncate -s 4G "$DATA/huge/4GiB.bin"
fi

# Warm the page cache so every tool sees the same conditions.
cat "$DATA/big/1GiB.bin" > /dev/null
find "$DATA/small" -type f -print0 | xargs -0 cat > /dev/null

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }

t0=$(now); openssl dgst -sha256 "$DATA/big/1GiB.bin" > /dev/null; t1=$(now)
openssl_big=$(elapsed "$t0" "$t1")
t0=$(now); sha256sum "$DATA/big/1GiB.bin" > /dev/null; t1=$(now)
sha256sum_big=$(elapsed "$t0" "$t1")
t0=$(now); find "$DATA/small" -type f -print0 | xargs -0 -n 1000 openssl dgst -sha256 > /dev/null; t1=$(now)
openssl_small=$(elapsed "$t0" "$t1")
t0=$(now); find "$DATA/small" -type f -print0 | xargs -0 -n 1000 sha256sum > /dev/null; t1=$(now)
sha256sum_small=$(elapsed "$t0" "$t1")

RUN=$(mktemp -d)
"$BUILD/services/hasher/anchord-hasher" --root "$DATA" --listen 127.0.0.1:0 --port-file "$RUN/port" \
  --data-dir "$RUN" --workers 2 --log-level warning &
HPID=$!
trap 'kill $HPID 2>/dev/null || true; rm -rf "$RUN"' EXIT
for _ in $(seq 1 100); do [ -s "$RUN/port" ] && break; sleep 0.1; done
ADDR="127.0.0.1:$(cat "$RUN/port")"

big_json=$("$BUILD/bench/hasher_bench" "$ADDR" big)
small_json=$("$BUILD/bench/hasher_bench" "$ADDR" small)
huge_json=$("$BUILD/bench/hasher_bench" "$ADDR" huge)
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$HPID/status")

field() { echo "$1" | sed -E "s/.*\"$2\":([0-9.]+).*/\1/"; }
hasher_big=$(field "$big_json" seconds)
hasher_small=$(field "$small_json" seconds)
small_count=$(field "$small_json" files)
mib_s() { echo "scale=0; 1024 / $1" | bc; }
files_s() { echo "scale=0; $small_count / $1" | bc; }
ratio() { echo "scale=2; $2 / $1" | bc; }

{
  echo "| workload | anchord hasher | openssl dgst -sha256 | sha256sum | hasher / openssl | hasher / sha256sum |"
  echo "|---|---|---|---|---|---|"
  echo "| 1 GiB file | ${hasher_big} s ($(mib_s "$hasher_big") MiB/s) | ${openssl_big} s ($(mib_s "$openssl_big") MiB/s) | ${sha256sum_big} s ($(mib_s "$sha256sum_big") MiB/s) | $(ratio "$hasher_big" "$openssl_big")x speed | $(ratio "$hasher_big" "$sha256sum_big")x speed |"
  echo "| ${small_count} small files (1-16 KiB) | ${hasher_small} s ($(files_s "$hasher_small") files/s) | ${openssl_small} s ($(files_s "$openssl_small") files/s) | ${sha256sum_small} s ($(files_s "$sha256sum_small") files/s) | $(ratio "$hasher_small" "$openssl_small")x speed | $(ratio "$hasher_small" "$sha256sum_small")x speed |"
  echo
  echo "Peak RSS of the hasher process (VmHWM) after hashing the 4 GiB file and everything above: $((rss_kib / 1024)) MiB."
  echo
  echo "Raw: big=${big_json} small=${small_json} huge=${huge_json}; machine: $(nproc) cores, $(uname -m)."
} | tee bench/results/hash_throughput.md
