// The hand-off's batch form (PollerService.TrackBatch) as a poller receives it, and its fallback
// to Track for a poller of an older release, against recording pollers on a loopback port (the
// real poller: handoff_poller_test.cc).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "absl/synchronization/mutex.h"
#include "anchord/v1/poller.grpc.pb.h"
#include "libs/common/hex.h"
#include "libs/merkle/merkle.h"
#include "tests/submitter/handoff_fixture.h"

namespace anchord::submitter {
namespace {

namespace v1 = anchord::v1;

// A poller of an older release: it serves Track only (TrackBatch answers UNIMPLEMENTED), records
// every request and acknowledges it.
class TrackOnlyPoller : public v1::PollerService::Service {
 public:
  grpc::Status Track(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::TrackResponse, v1::TrackRequest>* stream) override {
    v1::TrackRequest req;
    while (stream->Read(&req)) {
      {
        absl::MutexLock lock(&mu_);
        tracked_.push_back(req);
      }
      v1::TrackResponse resp;
      resp.set_request_id(req.request_id());
      resp.set_digest(req.proof().digest());
      if (!stream->Write(resp)) break;
    }
    return grpc::Status::OK;
  }
  std::vector<v1::TrackRequest> tracked() {
    absl::MutexLock lock(&mu_);
    return tracked_;
  }

 protected:
  absl::Mutex mu_;
  std::vector<v1::TrackRequest> tracked_ ABSL_GUARDED_BY(mu_);
};

// A poller that serves TrackBatch too; it can break its first TrackBatch stream on the n-th
// request, without acknowledging it.
class BatchPoller final : public TrackOnlyPoller {
 public:
  grpc::Status TrackBatch(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::TrackResponse, v1::TrackBatchRequest>* stream) override {
    v1::TrackBatchRequest req;
    while (stream->Read(&req)) {
      bool drop;
      {
        absl::MutexLock lock(&mu_);
        batches_.push_back(req);
        drop = drop_at_ > 0 && static_cast<int>(batches_.size()) == drop_at_;
        if (drop) drop_at_ = 0;
      }
      if (drop) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "dropped by the test");
      v1::TrackResponse resp;
      resp.set_request_id(req.track().request_id());
      resp.set_digest(req.track().proof().digest());
      if (req.leaves_size() > 0 && reject_groups()) {
        resp.mutable_status()->set_code(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
        resp.mutable_status()->set_message("track.evidence: refused by the test");
      }
      if (!stream->Write(resp)) break;
    }
    return grpc::Status::OK;
  }
  void DropAt(int n) {
    absl::MutexLock lock(&mu_);
    drop_at_ = n;
  }
  // Every request with leaves is refused with INVALID_ARGUMENT.
  void RejectGroups() {
    absl::MutexLock lock(&mu_);
    reject_groups_ = true;
  }
  bool reject_groups() {
    absl::MutexLock lock(&mu_);
    return reject_groups_;
  }
  std::vector<v1::TrackBatchRequest> batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }

 private:
  int drop_at_ ABSL_GUARDED_BY(mu_) = 0;
  bool reject_groups_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<v1::TrackBatchRequest> batches_ ABSL_GUARDED_BY(mu_);
};

// A poller that answers nothing until it has read more than `hold` requests of a stream, then
// everything: a sender that waited for each window's answers before sending the next one would
// never get an answer from it.
class LateAckPoller final : public v1::PollerService::Service {
 public:
  static constexpr int kHold = 50;
  grpc::Status TrackBatch(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::TrackResponse, v1::TrackBatchRequest>* stream) override {
    v1::TrackBatchRequest req;
    std::vector<v1::TrackResponse> held;
    int read = 0;
    while (stream->Read(&req)) {
      {
        absl::MutexLock lock(&mu_);
        ++sent_[req.track().proof().digest()];
      }
      v1::TrackResponse resp;
      resp.set_request_id(req.track().request_id());
      resp.set_digest(req.track().proof().digest());
      held.push_back(std::move(resp));
      if (++read <= kHold) continue;
      for (const v1::TrackResponse& r : held) {
        if (!stream->Write(r)) return grpc::Status::OK;
      }
      held.clear();
    }
    return grpc::Status::OK;
  }
  std::map<std::string, int> sent() {
    absl::MutexLock lock(&mu_);
    return sent_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, int> sent_ ABSL_GUARDED_BY(mu_);
};

template <class Poller>
class HandoffBatchTest : public HandoffFixture {
 protected:
  void SetUp() override {
    HandoffFixture::SetUp();
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&poller_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (handoff_) handoff_->Stop();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    HandoffFixture::TearDown();
  }

