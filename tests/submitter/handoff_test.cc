#include <atomic>
#include <functional>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <map>

#include "absl/cleanup/cleanup.h"
#include "absl/synchronization/mutex.h"
#include "anchord/v1/poller.grpc.pb.h"
#include "services/submitter/handoff.h"
#include "tests/submitter/test_util.h"
#include "tests/testing/wait.h"

namespace anchord::submitter {
namespace {

// A fake poller: acks every proof, except that it breaks the first stream after `drop_at` requests
// without acknowledging the last one.
class FakePoller final : public anchord::v1::PollerService::Service {
 public:
  grpc::Status Track(grpc::ServerContext* ctx,
                     grpc::ServerReaderWriter<anchord::v1::TrackResponse,
                                              anchord::v1::TrackRequest>* stream) override {
    anchord::v1::TrackRequest req;
    while (stream->Read(&req)) {
      bool drop;
      {
        absl::MutexLock lock(&mu_);
        received_.push_back(req);
        drop = drop_at_ > 0 && static_cast<int>(received_.size()) == drop_at_;
        if (drop) drop_at_ = 0;
      }
      if (drop) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "dropped by the test");
      if (!MayAnswer(ctx)) return grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled");
      anchord::v1::TrackResponse resp;
      resp.set_request_id(req.request_id());
      resp.set_digest(req.proof().digest());
      {
        absl::MutexLock lock(&mu_);
        acked_[req.proof().digest()] = req.proof();
      }
      if (!stream->Write(resp)) break;
    }
    return grpc::Status::OK;
  }
  // Answers `n` requests in all, then holds every later one unanswered until Release().
  void HoldAfter(int n) {
    absl::MutexLock lock(&mu_);
    hold_after_ = n;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    hold_after_ = -1;
  }
  void DropAt(int n) {
    absl::MutexLock lock(&mu_);
    drop_at_ = n;
  }
  std::vector<anchord::v1::TrackRequest> received() {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  std::map<std::string, anchord::v1::Proof> acked() {
    absl::MutexLock lock(&mu_);
    return acked_;
  }

 private:
  // Waits while held (bounded: the test's hand-off is stopped within seconds); false when the
  // stream was cancelled meanwhile.
  bool MayAnswer(grpc::ServerContext* ctx) {
    absl::MutexLock lock(&mu_);
    auto may = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return hold_after_ < 0 || answered_ < hold_after_;
    };
    for (int i = 0; i < 6000 && !may(); ++i) {
      if (ctx->IsCancelled()) return false;
      mu_.AwaitWithTimeout(absl::Condition(&may), absl::Milliseconds(10));
    }
    ++answered_;
    return true;
  }

  absl::Mutex mu_;
  int hold_after_ ABSL_GUARDED_BY(mu_) = -1;
  int answered_ ABSL_GUARDED_BY(mu_) = 0;
  int drop_at_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<anchord::v1::TrackRequest> received_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, anchord::v1::Proof> acked_ ABSL_GUARDED_BY(mu_);
};

class HandoffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    auto s = OpenSqliteSubmitterStore(dir_ + "/submitter.db");
    ASSERT_TRUE(s.ok());
    store_ = std::move(*s);
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&poller_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (handoff_) handoff_->Stop();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Submitted(char c, const std::string& path) {
    ASSERT_TRUE(store_->InsertBatch({testing::Item(c, path)}, absl::Now()).ok());
    auto row = store_->Claim("fake", "t", absl::Now(), absl::Now() + absl::Minutes(1));
    ASSERT_TRUE(row.ok() && row->has_value());
    StoredRecord rec;
    rec.proof_id = std::string("proof-") + c;
    rec.provider_created_at = absl::FromUnixSeconds(1'700'000'000);
    ASSERT_TRUE(store_->MarkSubmitted((*row)->id, rec, "req-ok", absl::Now()).ok());
  }
  // Waits (bounded) until nothing is left to hand off.
  bool WaitHandedOff() {
    return anchord::testing::WaitUntil(
        [&] {
          auto p = store_->PendingHandoff(10);
          return p.ok() && p->empty();
        },
        absl::Seconds(10));
  }
  void StartHandoff(std::function<void(HandoffOptions&)> edit = nullptr) {
    HandoffOptions o;
    o.idle_poll = absl::Milliseconds(20);
    o.reconnect = BackoffPolicy{absl::Milliseconds(10), absl::Milliseconds(100), 2.0};
    o.track_deadline = absl::Seconds(60);
    if (edit) edit(o);
    handoff_ = std::make_unique<Handoff>(store_.get(),
                                         grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                                             grpc::InsecureChannelCredentials()),
                                         nullptr, o);
    handoff_->Start();
  }

