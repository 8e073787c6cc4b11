// PollerService.TrackBatch: a Merkle batch's root and leaves handed off in one request (the tree
// once, each leaf as its index and files), against a real poller service on loopback over a real
// SQLite file. What it stores is compared with what Track stores for the same leaves one by one.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "libs/merkle/merkle.h"
#include "libs/merkle/sealed_batch.h"
#include "libs/rpc/internal.h"
#include "libs/rpc/messages.h"
#include "services/poller/convert.h"
#include "services/poller/event_bus.h"
#include "services/poller/leaf_proof.h"
#include "services/poller/poller_service.h"
#include "tests/poller/test_util.h"

namespace anchord::poller {
namespace {

using testing::TempDir;
namespace v1 = anchord::v1;

constexpr char kToken[] = "internal-token-for-tests";
constexpr int kLeaves = 10;

// A batch of `n` leaves (digests DigestBytes(first + i), fixed nonces so two builds agree).
struct Batch {
  std::vector<std::string> digests;
  std::vector<std::string> paths;
  std::string encoded;  // merkle_tree
  std::string root;
};

Batch MakeBatch(int first, int n) {
  Batch b;
  std::vector<std::string> nonces;
  std::vector<anchord::Digest> leaves;
  for (int i = 0; i < n; ++i) {
    b.digests.push_back(testing::DigestBytes(first + i));
    leaves.push_back(testing::Digest(first + i));
    nonces.push_back(std::string(merkle::kNonceSize, static_cast<char>('a' + i % 26)));
  }
  auto tree = merkle::Tree::Build(leaves, nonces);
  EXPECT_TRUE(tree.ok()) << tree.status();
  if (!tree.ok()) return b;
  b.root = tree->root().raw();
  for (int i = 0; i < n; ++i) b.paths.push_back(tree->PathBytes(i));
  auto encoded = merkle::EncodeBatchLeaves(b.digests, nonces);
  EXPECT_TRUE(encoded.ok()) << encoded.status();
  if (encoded.ok()) b.encoded = *encoded;
  return b;
}

v1::FileMetadata LeafFile(int i) {
  v1::FileMetadata f;
  f.set_filename(absl::StrCat("leaf-", i, ".pdf"));
  f.set_size_bytes(100 + i);
  f.set_mime_type("application/pdf");
  f.set_job("jobL");
  f.set_source_path(absl::StrCat("docs/leaf-", i, ".pdf"));
  return f;
}

// The root's hand-off as the submitter makes it (a provider record with every field set).
v1::TrackRequest RootTrack(const Batch& b, const std::string& rid, int leaf_count) {
  v1::TrackRequest r;
  r.set_request_id(rid);
  auto* p = r.mutable_proof();
  p->set_digest(b.root);
  p->set_provider("fake");
  p->set_proof_id("root-id");
  p->set_state(v1::DIGEST_STATE_SUBMITTED);
  p->set_certificate_url("https://fake.example/cert/root-id");
  p->set_verify_url("https://fake.example/verify/root-id");
  p->set_provider_request_id("req-root");
  rpc::SetTimestamp(absl::FromUnixSeconds(1700000000), p->mutable_submitted_at());
  p->set_merkle_leaf_count(leaf_count);
  r.set_fallback_provider("other");
  return r;
}

v1::TrackBatchRequest BatchReq(const Batch& b, const std::string& rid,
                               const std::vector<int>& indexes) {
  v1::TrackBatchRequest r;
  *r.mutable_track() = RootTrack(b, rid, static_cast<int>(b.digests.size()));
  r.set_merkle_tree(b.encoded);
  for (int i : indexes) {
    auto* leaf = r.add_leaves();
    leaf->set_index(i);
    *leaf->add_files() = LeafFile(i);
  }
  return r;
}

// The same leaf handed off alone over Track, with its own path.
v1::TrackRequest LeafTrack(const Batch& b, int i) {
  v1::TrackRequest r = RootTrack(b, absl::StrCat("leaf-", i), 0);
  r.mutable_proof()->set_digest(b.digests[i]);
  r.mutable_proof()->set_merkle_root(b.root);
  r.set_merkle_path(b.paths[i]);
  *r.mutable_proof()->add_files() = LeafFile(i);
  return r;
}

// One poller: its store file, a public and an internal instance of the service, each on its own
// loopback port, as main() sets them up.
class Poller {
 public:
  explicit Poller(const std::string& db, PollerServiceOptions opts = {}) {
    auto s = OpenSqlitePollerStore(db);
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return;
    store_ = std::move(*s);
    pool_ = std::make_unique<WorkerPool>(2, 10000);
    public_ = std::make_unique<PollerServiceImpl>(store_.get(), &bus_, &metrics_, &clock_,
                                                  pool_.get(), opts);
    PollerServiceOptions internal_opts = opts;
    internal_opts.gate = rpc::RpcGate::Internal(kToken);
    internal_ = std::make_unique<PollerServiceImpl>(store_.get(), &bus_, &metrics_, &clock_,
                                                    pool_.get(), internal_opts);
    public_server_ = Serve(public_.get(), &public_port_);
    internal_server_ = Serve(internal_.get(), &internal_port_);
    public_stub_ = v1::PollerService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", public_port_), grpc::InsecureChannelCredentials()));
    internal_stub_ = v1::PollerService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", internal_port_), grpc::InsecureChannelCredentials()));
  }
  ~Poller() {
    for (auto* s : {public_server_.get(), internal_server_.get()}) {
      if (s == nullptr) continue;
      s->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
      s->Wait();
    }
    if (pool_) pool_->Stop();
  }