  int port_ = 0;
  Poller poller_;
  std::unique_ptr<grpc::Server> server_;
};

using BatchFormTest = HandoffBatchTest<BatchPoller>;
using WindowOverlapTest = HandoffBatchTest<LateAckPoller>;
using TrackFallbackTest = HandoffBatchTest<TrackOnlyPoller>;

// The leaves' (index -> times sent) over every TrackBatch request of `batch`, checking what each
// request carries for the batch: the root's Track request and the stored leaves verbatim.
std::map<uint32_t, int> LeavesSent(const std::vector<v1::TrackBatchRequest>& reqs,
                                   const AcceptedBatch& batch) {
  std::map<uint32_t, int> sent;
  for (const v1::TrackBatchRequest& r : reqs) {
    if (r.leaves_size() == 0 || r.track().proof().digest() != batch.batch.root) continue;
    EXPECT_EQ(r.merkle_tree(), batch.encoded);
    const v1::Proof& root = r.track().proof();
    EXPECT_EQ(root.merkle_leaf_count(), static_cast<int64_t>(batch.leaf_numbers.size()));
    EXPECT_EQ(root.proof_id(), absl::StrCat("root-proof-", batch.id));
    EXPECT_EQ(root.state(), v1::DIGEST_STATE_PENDING);
    EXPECT_TRUE(root.merkle_root().empty());
    EXPECT_EQ(r.track().evidence(), "root-evidence");
    EXPECT_TRUE(r.track().merkle_path().empty());
    for (const v1::MerkleLeaf& leaf : r.leaves()) {
      ++sent[leaf.index()];
      EXPECT_LT(leaf.index(), batch.leaf_numbers.size());
      if (leaf.index() >= batch.leaf_numbers.size()) continue;
      const int n = batch.leaf_numbers[leaf.index()];
      EXPECT_EQ(r.merkle_tree().substr(leaf.index() * 32, 32), D(n));
      EXPECT_EQ(leaf.files_size(), 1);
      if (leaf.files_size() == 1) {
        EXPECT_EQ(leaf.files(0).source_path(), absl::StrCat("leaves/", n, ".bin"));
      }
    }
  }
  return sent;
}

// Ordinary rows go one per request (just `track`); a batch's leaves go in requests of at most
// max_leaves_per_request, each carrying the root's request and the stored leaves; the root row,
// in the same window, rides with the first of them instead of going alone. Track is never used.
TEST_F(BatchFormTest, LeavesGoAsIndexAndFilesWithTheRootAndTheTree) {
  SubmittedPerFile(60001, 3);
  AcceptedBatch batch = SealAndAccept(1, 5000);
  HandoffOptions o = FastOptions();
  o.max_leaves_per_request = 2048;
  StartHandoff(port_, o);
  ASSERT_TRUE(WaitHandedOff());

  std::vector<v1::TrackBatchRequest> reqs = poller_.batches();
  EXPECT_TRUE(poller_.tracked().empty());
  ASSERT_EQ(reqs.size(), 3u + 3u);  // 3 ordinary rows, 2048 + 2048 + 904 leaves
  std::set<std::string> ordinary;
  for (const v1::TrackBatchRequest& r : reqs) {
    EXPECT_LE(r.leaves_size(), 2048);
    if (r.leaves_size() > 0) continue;
    EXPECT_TRUE(r.merkle_tree().empty());
    EXPECT_NE(r.track().proof().digest(), batch.batch.root) << "the root went alone";
    ordinary.insert(r.track().proof().digest());
  }
  EXPECT_EQ(ordinary, (std::set<std::string>{D(60001), D(60002), D(60003)}));
  std::map<uint32_t, int> sent = LeavesSent(reqs, batch);
  ASSERT_EQ(sent.size(), 5000u);
  for (const auto& [index, times] : sent) EXPECT_EQ(times, 1) << index;
  EXPECT_EQ(Pending(), 0);
}

// A request stays under max_request_bytes however many leaves the count limit allows.
TEST_F(BatchFormTest, RequestsStayUnderTheByteLimit) {
  AcceptedBatch batch = SealAndAccept(1, 600);
  HandoffOptions o = FastOptions();
  o.max_request_bytes = 40 * 1024;  // the tree is 28,800 bytes: ~200 leaves per request
  StartHandoff(port_, o);
  ASSERT_TRUE(WaitHandedOff());
  std::vector<v1::TrackBatchRequest> reqs = poller_.batches();
  EXPECT_GT(reqs.size(), 2u);
  for (const v1::TrackBatchRequest& r : reqs) EXPECT_LE(r.ByteSizeLong(), 40u * 1024);
  std::map<uint32_t, int> sent = LeavesSent(reqs, batch);
  ASSERT_EQ(sent.size(), 600u);
  for (const auto& [index, times] : sent) EXPECT_EQ(times, 1) << index;
}

// A stream broken before a request's acknowledgement: the rows of acknowledged requests stay
// handed off and are not sent again; the unacknowledged ones (with the root) go on the next one.
TEST_F(BatchFormTest, BrokenStreamResendsOnlyUnacknowledgedLeaves) {
  AcceptedBatch batch = SealAndAccept(1, 3000);
  HandoffOptions o = FastOptions();
  o.max_leaves_per_request = 1000;
  poller_.DropAt(2);
  StartHandoff(port_, o);
  ASSERT_TRUE(WaitHandedOff());
  std::vector<v1::TrackBatchRequest> reqs = poller_.batches();
  std::map<uint32_t, int> sent = LeavesSent(reqs, batch);
  ASSERT_EQ(sent.size(), 3000u);
  int twice = 0;
  for (const auto& [index, times] : sent) {
    EXPECT_LE(times, 2) << index;
    twice += times == 2;
  }
  EXPECT_EQ(twice, 1000);  // exactly the dropped request's leaves
  // The root row went with the first (acknowledged) request only.
  for (const v1::TrackBatchRequest& r : reqs) EXPECT_GT(r.leaves_size(), 0);
  EXPECT_EQ(Pending(), 0);
}

// A batch-form request refused (INVALID_ARGUMENT, e.g. the root's evidence): its rows are not
// given up but sent one by one, each judged on its own as before the batch form.
TEST_F(BatchFormTest, RefusedBatchRequestIsRetriedRowByRow) {
  AcceptedBatch batch = SealAndAccept(1, 50);
  poller_.RejectGroups();
  StartHandoff(port_, FastOptions());
  ASSERT_TRUE(WaitHandedOff());
  std::vector<v1::TrackBatchRequest> reqs = poller_.batches();
  std::map<std::string, int> alone;
  int groups = 0;
  for (const v1::TrackBatchRequest& r : reqs) {
    if (r.leaves_size() > 0) {
      ++groups;
      continue;
    }
    ++alone[r.track().proof().digest()];
    if (r.track().proof().digest() != batch.batch.root) {
      // Each leaf read whole again (the window read it thin): its path and the root's record.
      const std::string& digest = r.track().proof().digest();
      const int n =
          static_cast<unsigned char>(digest[0]) | (static_cast<unsigned char>(digest[1]) << 8);
      ASSERT_GE(n, 1);
      ASSERT_LE(n, 50);
      EXPECT_EQ(r.track().merkle_path(), batch.batch.paths[n - 1]) << n;
      EXPECT_EQ(r.track().proof().merkle_root(), batch.batch.root) << n;
      EXPECT_EQ(r.track().proof().proof_id(), absl::StrCat("root-proof-", batch.id)) << n;
      EXPECT_EQ(r.track().proof().provider_request_id(), "req-root") << n;
      EXPECT_EQ(r.track().proof().files_size(), 1) << n;
    }
  }
  EXPECT_EQ(groups, 1);
  EXPECT_EQ(alone.size(), 51u);  // every leaf and the root, once each
  for (const auto& [digest, times] : alone) EXPECT_EQ(times, 1);
}

// A batch sealed by an older release (no stored leaves, a path per leaf row): its leaves go one
// per request with their paths, inside TrackBatch.
TEST_F(BatchFormTest, LeavesOfAnOlderBatchGoWithTheirPaths) {
  std::vector<NewItem> items = {Leaf(1), Leaf(2), Leaf(3)};
  ASSERT_TRUE(store_->InsertBatch(items, kNow).ok());
  TestBatch b = MakeBatch(Unbatched());
  ASSERT_TRUE(store_->CreateMerkleBatch(b, kNow).ok());
  ExecSql("UPDATE batches SET leaves = x''");
  for (int i = 0; i < 3; ++i) {
    ExecSql(absl::StrCat("UPDATE submissions SET nonce = x'", HexEncode(b.nonces[i]),
                         "', merkle_path = x'", HexEncode(b.paths[i]), "', merkle_root = x'",
                         HexEncode(b.root), "' WHERE digest = x'", HexEncode(D(i + 1)), "'"));
  }
  store_.reset();  // no tree cached from before
  auto reopened = OpenStore();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  StoredRecord rec;
  rec.proof_id = "root-proof";
  ASSERT_TRUE(store_->MarkSubmitted(RowOf(b.root).id, rec, "req-root", kNow).ok());
  StartHandoff(port_, FastOptions());
  ASSERT_TRUE(WaitHandedOff());
  std::map<std::string, std::string> paths;
  for (const v1::TrackBatchRequest& r : poller_.batches()) {
    EXPECT_EQ(r.leaves_size(), 0);
    EXPECT_TRUE(r.merkle_tree().empty());
    paths[r.track().proof().digest()] = r.track().merkle_path();
  }
  ASSERT_EQ(paths.size(), 4u);  // 3 leaves and the root
  for (int i = 0; i < 3; ++i) EXPECT_EQ(paths[D(i + 1)], b.paths[i]) << i;
  EXPECT_TRUE(paths[b.root].empty());
}

// A poller without TrackBatch (UNIMPLEMENTED): every row goes over Track, one per request, a
// leaf with its own path leading to the root; later rows too.
TEST_F(TrackFallbackTest, OlderPollerGetsEveryRowOverTrack) {
  SubmittedPerFile(60001, 2);
  AcceptedBatch batch = SealAndAccept(1, 300);
  StartHandoff(port_, FastOptions());
  ASSERT_TRUE(WaitHandedOff());

  std::vector<v1::TrackRequest> reqs = poller_.tracked();
  ASSERT_EQ(reqs.size(), 2u + 300u + 1u);  // nothing sent twice, nothing left out
  std::set<std::string> digests;
  for (const v1::TrackRequest& r : reqs) {
    digests.insert(r.proof().digest());
    if (r.proof().merkle_root().empty()) continue;
    EXPECT_EQ(r.proof().merkle_root(), batch.batch.root);
    absl::StatusOr<Digest> d = Digest::FromBytes(r.proof().digest());
    ASSERT_TRUE(d.ok());
    auto to_root = merkle::PathRoot(*d, r.merkle_path());
    ASSERT_TRUE(to_root.ok()) << to_root.status();
    EXPECT_EQ(to_root->raw(), batch.batch.root);
    ASSERT_EQ(r.proof().files_size(), 1);
  }
  EXPECT_EQ(digests.size(), 303u);
  EXPECT_EQ(digests.count(batch.batch.root), 1u);

  // Rows that become ready later go the same way.
  SubmittedPerFile(60010, 1);
  handoff_->Wake();
  ASSERT_TRUE(WaitHandedOff());
  reqs = poller_.tracked();
  ASSERT_EQ(reqs.size(), 304u);
  EXPECT_EQ(reqs.back().proof().digest(), D(60010));
}

// The next window is read and sent while the previous one waits for its answers (two windows in
// flight), and no row in flight is sent again meanwhile: 120 rows in windows of 50 reach a poller
// that answers only once it has read more than 50, each row exactly once.
TEST_F(WindowOverlapTest, NextWindowGoesWhileThePreviousAwaitsItsAnswers) {
  SubmittedPerFile(70001, 120);
  HandoffOptions o = FastOptions();
  o.batch = LateAckPoller::kHold;
  StartHandoff(port_, o);
  ASSERT_TRUE(::anchord::testing::WaitUntil(
      [&] {
        auto p = store_->PendingHandoff(1);
        return p.ok() && p->empty();
      },
      absl::Seconds(30)))
      << "rows still pending: " << Pending();
  std::map<std::string, int> sent = poller_.sent();
  EXPECT_EQ(sent.size(), 120u);
  for (const auto& [digest, times] : sent) EXPECT_EQ(times, 1);
}

}  // namespace
}  // namespace anchord::submitter