  std::string dir_;
  int port_ = 0;
  FakePoller poller_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<SubmitterStore> store_;
  std::unique_ptr<Handoff> handoff_;
};

// A row recorded (and the hand-off woken) just after a read found nothing is sent at once: the
// Wake is not lost in the gap before the wait, which lasts an hour here.
TEST_F(HandoffTest, AWakeBetweenAnEmptyReadAndTheWaitIsNotLost) {
  std::atomic<int> empty_reads{0};
  std::atomic<bool> woken{false};  // set once the row is stored and the Wake sent
  StartHandoff([&](HandoffOptions& o) {
    o.idle_poll = absl::Hours(1);
    o.on_nothing_to_send = [&] {
      if (empty_reads++ == 0) {
        Submitted('a', "a.txt");
        handoff_->Wake();
        woken = true;
      }
    };
  });
  // Stopped before this test's locals go, not in TearDown: the hand-off calls on_nothing_to_send
  // again once the row is acknowledged, and that callback uses them (a crash seen once in CI).
  absl::Cleanup stop = [this] { handoff_->Stop(); };
  ASSERT_TRUE(anchord::testing::WaitUntil([&] { return woken.load(); }, absl::Seconds(10)));
  EXPECT_TRUE(WaitHandedOff());
  EXPECT_EQ(poller_.acked().size(), 1u);
}

// Acknowledged rows are marked on their own thread: with the first mark held (a commit that waits
// its turn behind the intake's, say), the hand-off still reads and sends every window, and no row
// goes twice; once the mark goes through, everything is marked.
TEST_F(HandoffTest, AHeldMarkDoesNotHoldTheNextWindowsBack) {
  for (char c : std::string("abcdef")) Submitted(c, std::string(1, c) + ".txt");
  absl::Mutex mu;
  bool release = false;
  std::atomic<int> marks{0};
  StartHandoff([&](HandoffOptions& o) {
    o.batch = 2;
    o.track_batch = false;  // the fake serves Track only
    o.before_mark = [&] {
      if (marks++ > 0) return;
      absl::MutexLock lock(&mu);
      auto released = [&] { return release; };
      // Bounded: the test releases it within seconds.
      mu.AwaitWithTimeout(absl::Condition(&released), absl::Seconds(20));
    };
  });
  absl::Cleanup stop = [&] {
    {
      absl::MutexLock lock(&mu);
      release = true;
    }
    handoff_->Stop();
  };
  EXPECT_TRUE(
      anchord::testing::WaitUntil([&] { return poller_.acked().size() == 6; }, absl::Seconds(10)));
  EXPECT_EQ(marks.load(), 1) << "the first mark is still held";
  EXPECT_EQ(poller_.received().size(), 6u) << "no row was sent twice";
  {
    absl::MutexLock lock(&mu);
    release = true;
  }
  EXPECT_TRUE(WaitHandedOff());
  EXPECT_EQ(poller_.received().size(), 6u);
}

// Backpressure: six rows, windows of two, two windows in flight, and a poller that answers the
// first two requests only. The hand-off's third read (rows e and f) comes while the second window
// is unanswered: it is behind (two rows waiting beyond those in flight, with the poller
// answering), the intake's wait ends at its bound, and once the poller answers everything it is
// not behind any more.
class HandoffBehindTest : public HandoffTest {
 protected:
  // Starts the hand-off with `edit` on top of the setup above, and waits (bounded) for its third
  // read of two rows.
  bool StartAndWaitForTheThirdRead(std::function<void(HandoffOptions&)> edit) {
    for (char c : std::string("abcdef")) Submitted(c, std::string(1, c) + ".txt");
    poller_.HoldAfter(2);
    StartHandoff([&](HandoffOptions& o) {
      o.batch = 2;
      o.track_batch = false;  // the fake serves Track only: no first stream answered UNIMPLEMENTED
      o.on_read = [this](size_t waiting) {
        if (waiting == 2) ++reads_of_two_;
      };
      edit(o);
    });
    return anchord::testing::WaitUntil([&] { return reads_of_two_.load() >= 3; },
                                       absl::Seconds(10));
  }
  std::atomic<int> reads_of_two_{0};
};

