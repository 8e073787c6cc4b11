#include "services/poller/poller_store.h"

#include <gtest/gtest.h>

#include <set>

#include "tests/poller/test_util.h"

namespace anchord::poller {
namespace {

using testing::Digest;
using testing::Pending;
using testing::TempDir;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

class PollerStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    auto s = OpenSqlitePollerStore(dir_.File("poller.db"));
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  ProofRow MustGet(const std::string& digest, const std::string& provider = "fake") {
    auto r = store_->Get(digest, provider);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->has_value());
    return r->has_value() ? **r : ProofRow{};
  }
  TempDir dir_;
  std::unique_ptr<PollerStore> store_;
};

TEST_F(PollerStoreTest, UpsertIsIdempotent) {
  auto first = store_->Track({Pending(Digest(1), "id-1")}, kT0);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 1u);
  EXPECT_TRUE((*first)[0].inserted);
  auto second = store_->Track({Pending(Digest(1), "id-1")}, kT0 + absl::Seconds(5));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE((*second)[0].inserted);
  EXPECT_FALSE((*second)[0].state_changed);
  EXPECT_EQ((*second)[0].proof.seq, (*first)[0].proof.seq);
  ProofRow row = MustGet(Digest(1));
  EXPECT_EQ(row.state, anchord::v1::DIGEST_STATE_PENDING);
  EXPECT_EQ(row.files.size(), 1u);  // the same file twice is one file
  EXPECT_EQ(row.tracked_at, kT0);   // the repeat changed nothing
  auto all = store_->List({}, 0, 100);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1u);
}

TEST_F(PollerStoreTest, SubmittedIsStoredAsPending) {
  TrackInput in = Pending(Digest(2), "id-2");
  in.proof.state = anchord::v1::DIGEST_STATE_SUBMITTED;
  ASSERT_TRUE(store_->Track({in}, kT0).ok());
  EXPECT_EQ(MustGet(Digest(2)).state, anchord::v1::DIGEST_STATE_PENDING);
}

TEST_F(PollerStoreTest, StateNeverMovesBackwards) {
  TrackInput confirmed = Pending(Digest(3), "id-3");
  confirmed.proof.state = anchord::v1::DIGEST_STATE_CONFIRMED;
  confirmed.proof.block_height = 800000;
  ASSERT_TRUE(store_->Track({confirmed}, kT0).ok());
  // A late PENDING hand-off (the submitter retried an old message) changes nothing.
  auto late = store_->Track({Pending(Digest(3), "id-3")}, kT0 + absl::Seconds(1));
  ASSERT_TRUE(late.ok());
  EXPECT_FALSE((*late)[0].state_changed);
  EXPECT_EQ((*late)[0].proof.state, anchord::v1::DIGEST_STATE_CONFIRMED);
  // Nor does FAILED after CONFIRMED, nor the engine's conditional updates.
  TrackInput failed = Pending(Digest(3), "id-3");
  failed.proof.state = anchord::v1::DIGEST_STATE_FAILED;
  ASSERT_TRUE(store_->Track({failed}, kT0 + absl::Seconds(2)).ok());
  auto mf = store_->MarkFailed(Digest(3), "fake", 9, "x", "Y", "", kT0);
  ASSERT_TRUE(mf.ok());
  EXPECT_FALSE(mf->has_value());
  ProofRow row = MustGet(Digest(3));
  EXPECT_EQ(row.state, anchord::v1::DIGEST_STATE_CONFIRMED);
  EXPECT_EQ(row.block_height, 800000);

  // PENDING -> CONFIRMED works once; then a second confirm is a no-op.
  ASSERT_TRUE(store_->Track({Pending(Digest(4), "id-4")}, kT0).ok());
  ConfirmInput ci;
  ci.block_height = 42;
  ci.bitcoin_tx = "beef";
  auto c1 = store_->MarkConfirmed(Digest(4), "fake", ci, kT0 + absl::Seconds(3));
  ASSERT_TRUE(c1.ok());
  ASSERT_TRUE(c1->has_value());
  EXPECT_EQ((*c1)->state, anchord::v1::DIGEST_STATE_CONFIRMED);
  EXPECT_EQ((*c1)->confirmed_at, kT0 + absl::Seconds(3));
  auto c2 = store_->MarkConfirmed(Digest(4), "fake", ci, kT0 + absl::Seconds(4));
  ASSERT_TRUE(c2.ok());
  EXPECT_FALSE(c2->has_value());
  // A hand-off moving PENDING forward reports the change.
  ASSERT_TRUE(store_->Track({Pending(Digest(5), "id-5")}, kT0).ok());
  TrackInput f5 = Pending(Digest(5), "id-5");
  f5.proof.state = anchord::v1::DIGEST_STATE_FAILED;
  f5.proof.failure_code = 9;
  f5.proof.failure_reason = "PLAN_LIMIT";
  auto moved = store_->Track({f5}, kT0 + absl::Seconds(5));
  ASSERT_TRUE(moved.ok());
  EXPECT_TRUE((*moved)[0].state_changed);
  EXPECT_EQ((*moved)[0].proof.failure_reason, "PLAN_LIMIT");
}