  static void SetDeadline(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  }

  // Sends `reqs` on one stream of `rpc` (Track or TrackBatch, internal port, with the token) and
  // returns the responses by request id, and the stream's status.
  template <typename Req, typename Open>
  std::map<std::string, v1::TrackResponse> Send(const std::vector<Req>& reqs, Open open,
                                                grpc::Status* status = nullptr) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ctx.AddMetadata(rpc::kInternalTokenHeader, kToken);
    auto stream = open(internal_stub_.get(), &ctx);
    for (const auto& r : reqs) EXPECT_TRUE(stream->Write(r));
    stream->WritesDone();
    std::map<std::string, v1::TrackResponse> out;
    v1::TrackResponse resp;
    for (size_t i = 0; i < reqs.size() + 1 && stream->Read(&resp); ++i) {
      out[resp.request_id()] = resp;
    }
    grpc::Status st = stream->Finish();
    if (status != nullptr) {
      *status = st;
    } else {
      EXPECT_TRUE(st.ok()) << st.error_message();
    }
    return out;
  }
  std::map<std::string, v1::TrackResponse> TrackBatch(
      const std::vector<v1::TrackBatchRequest>& reqs) {
    return Send(
        reqs, [](v1::PollerService::Stub* s, grpc::ClientContext* c) { return s->TrackBatch(c); });
  }
  std::map<std::string, v1::TrackResponse> Track(const std::vector<v1::TrackRequest>& reqs) {
    return Send(reqs,
                [](v1::PollerService::Stub* s, grpc::ClientContext* c) { return s->Track(c); });
  }

  // GetProof on the public port.
  absl::StatusOr<v1::Proof> GetProof(const std::string& digest) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::GetProofRequest req;
    req.set_digest(digest);
    req.set_provider("fake");
    v1::GetProofResponse resp;
    grpc::Status st = public_stub_->GetProof(&ctx, req, &resp);
    if (!st.ok())
      return absl::Status(static_cast<absl::StatusCode>(st.error_code()), st.error_message());
    return resp.proof();
  }
  // DownloadProof on the public port: the reassembled bytes.
  absl::StatusOr<std::string> Download(const std::string& digest) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::DownloadProofRequest req;
    req.set_digest(digest);
    req.set_provider("fake");
    auto reader = public_stub_->DownloadProof(&ctx, req);
    std::string out;
    v1::DownloadProofResponse chunk;
    for (int i = 0; i < 1000 && reader->Read(&chunk); ++i) out += chunk.data();
    grpc::Status st = reader->Finish();
    if (!st.ok())
      return absl::Status(static_cast<absl::StatusCode>(st.error_code()), st.error_message());
    return out;
  }

  // The root confirmed with an .ots, and that carried to its leaves (as the poll engine does).
  void ConfirmRoot(const Batch& b) {
    ConfirmInput c;
    c.block_height = 812345;
    c.bitcoin_tx = std::string(64, 'b');
    c.confirmed_at = absl::FromUnixSeconds(1700003600);
    c.ots = testing::MakeOts(b.root);
    auto root = *anchord::Digest::FromBytes(b.root);
    auto confirmed = store_->MarkConfirmed(root, "fake", c, clock_.Now());
    ASSERT_TRUE(confirmed.ok() && confirmed->has_value()) << confirmed.status();
    auto leaves = store_->PropagateToLeaves(root, "fake", clock_.Now());
    ASSERT_TRUE(leaves.ok()) << leaves.status();
  }

  PollerStore* store() { return store_.get(); }
  EventBus* bus() { return &bus_; }
  PollerServiceImpl* internal() { return internal_.get(); }
  v1::PollerService::Stub* public_stub() { return public_stub_.get(); }
  v1::PollerService::Stub* internal_stub() { return internal_stub_.get(); }

 private:
  static std::unique_ptr<grpc::Server> Serve(grpc::Service* service, int* port) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), port);
    b.RegisterService(service);
    auto server = b.BuildAndStart();
    EXPECT_NE(server, nullptr);
    EXPECT_NE(*port, 0);
    return server;
  }

  FakeClock clock_;
  EventBus bus_;
  prometheus::Registry registry_;
  PollerMetrics metrics_{registry_};
  std::unique_ptr<PollerStore> store_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<PollerServiceImpl> public_;
  std::unique_ptr<PollerServiceImpl> internal_;
  std::unique_ptr<grpc::Server> public_server_;
  std::unique_ptr<grpc::Server> internal_server_;
  int public_port_ = 0;
  int internal_port_ = 0;
  std::unique_ptr<v1::PollerService::Stub> public_stub_;
  std::unique_ptr<v1::PollerService::Stub> internal_stub_;
};

