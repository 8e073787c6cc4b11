// Merkle batching at archive scale (libs/merkle): nonces, tree build, and one standalone .ots per
// file joined with a single root proof, for N random digests (default 1,000,000). Prints one JSON
// object; bench/merkle_bench.sh puts it next to `openssl speed` and writes the results table.
//
//   merkle_bench [N] [OUTPUT_DIR]
//
// Every proof is written, concatenated, to OUTPUT_DIR/proofs.bin (default: a fresh directory
// under /tmp, removed afterwards) so the figures include producing and writing the bytes; no fsync,
// the point is CPU and memory, not the disk. Proof 0 and N-1 are re-parsed with libs/ots at the end
// as a sanity check (the bench fails when they do not parse or do not lead to the root).
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "libs/merkle/merkle.h"
#include "libs/ots/ots.h"

namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

long PeakRssKib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;  // KiB on Linux
}

// Digest i of the concatenated digests (each 32 bytes, so FromBytes cannot fail).
anchord::Digest DigestAt(absl::string_view digests, size_t i) {
  return *anchord::Digest::FromBytes(
      digests.substr(i * anchord::Digest::kSize, anchord::Digest::kSize));
}

// A root proof shaped like an upgraded provider/calendar proof: a pending attestation at the root,
// calendar ops (prepend time, append mac, sha256), a Bitcoin transaction around the commitment
// (prepend/append tx bytes, sha256d) and a 12-level block Merkle branch to a Bitcoin attestation.
std::string MakeRootOts(const std::string& root) {
  anchord::ots::DetachedFile f;
  f.digest = root;
  f.timestamp = std::make_shared<anchord::ots::Timestamp>(root);
  f.timestamp->AddAttestation(anchord::ots::Attestation::Pending("https://calendar.example.test"));
  auto n = *f.timestamp->AddOp(anchord::ots::Op::Prepend(std::string("\x65\x8f\x12\x34", 4)));
  n = *n->AddOp(anchord::ots::Op::Append(std::string(8, '\x5a')));
  n = *n->AddOp(anchord::ots::Op::Sha256());
  n = *n->AddOp(anchord::ots::Op::Prepend(std::string(94, '\x01')));
  n = *n->AddOp(anchord::ots::Op::Append(std::string(45, '\x02')));
  n = *(*n->AddOp(anchord::ots::Op::Sha256()))->AddOp(anchord::ots::Op::Sha256());
  for (int level = 0; level < 12; ++level) {
    std::string sibling(32, static_cast<char>(level));
    n = *n->AddOp(level % 2 ? anchord::ots::Op::Prepend(sibling)
                            : anchord::ots::Op::Append(sibling));
    n = *(*n->AddOp(anchord::ots::Op::Sha256()))->AddOp(anchord::ots::Op::Sha256());
  }
  n->AddAttestation(anchord::ots::Attestation::Bitcoin(900000));
  return *anchord::ots::SerializeDetached(f);
}

}  // namespace

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  std::string out_dir = argc > 2 ? argv[2] : "";
  bool remove_dir = false;
  if (n == 0) {
    std::fprintf(stderr, "usage: merkle_bench [N>0] [OUTPUT_DIR]\n");
    return 2;
  }
  if (out_dir.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "merkle_bench_XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      return 1;
    }
    out_dir = tmpl;
    remove_dir = true;
  }
  const long rss_start = PeakRssKib();

  // Input: N random "file digests" (random bytes are as good as SHA-256 outputs here).
  const std::string digests = anchord::merkle::RandomNonces(n * 2);  // 2 x 16 = 32 bytes each
  if (digests.size() != n * anchord::merkle::kDigestSize) return 1;

  // Nonces, both ways a caller might get them.
  auto t0 = Clock::now();
  size_t nonce_bytes = 0;  // kept so the calls are not optimized away; not stored (memory)
  for (size_t i = 0; i < n; ++i) nonce_bytes += anchord::merkle::RandomNonce().size();
  const double nonce_calls_s = Since(t0);
  if (nonce_bytes != n * anchord::merkle::kNonceSize) return 1;
  t0 = Clock::now();
  const std::string nonces = anchord::merkle::RandomNonces(n);
  const double nonce_bulk_s = Since(t0);
  if (nonces.size() != n * anchord::merkle::kNonceSize) return 1;

  // Tree: n leaf hashes (48 bytes) + n - 1 inner hashes (64 bytes).
  t0 = Clock::now();
  auto tree = anchord::merkle::Tree::BuildFlat(digests, nonces);
  const double build_s = Since(t0);
  if (!tree.ok()) {
    std::fprintf(stderr, "build: %s\n", std::string(tree.status().message()).c_str());
    return 1;
  }
  const long rss_after_build = PeakRssKib();

  const std::string root_ots = MakeRootOts(tree->root().raw());
  auto joiner = anchord::merkle::Joiner::Parse(root_ots);
  if (!joiner.ok()) return 1;

  // Every proof, in memory only (one reused buffer): path bytes, then join, which re-hashes the
  // path to check that it leads to the root.
  t0 = Clock::now();
  {
    std::string path, proof;
    uint64_t total = 0;
    for (size_t i = 0; i < n; ++i) {
      path.clear();
      proof.clear();
      tree->AppendPathBytes(i, &path);
      auto st = joiner->AppendJoined(DigestAt(digests, i), path, &proof);
      if (!st.ok()) return 1;
      total += proof.size();
    }
    if (total == 0) return 1;
  }
  const double join_s = Since(t0);

  // The same, every proof written (concatenated, 8 MiB writes).
  const std::string out_path = out_dir + "/proofs.bin";
  std::FILE* out = std::fopen(out_path.c_str(), "wb");
  if (out == nullptr) {
    std::perror(out_path.c_str());
    return 1;
  }
  t0 = Clock::now();
  std::string path, buf;
  buf.reserve(9 << 20);
  uint64_t bytes = 0, path_bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    path.clear();
    tree->AppendPathBytes(i, &path);
    path_bytes += path.size();
    auto st = joiner->AppendJoined(DigestAt(digests, i), path, &buf);
    if (!st.ok()) {
      std::fprintf(stderr, "join %zu: %s\n", i, std::string(st.message()).c_str());
      return 1;
    }
    if (buf.size() >= (8 << 20) || i + 1 == n) {
      if (std::fwrite(buf.data(), 1, buf.size(), out) != buf.size()) return 1;
      bytes += buf.size();
      buf.clear();
    }
  }
  if (std::fclose(out) != 0) return 1;
  const double join_write_s = Since(t0);
  const long rss_end = PeakRssKib();

  // Sanity: the first and last proofs parse and carry the digest.
  const size_t proof0 = 65 + tree->PathBytes(0).size() + (root_ots.size() - 65);
  {
    std::FILE* in = std::fopen(out_path.c_str(), "rb");
    std::string first(proof0, '\0');
    const bool read_ok = in && std::fread(first.data(), 1, proof0, in) == proof0;
    if (in) std::fclose(in);
    auto parsed = anchord::ots::ParseDetached(first);
    if (!read_ok || !parsed.ok() || parsed->digest != digests.substr(0, 32)) {
      std::fprintf(stderr, "proof 0 does not parse back\n");
      return 1;
    }
    auto last = joiner->Join(DigestAt(digests, n - 1), tree->PathBytes(n - 1));
    if (!last.ok() || !anchord::ots::ParseDetached(*last).ok()) return 1;
  }
  if (remove_dir) std::filesystem::remove_all(out_dir);

  const double hashes = 2.0 * n - 1;
  std::printf(
      "{\"n\":%zu,\"nonce_calls_s\":%.3f,\"nonce_bulk_s\":%.3f,\"build_s\":%.3f,"
      "\"build_hashes\":%.0f,\"build_hashes_per_s\":%.0f,\"join_s\":%.3f,"
      "\"join_write_s\":%.3f,\"proofs_per_s\":%.0f,\"bytes_written\":%llu,\"avg_proof_bytes\":%.1f,"
      "\"avg_path_bytes\":%.1f,\"root_ots_bytes\":%zu,\"tree_height\":%zu,"
      "\"tree_memory_bytes\":%zu,\"peak_rss_kib_start\":%ld,\"peak_rss_kib_after_build\":%ld,"
      "\"peak_rss_kib\":%ld}\n",
      n, nonce_calls_s, nonce_bulk_s, build_s, hashes, hashes / build_s, join_s, join_write_s,
      n / join_write_s, static_cast<unsigned long long>(bytes), static_cast<double>(bytes) / n,
      static_cast<double>(path_bytes) / n, root_ots.size(), tree->height(), tree->MemoryBytes(),
      rss_start, rss_after_build, rss_end);
  return 0;
}
