#!/usr/bin/env bash
# Hashing throughput of the hasher service next to `openssl dgst -sha256` and `sha256sum` on the
# same data in the same run, two 1 GiB files hashed at once (one HashTree call over both, and two
# concurrent calls) against one of them alone and `openssl dgst` on both in parallel, and the
# hasher's peak RSS while hashing a 4 GiB file.
#
#   bash bench/hash_throughput.sh [BUILD_DIR]      (writes bench/results/hash_throughput.md, or $OUT)
#
# RUNS rounds (default 5) with openssl and the hasher back to back in each; the table has one row
# per round and the medians of the ratios (the machine is shared, so single runs are noisy).
#
# HASHER_BIN (default: the build's) runs another hasher binary with the same client (paired A/B).
# SMALL_ONLY=1 runs only the small-file workload in each round (and skips sha256sum and the 4 GiB
# file): the quick form for paired A/B runs of the per-file path.
#
# The hasher's CPU seconds for the small files (user + system from /proc/PID/stat, all threads)
# are reported per round next to the wall times: far less sensitive to other load than wall time.
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
field() { echo "$1" | sed -E "s/.*\"$2\":([0-9.]+).*/\1/"; }

RUN=$(mktemp -d)
HPID=""
trap '[ -n "$HPID" ] && kill $HPID 2>/dev/null; rm -rf "$RUN"' EXIT
# A fresh hasher with an empty hasher.db per round: every round records new rows, as the first
# hashing of a tree does (re-recording rows that exist costs more, and would differ per round).
start_hasher() {
  if [ -n "$HPID" ]; then kill "$HPID"; wait "$HPID" 2>/dev/null || true; fi
  rm -rf "$RUN/data"; mkdir -p "$RUN/data"; rm -f "$RUN/port"
  "${HASHER_BIN:-$BUILD/services/hasher/anchord-hasher}" --root "$DATA" --listen 127.0.0.1:0 --port-file "$RUN/port" \
    --data-dir "$RUN/data" --workers 2 --log-level warning &
  HPID=$!
  for _ in $(seq 1 100); do [ -s "$RUN/port" ] && break; sleep 0.1; done
  ADDR="127.0.0.1:$(cat "$RUN/port")"
}
hasher() { field "$("$BUILD/bench/hasher_bench" "$ADDR" "$1")" seconds; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # 1/100 s, user + system

# sha256sum (coreutils' generic SHA-256) once: a slow second reference, not repeated.
sha256sum_big=0; sha256sum_small=0
if [ -z "${SMALL_ONLY:-}" ]; then
  t0=$(now); sha256sum "$DATA/big/1GiB.bin" > /dev/null; t1=$(now)
  sha256sum_big=$(elapsed "$t0" "$t1")
  t0=$(now); find "$DATA/small" -type f -print0 | xargs -0 -n 1000 sha256sum > /dev/null; t1=$(now)
  sha256sum_small=$(elapsed "$t0" "$t1")
fi

# RUNS rounds; in each, every workload runs through openssl and then the hasher back to back, so
# both see about the same load. One line per round: small_openssl small_hasher big_openssl
# big_hasher one_openssl one_hasher two_openssl two_hasher concurrent_hasher load small_hasher_cpu
# (with SMALL_ONLY the big-file columns are 0).
: > "$RUN/rounds"
for _ in $(seq 1 "${RUNS:-5}"); do
  start_hasher
  t0=$(now); find "$DATA/small" -type f -print0 | xargs -0 -n 1000 openssl dgst -sha256 > /dev/null; t1=$(now)
  small_o=$(elapsed "$t0" "$t1")
  c0=$(cpu_ticks "$HPID")
  small_h=$(hasher small)
  small_cpu=$(echo "scale=2; ($(cpu_ticks "$HPID") - $c0) / 100" | bc)
  if [ -n "${SMALL_ONLY:-}" ]; then
    echo "$small_o $small_h 0 0 0 0 0 0 0 $(cut -d' ' -f1 /proc/loadavg) $small_cpu" >> "$RUN/rounds"
    continue
  fi
  t0=$(now); openssl dgst -sha256 "$DATA/big/1GiB.bin" > /dev/null; t1=$(now)
  big_o=$(elapsed "$t0" "$t1")
  big_h=$(hasher big)
  t0=$(now); openssl dgst -sha256 "$DATA/two/a/a.bin" > /dev/null; t1=$(now)
  one_o=$(elapsed "$t0" "$t1")
  one_h=$(hasher two/a)
  t0=$(now)
  openssl dgst -sha256 "$DATA/two/a/a.bin" > /dev/null &
  op1=$!
  openssl dgst -sha256 "$DATA/two/b/b.bin" > /dev/null &
  op2=$!
  wait "$op1" "$op2"
  t1=$(now)
  two_o=$(elapsed "$t0" "$t1")
  two_json=$("$BUILD/bench/hasher_bench" "$ADDR" two)
  if [ "$(field "$two_json" files)" != 2 ]; then echo "two-file call: $two_json" >&2; exit 1; fi
  two_h=$(field "$two_json" seconds)
  # Two concurrent calls, one file each: wall time from the start of both to the end of the last.
  t0=$(now)
  "$BUILD/bench/hasher_bench" "$ADDR" two/a > /dev/null &
  hb1=$!
  "$BUILD/bench/hasher_bench" "$ADDR" two/b > /dev/null &
  hb2=$!
  wait "$hb1" "$hb2"
  t1=$(now)
  conc_h=$(elapsed "$t0" "$t1")
  echo "$small_o $small_h $big_o $big_h $one_o $one_h $two_o $two_h $conc_h $(cut -d' ' -f1 /proc/loadavg) $small_cpu" >> "$RUN/rounds"
done
small_count=$(find "$DATA/small" -type f | wc -l)
huge_json="(skipped)"
if [ -z "${SMALL_ONLY:-}" ]; then huge_json=$("$BUILD/bench/hasher_bench" "$ADDR" huge); fi
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$HPID/status")

/usr/bin/python3 - "$RUN/rounds" "$small_count" "$sha256sum_big" "$sha256sum_small" "$load_start" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" "$((rss_kib / 1024))" "$huge_json" "$(nproc)" "$(uname -m)" <<'PY' | tee "${OUT:-bench/results/hash_throughput.md}"
import statistics, sys
rounds_file, n, s_big, s_small, load0, load1, rss, huge, cores, arch = sys.argv[1:11]
n, s_big, s_small = int(n), float(s_big), float(s_small)
rows = [list(map(float, l.split())) for l in open(rounds_file) if l.strip()]
med = lambda xs: statistics.median(xs)
print(f"{len(rows)} rounds; in each, `openssl dgst -sha256` (small files: `xargs -n 1000`) and then the "
      "hasher (`HashTree` dry run, 2 workers) on the same files from a warm page cache. Ratios are "
      "openssl's time / the hasher's (> 1: the hasher is faster); each row one round.")
print()
small_only = all(r[2] == 0 for r in rows)
if small_only:
    print("| round | small files: openssl / hasher | ratio | hasher CPU (small files) | load (1 min) |")
    print("|---|---|---|---|---|")
else:
    print("| round | small files: openssl / hasher | ratio | hasher CPU (small files) | 1 GiB: openssl / hasher | ratio | "
          "two 1 GiB, one call: hasher | x single-file rate | two 1 GiB in 2 openssl processes | x its single rate | "
          "two concurrent calls | x single | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
r_small, r_big, r_two, r_two_o, r_conc, cpus = [], [], [], [], [], []
for i, (so, sh, bo, bh, oo, oh, to, th, ch, load, cpu) in enumerate(rows, 1):
    r_small.append(so / sh); cpus.append(cpu)
    small = (f"| {i} | {so:.3f} s / {sh:.3f} s ({n / sh:,.0f} files/s) | {so / sh:.2f}x | "
             f"{cpu:.2f} s ({cpu / n * 1e6:.1f} us/file) |")
    if small_only:
        print(f"{small} {load:.2f} |")
        continue
    r_big.append(bo / bh)
    r_two.append(2 * oh / th); r_two_o.append(2 * oo / to); r_conc.append(2 * oh / ch)
    print(f"{small} "
          f"{bo:.3f} s / {bh:.3f} s ({1024 / bh:,.0f} MiB/s) | {bo / bh:.2f}x | {th:.3f} s "
          f"(single {oh:.3f} s) | {2 * oh / th:.2f}x | {to:.3f} s (single {oo:.3f} s) | {2 * oo / to:.2f}x | "
          f"{ch:.3f} s | {2 * oh / ch:.2f}x | {load:.2f} |")
print()
print(f"**Medians over {len(rows)} rounds:** {n:,} small files (1-16 KiB) {med(r_small):.2f}x `openssl dgst` "
      f"(goal >= 1.0x), hasher CPU {med(cpus):.2f} s ({med(cpus) / n * 1e6:.1f} us/file)", end="")
if small_only:
    print(".")
else:
    print(f"; one 1 GiB file {med(r_big):.2f}x (goal >= 0.95x); two 1 GiB files in one call "
          f"{med(r_two):.2f}x the single-file rate (goal >= 1.8x; `openssl` in two processes: {med(r_two_o):.2f}x); "
          f"two concurrent calls {med(r_conc):.2f}x.")
    print()
    print(f"`sha256sum` once: 1 GiB {s_big:.3f} s; small files {s_small:.3f} s ({n / s_small:,.0f} files/s).")
print()
print(f"Load average (1/5/15 min) at the start: {load0}; at the end: {load1}. Machine: {cores} cores, {arch}.")
print()
print(f"Peak RSS of the hasher process (VmHWM) after the last round and the 4 GiB file: {rss} MiB "
      f"(4 GiB sparse file: {huge}).")
PY