// What two pollers may differ in for the same proof: when it was stored.
v1::Proof Comparable(v1::Proof p) {
  p.clear_updated_at();
  return p;
}

std::vector<int> Range(int from, int to) {
  std::vector<int> out;
  for (int i = from; i < to; ++i) out.push_back(i);
  return out;
}

size_t CountProofs(PollerStore* store) {
  auto all = store->List({}, 0, 100000);
  EXPECT_TRUE(all.ok()) << all.status();
  return all.ok() ? all->size() : 0;
}

class TrackBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    batch_ = MakeBatch(1000, kLeaves);
    ASSERT_EQ(batch_.root.size(), 32u);
  }
  TempDir dir_;
  Batch batch_;
};

// One request stores the root and every leaf, each leaf exactly as Track stores it when handed
// off alone with its path: same Proof through GetProof, before and after the root's confirmation,
// and the same downloadable .ots. A resend changes nothing and is acknowledged again.
TEST_F(TrackBatchTest, StoresRootAndLeavesAsTrackPerLeafDoes) {
  Poller batched(dir_.File("batched.db"));
  Poller per_leaf(dir_.File("per-leaf.db"));
  v1::TrackBatchRequest req = BatchReq(batch_, "b1", Range(0, kLeaves));
  auto out = batched.TrackBatch({req});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out["b1"].status().code(), 0) << out["b1"].status().message();
  EXPECT_EQ(out["b1"].digest(), batch_.root);

  std::vector<v1::TrackRequest> singles = {RootTrack(batch_, "root", kLeaves)};
  for (int i = 0; i < kLeaves; ++i) singles.push_back(LeafTrack(batch_, i));
  auto single_out = per_leaf.Track(singles);
  ASSERT_EQ(single_out.size(), singles.size());
  for (const auto& [id, r] : single_out) EXPECT_EQ(r.status().code(), 0) << id;

  auto compare_all = [&](v1::DigestState want) {
    for (int i = 0; i < kLeaves; ++i) {
      auto got = batched.GetProof(batch_.digests[i]);
      auto want_proof = per_leaf.GetProof(batch_.digests[i]);
      ASSERT_TRUE(got.ok()) << i << ": " << got.status();
      ASSERT_TRUE(want_proof.ok()) << i << ": " << want_proof.status();
      EXPECT_EQ(got->state(), want) << i;
      EXPECT_EQ(got->merkle_root(), batch_.root) << i;
      EXPECT_EQ(got->proof_id(), "root-id") << i;
      EXPECT_EQ(got->certificate_url(), "https://fake.example/cert/root-id") << i;
      ASSERT_EQ(got->files_size(), 1) << i;
      EXPECT_EQ(got->files(0).filename(), absl::StrCat("leaf-", i, ".pdf")) << i;
      EXPECT_EQ(got->files(0).job(), "jobL") << i;
      EXPECT_EQ(Comparable(*got).SerializeAsString(), Comparable(*want_proof).SerializeAsString())
          << i << ":\n"
          << got->DebugString() << "\nvs Track:\n"
          << want_proof->DebugString();
      auto row = batched.store()->Get(testing::Digest(1000 + i), "fake");
      ASSERT_TRUE(row.ok() && row->has_value()) << i;
      EXPECT_EQ((*row)->fallback_provider, "other") << i;
    }
    auto root = batched.GetProof(batch_.root);
    auto want_root = per_leaf.GetProof(batch_.root);
    ASSERT_TRUE(root.ok() && want_root.ok());
    EXPECT_EQ(root->merkle_leaf_count(), kLeaves);
    EXPECT_EQ(Comparable(*root).SerializeAsString(), Comparable(*want_root).SerializeAsString());
  };
  compare_all(v1::DIGEST_STATE_PENDING);
  EXPECT_EQ(CountProofs(batched.store()), static_cast<size_t>(kLeaves + 1));

  // No evidence yet: nothing to download.
  auto early = batched.Download(batch_.digests[0]);
  EXPECT_EQ(early.status().code(), absl::StatusCode::kFailedPrecondition) << early.status();

  batched.ConfirmRoot(batch_);
  per_leaf.ConfirmRoot(batch_);
  compare_all(v1::DIGEST_STATE_CONFIRMED);
  for (int i = 0; i < kLeaves; ++i) {
    auto got = batched.Download(batch_.digests[i]);
    auto want = per_leaf.Download(batch_.digests[i]);
    ASSERT_TRUE(got.ok()) << i << ": " << got.status();
    ASSERT_TRUE(want.ok()) << i << ": " << want.status();
    EXPECT_FALSE(got->empty());
    EXPECT_EQ(*got, *want) << i;
  }

  // Idempotent: the same request again is acknowledged and changes nothing.
  auto again = batched.TrackBatch({req});
  EXPECT_EQ(again["b1"].status().code(), 0) << again["b1"].status().message();
  EXPECT_EQ(CountProofs(batched.store()), static_cast<size_t>(kLeaves + 1));
  compare_all(v1::DIGEST_STATE_CONFIRMED);
}

