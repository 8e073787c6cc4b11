// The poller's hand-off path alone: streams N Merkle leaves and their roots to a running
// anchord-poller the way the submitter's hand-off does (a window of about WINDOW leaves written
// on one stream, then every acknowledgement awaited before the next window), and prints one JSON
// object. bench/track_bench.sh runs it against a fresh poller and reads the poller's CPU time and
// disk writes from /proc around it.
//
//   track_bench ADDR N [WINDOW] [LEAVES_PER_ROOT] [SEED] [leaf|batch] [LEAVES_PER_REQUEST]
//               [WATCH_ADDR]
//
// Two forms of the same leaves: "leaf" (the default) sends Track requests, one per leaf with its
// real Merkle path (libs/merkle) and after each batch's leaves its root; "batch" sends TrackBatch
// requests, each the root with the whole tree and up to LEAVES_PER_REQUEST (4096) leaves as
// index + files. Each leaf carries one file (job "bench", a path like d012/f006001.bin).
//
// With WATCH_ADDR (the poller's public address) a Watch of job "bench" (batch, brief, grouped:
// what `anchorctl archive --wait` opens; WATCH_GROUPED=0 leaves grouped unset) is open during the
// run, so the poller builds and sends the events of every proof as it does under an archive; the
// run then also waits (at most 120 s) until every leaf's event arrived, and reports when. A
// poller older than grouped events ignores the flag and sends an event per proof.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
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

// One sealed batch: its leaves' digests, nonces and tree, as the submitter holds them.
struct Sealed {
  std::vector<anchord::Digest> digests;
  std::string nonces;  // count * kNonceSize
  anchord::merkle::Tree tree;
};

Sealed Seal(std::mt19937_64& rng, size_t count) {
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
  return Sealed{std::move(digests), std::move(nonces), *std::move(tree)};
}

// RECORD=provider in the environment: each root carries a provider's record of the shapes the
// sandbox's proofd.id answers with (a UUID, a certificate URL, a verify URL with the hash, a
// request id: about 200 bytes that every leaf of the root repeats), as in bench/pipeline_bench.sh.
// Unset: a short proof id only.
// Read once: FillProof runs for every request built.
bool ProviderRecord() {
  static const bool on = [] {
    const char* v = std::getenv("RECORD");
    return v != nullptr && std::string(v) == "provider";
  }();
  return on;
}

void FillProof(v1::Proof* p, const std::string& digest, size_t first, int64_t now_s) {
  p->set_digest(digest);
  p->set_provider("ots");
  if (ProviderRecord()) {
    p->set_proof_id(absl::StrFormat("%08x-1705-49cb-8f31-%012x", first, first));
    p->set_certificate_url(absl::StrFormat("https://proofd.id/cert/TS-%06d", first));
    p->set_verify_url(
        absl::StrCat("https://proofd.id/verify/", absl::BytesToHexString(p->digest())));
    p->set_provider_request_id(absl::StrFormat("req_%016x", first));
  } else {
    p->set_proof_id(absl::StrCat("bench-", first));
  }
  p->set_state(v1::DIGEST_STATE_PENDING);
  p->mutable_submitted_at()->set_seconds(now_s);
  p->mutable_updated_at()->set_seconds(now_s);
}

void FillFile(v1::FileMetadata* f, size_t n) {
  f->set_filename(absl::StrFormat("f%06d.bin", n));
  f->set_source_path(absl::StrFormat("d%03d/f%06d.bin", n / 500, n));
  f->set_size_bytes(1024 + static_cast<int64_t>(n % 3072));
  f->set_job("bench");
}

v1::TrackRequest RootRequest(const Sealed& b, size_t first, int64_t now_s) {
  v1::TrackRequest root;
  root.set_request_id(absl::StrCat("r", first));
  FillProof(root.mutable_proof(), std::string(b.tree.root().bytes()), first, now_s);
  root.mutable_proof()->set_merkle_leaf_count(static_cast<int64_t>(b.digests.size()));
  return root;
}

// The per-leaf form (Track): one request per leaf with its path, then the root's.
std::vector<v1::TrackRequest> PerLeafRequests(const Sealed& b, size_t first, int64_t now_s) {
  std::vector<v1::TrackRequest> out;
  for (size_t i = 0; i < b.digests.size(); ++i) {
    v1::TrackRequest r;
    const size_t n = first + i;
    r.set_request_id(absl::StrCat("l", n));
    FillProof(r.mutable_proof(), std::string(b.digests[i].bytes()), first, now_s);
    r.mutable_proof()->set_merkle_root(std::string(b.tree.root().bytes()));
    r.set_merkle_path(b.tree.PathBytes(i));
    FillFile(r.mutable_proof()->add_files(), n);
    out.push_back(std::move(r));
  }
  out.push_back(RootRequest(b, first, now_s));
  return out;
}

