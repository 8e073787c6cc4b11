#!/usr/bin/env bash
# Builds the libFuzzer target for the .ots parser, info rendering and verification in its own
# clang build dir and runs it. -rss_limit_mb=512: an input of at most 8 KiB that made the parser
# or a renderer amplify (the old info printed ~16 KB per byte) fails the run.
#   tests/fuzz/run.sh [SECONDS]          (default 60)
# Env: ANCHORD_FUZZ_BUILD_DIR (default <repo>/build-fuzz).
# Prints "fuzz: ran N s, X execs, no crash" and exits 0, or prints the crash and exits 1.
set -euo pipefail

secs="${1:-60}"
case "$secs" in ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2;; esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${ANCHORD_FUZZ_BUILD_DIR:-$root/build-fuzz}"

mkdir -p "$build"
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DANCHORD_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/configure.log" 2>&1 \
  || { cat "$build/configure.log" >&2; exit 1; }
ninja -C "$build" -j2 ots_parse_fuzzer >"$build/build.log" 2>&1 \
  || { tail -50 "$build/build.log" >&2; exit 1; }

# Seed corpus: every vector (valid and invalid proofs, and the stamped files themselves). The
# working corpus keeps what the fuzzer finds between runs.
corpus="$build/fuzz-corpus"
mkdir -p "$corpus"
find "$root/tests/data/ots" -type f -exec cp -f {} "$corpus/" \;

log="$build/fuzz.log"
start=$(date +%s)
set +e
"$build/tests/fuzz/ots_parse_fuzzer" -max_total_time="$secs" -max_len=8192 -rss_limit_mb=512 \
  -timeout=10 -print_final_stats=1 -artifact_prefix="$build/" "$corpus" >"$log" 2>&1
rc=$?
set -e
end=$(date +%s)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
if [ "$rc" -ne 0 ]; then
  tail -60 "$log" >&2
  echo "fuzz: FAILED after $((end - start)) s (exit $rc); artifacts in $build/" >&2
  exit 1
fi
echo "fuzz: ran $((end - start)) s, ${execs:-0} execs, no crash"