// A sender splits a batch's leaves over several requests, each with the whole tree: together they
// store what one request stores, and the leaves left out of every request are not stored.
// A grouped watcher (what `anchorctl archive --wait` opens) gets a batch's leaves as one event
// with their digests; a brief one gets an event per leaf.
TEST_F(TrackBatchTest, GroupedWatchGetsABatchsLeavesAsOneEvent) {
  Poller poller(dir_.File("grouped.db"));
  auto open = [&](grpc::ClientContext* ctx, bool grouped) {
    Poller::SetDeadline(ctx);
    v1::WatchRequest req;
    req.set_job("jobL");
    req.set_batch(true);
    req.set_brief(true);
    req.set_grouped(grouped);
    auto reader = poller.public_stub()->Watch(ctx, req);
    reader->WaitForInitialMetadata();  // subscribed: nothing published from here is missed
    return reader;
  };
  grpc::ClientContext grouped_ctx, brief_ctx;
  auto grouped = open(&grouped_ctx, true);
  auto brief = open(&brief_ctx, false);
  auto out = poller.TrackBatch({BatchReq(batch_, "b1", Range(0, kLeaves))});
  ASSERT_EQ(out["b1"].status().code(), 0) << out["b1"].status().message();

  // Reads events (unpacking batches) until `n` digests came, bounded.
  auto read = [](auto& reader, size_t n) {
    std::vector<v1::WatchResponse> events;
    size_t digests = 0;
    v1::WatchResponse resp;
    for (int i = 0; i < 100 && digests < n && reader->Read(&resp); ++i) {
      std::vector<v1::WatchResponse> got(resp.events().begin(), resp.events().end());
      if (got.empty()) got.push_back(resp);
      for (const auto& e : got) {
        digests += e.digests().empty() ? 1 : e.digests().size() / 32;
        events.push_back(e);
      }
    }
    return events;
  };
  std::string all;
  for (const std::string& d : batch_.digests) all += d;
  auto g = read(grouped, kLeaves);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].type(), v1::PROOF_EVENT_TYPE_TRACKED);
  EXPECT_EQ(g[0].digests(), all);
  EXPECT_TRUE(g[0].proof().digest().empty());
  EXPECT_EQ(g[0].proof().provider(), "fake");
  EXPECT_EQ(g[0].proof().state(), v1::DIGEST_STATE_PENDING);

  auto b = read(brief, kLeaves);
  ASSERT_EQ(b.size(), static_cast<size_t>(kLeaves));
  std::string one_by_one;
  for (const auto& e : b) {
    EXPECT_TRUE(e.digests().empty());
    one_by_one += e.proof().digest();
  }
  EXPECT_EQ(one_by_one, all);
  grouped_ctx.TryCancel();
  brief_ctx.TryCancel();
}

TEST_F(TrackBatchTest, BatchSplitOverThreeRequests) {
  Poller poller(dir_.File("poller.db"));
  auto out = poller.TrackBatch({BatchReq(batch_, "p1", {0, 1, 2}),
                                BatchReq(batch_, "p2", {5, 3, 4}), BatchReq(batch_, "p3", {6, 7})});
  ASSERT_EQ(out.size(), 3u);
  for (const auto& [id, r] : out) {
    EXPECT_EQ(r.status().code(), 0) << id << ": " << r.status().message();
    EXPECT_EQ(r.digest(), batch_.root) << id;
  }
  for (int i = 0; i < kLeaves; ++i) {
    auto row = poller.store()->Get(testing::Digest(1000 + i), "fake");
    ASSERT_TRUE(row.ok());
    if (i >= 8) {
      EXPECT_FALSE(row->has_value()) << i << " was in no request";
      continue;
    }
    ASSERT_TRUE(row->has_value()) << i;
    EXPECT_EQ((*row)->merkle_root, batch_.root) << i;
    // Stored by its place in the root's tree, its path derived from the tree stored once.
    EXPECT_TRUE((*row)->merkle_path.empty()) << i;
    EXPECT_EQ((*row)->leaf_index, i) << i;
    auto path = LeafPath(poller.store(), **row);
    ASSERT_TRUE(path.ok()) << path.status();
    EXPECT_EQ(*path, batch_.paths[i]) << i;
    ASSERT_EQ((*row)->files.size(), 1u) << i;
    EXPECT_EQ((*row)->files[0].filename, absl::StrCat("leaf-", i, ".pdf")) << i;
  }
  EXPECT_EQ(CountProofs(poller.store()), 9u);  // the root and 8 leaves
}