TEST_F(HandoffBehindTest, BehindWhileRowsWaitBeyondTheWindowsInFlight) {
  ASSERT_TRUE(StartAndWaitForTheThirdRead([](HandoffOptions& o) {
    o.behind_rows = 2;
    o.behind_yield = absl::Milliseconds(20);
    o.behind_for = absl::Minutes(10);
  }));
  EXPECT_TRUE(handoff_->Behind());
  handoff_->WaitWhileBehind();  // returns at behind_yield: the poller still holds
  EXPECT_TRUE(handoff_->Behind());
  EXPECT_EQ(poller_.acked().size(), 2u);
  poller_.Release();
  ASSERT_TRUE(WaitHandedOff());
  EXPECT_TRUE(anchord::testing::WaitUntil([&] { return !handoff_->Behind(); }, absl::Seconds(10)));
  EXPECT_EQ(poller_.acked().size(), 6u);
}

// behind_rows 0: the same hand-off is never behind.
TEST_F(HandoffBehindTest, NeverBehindWithoutAThreshold) {
  ASSERT_TRUE(StartAndWaitForTheThirdRead([](HandoffOptions& o) {
    o.behind_rows = 0;
    o.behind_for = absl::Minutes(10);
  }));
  EXPECT_FALSE(handoff_->Behind());
  poller_.Release();
  EXPECT_TRUE(WaitHandedOff());
}

// A hand-off stuck waiting for a poller that stopped answering stops holding the intake back once
// behind_for has passed since the read that found it behind.
TEST_F(HandoffBehindTest, AHandoffStuckOnThePollerStopsHoldingTheIntake) {
  ASSERT_TRUE(StartAndWaitForTheThirdRead([](HandoffOptions& o) {
    o.behind_rows = 2;
    o.behind_for = absl::Seconds(3);
  }));
  EXPECT_TRUE(handoff_->Behind());
  EXPECT_TRUE(anchord::testing::WaitUntil([&] { return !handoff_->Behind(); }, absl::Seconds(10)));
  EXPECT_EQ(poller_.acked().size(), 2u);  // still held: the poller answered nothing more
  poller_.Release();
  EXPECT_TRUE(WaitHandedOff());
}

TEST_F(HandoffTest, HandsOffResendsAfterDropAndResendsNewRefs) {
  Submitted('a', "a.txt");
  Submitted('b', "b.txt");
  Submitted('c', "c.txt");
  // A failed one too.
  ASSERT_TRUE(store_->InsertBatch({testing::Item('f', "f.txt")}, absl::Now()).ok());
  auto row = store_->Claim("fake", "t", absl::Now(), absl::Now() + absl::Minutes(1));
  ASSERT_TRUE(row.ok() && row->has_value());
  ASSERT_TRUE(
      store_->MarkFailed((*row)->id, 16, "INVALID_API_KEY", "bad key", "req-401", absl::Now())
          .ok());
  // Not yet submitted: never handed off.
  ASSERT_TRUE(store_->InsertBatch({testing::Item('q', "q.txt")}, absl::Now()).ok());

  poller_.DropAt(2);  // the first stream breaks on its second proof
  StartHandoff();
  ASSERT_TRUE(WaitHandedOff());

  auto acked = poller_.acked();
  ASSERT_EQ(acked.size(), 4u);
  EXPECT_EQ(acked.count(testing::Digest('q')), 0u);
  const auto& a = acked[testing::Digest('a')];
  EXPECT_EQ(a.state(), anchord::v1::DIGEST_STATE_PENDING);
  EXPECT_EQ(a.proof_id(), "proof-a");
  EXPECT_EQ(a.provider(), "fake");
  EXPECT_EQ(a.submitted_at().seconds(), 1'700'000'000);
  ASSERT_EQ(a.files_size(), 1);
  EXPECT_EQ(a.files(0).source_path(), "a.txt");
  const auto& f = acked[testing::Digest('f')];
  EXPECT_EQ(f.state(), anchord::v1::DIGEST_STATE_FAILED);
  EXPECT_EQ(f.failure().code(), 16);
  EXPECT_EQ(f.failure().reason(), "INVALID_API_KEY");
  EXPECT_EQ(f.provider_request_id(), "req-401");
  // The dropped proof was sent twice (once unacked on the broken stream).
  int b_sends = 0;
  for (const auto& r : poller_.received()) b_sends += r.proof().digest() == testing::Digest('b');
  EXPECT_EQ(b_sends, 2);

  // A duplicate file of a handed-off digest: the proof goes again, with both files.
  ASSERT_TRUE(store_->InsertBatch({testing::Item('a', "copy/a.txt")}, absl::Now()).ok());
  handoff_->Wake();
  ASSERT_TRUE(WaitHandedOff());
  anchord::v1::Proof a2 = poller_.acked()[testing::Digest('a')];
  ASSERT_EQ(a2.files_size(), 2);
  EXPECT_EQ(a2.files(1).source_path(), "copy/a.txt");
}

}  // namespace
}  // namespace anchord::submitter
