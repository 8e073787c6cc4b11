// The poller's Track (hand-off) path alone: streams N Merkle leaves, and after each batch's leaves
// its root, to a running anchord-poller the way the submitter's hand-off does (a window of WINDOW
// requests written on one stream, then every acknowledgement awaited before the next window), and
// prints one JSON object. bench/track_bench.sh runs it against a fresh poller and reads the
// poller's CPU time and disk writes from /proc around it.
//
//   track_bench ADDR N [WINDOW] [LEAVES_PER_ROOT] [SEED]
//
// Each leaf carries one file (job "bench", a path like d012/f006001.bin) and a real Merkle path to
// its root (libs/merkle), so the poller's checks run as they do for the submitter's leaves.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "anchord/v1/poller.grpc.pb.h"
#include "libs/merkle/merkle.h"

namespace {

namespace v1 = anchord::v1;
using Clock = std::chrono::steady_clock;

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

// One batch: its leaves' requests, then the root's.
std::vector<v1::TrackRequest> MakeBatch(std::mt19937_64& rng, size_t first, size_t count,
                                        int64_t now_s) {
  std::vector<anchord::Digest> digests;
  for (size_t i = 0; i < count; ++i) {
    digests.push_back(*anchord::Digest::FromBytes(RandomBytes(rng, anchord::Digest::kSize)));
  }
  std::string nonces = anchord::merkle::RandomNonces(count);
  std::vector<std::string> nonce_list;
  for (size_t i = 0; i < count; ++i) {
    nonce_list.push_back(
        nonces.substr(i * anchord::merkle::kNonceSize, anchord::merkle::kNonceSize));
  }
  auto tree = anchord::merkle::Tree::Build(digests, nonce_list);
  if (!tree.ok()) {
    std::fprintf(stderr, "track_bench: %s\n", tree.status().ToString().c_str());
    std::exit(1);
  }
  const std::string proof_id = absl::StrCat("bench-", first);
  std::vector<v1::TrackRequest> out;
  auto fill = [&](v1::TrackRequest& r, const std::string& digest) {
    v1::Proof* p = r.mutable_proof();
    p->set_digest(digest);
    p->set_provider("ots");
    p->set_proof_id(proof_id);
    p->set_state(v1::DIGEST_STATE_PENDING);
    p->mutable_submitted_at()->set_seconds(now_s);
    p->mutable_updated_at()->set_seconds(now_s);
  };
  for (size_t i = 0; i < count; ++i) {
    v1::TrackRequest r;
    const size_t n = first + i;
    r.set_request_id(absl::StrCat("l", n));
    fill(r, std::string(digests[i].bytes()));
    r.mutable_proof()->set_merkle_root(std::string(tree->root().bytes()));
    r.set_merkle_path(tree->PathBytes(i));
    v1::FileMetadata* f = r.mutable_proof()->add_files();
    f->set_filename(absl::StrFormat("f%06d.bin", n));
    f->set_source_path(absl::StrFormat("d%03d/f%06d.bin", n / 500, n));
    f->set_size_bytes(1024 + static_cast<int64_t>(n % 3072));
    f->set_job("bench");
    out.push_back(std::move(r));
  }
  v1::TrackRequest root;
  root.set_request_id(absl::StrCat("r", first));
  fill(root, std::string(tree->root().bytes()));
  root.mutable_proof()->set_merkle_leaf_count(static_cast<int64_t>(count));
  out.push_back(std::move(root));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: track_bench ADDR N [WINDOW] [LEAVES_PER_ROOT] [SEED]\n");
    return 2;
  }
  const std::string addr = argv[1];
  const size_t n = std::strtoull(argv[2], nullptr, 10);
  const size_t window = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 4096;
  const size_t per_root = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 10000;
  std::mt19937_64 rng(argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 7);
  if (n == 0 || window == 0 || per_root == 0) {
    std::fprintf(stderr, "track_bench: N, WINDOW and LEAVES_PER_ROOT must be positive\n");
    return 2;
  }
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  std::vector<v1::TrackRequest> all;
  for (size_t first = 0; first < n; first += per_root) {
    auto batch = MakeBatch(rng, first, std::min(per_root, n - first), now_s);
    for (auto& r : batch) all.push_back(std::move(r));
  }

  auto stub =
      v1::PollerService::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(20));
  auto stream = stub->Track(&ctx);
  absl::Mutex mu;
  size_t acked = 0, failed = 0;
  bool reader_done = false;
  std::thread reader([&] {
    v1::TrackResponse resp;
    while (stream->Read(&resp)) {
      absl::MutexLock lock(&mu);
      ++acked;
      if (resp.status().code() != 0) {
        if (failed == 0) {
          std::fprintf(stderr, "track_bench: %s: code %d %s\n", resp.request_id().c_str(),
                       resp.status().code(), resp.status().message().c_str());
        }
        ++failed;
      }
    }
    absl::MutexLock lock(&mu);
    reader_done = true;
  });
  const auto t0 = Clock::now();
  size_t sent = 0;
  bool broken = false;
  while (sent < all.size() && !broken) {
    const size_t end = std::min(all.size(), sent + window);
    for (; sent < end; ++sent) {
      if (!stream->Write(all[sent])) {
        broken = true;
        break;
      }
    }
    absl::MutexLock lock(&mu);
    const size_t target = sent;
    auto settled = [&]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return acked >= target || reader_done; };
    mu.Await(absl::Condition(&settled));
    if (reader_done && acked < target) broken = true;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  stream->WritesDone();
  reader.join();
  grpc::Status st = stream->Finish();
  std::printf(
      "{\"requests\":%zu,\"leaves\":%zu,\"acked\":%zu,\"failed\":%zu,\"seconds\":%.3f,"
      "\"per_second\":%.0f,\"stream_ok\":%s}\n",
      all.size(), n, acked, failed, seconds, static_cast<double>(acked) / seconds,
      st.ok() && !broken ? "true" : "false");
  return failed == 0 && acked == all.size() ? 0 : 1;
}
