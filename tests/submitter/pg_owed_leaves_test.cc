// The PostgreSQL store's hand-off of accepted Merkle leaves through their batch row
// (services/submitter/pg_owed_leaves.h): what is owed, what an acknowledgement settles, how
// replicas split batches and take over a dead one's, and what a broken stream gets again.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/common/clock.h"
#include "services/submitter/pg_submitter_store.h"
#include "tests/submitter/merkle_fixture.h"
#include "tests/support/backend.h"

namespace anchord::submitter {
namespace {

using Acks = std::vector<std::pair<int64_t, int64_t>>;

class PgOwedLeavesTest : public MerkleFixture {
 protected:
  ::anchord::testing::Backend backend() const override {
    return ::anchord::testing::Backend::kPostgres;
  }

  // A replica over the fixture's database: no row leases, hand-off leases of `lease` on `clock`.
  std::unique_ptr<SubmitterStore> Replica(FakeClock* clock, absl::Duration lease) {
    PgSubmitterOptions o;
    o.lease_term = absl::ZeroDuration();
    o.handoff_lease = lease;
    o.clock = clock;
    auto s = OpenPgSubmitterStore(pg_, o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // Leaves D(first) .. D(first + count - 1) sealed in one batch by `s` and its root accepted.
  TestBatch Accepted(SubmitterStore* s, int first, int count) {
    std::vector<NewItem> items;
    for (int n = first; n < first + count; ++n) items.push_back(Leaf(n));
    EXPECT_TRUE(s->InsertBatch(items, kNow).ok());
    TestBatch b = MakeBatch(Unbatched());
    EXPECT_TRUE(s->CreateMerkleBatch(b, kNow).ok());
    StoredRecord rec;
    rec.proof_id = "root-proof";
    EXPECT_TRUE(s->MarkSubmitted(RowOf(b.root).id, rec, "req-root", kNow).ok());
    return b;
  }

  int64_t HandoffNext(const TestBatch& b) {
    return Scalar(
        absl::StrCat("SELECT handoff_next FROM batches WHERE id = ", RowOf(b.root).batch_id));
  }

  static std::vector<int64_t> Ids(const std::vector<Submission>& rows) {
    std::vector<int64_t> out;
    for (const Submission& r : rows) out.push_back(r.id);
    return out;
  }
  static Acks AcksOf(const std::vector<Submission>& rows) {
    Acks out;
    for (const Submission& r : rows) out.emplace_back(r.id, r.change_seq);
    return out;
  }
};

// An accepted batch's leaves are owed through the batch row, not each as a row; each
// acknowledged prefix moves the batch's handoff_next, and a read that finds nothing owed past it
// ends the batch's hand-off. What readers see of a leaf (handed off or not) follows it.
TEST_F(PgOwedLeavesTest, AcceptedLeavesAreOwedThroughTheirBatchRow) {
  FakeClock clock;
  auto a = Replica(&clock, absl::Seconds(30));
  ASSERT_NE(a, nullptr);
  TestBatch b = Accepted(a.get(), 1, 6);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM submissions WHERE mode = 1 AND handed_off_seq < "
                   "change_seq"),
            0);
  EXPECT_EQ(HandoffNext(b), 0);
  EXPECT_FALSE(Row(1).handed_off());

  auto all = a->PendingHandoff(100);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 7u);  // six leaves, then the root
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ((*all)[i].digest.raw(), D(i + 1));
    EXPECT_EQ((*all)[i].state, SubState::kSubmitted);
    EXPECT_EQ((*all)[i].record.proof_id, "root-proof");
    EXPECT_FALSE((*all)[i].handed_off());
  }
  EXPECT_EQ((*all)[6].mode, RowMode::kRoot);

  // Leaves 1, 2, 3 and 5 and the root acknowledged; 4 not: the batch is owed from 4 on.
  const std::vector<Submission>& p = *all;
  ASSERT_TRUE(a->MarkHandedOffBatch({{p[0].id, p[0].change_seq},
                                     {p[2].id, p[2].change_seq},
                                     {p[1].id, p[1].change_seq},
                                     {p[4].id, p[4].change_seq},
                                     {p[6].id, p[6].change_seq}})
                  .ok());
  EXPECT_EQ(HandoffNext(b), p[3].id);
  EXPECT_TRUE(Row(1).handed_off());
  EXPECT_TRUE(Row(3).handed_off());
  EXPECT_FALSE(Row(4).handed_off());
  auto left = a->PendingHandoff(100);
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_EQ(Ids(*left), (std::vector<int64_t>{p[3].id, p[5].id}));

