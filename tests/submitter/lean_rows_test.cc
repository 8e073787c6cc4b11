// The submitter store's cheaper row passes per Merkle leaf: the batch-form hand-off's read
// (PendingHandoffForBatchForm: a batch's SUBMITTED leaves thin) and a batch sealed over a range of
// waiting leaves in one statement. Both must give what the per-row forms give.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/submitter/pg_submitter_store.h"
#include "services/submitter/submitter_store.h"
#include "tests/submitter/merkle_fixture.h"
#include "tests/support/backend.h"

namespace anchord::submitter {
namespace {

using ::anchord::testing::Backend;

class LeanRowsTest : public MerkleFixture, public ::testing::WithParamInterface<Backend> {
 protected:
  Backend backend() const override { return GetParam(); }
  void SetUp() override {
    MerkleFixture::SetUp();
    if (GetParam() != Backend::kPostgres || HasFatalFailure()) return;
    // One replica: PendingHandoff gives its rows without claiming them, so that two reads in a
    // row give the same rows, as on SQLite.
    PgSubmitterOptions o;
    o.lease_term = absl::ZeroDuration();
    o.handoff_lease = absl::ZeroDuration();
    auto s = OpenPgSubmitterStore(pg_, o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }

  // A batch over the waiting leaves as the Batcher makes it: with each leaf's digest.
  TestBatch BatchWithDigests(const std::vector<WaitingLeaf>& leaves) {
    TestBatch b = MakeBatch(leaves);
    for (const WaitingLeaf& l : leaves) b.leaf_digests.push_back(l.digest);
    return b;
  }

  // Leaves D(first) .. D(first + count - 1) sealed in one batch; returns the batch.
  TestBatch Seal(int first, int count) {
    std::vector<NewItem> items;
    for (int n = first; n < first + count; ++n) items.push_back(Leaf(n));
    EXPECT_TRUE(store_->InsertBatch(items, kNow).ok());
    TestBatch b = BatchWithDigests(Unbatched());
    auto id = store_->CreateMerkleBatch(b, kNow);
    EXPECT_TRUE(id.ok()) << id.status();
    return b;
  }

  // Batch `b`'s root SUBMITTED, as the engine marks it once the provider accepted it.
  void SubmitRoot(const TestBatch& b, const std::string& evidence = "") {
    StoredRecord rec;
    rec.proof_id = "root-proof";
    rec.evidence = evidence;
    ASSERT_TRUE(store_->MarkSubmitted(RowOf(b.root).id, rec, "req-root", kNow).ok());
  }

  // Per-file row D(n), SUBMITTED.
  void SubmittedPerFile(int n) {
    ASSERT_TRUE(store_->InsertBatch({PerFile(n)}, kNow).ok());
    auto claimed = store_->ClaimBatch("fake", "t", kNow, kNow + absl::Minutes(1), 1);
    ASSERT_TRUE(claimed.ok()) << claimed.status();
    ASSERT_EQ(claimed->size(), 1u);
    StoredRecord rec;
    rec.proof_id = absl::StrCat("proof-", n);
    ASSERT_TRUE(store_->MarkSubmitted((*claimed)[0].id, rec, "req", kNow).ok());
  }
};

// Every row PendingHandoff gives, in the same order; a thin one is a SUBMITTED leaf of a batch
// with its identity, version and batch, a whole one as PendingHandoff gives it.
TEST_P(LeanRowsTest, BatchFormReadGivesPendingHandoffsRowsWithLeavesThin) {
  TestBatch accepted = Seal(1, 4);
  SubmitRoot(accepted, "root-evidence");
  SubmittedPerFile(100);
  TestBatch failed = Seal(10, 2);
  ASSERT_TRUE(store_->MarkFailed(RowOf(failed.root).id, 7, "PLAN_LIMIT", "no", "", kNow).ok());

  auto whole = store_->PendingHandoff(100);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_EQ(whole->size(), 4u + 1u + 1u + 2u + 1u);
  auto lean = store_->PendingHandoffForBatchForm(100, {});
  ASSERT_TRUE(lean.ok()) << lean.status();
  ASSERT_EQ(lean->size(), whole->size());
  int thin = 0;
  for (size_t i = 0; i < whole->size(); ++i) {
    const Submission& w = (*whole)[i];
    const Submission& l = (*lean)[i];
    EXPECT_EQ(l.id, w.id);
    EXPECT_EQ(l.digest, w.digest);
    EXPECT_EQ(l.provider, w.provider);
    EXPECT_EQ(l.state, w.state);
    EXPECT_EQ(l.mode, w.mode);
    EXPECT_EQ(l.batch_id, w.batch_id);
    EXPECT_EQ(l.change_seq, w.change_seq);
    EXPECT_EQ(l.handed_off_seq, w.handed_off_seq);
    EXPECT_FALSE(w.thin);
    if (l.thin) {
      ++thin;
      EXPECT_EQ(l.mode, RowMode::kLeaf);
      EXPECT_EQ(l.state, SubState::kSubmitted);
      EXPECT_TRUE(l.merkle_path.empty());
      EXPECT_TRUE(l.record.proof_id.empty());
      EXPECT_FALSE(w.merkle_path.empty());
      EXPECT_EQ(w.record.proof_id, "root-proof");
      continue;
    }
    EXPECT_EQ(l.merkle_path, w.merkle_path);
    EXPECT_EQ(l.merkle_root, w.merkle_root);
    EXPECT_EQ(l.nonce, w.nonce);
    EXPECT_EQ(l.record.proof_id, w.record.proof_id);
    EXPECT_EQ(l.record.evidence, w.record.evidence);
    EXPECT_EQ(l.request_id, w.request_id);
    EXPECT_EQ(l.error_code, w.error_code);
    EXPECT_EQ(l.file.source_path, w.file.source_path);
  }
  // SQLite leaves the accepted batch's leaves thin (not the failed ones); PostgreSQL reads whole.
  EXPECT_EQ(thin, GetParam() == Backend::kSqlite ? 4 : 0);
  // A thin leaf carries what its files are read from: the hand-off sends the same files.
  auto lean_files = store_->RefsOfRows(*lean);
  auto whole_files = store_->RefsOfRows(*whole);
  ASSERT_TRUE(lean_files.ok()) << lean_files.status();
  ASSERT_TRUE(whole_files.ok()) << whole_files.status();
  ASSERT_EQ(lean_files->size(), whole_files->size());
  auto described = [](const std::vector<FileRef>& files) {
    std::vector<std::string> out;
    for (const FileRef& f : files) {
      out.push_back(absl::StrCat(f.job, ":", f.source_path, ":", f.filename, ":", f.size_bytes, ":",
                                 f.mime_type));
    }
    return out;
  };
  for (size_t i = 0; i < lean_files->size(); ++i) {
    const std::vector<std::string> w = described((*whole_files)[i]);
    EXPECT_EQ(described((*lean_files)[i]), w) << (*lean)[i].id;
    // Every row but a root has its file.
    EXPECT_EQ(w.size(), (*whole)[i].mode == RowMode::kRoot ? 0u : 1u) << (*whole)[i].id;
  }
}

// Rows in flight are left out, and `limit` others still come when there are.
TEST_P(LeanRowsTest, BatchFormReadSkipsTheGivenRowsAndKeepsTheLimit) {
  SubmitRoot(Seal(1, 6));
  auto whole = store_->PendingHandoff(100);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_EQ(whole->size(), 7u);
  const RowIds skip = {(*whole)[0].id, (*whole)[1].id, (*whole)[3].id};
  auto lean = store_->PendingHandoffForBatchForm(3, skip);
  ASSERT_TRUE(lean.ok()) << lean.status();
  ASSERT_EQ(lean->size(), 3u);
  EXPECT_EQ((*lean)[0].id, (*whole)[2].id);
  EXPECT_EQ((*lean)[1].id, (*whole)[4].id);
  EXPECT_EQ((*lean)[2].id, (*whole)[5].id);
  auto rest = store_->PendingHandoffForBatchForm(100, skip);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->size(), 4u);
  auto none = store_->PendingHandoffForBatchForm(0, {});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
}

// The batcher's batch (every waiting leaf from the oldest on, with their digests): each leaf gets
// the batch and reads back with its path.
TEST_P(LeanRowsTest, BatchOverAllWaitingLeavesSealsEveryLeaf) {
  TestBatch b = Seal(1, 50);
  const int64_t batch_id = RowOf(b.root).batch_id;
  ASSERT_GT(batch_id, 0);
  for (int n = 1; n <= 50; ++n) {
    Submission l = Row(n);
    EXPECT_EQ(l.batch_id, batch_id) << n;
    EXPECT_EQ(l.merkle_path, b.paths[n - 1]) << n;
    EXPECT_EQ(l.updated_at, kNow) << n;
  }
  EXPECT_TRUE(Unbatched().empty());
  EXPECT_EQ(Scalar(absl::StrCat("SELECT COUNT(*) FROM submissions WHERE batch_id = ", batch_id)),
            51);
}

// Leaves that skip a waiting one (not a range of the waiting leaves): sealed all the same, and
// the one skipped still waits, as do other providers' leaves in between.
TEST_P(LeanRowsTest, BatchOverAGapLeavesTheSkippedLeafWaiting) {
  ASSERT_TRUE(
      store_->InsertBatch({Leaf(1), Leaf(2), Leaf(3, "other"), Leaf(4), Leaf(5)}, kNow).ok());
  std::vector<WaitingLeaf> waiting = Unbatched();
  ASSERT_EQ(waiting.size(), 4u);  // D(1), D(2), D(4), D(5) of "fake"
  TestBatch b = BatchWithDigests({waiting[0], waiting[2], waiting[3]});
  auto id = store_->CreateMerkleBatch(b, kNow);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(Row(1).batch_id, *id);
  EXPECT_FALSE(Sealed(Row(2)));
  EXPECT_FALSE(Sealed(Row(3, "other")));
  EXPECT_EQ(Row(4).batch_id, *id);
  EXPECT_EQ(Row(5).batch_id, *id);
  EXPECT_EQ(Row(5).merkle_path, b.paths[2]);
  std::vector<WaitingLeaf> left = Unbatched();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].digest.raw(), D(2));
  auto other = store_->UnbatchedLeaves("other", 10);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->size(), 1u);
}

