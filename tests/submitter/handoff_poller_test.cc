// The hand-off of a sealed Merkle batch to the REAL poller (its service and SQLite store
// in-process on a loopback port): every leaf is stored once, with its files and root, handed off
// in the batch form (PollerService.TrackBatch), and a resend of everything stores nothing twice.
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>
#include <gtest/gtest.h>

#include <map>

#include "libs/common/clock.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/worker_pool.h"
#include "libs/merkle/merkle.h"
#include "libs/rpc/internal.h"
#include "services/poller/event_bus.h"
#include "services/poller/poller_service.h"
#include "services/poller/poller_store.h"
#include "tests/submitter/handoff_fixture.h"

namespace anchord::submitter {
namespace {

// Counts the calls of each method the poller receives (which form the hand-off used).
class MethodCounts final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    absl::MutexLock lock(&mu_);
    ++(*counts_)[info->method()];
    return nullptr;  // counting is all
  }
  explicit MethodCounts(std::shared_ptr<std::map<std::string, int>> counts, absl::Mutex& mu)
      : counts_(std::move(counts)), mu_(mu) {}

 private:
  std::shared_ptr<std::map<std::string, int>> counts_;
  absl::Mutex& mu_;
};

class HandoffPollerTest : public HandoffFixture {
 protected:
  void SetUp() override {
    HandoffFixture::SetUp();
    auto s = poller::OpenSqlitePollerStore(dir_ + "/poller.db");
    ASSERT_TRUE(s.ok()) << s.status();
    poller_store_ = std::move(*s);
    pool_ = std::make_unique<WorkerPool>(2, 10000);
    poller::PollerServiceOptions opts;
    opts.gate = rpc::RpcGate::Internal("");  // the internal port (Track, TrackBatch), no token
    service_ = std::make_unique<poller::PollerServiceImpl>(poller_store_.get(), &bus_, nullptr,
                                                           &clock_, pool_.get(), opts);
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(service_.get());
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> counting;
    counting.push_back(std::make_unique<MethodCounts>(calls_, calls_mu_));
    b.experimental().SetInterceptorCreators(std::move(counting));
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (handoff_) handoff_->Stop();
    if (server_) {
      service_->EndWatches();
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
      server_->Wait();
    }
    pool_->Stop();
    HandoffFixture::TearDown();
  }

  // Every proof the poller holds, leaves included.
  std::vector<poller::ProofRow> PollerProofs() {
    poller::ListFilter all;
    auto rows = poller_store_->List(all, 0, 100000);
    EXPECT_TRUE(rows.ok()) << rows.status();
    return rows.ok() ? *rows : std::vector<poller::ProofRow>{};
  }

  // Checks what the poller stored for the batch's leaves, root and the per-file rows.
  void ExpectStored(const AcceptedBatch& batch, int per_file_first, int per_file_count) {
    std::vector<poller::ProofRow> all = PollerProofs();
    ASSERT_EQ(all.size(), batch.leaf_numbers.size() + 1 + per_file_count);
    std::map<std::string, const poller::ProofRow*> by_digest;
    for (const poller::ProofRow& p : all) by_digest[p.digest.raw()] = &p;
    ASSERT_EQ(by_digest.size(), all.size());  // one proof per digest: nothing stored twice
    const poller::ProofRow* root = by_digest[batch.batch.root];
    ASSERT_NE(root, nullptr);
    EXPECT_EQ(root->leaf_count, static_cast<int64_t>(batch.leaf_numbers.size()));
    EXPECT_EQ(root->proof_id, absl::StrCat("root-proof-", batch.id));
    int wrong = 0;
    for (size_t i = 0; i < batch.leaf_numbers.size() && wrong < 5; ++i) {
      const int n = batch.leaf_numbers[i];
      const poller::ProofRow* p = by_digest[D(n)];
      // The poller keeps the leaf's index, no path: the path is derived from the root's tree.
      bool placed =
          p != nullptr && p->leaf_index == static_cast<int64_t>(i) && p->merkle_path.empty();
      bool ok = placed && p->merkle_root == batch.batch.root && p->provider == "fake" &&
                p->proof_id == root->proof_id && p->files.size() == 1 &&
                p->files[0].source_path == absl::StrCat("leaves/", n, ".bin");
      if (!ok) {
        ++wrong;
        ADD_FAILURE() << "leaf " << i << " (D(" << n << ")) stored as: "
                      << (p == nullptr
                              ? std::string("nothing")
                              : absl::StrCat("root match ", p->merkle_root == batch.batch.root,
                                             ", leaf_index ", p->leaf_index, ", path ",
                                             p->merkle_path.size(), " B, files ", p->files.size()));
      }
    }
    for (int n = per_file_first; n < per_file_first + per_file_count; ++n) {
      const poller::ProofRow* p = by_digest[D(n)];
      ASSERT_NE(p, nullptr) << n;
      EXPECT_TRUE(p->merkle_root.empty());
      ASSERT_EQ(p->files.size(), 1u);
      EXPECT_EQ(p->files[0].source_path, absl::StrCat("files/", n, ".bin"));
    }
  }

  int Calls(const std::string& method) {
    absl::MutexLock lock(&calls_mu_);
    return (*calls_)["/anchord.v1.PollerService/" + method];
  }

  absl::Mutex calls_mu_;
  std::shared_ptr<std::map<std::string, int>> calls_ =
      std::make_shared<std::map<std::string, int>>();
  FakeClock clock_;
  poller::EventBus bus_;
  std::unique_ptr<poller::PollerStore> poller_store_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<poller::PollerServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(HandoffPollerTest, SealedBatchOfTenThousandLeavesIsStoredOnceAndResendsChangeNothing) {
  SubmittedPerFile(60001, 5);
  AcceptedBatch batch = SealAndAccept(1, 10000, "");
  StartHandoff(port_, FastOptions());
  ASSERT_TRUE(WaitHandedOff());
  EXPECT_EQ(Pending(), 0);
  ExpectStored(batch, 60001, 5);
  EXPECT_GE(Calls("TrackBatch"), 1);
  EXPECT_EQ(Calls("Track"), 0);  // nothing went the per-row way

  // Every acknowledgement lost (what a stream broken after the poller's commit leaves): the
  // whole window goes again, and the poller stores nothing twice.
  handoff_->Stop();
  handoff_.reset();
  // (A SUBMITTED batch's leaves are owed from its handoff_next on: submitter_store_schema.h.)
  ExecSql("UPDATE submissions SET handed_off_seq = 0; UPDATE batches SET handoff_next = 0");
  ASSERT_EQ(Pending(), 10000 + 1 + 5);
  StartHandoff(port_, FastOptions());
  ASSERT_TRUE(WaitHandedOff());
  ExpectStored(batch, 60001, 5);
}

}  // namespace
}  // namespace anchord::submitter