// Each malformed request is refused naming its field, stores nothing of itself (neither root nor
// leaves), and leaves the other requests of its group unaffected.
TEST_F(TrackBatchTest, InvalidRequestsNameTheirFieldAndStoreNothing) {
  Poller poller(dir_.File("poller.db"));
  const Batch other = MakeBatch(2000, 4);
  std::vector<v1::TrackBatchRequest> reqs;
  std::map<std::string, std::string> want_field;
  auto add = [&](const std::string& rid, const std::string& field, v1::TrackBatchRequest r) {
    r.mutable_track()->set_request_id(rid);
    reqs.push_back(std::move(r));
    want_field[rid] = field;
  };
  v1::TrackBatchRequest r = BatchReq(batch_, "", {0, 1});
  r.mutable_merkle_tree()->pop_back();
  add("short-tree", "merkle_tree", r);
  r = BatchReq(batch_, "", {0, 1});
  (*r.mutable_merkle_tree())[5] ^= 1;  // a leaf digest changed: another root
  add("wrong-tree", "merkle_tree", r);
  r = BatchReq(batch_, "", {0, 1});
  r.set_merkle_tree(other.encoded + std::string(48 * (kLeaves - 4), '\0'));
  add("zero-tree", "merkle_tree", r);
  r = BatchReq(batch_, "", {0, kLeaves, 1});
  add("index-range", "leaves[1].index", r);
  r = BatchReq(batch_, "", {0, 1, 2, 3, 1});
  add("index-twice", "leaves[4].index", r);
  r = BatchReq(batch_, "", {0, 1, 2, 3});
  r.mutable_leaves(3)->mutable_files(0)->set_filename("a/b");
  add("bad-file", "leaves[3].files[0].filename", r);
  r = BatchReq(batch_, "", {0, 1, 2});
  *r.mutable_leaves(2)->add_files() = LeafFile(7);
  r.mutable_leaves(2)->mutable_files(1)->set_size_bytes(-1);
  add("bad-size", "leaves[2].files[1].size_bytes", r);
  r = BatchReq(batch_, "", {0, 1});
  r.mutable_leaves(1)->mutable_files(0)->set_job("no spaces");
  add("bad-job", "leaves[1].files[0].job", r);
  r = BatchReq(batch_, "", {0});
  r.mutable_track()->mutable_proof()->add_files()->set_filename("a/b");
  add("bad-root-file", "track.proof.files[0].filename", r);
  r = BatchReq(batch_, "", {0});
  for (int i = 0; i < 1001; ++i) *r.mutable_leaves(0)->add_files() = LeafFile(i);
  add("many-files", "leaves[0].files", r);
  r = BatchReq(batch_, "", {0});
  r.mutable_track()->mutable_proof()->set_digest("short");
  add("bad-root-digest", "track.proof.digest", r);
  r = BatchReq(batch_, "", {0});
  r.mutable_track()->mutable_proof()->set_merkle_leaf_count(0);
  add("no-leaf-count", "track.proof.merkle_leaf_count", r);
  r = BatchReq(batch_, "", {0});
  r.mutable_track()->mutable_proof()->set_merkle_leaf_count(70000);
  add("huge-leaf-count", "track.proof.merkle_leaf_count", r);
  // The root as a leaf of another batch (a valid path to that batch's root).
  auto upper = merkle::Tree::Build({*anchord::Digest::FromBytes(batch_.root), testing::Digest(1)},
                                   {std::string(16, 'x'), std::string(16, 'y')});
  ASSERT_TRUE(upper.ok()) << upper.status();
  r = BatchReq(batch_, "", {0});
  r.mutable_track()->mutable_proof()->set_merkle_root(upper->root().raw());
  r.mutable_track()->set_merkle_path(upper->PathBytes(0));
  add("root-is-leaf", "track.proof.merkle_root", r);
  r = BatchReq(batch_, "", {0});
  r.clear_merkle_tree();
  add("no-tree", "merkle_tree", r);
  r = BatchReq(batch_, "", {0});
  r.mutable_track()->clear_request_id();
  reqs.push_back(r);  // answered with an empty id; checked below
  reqs.push_back(BatchReq(other, "good", {0, 1, 2, 3}));

  auto out = poller.TrackBatch(reqs);
  for (const auto& [rid, field] : want_field) {
    ASSERT_TRUE(out.count(rid)) << rid;
    const v1::ItemStatus& st = out[rid].status();
    EXPECT_EQ(st.code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT)) << rid;
    EXPECT_TRUE(absl::StartsWith(st.message(), field + ":")) << rid << ": " << st.message();
    EXPECT_FALSE(st.reason().empty()) << rid;
  }
  ASSERT_TRUE(out.count(""));
  EXPECT_TRUE(absl::StartsWith(out[""].status().message(), "track.request_id:"))
      << out[""].status().message();
  EXPECT_EQ(out["good"].status().code(), 0) << out["good"].status().message();
  // Only the good request's root and leaves are stored.
  EXPECT_EQ(CountProofs(poller.store()), 5u);
  auto root = poller.store()->Get(*anchord::Digest::FromBytes(batch_.root), "");
  ASSERT_TRUE(root.ok());
  EXPECT_FALSE(root->has_value());
}

