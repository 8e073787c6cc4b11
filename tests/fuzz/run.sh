#!/usr/bin/env bash
# Builds the libFuzzer targets (the .ots parser with info rendering and verification, the RFC 3161
# parsers, the bundle ZIP reader) in their own clang build dir and runs each for SECONDS.
# -rss_limit_mb=512 for the .ots target: an input of at most 8 KiB that made the parser or a
# renderer amplify (the old info printed ~16 KB per byte) fails the run.
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
ninja -C "$build" -j2 ots_parse_fuzzer tsa_parse_fuzzer bundle_zip_fuzzer >"$build/build.log" 2>&1 \
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

# The RFC 3161 parsers and the bundle ZIP reader, seeded from tests/fuzz/seeds, same duration each.
for target in tsa_parse_fuzzer bundle_zip_fuzzer; do
  seeds="$here/seeds/$([ "$target" = tsa_parse_fuzzer ] && echo tsa || echo zip)"
  corpus="$build/fuzz-corpus-$target"
  mkdir -p "$corpus"
  cp -f "$seeds"/* "$corpus/"
  log="$build/fuzz-$target.log"
  start=$(date +%s)
  set +e
  "$build/tests/fuzz/$target" -max_total_time="$secs" -max_len=8192 -rss_limit_mb=1024 \
    -timeout=10 -print_final_stats=1 -artifact_prefix="$build/$target-" "$corpus" >"$log" 2>&1
  rc=$?
  set -e
  end=$(date +%s)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ "$rc" -ne 0 ]; then
    tail -60 "$log" >&2
    echo "fuzz: $target FAILED after $((end - start)) s (exit $rc); artifacts in $build/" >&2
    exit 1
  fi
  echo "fuzz: $target ran $((end - start)) s, ${execs:-0} execs, no crash"
done