// A range whose middle leaf another batch took, or a digest that is not the leaf's: ABORTED, and
// nothing of the batch is written.
TEST_P(LeanRowsTest, BatchOverATakenOrMislabelledLeafIsAbortedAndChangesNothing) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2), Leaf(3)}, kNow).ok());
  std::vector<WaitingLeaf> waiting = Unbatched();
  ASSERT_EQ(waiting.size(), 3u);
  if (GetParam() == Backend::kSqlite) {
    // SQLite takes the digests given with the ids and checks them (PostgreSQL reads its own).
    TestBatch mislabelled = BatchWithDigests(waiting);
    std::swap(mislabelled.leaf_digests[0], mislabelled.leaf_digests[1]);
    EXPECT_TRUE(absl::IsAborted(store_->CreateMerkleBatch(mislabelled, kNow).status()));
    EXPECT_EQ(Unbatched().size(), 3u);
  }

  ASSERT_TRUE(store_->CreateMerkleBatch(BatchWithDigests({waiting[1]}), kNow).ok());
  TestBatch late = BatchWithDigests(waiting);
  auto id = store_->CreateMerkleBatch(late, kNow);
  EXPECT_TRUE(absl::IsAborted(id.status())) << id.status();
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM batches WHERE length(root) > 0"), 1);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM submissions WHERE mode = 2"), 1);
  EXPECT_FALSE(Sealed(Row(1)));
  EXPECT_FALSE(Sealed(Row(3)));
  EXPECT_EQ(Unbatched().size(), 2u);
}

