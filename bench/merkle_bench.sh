#!/usr/bin/env bash
# Merkle batching (libs/merkle) at archive scale next to `openssl speed -evp sha256` in the same
# run: time to make N nonces, build the tree, and produce + write every per-file proof joined
# with one root proof that carries a Bitcoin attestation; peak RSS of the benchmark process.
#
#   bash bench/merkle_bench.sh [BUILD_DIR] [N]      (writes bench/results/merkle.md)
#
# The tree's hash rate is given as a fraction of openssl's rate for 64-byte messages, the size of
# an inner node's input (a leaf hashes 48 bytes: one compression instead of two), on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
N="${2:-1000000}"
mkdir -p bench/results

# openssl speed prints "sha256  <16 B> <64 B> ..." in 1000s of bytes per second.
ossl_line=$(openssl speed -evp sha256 -seconds 3 2>/dev/null | awk '$1 == "sha256" {print}' | tail -1)
ossl_64_kbs=$(echo "$ossl_line" | awk '{gsub("k", "", $3); print $3}')
ossl_blocks_s=$(echo "scale=0; $ossl_64_kbs * 1000 / 64" | bc)

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
json=$("$BUILD/bench/merkle_bench" "$N" "$OUT")

field() { echo "$json" | sed -E "s/.*\"$1\":([0-9.]+).*/\1/"; }
mib() { echo "scale=1; $1 / 1048576" | bc; }
n=$(field n)
build_hps=$(field build_hashes_per_s)
frac=$(echo "scale=2; $build_hps / $ossl_blocks_s" | bc)
tree_mib=$(mib "$(field tree_memory_bytes)")
rss_build=$(echo "scale=1; $(field peak_rss_kib_after_build) / 1024" | bc)
rss_peak=$(echo "scale=1; $(field peak_rss_kib) / 1024" | bc)
written_mib=$(mib "$(field bytes_written)")
per_s() { echo "scale=0; $n / $1" | bc; }

{
  echo "| phase ($n files) | wall time | rate |"
  echo "|---|---|---|"
  echo "| nonces, one RandomNonce() call each | $(field nonce_calls_s) s | $(per_s "$(field nonce_calls_s)") nonces/s |"
  echo "| nonces, RandomNonces(N) (bulk RAND_bytes) | $(field nonce_bulk_s) s | $(per_s "$(field nonce_bulk_s)") nonces/s |"
  echo "| build tree ($(field build_hashes) SHA-256, height $(field tree_height)) | $(field build_s) s | $build_hps hashes/s = **${frac}x** openssl's 64-byte rate ($ossl_blocks_s/s) |"
  echo "| path + join (re-hashing each path) of every proof, in memory | $(field join_s) s | $(per_s "$(field join_s)") proofs/s |"
  echo "| path + join (re-hashing each path) + write every proof | $(field join_write_s) s | $(field proofs_per_s) proofs/s, ${written_mib} MiB written |"
  echo
  echo "Proof size: $(field avg_proof_bytes) bytes on average (path $(field avg_path_bytes) bytes, root proof $(field root_ots_bytes) bytes incl. its 65-byte header)."
  echo "Memory: the tree holds ${tree_mib} MiB; peak RSS ${rss_build} MiB after building (inputs: ${n} digests + nonces, flat), ${rss_peak} MiB at the end."
  echo
  echo "Raw: ${json}; openssl speed -evp sha256 -seconds 3: ${ossl_line}; machine: $(nproc) cores, $(uname -m), $(openssl version | cut -d' ' -f1-2)."
} | tee bench/results/merkle.md