// The expansion itself: the root's input carries the decoded tree, each leaf its index (the
// stores keep the tree once per root and a leaf's index instead of its path), and a tree split
// over requests is decoded once.
// The inputs of one request alone.
absl::StatusOr<std::vector<TrackInput>> Expand(const v1::TrackBatchRequest& req,
                                               BatchTreeCache* trees) {
  std::vector<TrackInput> out;
  if (absl::Status st = AppendTrackBatchInputs(req, trees, &out); !st.ok()) return st;
  return out;
}

TEST_F(TrackBatchTest, ExpansionSetsLeafIndexAndSharesOneDecodedTree) {
  BatchTreeCache trees;
  auto first = Expand(BatchReq(batch_, "x", {4, 2}), &trees);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 3u);
  const TrackInput& root = (*first)[0];
  EXPECT_EQ(root.proof.digest.raw(), batch_.root);
  EXPECT_EQ(root.proof.leaf_count, kLeaves);
  EXPECT_EQ(root.proof.leaf_index, -1);
  ASSERT_NE(root.batch, nullptr);
  EXPECT_EQ(root.batch->encoded(), batch_.encoded);
  const int want[] = {4, 2};
  for (int k = 0; k < 2; ++k) {
    const TrackInput& leaf = (*first)[k + 1];
    const int i = want[k];
    EXPECT_EQ(leaf.proof.digest.raw(), batch_.digests[i]);
    EXPECT_EQ(leaf.proof.leaf_index, i);
    EXPECT_EQ(leaf.proof.leaf_count, 0);
    EXPECT_EQ(leaf.proof.merkle_root, batch_.root);
    EXPECT_TRUE(leaf.proof.merkle_path.empty());  // the store derives it from the tree
    EXPECT_EQ(leaf.batch->tree().PathBytes(i), batch_.paths[i]);
    EXPECT_EQ(leaf.proof.proof_id, "root-id");
    EXPECT_EQ(leaf.proof.fallback_provider, "other");
    EXPECT_TRUE(leaf.evidence.empty());
    EXPECT_EQ(leaf.batch, root.batch);
    ASSERT_EQ(leaf.files.size(), 1u);
    EXPECT_EQ(leaf.files[0].filename, absl::StrCat("leaf-", i, ".pdf"));
  }
  auto second = Expand(BatchReq(batch_, "y", {7}), &trees);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*second)[0].batch, root.batch) << "the second request decoded the tree again";

  // A tree without leaves: the root alone, with its tree (for the root's own hand-off).
  v1::TrackBatchRequest tree_only = BatchReq(batch_, "z", {});
  auto alone = Expand(tree_only, &trees);
  ASSERT_TRUE(alone.ok()) << alone.status();
  ASSERT_EQ(alone->size(), 1u);
  EXPECT_NE((*alone)[0].batch, nullptr);
  tree_only.mutable_merkle_tree()->back() ^= 1;
  auto bad = Expand(tree_only, &trees);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(bad.status().message(), "merkle_tree:")) << bad.status();
  // No tree and no leaves: exactly Track's input.
  v1::TrackBatchRequest plain;
  *plain.mutable_track() = RootTrack(batch_, "p", kLeaves);
  auto as_track = Expand(plain, &trees);
  ASSERT_TRUE(as_track.ok()) << as_track.status();
  ASSERT_EQ(as_track->size(), 1u);
  EXPECT_EQ((*as_track)[0].batch, nullptr);
}