// Acknowledgements of consecutive rows are marked together; a row between them that was not
// acknowledged, and one acknowledged as of an older version, stay pending.
TEST_P(LeanRowsTest, MarkHandedOffBatchMarksExactlyTheRowsAsOfTheirSeq) {
  SubmitRoot(Seal(1, 6));
  auto pending = store_->PendingHandoff(100);
  ASSERT_TRUE(pending.ok()) << pending.status();
  ASSERT_EQ(pending->size(), 7u);
  const std::vector<Submission>& p = *pending;
  for (int i = 1; i < 6; ++i) ASSERT_EQ(p[i].id, p[i - 1].id + 1);  // the leaves, consecutive
  // Leaves 0, 1, 2, 4 and the root as of their version, leaf 5 as of an older one, leaf 3 not.
  std::vector<std::pair<int64_t, int64_t>> acks = {
      {p[4].id, p[4].change_seq}, {p[0].id, p[0].change_seq},     {p[2].id, p[2].change_seq},
      {p[1].id, p[1].change_seq}, {p[5].id, p[5].change_seq - 1}, {p[6].id, p[6].change_seq},
      {p[0].id, p[0].change_seq}};
  ASSERT_TRUE(store_->MarkHandedOffBatch(acks).ok());
  auto left = store_->PendingHandoff(100);
  ASSERT_TRUE(left.ok()) << left.status();
  ASSERT_EQ(left->size(), 2u);
  EXPECT_EQ((*left)[0].id, p[3].id);
  EXPECT_EQ((*left)[1].id, p[5].id);
  EXPECT_EQ((*left)[1].handed_off_seq, p[5].change_seq - 1);
  EXPECT_TRUE(Row(1).handed_off());
  EXPECT_FALSE(Row(4).handed_off());
  // An acknowledgement of an older version never moves handed_off_seq back.
  ASSERT_TRUE(store_->MarkHandedOffBatch({{p[0].id, 0}, {p[1].id, 0}}).ok());
  EXPECT_TRUE(Row(1).handed_off());
  EXPECT_TRUE(Row(2).handed_off());
}

