// The engine's batched creates (a provider with max_batch() > 1), on Merkle roots and plain rows.
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>

#include "libs/common/clock.h"
#include "libs/common/hex.h"
#include "services/submitter/batcher.h"
#include "services/submitter/engine.h"
#include "tests/submitter/merkle_fixture.h"

namespace anchord::submitter {
namespace {

using providers::OutcomeKind;
using testing::FakeProvider;

// --- Engine with a batch provider
// ------------------------------------------------------------------

class BatchEngineTest : public MerkleFixture {
 protected:
  void SetUp() override {
    MerkleFixture::SetUp();
    provider_.SetMaxBatch(25);
    EngineOptions o;
    o.backoff = BackoffPolicy{absl::Seconds(1), absl::Seconds(10), 2.0};
    o.batch_linger = linger_;
    engine_ = std::make_unique<Engine>(store_.get(), std::vector<providers::Provider*>{&provider_},
                                       &metrics_, &clock_, o);
    ASSERT_TRUE(engine_->Init().ok());
  }
  void TearDown() override {
    engine_.reset();
    MerkleFixture::TearDown();
  }
  absl::Duration linger_ = absl::ZeroDuration();  // most tests send at once
  bool RunOnce() {
    auto r = engine_->RunOnce();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && *r;
  }
  void AddRows(int from, int to) {
    std::vector<NewItem> items;
    for (int n = from; n <= to; ++n) items.push_back(PerFile(n));
    ASSERT_TRUE(store_->InsertBatch(items, clock_.Now()).ok());
  }

