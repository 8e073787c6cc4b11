#!/usr/bin/env bash
# Hashing throughput of the hasher service next to `openssl dgst -sha256` and `sha256sum` on the
# same data in the same run, two 1 GiB files hashed at once (one HashTree call over both, and two
# concurrent calls) against one of them alone and `openssl dgst` on both in parallel, and the
# hasher's peak RSS while hashing a 4 GiB file.
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
mkdir -p "$DATA/big" "$DATA/small" "$DATA/huge" "$DATA/two/a" "$DATA/two/b" bench/results

if [ ! -f "$DATA/big/1GiB.bin" ]; then
  head -c 1073741824 /dev/urandom > "$DATA/big/1GiB.bin"
fi
# Two distinct 1 GiB files, each alone in its directory (HashTree takes a directory): "two" holds
# both, "two/a" one of them. a.bin is a hard link to the big file (same inode, so the page cache
# holds 2 GiB, not 3).
[ -f "$DATA/two/a/a.bin" ] || ln "$DATA/big/1GiB.bin" "$DATA/two/a/a.bin"
if [ ! -f "$DATA/two/b/b.bin" ]; then
  head -c 1073741824 /dev/urandom > "$DATA/two/b/b.bin"
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
cat "$DATA/big/1GiB.bin" "$DATA/two/b/b.bin" > /dev/null
find "$DATA/small" -type f -print0 | xargs -0 cat > /dev/null

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
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
t0=$(now); openssl dgst -sha256 "$DATA/two/a/a.bin" > /dev/null; t1=$(now)
openssl_one=$(elapsed "$t0" "$t1")
t0=$(now)
openssl dgst -sha256 "$DATA/two/a/a.bin" > /dev/null &
op1=$!
openssl dgst -sha256 "$DATA/two/b/b.bin" > /dev/null &
op2=$!
wait "$op1" "$op2"
t1=$(now)
openssl_two=$(elapsed "$t0" "$t1")

RUN=$(mktemp -d)
"$BUILD/services/hasher/anchord-hasher" --root "$DATA" --listen 127.0.0.1:0 --port-file "$RUN/port" \
  --data-dir "$RUN" --workers 2 --log-level warning &
HPID=$!
trap 'kill $HPID 2>/dev/null || true; rm -rf "$RUN"' EXIT
for _ in $(seq 1 100); do [ -s "$RUN/port" ] && break; sleep 0.1; done
ADDR="127.0.0.1:$(cat "$RUN/port")"

big_json=$("$BUILD/bench/hasher_bench" "$ADDR" big)
small_json=$("$BUILD/bench/hasher_bench" "$ADDR" small)
one_json=$("$BUILD/bench/hasher_bench" "$ADDR" two/a)
two_json=$("$BUILD/bench/hasher_bench" "$ADDR" two)
# Two concurrent calls, one file each: wall time from the start of both to the end of the last.
t0=$(now)
"$BUILD/bench/hasher_bench" "$ADDR" two/a > "$RUN/ca.json" &
hb1=$!
"$BUILD/bench/hasher_bench" "$ADDR" two/b > "$RUN/cb.json" &
hb2=$!
wait "$hb1" "$hb2"
t1=$(now)
conc_wall=$(elapsed "$t0" "$t1")
huge_json=$("$BUILD/bench/hasher_bench" "$ADDR" huge)
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$HPID/status")

field() { echo "$1" | sed -E "s/.*\"$2\":([0-9.]+).*/\1/"; }
hasher_big=$(field "$big_json" seconds)
hasher_small=$(field "$small_json" seconds)
small_count=$(field "$small_json" files)
hasher_one=$(field "$one_json" seconds)
hasher_two=$(field "$two_json" seconds)
two_files=$(field "$two_json" files)
if [ "$two_files" != 2 ]; then echo "two-file call hashed $two_files files" >&2; exit 1; fi
mib_s() { echo "scale=0; 1024 / $1" | bc; }
mib_s2() { echo "scale=0; 2048 / $1" | bc; }
files_s() { echo "scale=0; $small_count / $1" | bc; }
ratio() { echo "scale=2; $2 / $1" | bc; }

{
  echo "| workload | anchord hasher | openssl dgst -sha256 | sha256sum | hasher / openssl | hasher / sha256sum |"
  echo "|---|---|---|---|---|---|"
  echo "| 1 GiB file | ${hasher_big} s ($(mib_s "$hasher_big") MiB/s) | ${openssl_big} s ($(mib_s "$openssl_big") MiB/s) | ${sha256sum_big} s ($(mib_s "$sha256sum_big") MiB/s) | $(ratio "$hasher_big" "$openssl_big")x speed | $(ratio "$hasher_big" "$sha256sum_big")x speed |"
  echo "| ${small_count} small files (1-16 KiB) | ${hasher_small} s ($(files_s "$hasher_small") files/s) | ${openssl_small} s ($(files_s "$openssl_small") files/s) | ${sha256sum_small} s ($(files_s "$sha256sum_small") files/s) | $(ratio "$hasher_small" "$openssl_small")x speed | $(ratio "$hasher_small" "$sha256sum_small")x speed |"
  echo
  echo "| two 1 GiB files | anchord hasher | openssl dgst -sha256 | hasher / openssl |"
  echo "|---|---|---|---|"
  echo "| one file alone | ${hasher_one} s ($(mib_s "$hasher_one") MiB/s) | ${openssl_one} s ($(mib_s "$openssl_one") MiB/s) | $(ratio "$hasher_one" "$openssl_one")x speed |"
  echo "| both in one HashTree call / 2 processes | ${hasher_two} s ($(mib_s2 "$hasher_two") MiB/s, $(ratio "$hasher_two" "$(echo "2 * $hasher_one" | bc)")x the single-file rate) | ${openssl_two} s ($(mib_s2 "$openssl_two") MiB/s, $(ratio "$openssl_two" "$(echo "2 * $openssl_one" | bc)")x its single-file rate) | $(ratio "$hasher_two" "$openssl_two")x speed |"
  echo "| both, two concurrent HashTree calls | ${conc_wall} s ($(mib_s2 "$conc_wall") MiB/s, $(ratio "$conc_wall" "$(echo "2 * $hasher_one" | bc)")x the single-file rate) | | $(ratio "$conc_wall" "$openssl_two")x speed |"
  echo
  echo "Load average (1/5/15 min) at the start: ${load_start}; at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "Peak RSS of the hasher process (VmHWM) after hashing the 4 GiB file and everything above: $((rss_kib / 1024)) MiB."
  echo
  echo "Raw: big=${big_json} small=${small_json} huge=${huge_json} one=${one_json} two=${two_json} concurrent=$(cat "$RUN/ca.json") $(cat "$RUN/cb.json"); machine: $(nproc) cores, $(uname -m)."
} | tee bench/results/hash_throughput.md