// A window of rows with nearly consecutive ids (read in one pass on SQLite) gets each row's
// digest's files in their order, as a read per digest does: the original first, later files of
// the digest, a later provider's row (its files hang off the digest's first row), and rows whose
// neighbours are not in the window.
TEST_P(LeanRowsTest, RefsOfADenseWindowAreEachDigestsFiles) {
  std::vector<NewItem> items;
  for (int n = 1; n <= 40; ++n) {
    NewItem it = PerFile(n);
    if (n % 7 == 0) it.providers.push_back("other");
    items.push_back(it);
  }
  ASSERT_TRUE(store_->InsertBatch(items, kNow).ok());
  std::vector<NewItem> more;
  for (int n = 3; n <= 40; n += 5) {
    NewItem it = PerFile(n);
    it.file.source_path = absl::StrCat("a-copy/", n, ".bin");  // sorts before the original
    more.push_back(it);
  }
  ASSERT_TRUE(store_->InsertBatch(more, kNow).ok());
  std::vector<Submission> all;
  for (int n = 1; n <= 40; ++n) {
    auto rows = store_->GetByDigest(AsDigest(D(n)));
    ASSERT_TRUE(rows.ok()) << rows.status();
    for (Submission& r : *rows) all.push_back(std::move(r));
  }
  std::sort(all.begin(), all.end(),
            [](const Submission& a, const Submission& b) { return a.id < b.id; });
  ASSERT_EQ(all.size(), 45u);
  // The whole table, then every other row but one (still dense), then a few far apart.
  std::vector<std::vector<Submission>> windows = {all, {}, {all[0], all[20], all[44]}};
  for (size_t i = 0; i < all.size(); i += 2) windows[1].push_back(all[i]);
  windows[1].push_back(all[1]);
  std::sort(windows[1].begin(), windows[1].end(),
            [](const Submission& a, const Submission& b) { return a.id < b.id; });
  for (const std::vector<Submission>& window : windows) {
    auto got = store_->RefsOfRows(window);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), window.size());
    std::vector<Digest> digests;
    for (const Submission& r : window) digests.push_back(r.digest);
    auto want = store_->RefsOfEach(digests);
    ASSERT_TRUE(want.ok()) << want.status();
    for (size_t i = 0; i < window.size(); ++i) {
      std::vector<std::string> g, w;
      for (const FileRef& f : (*got)[i])
        g.push_back(f.job + ":" + f.source_path + ":" + f.filename);
      for (const FileRef& f : (*want)[i])
        w.push_back(f.job + ":" + f.source_path + ":" + f.filename);
      EXPECT_EQ(g, w) << window[i].id;
      EXPECT_FALSE(g.empty()) << window[i].id;
      // And as a read of that one digest gives them (a digest twice in a window included).
      auto one = store_->Refs(window[i].digest);
      ASSERT_TRUE(one.ok()) << one.status();
      std::vector<std::string> o;
      for (const FileRef& f : *one) o.push_back(f.job + ":" + f.source_path + ":" + f.filename);
      EXPECT_EQ(w, o) << window[i].id;
    }
  }
  // A window naming one digest twice and one no store holds.
  auto twice = store_->RefsOfEach({all[2].digest, AsDigest(D(999)), all[2].digest});
  ASSERT_TRUE(twice.ok()) << twice.status();
  ASSERT_EQ(twice->size(), 3u);
  EXPECT_EQ((*twice)[0].size(), 2u);
  EXPECT_TRUE((*twice)[1].empty());
  EXPECT_EQ((*twice)[2].size(), 2u);
  // A digest with a second file lists the original first.
  auto refs = store_->RefsOfRows({all[2], all[3]});
  ASSERT_TRUE(refs.ok()) << refs.status();
  ASSERT_EQ((*refs)[0].size(), 2u);
  EXPECT_EQ((*refs)[0][0].source_path, all[2].file.source_path);
  EXPECT_EQ((*refs)[0][1].source_path, "a-copy/3.bin");
}

INSTANTIATE_TEST_SUITE_P(Backends, LeanRowsTest, ANCHORD_ALL_BACKENDS);

}  // namespace
}  // namespace anchord::submitter