  FakeClock clock_{kNow};
  prometheus::Registry registry_;
  SubmitterMetrics metrics_{registry_};
  FakeProvider provider_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(BatchEngineTest, ThirtyRowsGoOutAsTwentyFiveThenFive) {
  AddRows(1, 30);
  EXPECT_TRUE(RunOnce());
  EXPECT_TRUE(RunOnce());
  EXPECT_FALSE(RunOnce());
  EXPECT_EQ(provider_.batch_sizes(), (std::vector<size_t>{25, 5}));
  auto sent = provider_.sent();
  ASSERT_EQ(sent.size(), 30u);
  for (int n = 1; n <= 30; ++n) {
    EXPECT_EQ(sent[n - 1].digest.hex(), HexEncode(D(n)));  // oldest first
    EXPECT_FALSE(sent[n - 1].maybe_sent);
    Submission r = Row(n);
    EXPECT_EQ(r.state, SubState::kSubmitted) << n;
    // Each row got its own answer.
    EXPECT_EQ(r.record.proof_id, "proof-" + HexEncode(D(n)).substr(0, 8));
  }
}

class LingeringBatchEngineTest : public BatchEngineTest {
 protected:
  void SetUp() override {
    linger_ = absl::Seconds(1);
    BatchEngineTest::SetUp();
  }
};

// A batch that is not full waits for company until its oldest row is `batch_linger` old; a full
// batch goes at once.
TEST_F(LingeringBatchEngineTest, PartialBatchWaitsForTheLingerFullBatchDoesNot) {
  AddRows(1, 5);
  EXPECT_FALSE(RunOnce());
  EXPECT_TRUE(provider_.sent().empty());
  EXPECT_EQ(Row(1).state, SubState::kQueued);  // released, not failed or lost
  AddRows(6, 30);
  EXPECT_TRUE(RunOnce());   // 25 ready: full
  EXPECT_FALSE(RunOnce());  // 5 left, young
  clock_.Advance(absl::Milliseconds(1100));
  EXPECT_TRUE(RunOnce());
  EXPECT_EQ(provider_.batch_sizes(), (std::vector<size_t>{25, 5}));
}

TEST_F(BatchEngineTest, PreparedRowsAreSentWithMaybeSent) {
  AddRows(1, 4);
  // An earlier process prepared rows 2 and 3 and died before (or while) sending them.
  auto claimed = store_->ClaimBatch("fake", "dead", clock_.Now(), clock_.Now() + absl::Hours(1), 4);
  ASSERT_TRUE(claimed.ok());
  ASSERT_EQ(claimed->size(), 4u);
  for (int i : {1, 2}) {
    const Submission& r = (*claimed)[i];
    auto prepared = provider_.PrepareCreate({r.digest, r.file.filename, 10, "text/plain"});
    ASSERT_TRUE(prepared.ok());
    ASSERT_TRUE(
        store_->MarkPrepared(r.id, prepared->idempotency_key, prepared->body, clock_.Now()).ok());
  }
  for (const Submission& r : *claimed) ASSERT_TRUE(store_->ReleaseLease(r.id).ok());
  const int prepares_before = provider_.prepares();

  EXPECT_TRUE(RunOnce());
  EXPECT_EQ(provider_.batch_sizes(), (std::vector<size_t>{4}));
  auto sent = provider_.sent();
  ASSERT_EQ(sent.size(), 4u);
  std::map<std::string, bool> maybe;
  for (const auto& s : sent) maybe[s.digest.hex()] = s.maybe_sent;
  EXPECT_FALSE(maybe[HexEncode(D(1))]);
  EXPECT_TRUE(maybe[HexEncode(D(2))]);
  EXPECT_TRUE(maybe[HexEncode(D(3))]);
  EXPECT_FALSE(maybe[HexEncode(D(4))]);
  EXPECT_EQ(provider_.prepares() - prepares_before, 2);  // only the unprepared ones
  for (int n = 1; n <= 4; ++n) EXPECT_EQ(Row(n).state, SubState::kSubmitted);
}

TEST_F(BatchEngineTest, TooFewResultsLoseNoRowAndMisattributeNothing) {
  AddRows(1, 5);
  provider_.SetBatchResultDelta(-2);
  EXPECT_TRUE(RunOnce());
  // Which answer belongs to which row is unknown: none is trusted, every row is kept for a retry.
  for (int n = 1; n <= 5; ++n) {
    Submission r = Row(n);
    EXPECT_EQ(r.state, SubState::kSubmitting) << n;
    EXPECT_EQ(r.attempts, 1) << n;
    EXPECT_FALSE(r.body.empty());
    EXPECT_GT(r.next_attempt_at, clock_.Now());
  }
  EXPECT_FALSE(RunOnce());  // backing off
  clock_.Advance(absl::Minutes(1));
  EXPECT_TRUE(RunOnce());
  auto sent = provider_.sent();
  ASSERT_EQ(sent.size(), 10u);
  for (size_t i = 5; i < 10; ++i) EXPECT_TRUE(sent[i].maybe_sent);  // re-sent, flagged
  for (int n = 1; n <= 5; ++n) {
    Submission r = Row(n);
    EXPECT_EQ(r.state, SubState::kSubmitted) << n;
    EXPECT_EQ(r.record.proof_id, "proof-" + HexEncode(D(n)).substr(0, 8));
  }
}

TEST_F(BatchEngineTest, TooManyResultsLoseNoRow) {
  AddRows(1, 3);
  provider_.SetBatchResultDelta(+1);
  EXPECT_TRUE(RunOnce());
  for (int n = 1; n <= 3; ++n) {
    EXPECT_NE(Row(n).state, SubState::kFailed) << n;
    EXPECT_NE(Row(n).state, SubState::kQueued) << n;
  }
  clock_.Advance(absl::Minutes(1));
  for (int i = 0; i < 5 && RunOnce(); ++i) {
  }
  for (int n = 1; n <= 3; ++n) {
    Submission r = Row(n);
    EXPECT_EQ(r.state, SubState::kSubmitted) << n;
    EXPECT_EQ(r.record.proof_id, "proof-" + HexEncode(D(n)).substr(0, 8));
  }
}

TEST_F(BatchEngineTest, PerRowOutcomesOfABatchApplyToTheirRows) {
  AddRows(1, 3);
  provider_.Script(FakeProvider::Ok());
  provider_.Script(FakeProvider::Fail(OutcomeKind::kPermanent, "INVALID_FIELD", "req-p", 400));
  provider_.Script(FakeProvider::Fail(OutcomeKind::kRetry, "HTTP_503", "req-r", 503));
  EXPECT_TRUE(RunOnce());
  EXPECT_EQ(Row(1).state, SubState::kSubmitted);
  EXPECT_EQ(Row(2).state, SubState::kFailed);
  EXPECT_EQ(Row(2).error_code, "INVALID_FIELD");
  EXPECT_EQ(Row(3).state, SubState::kSubmitting);
  EXPECT_EQ(Row(3).error_request_id, "req-r");
}

TEST_F(BatchEngineTest, SealedRootIsSentAndItsLeavesFollow) {
  std::vector<NewItem> items;
  for (int n = 1; n <= 3; ++n) items.push_back(Leaf(n));
  ASSERT_TRUE(store_->InsertBatch(items, clock_.Now()).ok());
  EXPECT_FALSE(RunOnce());  // leaves are never sent themselves
  Batcher batcher(store_.get(), {"fake"}, nullptr, &clock_, BatcherOptions{3, absl::Seconds(5)},
                  [this] { engine_->Wake(); });
  ASSERT_EQ(*batcher.SealDue(), 1);
  EXPECT_TRUE(RunOnce());
  auto sent = provider_.sent();
  ASSERT_EQ(sent.size(), 1u);
  const std::string root = Row(1).merkle_root;
  EXPECT_EQ(sent[0].digest.hex(), HexEncode(root));
  for (int n = 1; n <= 3; ++n) {
    EXPECT_EQ(Row(n).state, SubState::kSubmitted);
    EXPECT_EQ(Row(n).record.proof_id, "proof-" + HexEncode(root).substr(0, 8));
  }
}

}  // namespace
}  // namespace anchord::submitter