// The batch form (TrackBatch): the root with the whole tree and up to `per_request` leaves.
std::vector<v1::TrackBatchRequest> BatchRequests(const Sealed& b, size_t first, int64_t now_s,
                                                 size_t per_request) {
  std::string encoded;
  for (const anchord::Digest& d : b.digests) encoded += std::string(d.bytes());
  encoded += b.nonces;
  std::vector<v1::TrackBatchRequest> out;
  for (size_t from = 0; from < b.digests.size(); from += per_request) {
    v1::TrackBatchRequest r;
    *r.mutable_track() = RootRequest(b, first, now_s);
    r.mutable_track()->set_request_id(absl::StrCat("r", first, "-", from));
    r.set_merkle_tree(encoded);
    for (size_t i = from; i < std::min(b.digests.size(), from + per_request); ++i) {
      v1::MerkleLeaf* leaf = r.add_leaves();
      leaf->set_index(static_cast<uint32_t>(i));
      FillFile(leaf->add_files(), first + i);
    }
    out.push_back(std::move(r));
  }
  return out;
}

size_t LeavesOf(const v1::TrackRequest&) { return 1; }
size_t LeavesOf(const v1::TrackBatchRequest& r) { return static_cast<size_t>(r.leaves_size()); }

struct Result {
  size_t acked = 0;
  size_t failed = 0;
  double seconds = 0;
  bool ok = false;
};

// Writes `all` on `stream` in windows of about `window` leaves, awaiting every acknowledgement
// of a window before the next (as the submitter's hand-off does).
template <typename Req, typename Stream>
Result Send(Stream* stream, const std::vector<Req>& all, size_t window) {
  absl::Mutex mu;
  Result res;
  bool reader_done = false;
  std::thread reader([&] {
    v1::TrackResponse resp;
    while (stream->Read(&resp)) {
      absl::MutexLock lock(&mu);
      ++res.acked;
      if (resp.status().code() != 0) {
        if (res.failed == 0) {
          std::fprintf(stderr, "track_bench: %s: code %d %s\n", resp.request_id().c_str(),
                       resp.status().code(), resp.status().message().c_str());
        }
        ++res.failed;
      }
    }
    absl::MutexLock lock(&mu);
    reader_done = true;
  });
  const auto t0 = Clock::now();
  size_t sent = 0;
  bool broken = false;
  while (sent < all.size() && !broken) {
    for (size_t leaves = 0; sent < all.size() && leaves < window; ++sent) {
      leaves += LeavesOf(all[sent]);
      if (!stream->Write(all[sent])) {
        broken = true;
        break;
      }
    }
    absl::MutexLock lock(&mu);
    const size_t target = sent;
    auto settled = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return res.acked >= target || reader_done;
    };
    mu.Await(absl::Condition(&settled));
    if (reader_done && res.acked < target) broken = true;
  }
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  stream->WritesDone();
  reader.join();
  grpc::Status st = stream->Finish();
  res.ok = st.ok() && !broken && res.failed == 0 && res.acked == all.size();
  return res;
}