// TrackBatch carries state between services, as Track does: refused on the public port (with or
// without the token), and on the internal port without the token.
TEST_F(TrackBatchTest, ServedOnlyOnTheInternalPortWithTheToken) {
  Poller poller(dir_.File("poller.db"));
  auto try_batch = [&](v1::PollerService::Stub* stub, const char* token) {
    grpc::ClientContext ctx;
    Poller::SetDeadline(&ctx);
    if (token != nullptr) ctx.AddMetadata(rpc::kInternalTokenHeader, token);
    auto stream = stub->TrackBatch(&ctx);
    stream->Write(BatchReq(batch_, "outside", {0}));
    stream->WritesDone();
    v1::TrackResponse resp;
    for (int i = 0; i < 10 && stream->Read(&resp); ++i) {
    }
    return stream->Finish();
  };
  grpc::Status st = try_batch(poller.public_stub(), nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_TRUE(absl::StrContains(st.error_message(), "internal")) << st.error_message();
  st = try_batch(poller.public_stub(), kToken);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  st = try_batch(poller.internal_stub(), nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
  st = try_batch(poller.internal_stub(), "not-the-token");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
  EXPECT_EQ(CountProofs(poller.store()), 0u) << "a refused hand-off stored nothing";
}

// A request weighs its root and leaves against track_max_in_flight: one larger than the limit is
// still read (alone) and answered, and every stored proof is announced to watchers.
TEST_F(TrackBatchTest, RequestsHeavierThanTheInFlightLimitAreServedAndAnnounced) {
  PollerServiceOptions opts;
  opts.track_max_in_flight = 2;
  Poller poller(dir_.File("poller.db"), opts);
  auto sub = poller.bus()->Subscribe({}, 1000, nullptr);
  auto out = poller.TrackBatch({BatchReq(batch_, "a", Range(0, 5)),
                                BatchReq(batch_, "b", Range(5, kLeaves)),
                                BatchReq(batch_, "c", Range(0, kLeaves))});
  ASSERT_EQ(out.size(), 3u);
  for (const auto& [id, r] : out) EXPECT_EQ(r.status().code(), 0) << id;
  EXPECT_EQ(CountProofs(poller.store()), static_cast<size_t>(kLeaves + 1));
  std::map<std::string, int> tracked;
  for (int i = 0; i < 1000; ++i) {
    EventPtr ev = sub->Pop();
    if (!ev) break;
    EXPECT_EQ(ev->type(), v1::PROOF_EVENT_TYPE_TRACKED);
    ++tracked[ev->proof().digest()];
  }
  EXPECT_EQ(tracked.size(), static_cast<size_t>(kLeaves + 1));
  for (const auto& [digest, n] : tracked) EXPECT_EQ(n, 1) << "one event per new proof";
}

// A stream's next batch is validated and expanded while the batch before it is stored (the store's
// writer does not wait for that work) and then waits for its turn without holding a worker (the
// pool's other worker still serves a public read), each commit holds at most track_max_per_commit
// proofs, and the batches are still stored, announced and answered in the order they were read.
TEST_F(TrackBatchTest, NextBatchIsPreparedWhileOneIsStoredAndOrderIsKept) {
  absl::Mutex mu;
  int prepared = 0;
  std::vector<size_t> stores;
  bool overlapped = false;
  grpc::StatusCode read_meanwhile = grpc::StatusCode::UNKNOWN;
  v1::PollerService::Stub* public_stub = nullptr;
  PollerServiceOptions opts;
  opts.track_max_per_commit = 3;  // one request of a root and 2 leaves per commit
  opts.on_prepared = [&] {
    absl::MutexLock lock(&mu);
    ++prepared;
  };
  opts.before_store = [&](size_t inputs) {
    {
      absl::MutexLock lock(&mu);
      stores.push_back(inputs);
      if (stores.size() != 1) return;
      // The first store waits (10 s at most) for the second batch to be prepared beside it.
      auto second = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return prepared >= 2; };
      overlapped = mu.AwaitWithTimeout(absl::Condition(&second), absl::Seconds(10));
    }
    // With this worker held here and the second batch waiting for its turn, the pool's other
    // worker must still be free for a public read (the test poller has two).
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetProofRequest req;
    req.set_digest(testing::DigestBytes(9999));
    req.set_provider("fake");
    v1::GetProofResponse resp;
    const grpc::StatusCode code = public_stub->GetProof(&ctx, req, &resp).error_code();
    absl::MutexLock lock(&mu);
    read_meanwhile = code;
  };
  Poller poller(dir_.File("poller.db"), opts);
  public_stub = poller.public_stub();
  auto sub = poller.bus()->Subscribe({}, 1000, nullptr);
  auto out = poller.TrackBatch({BatchReq(batch_, "a", {0, 1}), BatchReq(batch_, "b", {2, 3}),
                                BatchReq(batch_, "c", {4, 5})});
  ASSERT_EQ(out.size(), 3u);
  for (const auto& [id, r] : out) EXPECT_EQ(r.status().code(), 0) << id;
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(overlapped) << "the second batch was not prepared while the first was stored";
    EXPECT_EQ(read_meanwhile, grpc::StatusCode::NOT_FOUND)
        << "a public read was not served while a batch waited for its store turn";
    EXPECT_EQ(stores, (std::vector<size_t>{3, 3, 3}));
  }
  // Events in the order the batches were read: the root and leaves 0-1, then 2-3, then 4-5.
  std::vector<int> order;
  for (int i = 0; i < 100; ++i) {
    EventPtr ev = sub->Pop();
    if (!ev) break;
    for (int leaf = 0; leaf < kLeaves; ++leaf) {
      if (ev->proof().digest() == batch_.digests[leaf]) order.push_back(leaf);
    }
  }
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  for (int leaf = 0; leaf < 6; ++leaf) {
    auto row = poller.store()->Get(testing::Digest(1000 + leaf), "fake");
    ASSERT_TRUE(row.ok());
    EXPECT_TRUE(row->has_value()) << "leaf " << leaf << " was answered but is not stored";
  }
}