  ASSERT_TRUE(a->MarkHandedOffBatch(AcksOf(*left)).ok());
  EXPECT_EQ(HandoffNext(b), p[5].id + 1);
  auto none = a->PendingHandoff(100);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty()) << none->size() << " rows still owed";
  EXPECT_EQ(HandoffNext(b), -1);
  for (int n = 1; n <= 6; ++n) EXPECT_TRUE(Row(n).handed_off()) << n;
}

// An acknowledgement of an older version than the one read settles nothing: the leaf is read
// again.
TEST_F(PgOwedLeavesTest, AnAcknowledgementOfAnOlderVersionLeavesTheLeafOwed) {
  FakeClock clock;
  auto a = Replica(&clock, absl::Seconds(30));
  ASSERT_NE(a, nullptr);
  TestBatch b = Accepted(a.get(), 1, 2);
  auto all = a->PendingHandoffExcept(2, {});
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  ASSERT_TRUE(a->MarkHandedOffBatch(
                   {{(*all)[0].id, (*all)[0].change_seq - 1}, {(*all)[1].id, (*all)[1].change_seq}})
                  .ok());
  EXPECT_EQ(HandoffNext(b), 0);
  auto again = a->PendingHandoffExcept(1, {});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(Ids(*again), (std::vector<int64_t>{(*all)[0].id}));
}

// Replicas take different batches; a batch stays with the replica reading it for the lease, and
// once a dead replica's lease has run out another one sends exactly what was not acknowledged.
TEST_F(PgOwedLeavesTest, ReplicasSplitBatchesAndTakeOverADeadOnesAfterTheLease) {
  FakeClock clock;
  const absl::Duration lease = absl::Seconds(1);
  auto a = Replica(&clock, lease);
  auto b = Replica(&clock, lease);
  ASSERT_TRUE(a && b);
  TestBatch first = Accepted(a.get(), 1, 3);
  TestBatch second = Accepted(a.get(), 10, 3);
  auto of_a = a->PendingHandoffExcept(3, {});
  ASSERT_TRUE(of_a.ok()) << of_a.status();
  ASSERT_EQ(of_a->size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ((*of_a)[i].digest.raw(), D(i + 1));

  // b gets the second batch's leaves and both roots (rows), none of the first batch's leaves.
  auto of_b = b->PendingHandoff(100);
  ASSERT_TRUE(of_b.ok()) << of_b.status();
  std::vector<std::string> digests;
  for (const Submission& r : *of_b) digests.push_back(r.digest.raw());
  std::sort(digests.begin(), digests.end());
  std::vector<std::string> expected = {D(10), D(11), D(12), first.root, second.root};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(digests, expected);
  ASSERT_TRUE(b->MarkHandedOffBatch(AcksOf(*of_b)).ok());

  // a acknowledges its first leaf and dies.
  ASSERT_TRUE(a->MarkHandedOffBatch({{(*of_a)[0].id, (*of_a)[0].change_seq}}).ok());
  a.reset();
  clock.Advance(lease - absl::Milliseconds(1));
  auto early = b->PendingHandoff(100);
  ASSERT_TRUE(early.ok()) << early.status();
  EXPECT_TRUE(early->empty()) << early->size() << " leaves taken while a's lease ran";
  clock.Advance(absl::Milliseconds(1));
  auto taken = b->PendingHandoff(100);
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(Ids(*taken), (std::vector<int64_t>{(*of_a)[1].id, (*of_a)[2].id}));
  ASSERT_TRUE(b->MarkHandedOffBatch(AcksOf(*taken)).ok());
  auto none = b->PendingHandoff(100);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(HandoffNext(first), -1);
  EXPECT_EQ(HandoffNext(second), -1);
}

// The rows in flight are left out of the next window; a new stream (none in flight) gets every
// leaf sent and not acknowledged on the broken one, and none that was.
TEST_F(PgOwedLeavesTest, ANewStreamGetsTheLeavesTheBrokenOneLeftUnacknowledged) {
  FakeClock clock;
  auto a = Replica(&clock, absl::Seconds(30));
  ASSERT_NE(a, nullptr);
  TestBatch b = Accepted(a.get(), 1, 4);
  auto w1 = a->PendingHandoffExcept(2, {});
  ASSERT_TRUE(w1.ok()) << w1.status();
  ASSERT_EQ(w1->size(), 2u);
  const std::vector<int64_t> first_ids = Ids(*w1);
  const RowIds in_flight(first_ids.begin(), first_ids.end());
  auto w2 = a->PendingHandoffExcept(2, in_flight);
  ASSERT_TRUE(w2.ok()) << w2.status();
  ASSERT_EQ(w2->size(), 2u);
  for (const Submission& r : *w2) EXPECT_EQ(in_flight.count(r.id), 0u);
  // Only the second window is acknowledged before the stream breaks.
  ASSERT_TRUE(a->MarkHandedOffBatch(AcksOf(*w2)).ok());
  EXPECT_EQ(HandoffNext(b), 0);
  auto again = a->PendingHandoffExcept(100, {});
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->size(), 3u);  // the first window's two leaves and the root
  EXPECT_EQ((*again)[0].id, (*w1)[0].id);
  EXPECT_EQ((*again)[1].id, (*w1)[1].id);
  EXPECT_EQ((*again)[2].mode, RowMode::kRoot);
  ASSERT_TRUE(a->MarkHandedOffBatch(AcksOf(*again)).ok());
  EXPECT_EQ(HandoffNext(b), (*w2)[1].id + 1);
}