// Reads a Watch until `want` events of kind TRACKED arrived or the stream ends.
class Watcher {
 public:
  Watcher(const std::string& addr, size_t want) : want_(want) {
    stub_ =
        v1::PollerService::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(20));
    v1::WatchRequest req;
    req.set_job("bench");
    req.set_batch(true);
    req.set_brief(true);
    const char* grouped = std::getenv("WATCH_GROUPED");
    req.set_grouped(grouped == nullptr || std::string(grouped) != "0");
    req.set_include_current(true);  // its SNAPSHOT_DONE says the stream is following
    reader_ = stub_->Watch(&ctx_, req);
    thread_ = std::thread([this] { Loop(); });
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return following_ || ended_; };
    mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(10));
  }
  ~Watcher() {
    ctx_.TryCancel();
    thread_.join();
  }
  // Waits until every wanted event arrived, at most `limit`; returns when (or -1).
  double WaitAll(Clock::time_point start, std::chrono::seconds limit) {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return seen_ >= want_ || ended_; };
    mu_.AwaitWithTimeout(absl::Condition(&done), absl::FromChrono(limit));
    if (seen_ < want_) return -1;
    return std::chrono::duration<double>(last_ - start).count();
  }
  size_t seen() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }

 private:
  void Loop() {
    v1::WatchResponse resp;
    while (reader_->Read(&resp)) {
      size_t n = 0;
      bool done = false;
      auto count = [&n, &done](const v1::WatchResponse& e) {
        // A grouped event is one event of each of its digests.
        if (e.type() == v1::PROOF_EVENT_TYPE_TRACKED)
          n += e.digests().empty() ? 1 : e.digests().size() / 32;
        if (e.type() == v1::PROOF_EVENT_TYPE_SNAPSHOT_DONE) done = true;
      };
      if (resp.events_size() == 0) count(resp);
      for (const v1::WatchResponse& e : resp.events()) count(e);
      absl::MutexLock lock(&mu_);
      following_ = following_ || done;
      seen_ += n;
      last_ = Clock::now();
    }
    absl::MutexLock lock(&mu_);
    ended_ = true;
  }

  const size_t want_;
  std::unique_ptr<v1::PollerService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::WatchResponse>> reader_;
  std::thread thread_;
  absl::Mutex mu_;
  size_t seen_ ABSL_GUARDED_BY(mu_) = 0;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool following_ ABSL_GUARDED_BY(mu_) = false;
  Clock::time_point last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: track_bench ADDR N [WINDOW] [LEAVES_PER_ROOT] [SEED] [leaf|batch] "
                 "[LEAVES_PER_REQUEST] [WATCH_ADDR]\n");
    return 2;
  }
  const std::string addr = argv[1];
  const size_t n = std::strtoull(argv[2], nullptr, 10);
  const size_t window = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 4096;
  const size_t per_root = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 10000;
  std::mt19937_64 rng(argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 7);
  const std::string form = argc > 6 ? argv[6] : "leaf";
  const size_t per_request = argc > 7 ? std::strtoull(argv[7], nullptr, 10) : 4096;
  const std::string watch_addr = argc > 8 ? argv[8] : "";
  if (n == 0 || window == 0 || per_root == 0 || per_request == 0 ||
      (form != "leaf" && form != "batch")) {
    std::fprintf(stderr,
                 "track_bench: N, WINDOW, LEAVES_PER_ROOT and LEAVES_PER_REQUEST must be "
                 "positive, the form leaf or batch\n");
    return 2;
  }
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  std::vector<v1::TrackRequest> per_leaf;
  std::vector<v1::TrackBatchRequest> batched;
  for (size_t first = 0; first < n; first += per_root) {
    const Sealed b = Seal(rng, std::min(per_root, n - first));
    if (form == "leaf") {
      for (auto& r : PerLeafRequests(b, first, now_s)) per_leaf.push_back(std::move(r));
    } else {
      for (auto& r : BatchRequests(b, first, now_s, per_request)) batched.push_back(std::move(r));
    }
  }

  auto stub =
      v1::PollerService::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(20));
  // Every leaf is new, so each gives one TRACKED event (its root gives one more, not counted).
  std::unique_ptr<Watcher> watcher;
  if (!watch_addr.empty()) watcher = std::make_unique<Watcher>(watch_addr, n);
  const Clock::time_point start = Clock::now();
  Result res;
  size_t requests;
  if (form == "leaf") {
    auto stream = stub->Track(&ctx);
    res = Send(stream.get(), per_leaf, window);
    requests = per_leaf.size();
  } else {
    auto stream = stub->TrackBatch(&ctx);
    res = Send(stream.get(), batched, window);
    requests = batched.size();
  }
  double events_seconds = 0;
  size_t events = 0;
  if (watcher) {
    events_seconds = watcher->WaitAll(start, std::chrono::seconds(120));
    events = watcher->seen();
    if (events_seconds < 0) res.ok = false;
  }
  std::printf(
      "{\"form\":\"%s\",\"requests\":%zu,\"leaves\":%zu,\"acked\":%zu,\"failed\":%zu,"
      "\"seconds\":%.3f,\"per_second\":%.0f,\"events\":%zu,\"events_seconds\":%.3f,"
      "\"stream_ok\":%s}\n",
      form.c_str(), requests, n, res.acked, res.failed, res.seconds,
      static_cast<double>(n) / res.seconds, events, events_seconds, res.ok ? "true" : "false");
  return res.ok ? 0 : 1;
}
