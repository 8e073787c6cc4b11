// The poller store's own cost of storing Merkle leaves: Tracks N leaves (R per root, C inputs per
// Track call, as the submitter's hand-off sends them) into a fresh SQLite store, in the path form
// (each leaf row carries its merkle_path) or the batch form (the tree once per root, each leaf its
// index), and prints the bytes the process wrote (/proc/self/io write_bytes, the store closed so
// the WAL is checkpointed) and the CPU seconds spent in Track. No RPC, no other service.
//
//   pstore_write_bench --mode=path|batch --dir=DIR [--leaves=100000] [--per_root=10000]
//                      [--per_call=4096]
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/merkle/merkle.h"
#include "libs/merkle/sealed_batch.h"
#include "services/poller/poller_store.h"

namespace {

using anchord::poller::FileRow;
using anchord::poller::TrackInput;

int64_t WriteBytes() {
  std::ifstream io("/proc/self/io");
  std::string key;
  int64_t value = 0;
  while (io >> key >> value) {
    if (key == "write_bytes:") return value;
  }
  return -1;
}

double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string Flag(int argc, char** argv, const std::string& name, const std::string& def) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    if (absl::StartsWith(argv[i], prefix)) return std::string(argv[i] + prefix.size());
  }
  return def;
}

int64_t IntFlag(int argc, char** argv, const std::string& name, int64_t def) {
  int64_t v = def;
  const std::string s = Flag(argc, argv, name, "");
  if (!s.empty() && !absl::SimpleAtoi(s, &v)) {
    std::fprintf(stderr, "--%s: not an integer\n", name.c_str());
    std::exit(2);
  }
  return v;
}

TrackInput Input(const anchord::Digest& digest, const std::string& name) {
  TrackInput in;
  in.proof.digest = digest;
  in.proof.provider = "opentimestamps";
  in.proof.proof_id = "ots-calendar";
  in.proof.state = anchord::v1::DIGEST_STATE_PENDING;
  in.proof.submitted_at = absl::Now();
  in.files.push_back(FileRow{"bench", "corpus/dir-0042/" + name, name, 65536, "application/pdf"});
  return in;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = Flag(argc, argv, "mode", "batch");
  const std::string dir = Flag(argc, argv, "dir", "");
  const int64_t leaves = IntFlag(argc, argv, "leaves", 100000);
  const int64_t per_root = IntFlag(argc, argv, "per_root", 10000);
  const int64_t per_call = IntFlag(argc, argv, "per_call", 4096);
  if ((mode != "path" && mode != "batch") || dir.empty() || leaves <= 0 || per_root <= 0 ||
      per_call <= 0) {
    std::fprintf(stderr,
                 "usage: pstore_write_bench --mode=path|batch --dir=DIR [--leaves=N] "
                 "[--per_root=N] [--per_call=N]\n");
    return 2;
  }
  const bool batch_form = mode == "batch";
  const std::string db_path = dir + "/poller.db";
  std::filesystem::remove(db_path);
  std::filesystem::remove(db_path + "-wal");
  std::filesystem::remove(db_path + "-shm");

  auto store = anchord::poller::OpenSqlitePollerStore(db_path);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    return 1;
  }
  std::mt19937_64 rng(42);
  const int64_t bytes_before = WriteBytes();
  double track_cpu = 0;
  int64_t calls = 0;
  for (int64_t first = 0; first < leaves; first += per_root) {
    const int64_t n = std::min(per_root, leaves - first);
    std::vector<std::string> digests, nonces;
    std::vector<anchord::Digest> typed;
    for (int64_t i = 0; i < n; ++i) {
      std::string d(32, '\0');
      for (size_t k = 0; k < 32; k += 8) {
        const uint64_t r = rng();
        for (size_t b = 0; b < 8; ++b) d[k + b] = static_cast<char>((r >> (8 * b)) & 0xff);
      }
      typed.push_back(*anchord::Digest::FromBytes(d));
      digests.push_back(std::move(d));
      nonces.push_back(anchord::merkle::RandomNonce());
    }
    auto tree = anchord::merkle::Tree::Build(typed, nonces);
    auto encoded = anchord::merkle::EncodeBatchLeaves(digests, nonces);
    if (!tree.ok() || !encoded.ok()) {
      std::fprintf(stderr, "tree: failed\n");
      return 1;
    }
    auto batch = anchord::merkle::SealedBatch::Decode(*encoded, tree->root().raw());
    if (!batch.ok()) {
      std::fprintf(stderr, "batch: %s\n", batch.status().ToString().c_str());
      return 1;
    }
    std::vector<TrackInput> call;
    TrackInput root = Input(tree->root(), absl::StrCat("merkle-batch-", first));
    root.files.clear();
    root.proof.leaf_count = n;
    if (batch_form) root.batch = *batch;
    call.push_back(std::move(root));
    for (int64_t i = 0; i < n; ++i) {
      TrackInput in = Input(typed[i], absl::StrCat("file-", first + i, ".pdf"));
      in.proof.merkle_root = tree->root().raw();
      in.proof.merkle_path = tree->PathBytes(static_cast<size_t>(i));  // both forms carry it
      if (batch_form) {
        in.batch = *batch;
        in.proof.leaf_index = i;
      }
      call.push_back(std::move(in));
      if (static_cast<int64_t>(call.size()) >= per_call || i + 1 == n) {
        const double t0 = CpuSeconds();
        auto out = (*store)->Track(call, absl::Now());
        track_cpu += CpuSeconds() - t0;
        ++calls;
        if (!out.ok()) {
          std::fprintf(stderr, "track: %s\n", out.status().ToString().c_str());
          return 1;
        }
        call.clear();
      }
    }
  }
  const int64_t bytes_open = WriteBytes() - bytes_before;
  const double t0 = CpuSeconds();
  store->reset();  // closes the database: the WAL is checkpointed into the file
  const double close_cpu = CpuSeconds() - t0;
  const int64_t bytes = WriteBytes() - bytes_before;
  const int64_t file = static_cast<int64_t>(std::filesystem::file_size(db_path));
  std::printf(
      "mode=%s leaves=%lld per_root=%lld per_call=%lld calls=%lld\n"
      "write_bytes=%lld (%.0f B/leaf; %.0f B/leaf before close) db_file=%lld (%.0f B/leaf)\n"
      "track_cpu_s=%.2f (%.1f us/leaf) close_cpu_s=%.2f\n",
      mode.c_str(), static_cast<long long>(leaves), static_cast<long long>(per_root),
      static_cast<long long>(per_call), static_cast<long long>(calls),
      static_cast<long long>(bytes), static_cast<double>(bytes) / static_cast<double>(leaves),
      static_cast<double>(bytes_open) / static_cast<double>(leaves), static_cast<long long>(file),
      static_cast<double>(file) / static_cast<double>(leaves), track_cpu,
      track_cpu * 1e6 / static_cast<double>(leaves), close_cpu);
  return 0;
}