// Leaves whose ids are not consecutive (other rows took ids between them) are read a window at a
// time past those in flight, and a new stream gets again exactly those not acknowledged.
TEST_F(PgOwedLeavesTest, LeavesWithOtherRowsBetweenThemGoOnceAWindow) {
  FakeClock clock;
  auto a = Replica(&clock, absl::Seconds(30));
  ASSERT_NE(a, nullptr);
  for (int n = 1; n <= 6; ++n) {
    ASSERT_TRUE(a->InsertBatch({Leaf(n)}, kNow).ok());
    ASSERT_TRUE(a->InsertBatch({PerFile(100 + n)}, kNow).ok());
  }
  TestBatch b = MakeBatch(Unbatched());
  ASSERT_EQ(b.leaf_ids.size(), 6u);
  ASSERT_TRUE(a->CreateMerkleBatch(b, kNow).ok());
  ASSERT_TRUE(a->MarkSubmitted(RowOf(b.root).id, StoredRecord{}, "req", kNow).ok());
  for (size_t i = 1; i < b.leaf_ids.size(); ++i) {
    ASSERT_GT(b.leaf_ids[i], b.leaf_ids[i - 1] + 1);  // a per-file row between each two
  }
  RowIds in_flight;
  std::vector<int64_t> sent;
  for (int window = 0; window < 3; ++window) {
    auto rows = a->PendingHandoffExcept(2, in_flight);
    ASSERT_TRUE(rows.ok()) << rows.status();
    ASSERT_EQ(rows->size(), 2u) << "window " << window;
    for (const Submission& r : *rows) {
      EXPECT_EQ(in_flight.count(r.id), 0u) << r.id;
      in_flight.insert(r.id);
      sent.push_back(r.id);
    }
  }
  // Six leaves, in order, then the root.
  EXPECT_EQ(std::vector<int64_t>(sent.begin(), sent.end()), b.leaf_ids);
  auto root = a->PendingHandoffExcept(2, in_flight);
  ASSERT_TRUE(root.ok()) << root.status();
  ASSERT_EQ(root->size(), 1u);
  EXPECT_EQ((*root)[0].mode, RowMode::kRoot);
  // The second window acknowledged, then the stream breaks.
  auto second = a->GetByDigest(AsDigest(D(3)));
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(a->MarkHandedOffBatch({{b.leaf_ids[2], (*second)[0].change_seq},
                                     {b.leaf_ids[3], (*second)[0].change_seq}})
                  .ok());
  // (The root is a row: its claim holds until its lease runs out.)
  auto again = a->PendingHandoffExcept(10, {});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(Ids(*again),
            (std::vector<int64_t>{b.leaf_ids[0], b.leaf_ids[1], b.leaf_ids[4], b.leaf_ids[5]}));
}

// A leaf that changes after its root's acceptance (a new file of its digest) goes once, as a
// row; the batch's hand-off still ends.
TEST_F(PgOwedLeavesTest, ALeafChangedAfterItsRootsAcceptanceGoesOnceAsARow) {
  FakeClock clock;
  auto a = Replica(&clock, absl::Seconds(30));
  ASSERT_NE(a, nullptr);
  TestBatch b = Accepted(a.get(), 1, 3);
  NewItem again = Leaf(2);
  again.file.source_path = "elsewhere/2.bin";
  ASSERT_TRUE(a->InsertBatch({again}, kNow).ok());
  EXPECT_FALSE(Row(2).handed_off());
  auto all = a->PendingHandoff(100);
  ASSERT_TRUE(all.ok()) << all.status();
  std::vector<std::string> digests;
  for (const Submission& r : *all) digests.push_back(r.digest.raw());
  EXPECT_EQ(digests, (std::vector<std::string>{D(1), D(2), D(3), b.root}));
  ASSERT_TRUE(a->MarkHandedOffBatch(AcksOf(*all)).ok());
  EXPECT_TRUE(Row(2).handed_off());
  auto none = a->PendingHandoff(100);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty()) << none->size() << " rows still owed";
  EXPECT_EQ(HandoffNext(b), -1);
}

}  // namespace
}  // namespace anchord::submitter