// Track's trust rules apply to every proof of the request: CONFIRMED is stored as PENDING, and
// FAILED is taken only for the root or leaves the poller holds no proof of.
TEST_F(TrackBatchTest, HandOffPolicyAppliesToEveryLeaf) {
  Poller poller(dir_.File("poller.db"));
  v1::TrackBatchRequest confirmed = BatchReq(batch_, "confirmed", {0, 1});
  confirmed.mutable_track()->mutable_proof()->set_state(v1::DIGEST_STATE_CONFIRMED);
  confirmed.mutable_track()->mutable_proof()->set_bitcoin_block_height(5);
  auto out = poller.TrackBatch({confirmed});
  EXPECT_EQ(out["confirmed"].status().code(), 0) << out["confirmed"].status().message();
  for (int i : {0, 1}) {
    auto row = poller.store()->Get(testing::Digest(1000 + i), "fake");
    ASSERT_TRUE(row.ok() && row->has_value()) << i;
    EXPECT_EQ((*row)->state, v1::DIGEST_STATE_PENDING) << i;
    EXPECT_EQ((*row)->block_height, 0) << i;
  }

  v1::TrackBatchRequest failed = BatchReq(batch_, "failed", {1, 2});
  failed.mutable_track()->mutable_proof()->set_state(v1::DIGEST_STATE_FAILED);
  failed.mutable_track()->mutable_proof()->mutable_failure()->set_reason("PLAN_LIMIT");
  out = poller.TrackBatch({failed});
  EXPECT_EQ(out["failed"].status().code(), 0) << out["failed"].status().message();
  auto state_of = [&](const std::string& digest) {
    auto row = poller.store()->Get(*anchord::Digest::FromBytes(digest), "fake");
    EXPECT_TRUE(row.ok() && row->has_value());
    return row.ok() && row->has_value() ? (*row)->state : v1::DIGEST_STATE_UNSPECIFIED;
  };
  EXPECT_EQ(state_of(batch_.root), v1::DIGEST_STATE_PENDING) << "FAILED downgraded the root";
  EXPECT_EQ(state_of(batch_.digests[1]), v1::DIGEST_STATE_PENDING) << "FAILED downgraded a leaf";
  EXPECT_EQ(state_of(batch_.digests[2]), v1::DIGEST_STATE_FAILED);
}

// Shutdown drains a TrackBatch stream as it drains Track: what was read is stored and answered,
// then UNAVAILABLE; every request answered OK is stored with all its leaves. A small in-flight
// limit keeps requests unread when the drain comes.
TEST_F(TrackBatchTest, StreamDrainsOnShutdownAfterItsAcks) {
  PollerServiceOptions opts;
  opts.track_max_in_flight = 3;  // one request of 2 leaves (3 proofs) at a time
  Poller poller(dir_.File("poller.db"), opts);
  const Batch big = MakeBatch(3000, 400);
  grpc::ClientContext ctx;
  Poller::SetDeadline(&ctx);
  ctx.AddMetadata(rpc::kInternalTokenHeader, kToken);
  auto stream = poller.internal_stub()->TrackBatch(&ctx);
  constexpr int kSent = 6;
  for (int i = 0; i < kSent; ++i) {
    ASSERT_TRUE(stream->Write(BatchReq(big, absl::StrCat("r", i), {2 * i, 2 * i + 1})));
  }
  v1::TrackResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_EQ(resp.status().code(), 0) << resp.status().message();
  std::vector<std::string> acked = {resp.request_id()};
  poller.internal()->EndWatches();
  for (int i = 0; i < kSent && stream->Read(&resp); ++i) {
    ASSERT_EQ(resp.status().code(), 0) << resp.request_id();
    acked.push_back(resp.request_id());
  }
  grpc::Status st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_LE(acked.size(), static_cast<size_t>(kSent));
  for (const std::string& id : acked) {
    const int i = std::stoi(id.substr(1));
    for (int leaf : {2 * i, 2 * i + 1}) {
      auto row = poller.store()->Get(testing::Digest(3000 + leaf), "fake");
      ASSERT_TRUE(row.ok());
      EXPECT_TRUE(row->has_value()) << id << " was answered but leaf " << leaf << " is not stored";
    }
  }
}

}  // namespace
}  // namespace anchord::poller