TEST_F(PollerStoreTest, OtsOnlyForConfirmedAndOnlyOnce) {
  ASSERT_TRUE(store_->Track({Pending(Digest(6), "id-6")}, kT0).ok());
  auto early = store_->StoreOts(Digest(6), "fake", "abc", kT0);
  ASSERT_TRUE(early.ok());
  EXPECT_FALSE(early->has_value());
  ASSERT_TRUE(store_->MarkConfirmed(Digest(6), "fake", {}, kT0).ok());
  auto stored = store_->StoreOts(Digest(6), "fake", "abc", kT0);
  ASSERT_TRUE(stored.ok());
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ((*stored)->ots_size, 3);
  auto again = store_->StoreOts(Digest(6), "fake", "abcdef", kT0);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  auto ots = store_->GetOts(Digest(6), "");
  ASSERT_TRUE(ots.ok());
  ASSERT_TRUE(ots->has_value());
  EXPECT_EQ(**ots, "abc");
  auto none = store_->GetOts(Digest(7), "");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(PollerStoreTest, PagingHasNoGapsOrDuplicates) {
  std::vector<TrackInput> batch;
  for (int i = 0; i < 130; ++i) batch.push_back(Pending(Digest(i), "id-" + std::to_string(i)));
  ASSERT_TRUE(store_->Track(batch, kT0).ok());
  std::vector<std::string> seen;
  int64_t after = 0;
  for (int page = 0; page < 100; ++page) {
    auto rows = store_->List({}, after, 7);
    ASSERT_TRUE(rows.ok()) << rows.status();
    if (rows->empty()) break;
    for (const ProofRow& r : *rows) {
      EXPECT_GT(r.seq, after);
      seen.push_back(r.digest);
    }
    after = rows->back().seq;
    if (page == 3) {
      // Rows added while paging come after the cursor, so they show up later, once.
      ASSERT_TRUE(store_->Track({Pending(Digest(500), "id-500")}, kT0).ok());
      ASSERT_TRUE(store_->Track({Pending(Digest(0), "id-0")}, kT0).ok());  // repeat: no new row
    }
  }
  ASSERT_EQ(seen.size(), 131u);
  std::set<std::string> unique(seen.begin(), seen.end());
  EXPECT_EQ(unique.size(), 131u);
  for (int i = 0; i < 130; ++i) EXPECT_EQ(seen[i], Digest(i));  // oldest first
  EXPECT_EQ(seen.back(), Digest(500));

  auto token = DecodePageToken(EncodePageToken(12345));
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(*token, 12345);
  EXPECT_FALSE(DecodePageToken("not a token!").ok());
  EXPECT_FALSE(DecodePageToken(EncodePageToken(-5)).ok());
}

TEST_F(PollerStoreTest, FilesPerJobAndFilters) {
  ASSERT_TRUE(store_->Track({Pending(Digest(10), "id-10", "fake", "alpha", "a/x.pdf")}, kT0).ok());
  ASSERT_TRUE(store_->Track({Pending(Digest(10), "id-10", "fake", "beta", "b/x.pdf")}, kT0).ok());
  ASSERT_TRUE(store_->Track({Pending(Digest(10), "id-10", "fake", "alpha", "a/x.pdf")}, kT0).ok());
  ASSERT_TRUE(store_->Track({Pending(Digest(11), "id-11", "fake", "beta", "b/y.pdf")}, kT0).ok());
  ProofRow row = MustGet(Digest(10));
  ASSERT_EQ(row.files.size(), 2u);
  EXPECT_EQ(row.files[0].job, "alpha");
  EXPECT_EQ(row.files[1].job, "beta");

  ListFilter alpha;
  alpha.job = "alpha";
  auto rows = store_->List(alpha, 0, 100);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].digest, Digest(10));
  ListFilter beta;
  beta.job = "beta";
  rows = store_->List(beta, 0, 100);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->size(), 2u);
  ListFilter by_digest;
  by_digest.digests = {Digest(11), Digest(99)};
  rows = store_->List(by_digest, 0, 100);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].digest, Digest(11));

  ASSERT_TRUE(store_->MarkConfirmed(Digest(11), "fake", {}, kT0).ok());
  auto sum = store_->Summarize("beta");
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(sum->digests, 2);
  EXPECT_EQ(sum->digests_by_state[anchord::v1::DIGEST_STATE_PENDING], 1);
  EXPECT_EQ(sum->digests_by_state[anchord::v1::DIGEST_STATE_CONFIRMED], 1);
  sum = store_->Summarize("alpha");
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(sum->digests, 1);
  ListFilter bare;
  bare.with_files = false;
  rows = store_->List(bare, 0, 100);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_TRUE((*rows)[0].files.empty());
  ListFilter confirmed;
  confirmed.state = anchord::v1::DIGEST_STATE_CONFIRMED;
  rows = store_->List(confirmed, 0, 100);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
}

TEST_F(PollerStoreTest, SurvivesReopen) {
  ASSERT_TRUE(store_->Track({Pending(Digest(20), "id-20")}, kT0).ok());
  store_.reset();
  auto s = OpenSqlitePollerStore(dir_.File("poller.db"));
  ASSERT_TRUE(s.ok());
  auto row = (*s)->Get(Digest(20), "");
  ASSERT_TRUE(row.ok());
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ((*row)->proof_id, "id-20");
  EXPECT_EQ((*row)->files.size(), 1u);
}

}  // namespace
}  // namespace anchord::poller
