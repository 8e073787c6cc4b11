// Merkle batching in the submitter: leaf rows, durable batches (SubmitterStore) and the Batcher
// (the engine's batched creates: batch_engine_test.cc).
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "libs/common/clock.h"
#include "libs/common/hex.h"
#include "libs/ledger/pg_db.h"
#include "libs/ledger/sqlite_db.h"
#include "libs/merkle/merkle.h"
#include "libs/merkle/sealed_batch.h"
#include "services/submitter/batcher.h"
#include "services/submitter/engine.h"
#include "services/submitter/pg_submitter_store.h"
#include "services/submitter/submitter_store.h"
#include "tests/testing/wait.h"
#include "tests/submitter/merkle_fixture.h"
#include "tests/submitter/test_util.h"
#include "tests/support/backend.h"
#include "tests/support/pg_server.h"

namespace anchord::submitter {
namespace {

using ::anchord::testing::Backend;

// The store tests run on SQLite and PostgreSQL.
class MerkleStoreTest : public MerkleFixture, public ::testing::WithParamInterface<Backend> {
 protected:
  Backend backend() const override { return GetParam(); }
};

// Upgrades of an old SQLite file.
class MerkleSqliteTest : public MerkleFixture {};

TEST_P(MerkleStoreTest, LeavesAreNeverClaimedAndListOldestFirst) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2), PerFile(3), Leaf(4)}, kNow).ok());
  EXPECT_EQ(Row(1).mode, RowMode::kLeaf);
  EXPECT_EQ(Row(3).mode, RowMode::kPerFile);
  EXPECT_FALSE(Sealed(Row(1)));
  EXPECT_EQ(Row(1).state, SubState::kQueued);

  // Only the per-file row can be claimed, however large the limit and however late.
  auto claimed = store_->ClaimBatch("fake", "w", kNow + absl::Hours(1), kNow + absl::Hours(2), 100);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_EQ((*claimed)[0].digest.raw(), D(3));
  // (within the lease of row 3)
  auto again = store_->ClaimBatch("fake", "w2", kNow + absl::Hours(1) + absl::Minutes(1),
                                  kNow + absl::Hours(4), 100);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());

  auto all = Unbatched();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].digest.raw(), D(1));
  EXPECT_EQ(all[1].digest.raw(), D(2));
  EXPECT_EQ(all[2].digest.raw(), D(4));
  auto two = Unbatched(2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[1].digest.raw(), D(2));
  // Another provider's leaves are not listed.
  ASSERT_TRUE(store_->InsertBatch({Leaf(5, "other")}, kNow).ok());
  EXPECT_EQ(Unbatched().size(), 3u);
}

TEST_P(MerkleStoreTest, ClaimBatchTakesUpToLimitOldestFirst) {
  std::vector<NewItem> items;
  for (int n = 1; n <= 7; ++n) items.push_back(PerFile(n));
  ASSERT_TRUE(store_->InsertBatch(items, kNow).ok());
  auto first = store_->ClaimBatch("fake", "w1", kNow, kNow + absl::Minutes(1), 5);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ((*first)[i].digest.raw(), D(i + 1));
  }
  // The leased rows are not claimed again; the rest are.
  auto second = store_->ClaimBatch("fake", "w2", kNow, kNow + absl::Minutes(1), 5);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->size(), 2u);
  EXPECT_EQ((*second)[0].digest.raw(), D(6));
  EXPECT_EQ((*second)[1].digest.raw(), D(7));
  // A limit below 1 still claims one row once leases expired.
  auto later =
      store_->ClaimBatch("fake", "w3", kNow + absl::Minutes(2), kNow + absl::Minutes(3), 0);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->size(), 1u);
}

TEST_P(MerkleStoreTest, CreateMerkleBatchCommitsRootAndEveryLeaf) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2), Leaf(3)}, kNow).ok());
  auto leaves = Unbatched();
  ASSERT_EQ(leaves.size(), 3u);
  TestBatch b = MakeBatch(leaves);
  auto id = store_->CreateMerkleBatch(b, kNow + absl::Seconds(1));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_GT(*id, 0);

  Submission root = RowOf(b.root);
  EXPECT_EQ(root.mode, RowMode::kRoot);
  EXPECT_EQ(root.leaf_count, 3);
  EXPECT_EQ(root.batch_id, *id);
  EXPECT_EQ(root.state, SubState::kQueued);
  EXPECT_EQ(root.provider, "fake");
  EXPECT_EQ(root.file.filename, "root.bin");
  for (int i = 0; i < 3; ++i) {
    Submission l = Row(i + 1);
    EXPECT_EQ(l.batch_id, *id);
    EXPECT_EQ(l.nonce, b.nonces[i]);
    EXPECT_EQ(l.merkle_path, b.paths[i]);
    EXPECT_EQ(l.merkle_root, b.root);
    EXPECT_EQ(l.state, SubState::kQueued);
    auto to_root = merkle::PathRoot(AsDigest(l.digest), l.merkle_path);
    ASSERT_TRUE(to_root.ok()) << to_root.status();
    EXPECT_EQ(to_root->raw(), b.root);
  }
  EXPECT_TRUE(Unbatched().empty());
  // The root is what the engine claims.
  auto claimed =
      store_->ClaimBatch("fake", "w", kNow + absl::Seconds(1), kNow + absl::Minutes(1), 10);
  ASSERT_TRUE(claimed.ok());
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_EQ((*claimed)[0].digest.raw(), b.root);
}

TEST_P(MerkleStoreTest, SecondBatchOverABatchedLeafIsAbortedAndChangesNothing) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2), Leaf(3)}, kNow).ok());
  auto leaves = Unbatched();
  ASSERT_EQ(leaves.size(), 3u);
  // Another batcher read the same leaves and sealed the first two.
  TestBatch first = MakeBatch({leaves[0], leaves[1]});
  ASSERT_TRUE(store_->CreateMerkleBatch(first, kNow).ok());
  const Submission leaf3_before = Row(3);

  // This one covers leaf 3 (free) and leaf 2 (already batched): nothing of it may be committed.
  TestBatch second = MakeBatch({leaves[2], leaves[1]});
  auto id = store_->CreateMerkleBatch(second, kNow + absl::Seconds(1));
  EXPECT_TRUE(absl::IsAborted(id.status())) << id.status();
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM submissions WHERE mode = 2"), 1);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM batches WHERE length(root) > 0"), 1);
  auto second_root = store_->GetByDigest(AsDigest(second.root));
  ASSERT_TRUE(second_root.ok());
  EXPECT_TRUE(second_root->empty());
  Submission leaf3 = Row(3);
  EXPECT_FALSE(Sealed(leaf3));
  EXPECT_TRUE(leaf3.nonce.empty());
  EXPECT_TRUE(leaf3.merkle_path.empty());
  EXPECT_TRUE(leaf3.merkle_root.empty());
  EXPECT_EQ(leaf3.updated_at, leaf3_before.updated_at);
  Submission leaf2 = Row(2);
  EXPECT_EQ(leaf2.merkle_root, first.root);
  EXPECT_EQ(leaf2.merkle_path, first.paths[1]);
  // Leaf 3 is still available for the next batch.
  auto left = Unbatched();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].digest.raw(), D(3));
}

TEST_P(MerkleStoreTest, MalformedBatchIsRejected) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2)}, kNow).ok());
  TestBatch b = MakeBatch(Unbatched());
  NewBatch no_nonce = b;
  no_nonce.nonces.pop_back();
  EXPECT_EQ(store_->CreateMerkleBatch(no_nonce, kNow).status().code(),
            absl::StatusCode::kInvalidArgument);
  NewBatch short_root = b;
  short_root.root.resize(31);
  EXPECT_EQ(store_->CreateMerkleBatch(short_root, kNow).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM submissions WHERE mode = 2"), 0);
  EXPECT_EQ(Unbatched().size(), 2u);
}

TEST_P(MerkleStoreTest, RootSubmittedCarriesRecordToLeavesButNotEvidence) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2), PerFile(3)}, kNow).ok());
  // Batch only leaves 1 and 2; an unrelated per-file row must not move.
  TestBatch b = MakeBatch(Unbatched());
  ASSERT_TRUE(store_->CreateMerkleBatch(b, kNow).ok());
  const int64_t seq_before = Row(1).change_seq;
  auto handoff_before = store_->PendingHandoff(100);
  ASSERT_TRUE(handoff_before.ok());
  EXPECT_TRUE(handoff_before->empty());

  Submission root = RowOf(b.root);
  StoredRecord rec;
  rec.proof_id = "root-proof";
  rec.certificate_url = "https://example.invalid/root";
  rec.block_height = 0;
  rec.evidence = "root-evidence-bytes";
  ASSERT_TRUE(store_->MarkSubmitted(root.id, rec, "req-root", kNow + absl::Seconds(2)).ok());

  Submission r = RowOf(b.root);
  EXPECT_EQ(r.state, SubState::kSubmitted);
  EXPECT_EQ(r.record.evidence, "root-evidence-bytes");
  for (int n : {1, 2}) {
    Submission l = Row(n);
    EXPECT_EQ(l.state, SubState::kSubmitted) << n;
    EXPECT_EQ(l.record.proof_id, "root-proof");
    EXPECT_EQ(l.record.certificate_url, "https://example.invalid/root");
    EXPECT_EQ(l.request_id, "req-root");
    EXPECT_TRUE(l.record.evidence.empty());
    // Owed to the poller (a SQLite leaf keeps its version: its state is its batch's).
    EXPECT_GE(l.change_seq, seq_before);
    EXPECT_FALSE(l.handed_off());
    EXPECT_EQ(l.merkle_root, b.root);  // untouched
  }
  EXPECT_EQ(Row(3).state, SubState::kQueued);
  auto handoff = store_->PendingHandoff(100);
  ASSERT_TRUE(handoff.ok());
  std::set<std::string> digests;
  for (const Submission& s : *handoff) digests.insert(s.digest.raw());
  EXPECT_EQ(digests, (std::set<std::string>{D(1), D(2), b.root}));
}

TEST_P(MerkleStoreTest, RootFailedFailsItsLeavesOnly) {
  const auto [b1, b2] = TwoBatches();

  Submission root1 = RowOf(b1.root);
  ASSERT_TRUE(store_->MarkFailed(root1.id, 7, "PLAN_LIMIT", "no plan", "req-f", kNow).ok());
  EXPECT_EQ(RowOf(b1.root).state, SubState::kFailed);
  for (int n : {1, 2}) {
    Submission l = Row(n);
    EXPECT_EQ(l.state, SubState::kFailed);
    EXPECT_EQ(l.error_code, "PLAN_LIMIT");
    EXPECT_EQ(l.error_message, "no plan");
    EXPECT_EQ(l.error_request_id, "req-f");
  }
  // The other batch and its root are untouched.
  EXPECT_EQ(Row(3).state, SubState::kQueued);
  EXPECT_EQ(RowOf(b2.root).state, SubState::kQueued);

  // Failing a per-file or leaf row touches nothing else.
  ASSERT_TRUE(store_->InsertBatch({PerFile(4)}, kNow).ok());
  ASSERT_TRUE(store_->MarkFailed(Row(4).id, 3, "X", "x", "", kNow).ok());
  EXPECT_EQ(Row(3).state, SubState::kQueued);
}

TEST_F(MerkleSqliteTest, OldSchemaDatabaseGainsTheNewColumns) {
  store_.reset();
  std::filesystem::remove(path_);
  {
    // The submissions table as the first release created it, with one queued row.
    auto db = ledger::SqliteDb::Open(path_);
    ASSERT_TRUE(db.ok()) << db.status();
    ledger::Session session(**db);
    ASSERT_TRUE(session
                    .Exec(R"sql(
CREATE TABLE submissions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, digest BLOB NOT NULL, provider TEXT NOT NULL,
  job TEXT NOT NULL, filename TEXT NOT NULL, size_bytes INTEGER NOT NULL,
  mime_type TEXT NOT NULL DEFAULT '', source_path TEXT NOT NULL DEFAULT '',
  state INTEGER NOT NULL, idempotency_key TEXT NOT NULL DEFAULT '',
  body BLOB NOT NULL DEFAULT '', proof_id TEXT NOT NULL DEFAULT '',
  record_state INTEGER NOT NULL DEFAULT 0, certificate_url TEXT NOT NULL DEFAULT '',
  verify_url TEXT NOT NULL DEFAULT '', block_height INTEGER NOT NULL DEFAULT 0,
  bitcoin_tx TEXT NOT NULL DEFAULT '', provider_created_at INTEGER NOT NULL DEFAULT 0,
  confirmed_at INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL DEFAULT 0, error_canonical INTEGER NOT NULL DEFAULT 0,
  error_code TEXT NOT NULL DEFAULT '', error_message TEXT NOT NULL DEFAULT '',
  error_request_id TEXT NOT NULL DEFAULT '', request_id TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  change_seq INTEGER NOT NULL DEFAULT 1, handed_off_seq INTEGER NOT NULL DEFAULT 0,
  lease_owner TEXT NOT NULL DEFAULT '', lease_until INTEGER NOT NULL DEFAULT 0,
  UNIQUE (digest, provider));
INSERT INTO submissions (digest, provider, job, filename, size_bytes, state, created_at,
  updated_at) VALUES (x'0101010101010101010101010101010101010101010101010101010101010101',
  'fake', 'default', 'old.txt', 5, 0, 1700000000000, 1700000000000);
)sql")
                    .ok());
  }
  for (int open = 0; open < 2; ++open) {  // the second open finds every column already there
    auto s = OpenSqliteSubmitterStore(path_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    auto old = store_->GetByDigest(AsDigest(std::string(32, '\x01')));
    ASSERT_TRUE(old.ok()) << old.status();
    ASSERT_EQ(old->size(), 1u);
    EXPECT_EQ((*old)[0].mode, RowMode::kPerFile);
    EXPECT_EQ((*old)[0].batch_id, 0);
    EXPECT_TRUE((*old)[0].record.evidence.empty());
    store_.reset();
  }
  for (const char* col : {"evidence", "mode", "batch_id", "nonce", "merkle_path", "merkle_root",
                          "leaf_count", "fallback_provider"}) {
    EXPECT_EQ(Scalar(absl::StrCat("SELECT COUNT(*) FROM pragma_table_info('submissions') WHERE "
                                  "name = '",
                                  col, "'")),
              1)
        << col;
  }
  // And the upgraded file works for batching.
  auto s = OpenSqliteSubmitterStore(path_);
  ASSERT_TRUE(s.ok());
  store_ = std::move(*s);
  ASSERT_TRUE(store_->InsertBatch({Leaf(1)}, kNow).ok());
  ASSERT_TRUE(store_->CreateMerkleBatch(MakeBatch(Unbatched()), kNow).ok());
  EXPECT_NE(Row(1).batch_id, 0);
}

// What every reader of a store sees of a sealed batch's leaves, in each state of its root: the
// backlog, the counts per state (the gauges), the job summary, the state a new file of a leaf's
// digest reports, and the hand-off, which owes each leaf once, and a leaf again only when its
// digest gains a file. (SQLite does not write a leaf row when its root is decided: the batch row
// carries the verdict, submitter_store_schema.h.)
class LeafReaders {
 public:
  explicit LeafReaders(SubmitterStore* store) : store_(store) {}
  int64_t Backlog() {
    auto n = store_->CountBacklog();
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? *n : -1;
  }
  std::map<SubState, int64_t> Counts() {
    std::map<SubState, int64_t> out;
    auto counts = store_->CountByProviderState();
    EXPECT_TRUE(counts.ok()) << counts.status();
    if (counts.ok()) {
      for (const BacklogCount& c : *counts) out[c.state] += c.count;
    }
    return out;
  }
  std::map<SubState, int64_t> Summary() {
    auto sum = store_->SummarizeJob("");
    EXPECT_TRUE(sum.ok()) << sum.status();
    return sum.ok() ? *sum : std::map<SubState, int64_t>{};
  }
  // The digests owed to the poller; marks them handed off as of their versions.
  std::multiset<std::string> HandOff() {
    auto rows = store_->PendingHandoff(1000);
    EXPECT_TRUE(rows.ok()) << rows.status();
    std::multiset<std::string> out;
    std::vector<std::pair<int64_t, int64_t>> acks;
    if (rows.ok()) {
      for (const Submission& r : *rows) {
        out.insert(r.digest.raw());
        acks.emplace_back(r.id, r.change_seq);
        EXPECT_TRUE(r.state == SubState::kSubmitted || r.state == SubState::kFailed) << r.id;
      }
    }
    EXPECT_TRUE(store_->MarkHandedOffBatch(acks).ok());
    return out;
  }

 private:
  SubmitterStore* store_;
};

// A database of the release before the batch row carried its leaves' verdict: a SUBMITTED
// root's leaf rows were written SUBMITTED (and handed off), a QUEUED root's left QUEUED. Opened by
// this release, neither batch's leaves are counted twice or owed to the poller again.
TEST_F(MerkleSqliteTest, BatchesOfTheReleaseBeforeTakeTheirRootsVerdictOnce) {
  const auto [b1, b2] = TwoBatches();
  const int64_t batch1 = Row(1).batch_id;
  ASSERT_NE(batch1, 0);
  store_.reset();
  // What the release before left: the root of batch 1 and its leaves SUBMITTED and handed off,
  // and no verdict columns on the batch rows.
  ExecSql(absl::StrCat(
      "UPDATE submissions SET state = 2, change_seq = 2, handed_off_seq = 2 WHERE batch_id = ",
      batch1,
      "; DROP INDEX batches_handoff; ALTER TABLE batches DROP COLUMN leaves_state; "
      "ALTER TABLE batches DROP COLUMN handoff_next"));
  ASSERT_EQ(Scalar("SELECT COUNT(*) FROM pragma_table_info('batches') WHERE name = "
                   "'leaves_state'"),
            0);
  auto s = OpenSqliteSubmitterStore(path_);
  ASSERT_TRUE(s.ok()) << s.status();
  store_ = std::move(*s);
  EXPECT_EQ(Scalar(absl::StrCat("SELECT leaves_state FROM batches WHERE id = ", batch1)), 2);
  LeafReaders read(store_.get());
  EXPECT_EQ(read.Backlog(), 2);  // batch 2: its leaf and its root
  const std::map<SubState, int64_t> counts = {{SubState::kQueued, 2}, {SubState::kSubmitted, 3}};
  EXPECT_EQ(read.Counts(), counts);
  EXPECT_TRUE(read.HandOff().empty());
  // Batch 2's root accepted by this release: its leaf is owed once, read as SUBMITTED.
  ASSERT_TRUE(store_->MarkSubmitted(RowOf(b2.root).id, StoredRecord{}, "r", kNow).ok());
  EXPECT_EQ(read.Backlog(), 0);
  EXPECT_EQ(read.HandOff(), (std::multiset<std::string>{D(3), b2.root}));
  EXPECT_TRUE(read.HandOff().empty());
}

// On SQLite a sealed leaf's row is written at intake only, into its open batch: the seal, its
// root's acceptance and its hand-off move its batch row. Acknowledgements out of order leave the
// batch's handoff_next at the first leaf not acknowledged; a restart resends from there (and only
// that).
TEST_F(MerkleSqliteTest, LeafRowsAreNotWrittenWhenDecidedOrHandedOff) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2), Leaf(3), Leaf(4), Leaf(5)}, kNow).ok());
  const int64_t batch = Row(1).batch_id;
  ASSERT_NE(batch, 0);
  EXPECT_FALSE(Sealed(Row(1)));
  TestBatch b = MakeBatch(Unbatched());
  const absl::Time sealed = kNow + absl::Seconds(1);
  ASSERT_TRUE(store_->CreateMerkleBatch(b, sealed).ok());
  EXPECT_EQ(RowOf(b.root).batch_id, batch);
  EXPECT_TRUE(Sealed(Row(1)));
  const std::string as_sealed =
      absl::StrCat("SELECT COUNT(*) FROM submissions WHERE mode = 1 AND batch_id = ", batch,
                   " AND state = 0 AND change_seq = 1 AND handed_off_seq = 0 AND updated_at = ",
                   absl::ToUnixMillis(kNow));
  ASSERT_EQ(Scalar(as_sealed), 5);
  ASSERT_TRUE(store_->MarkSubmitted(RowOf(b.root).id, StoredRecord{}, "r", sealed).ok());
  const std::string next = absl::StrCat("SELECT handoff_next FROM batches WHERE id = ", batch);
  EXPECT_EQ(Scalar(next), Row(1).id);  // owed from the batch's first leaf

  auto pending = store_->PendingHandoff(100);
  ASSERT_TRUE(pending.ok()) << pending.status();
  ASSERT_EQ(pending->size(), 6u);  // five leaves, then the root
  std::vector<int64_t> leaf(5);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ((*pending)[i].digest.raw(), D(i + 1));
    EXPECT_EQ((*pending)[i].state, SubState::kSubmitted);
    leaf[i] = (*pending)[i].id;
  }
  const int64_t root_id = (*pending)[5].id;
  auto ack = [&](std::vector<int> leaves, bool root) {
    std::vector<std::pair<int64_t, int64_t>> rows;
    for (int i : leaves) rows.emplace_back(leaf[i], 1);
    if (root) rows.emplace_back(root_id, RowOf(b.root).change_seq);
    ASSERT_TRUE(store_->MarkHandedOffBatch(rows).ok());
  };
  auto owed = [&]() {
    std::vector<int64_t> ids;
    auto rows = store_->PendingHandoff(100);
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (rows.ok()) {
      for (const Submission& r : *rows) ids.push_back(r.id);
    }
    return ids;
  };
  // Leaves 1, 2 and 4 and the root acknowledged: leaf 3 stops the batch there.
  ack({3, 0, 1}, true);
  EXPECT_EQ(Scalar(next), leaf[2]);
  EXPECT_EQ(owed(), (std::vector<int64_t>{leaf[2], leaf[4]}));
  EXPECT_TRUE(Row(2).handed_off());
  EXPECT_FALSE(Row(3).handed_off());

  // A restart knows only handoff_next: leaf 4 is owed again (the poller stores nothing twice).
  store_.reset();
  auto reopened = OpenSqliteSubmitterStore(path_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  EXPECT_EQ(owed(), (std::vector<int64_t>{leaf[2], leaf[3], leaf[4]}));
  ack({4, 2, 3}, false);
  EXPECT_TRUE(owed().empty());
  EXPECT_EQ(Scalar(next), -1);
  EXPECT_TRUE(Row(5).handed_off());
  EXPECT_EQ(Scalar(as_sealed), 5);  // no leaf row was written after its batch was sealed
}

TEST_P(MerkleStoreTest, ReopenKeepsBatchFields) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2)}, kNow).ok());
  NewItem fb = PerFile(3);
  fb.fallback_provider = "other";
  ASSERT_TRUE(store_->InsertBatch({fb}, kNow).ok());
  TestBatch b = MakeBatch(Unbatched());
  ASSERT_TRUE(store_->CreateMerkleBatch(b, kNow).ok());
  store_.reset();
  auto s = OpenStore();
  ASSERT_TRUE(s.ok()) << s.status();
  store_ = std::move(*s);
  EXPECT_EQ(Row(2).merkle_path, b.paths[1]);
  EXPECT_EQ(Row(2).nonce, b.nonces[1]);
  EXPECT_EQ(RowOf(b.root).leaf_count, 2);
  EXPECT_EQ(Row(3).fallback_provider, "other");
}

// A leaf row keeps no nonce, path or record of its own: the batch row holds the leaves in tree
// order once, and what a reader gets for a leaf is derived from it, byte for byte what the tree
// gave at seal time, also after a restart between the seal and the hand-off.
TEST_P(MerkleStoreTest, LeafPathsComeFromTheBatchOrderAcrossRestarts) {
  std::vector<NewItem> items;
  for (int n = 1; n <= 5; ++n) items.push_back(Leaf(n));
  ASSERT_TRUE(store_->InsertBatch(items, kNow).ok());
  TestBatch b = MakeBatch(Unbatched());
  ASSERT_TRUE(store_->CreateMerkleBatch(b, kNow).ok());
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM submissions WHERE mode = 1 AND (length(merkle_path) > 0 "
                   "OR length(nonce) > 0 OR length(merkle_root) > 0)"),
            0);
  EXPECT_EQ(Scalar("SELECT length(leaves) FROM batches WHERE length(root) > 0"), 5 * (32 + 16));

  // A crash after the seal, before the root is sent: a new process finds everything.
  store_.reset();
  auto reopened = OpenStore();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  StoredRecord rec;
  rec.proof_id = "root-proof";
  rec.verify_url = "https://example.invalid/verify/root";
  rec.evidence = "root-evidence";
  ASSERT_TRUE(store_->MarkSubmitted(RowOf(b.root).id, rec, "req-root", kNow).ok());
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM submissions WHERE mode = 1 AND length(proof_id) > 0"), 0);

  // And a crash after the root's record, before the hand-off.
  store_.reset();
  reopened = OpenStore();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  auto pending = store_->PendingHandoff(100);
  ASSERT_TRUE(pending.ok()) << pending.status();
  ASSERT_EQ(pending->size(), 6u);  // 5 leaves, then the root
  for (int i = 0; i < 5; ++i) {
    const Submission& l = (*pending)[i];
    ASSERT_EQ(l.digest, AsDigest(D(i + 1)));
    EXPECT_EQ(l.state, SubState::kSubmitted);
    EXPECT_EQ(l.nonce, b.nonces[i]);
    EXPECT_EQ(l.merkle_path, b.paths[i]) << i;
    EXPECT_EQ(l.merkle_root, b.root);
    EXPECT_EQ(l.record.proof_id, "root-proof");
    EXPECT_EQ(l.record.verify_url, "https://example.invalid/verify/root");
    EXPECT_EQ(l.request_id, "req-root");
    EXPECT_TRUE(l.record.evidence.empty());
    auto to_root = merkle::PathRoot(l.digest, l.merkle_path);
    ASSERT_TRUE(to_root.ok()) << to_root.status();
    EXPECT_EQ(to_root->raw(), b.root);
  }
  EXPECT_EQ((*pending)[5].digest.raw(), b.root);
  EXPECT_EQ((*pending)[5].record.evidence, "root-evidence");
}

// Stored leaves that do not lead to the batch's root are never used for a proof.
TEST_P(MerkleStoreTest, DamagedBatchLeavesAreRefused) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2)}, kNow).ok());
  TestBatch b = MakeBatch(Unbatched());
  ASSERT_TRUE(store_->CreateMerkleBatch(b, kNow).ok());
  // The two leaves swapped: same bytes, another tree.
  const std::string swapped = absl::StrCat(HexEncode(D(2)), HexEncode(D(1)), HexEncode(b.nonces[1]),
                                           HexEncode(b.nonces[0]));
  ExecSql(backend() == ::anchord::testing::Backend::kPostgres
              ? absl::StrCat("UPDATE batches SET leaves = '\\x", swapped, "'")
              : absl::StrCat("UPDATE batches SET leaves = x'", swapped, "'"));
  store_.reset();  // no tree cached from before
  auto reopened = OpenStore();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  auto rows = store_->GetByDigest(AsDigest(D(1)));
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kFailedPrecondition) << rows.status();
  EXPECT_NE(rows.status().message().find("root"), absl::string_view::npos) << rows.status();
}

// What the hand-off sends a batch's leaves with (the batch form): the stored leaves as stored,
// decoded, and the root row with its evidence; also after a restart (no tree cached).
TEST_P(MerkleStoreTest, BatchForHandoffGivesStoredLeavesAndRootRow) {
  std::vector<NewItem> items;
  for (int n = 1; n <= 5; ++n) items.push_back(Leaf(n));
  ASSERT_TRUE(store_->InsertBatch(items, kNow).ok());
  std::vector<WaitingLeaf> leaves = Unbatched();
  TestBatch b = MakeBatch(leaves);
  auto id = store_->CreateMerkleBatch(b, kNow);
  ASSERT_TRUE(id.ok()) << id.status();
  StoredRecord rec;
  rec.proof_id = "root-proof";
  rec.evidence = "root-evidence";
  ASSERT_TRUE(store_->MarkSubmitted(RowOf(b.root).id, rec, "req-root", kNow).ok());
  std::vector<std::string> digests;
  for (const WaitingLeaf& l : leaves) digests.push_back(l.digest.raw());
  auto encoded = merkle::EncodeBatchLeaves(digests, b.nonces);
  ASSERT_TRUE(encoded.ok()) << encoded.status();

  for (int pass = 0; pass < 2; ++pass) {
    auto got = store_->BatchForHandoff(*id);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_NE(got->leaves, nullptr);
    EXPECT_EQ(got->leaves->encoded(), *encoded);
    EXPECT_EQ(got->leaves->size(), 5u);
    EXPECT_EQ(got->leaves->IndexOf(D(4)), std::optional<size_t>(3));
    EXPECT_EQ(got->leaves->tree().root().raw(), b.root);
    ASSERT_TRUE(got->root.has_value());
    EXPECT_EQ(got->root->digest.raw(), b.root);
    EXPECT_EQ(got->root->mode, RowMode::kRoot);
    EXPECT_EQ(got->root->state, SubState::kSubmitted);
    EXPECT_EQ(got->root->record.proof_id, "root-proof");
    EXPECT_EQ(got->root->record.evidence, "root-evidence");
    EXPECT_EQ(got->root->leaf_count, 5);
    store_.reset();
    auto reopened = OpenStore();
    ASSERT_TRUE(reopened.ok()) << reopened.status();
    store_ = std::move(*reopened);
  }
  EXPECT_EQ(store_->BatchForHandoff(*id + 1000).status().code(), absl::StatusCode::kNotFound);
}

// The batch the batcher built (NewBatch::sealed) is what the hand-off gets for it after the
// commit, not a tree rebuilt from the stored leaves; one that is not the batch's is not kept.
TEST_P(MerkleStoreTest, BatchForHandoffKeepsTheSealersOwnTree) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2), Leaf(3)}, kNow).ok());
  std::vector<WaitingLeaf> leaves = Unbatched();
  TestBatch b = MakeBatch(leaves);
  std::vector<Digest> digests;
  for (const WaitingLeaf& l : leaves) digests.push_back(l.digest);
  auto sealed = merkle::SealedBatch::Build(digests, b.nonces);
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  ASSERT_EQ((*sealed)->tree().root().raw(), b.root);
  b.sealed = *sealed;
  auto id = store_->CreateMerkleBatch(b, kNow);
  ASSERT_TRUE(id.ok()) << id.status();
  auto got = store_->BatchForHandoff(*id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->leaves.get(), sealed->get());

  // Another batch's tree (of as many leaves) given with this one: the stored leaves are decoded.
  ASSERT_TRUE(store_->InsertBatch({Leaf(4), Leaf(5), Leaf(6)}, kNow).ok());
  TestBatch other = MakeBatch(Unbatched());
  other.sealed = *sealed;
  auto other_id = store_->CreateMerkleBatch(other, kNow);
  ASSERT_TRUE(other_id.ok()) << other_id.status();
  auto other_got = store_->BatchForHandoff(*other_id);
  ASSERT_TRUE(other_got.ok()) << other_got.status();
  ASSERT_NE(other_got->leaves, nullptr);
  EXPECT_NE(other_got->leaves.get(), sealed->get());
  EXPECT_EQ(other_got->leaves->tree().root().raw(), other.root);
  EXPECT_EQ(other_got->leaves->size(), 3u);
}

TEST_P(MerkleStoreTest, EveryReaderSeesALeafInItsRootsState) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2), Leaf(3), PerFile(4)}, kNow).ok());
  LeafReaders read(store_.get());
  EXPECT_EQ(read.Backlog(), 4);
  TestBatch b = MakeBatch(Unbatched());
  ASSERT_EQ(b.leaf_ids.size(), 3u);
  ASSERT_TRUE(store_->CreateMerkleBatch(b, kNow).ok());
  EXPECT_EQ(read.Backlog(), 5);  // three leaves, their root, the per-file row
  EXPECT_EQ(read.Counts(), (std::map<SubState, int64_t>{{SubState::kQueued, 5}}));
  EXPECT_EQ(read.Summary(), (std::map<SubState, int64_t>{{SubState::kQueued, 5}}));
  EXPECT_TRUE(read.HandOff().empty());

  StoredRecord rec;
  rec.proof_id = "root-proof";
  ASSERT_TRUE(store_->MarkSubmitted(RowOf(b.root).id, rec, "req-root", kNow).ok());
  const std::map<SubState, int64_t> after = {{SubState::kQueued, 1}, {SubState::kSubmitted, 4}};
  EXPECT_EQ(read.Backlog(), 1);
  EXPECT_EQ(read.Counts(), after);
  EXPECT_EQ(read.Summary(), after);
  EXPECT_EQ(read.HandOff(), (std::multiset<std::string>{D(1), D(2), D(3), b.root}));
  EXPECT_TRUE(read.HandOff().empty());  // acknowledged: owed no more

  // A new file of leaf 2's digest: reported SUBMITTED, and only that leaf is owed again.
  NewItem again = Leaf(2);
  again.file.source_path = "elsewhere/2.bin";
  auto res = store_->InsertBatch({again}, kNow + absl::Seconds(1));
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ((*res)[0].state, SubState::kSubmitted);
  EXPECT_EQ(Row(2).state, SubState::kSubmitted);
  EXPECT_EQ(Row(2).record.proof_id, "root-proof");
  EXPECT_EQ(read.HandOff(), (std::multiset<std::string>{D(2)}));
  EXPECT_TRUE(read.HandOff().empty());
  EXPECT_EQ(read.Counts(), after);
  EXPECT_EQ(read.Backlog(), 1);
}

TEST_P(MerkleStoreTest, EveryReaderSeesTheLeavesOfAFailedRootFailed) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2), PerFile(3)}, kNow).ok());
  TestBatch b = MakeBatch(Unbatched());
  ASSERT_TRUE(store_->CreateMerkleBatch(b, kNow).ok());
  ASSERT_TRUE(store_->MarkFailed(RowOf(b.root).id, 7, "PLAN_LIMIT", "no plan", "r", kNow).ok());
  LeafReaders read(store_.get());
  const std::map<SubState, int64_t> after = {{SubState::kQueued, 1}, {SubState::kFailed, 3}};
  EXPECT_EQ(read.Backlog(), 1);
  EXPECT_EQ(read.Counts(), after);
  EXPECT_EQ(read.Summary(), after);
  EXPECT_EQ(read.HandOff(), (std::multiset<std::string>{D(1), D(2), b.root}));
  EXPECT_TRUE(read.HandOff().empty());
}

INSTANTIATE_TEST_SUITE_P(Backends, MerkleStoreTest, ANCHORD_ALL_BACKENDS);

// A batch sealed by an older release kept each leaf's nonce, path and root in the leaf row and no
// leaves in the batch row: such rows read as stored.
TEST_F(MerkleSqliteTest, LeavesSealedByAnOlderReleaseReadAsStored) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2)}, kNow).ok());
  TestBatch b = MakeBatch(Unbatched());
  ASSERT_TRUE(store_->CreateMerkleBatch(b, kNow).ok());
  ExecSql("UPDATE batches SET leaves = x''");
  for (int i = 0; i < 2; ++i) {
    ExecSql(absl::StrCat("UPDATE submissions SET nonce = x'", HexEncode(b.nonces[i]),
                         "', merkle_path = x'", HexEncode(b.paths[i]), "', merkle_root = x'",
                         HexEncode(b.root), "' WHERE digest = x'", HexEncode(D(i + 1)), "'"));
  }
  store_.reset();
  auto reopened = OpenStore();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  for (int i = 0; i < 2; ++i) {
    Submission l = Row(i + 1);
    EXPECT_EQ(l.merkle_path, b.paths[i]);
    EXPECT_EQ(l.nonce, b.nonces[i]);
    EXPECT_EQ(l.merkle_root, b.root);
  }
  // Its root accepted by this release: the leaves hand off with the root's record, as before.
  StoredRecord rec;
  rec.proof_id = "root-proof";
  ASSERT_TRUE(store_->MarkSubmitted(RowOf(b.root).id, rec, "req-root", kNow).ok());
  auto pending = store_->PendingHandoff(10);
  ASSERT_TRUE(pending.ok()) << pending.status();
  ASSERT_EQ(pending->size(), 3u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ((*pending)[i].merkle_path, b.paths[i]);
    EXPECT_EQ((*pending)[i].record.proof_id, "root-proof");
    EXPECT_EQ((*pending)[i].request_id, "req-root");
  }
  // The hand-off cannot send these in the batch form: no stored leaves.
  auto batch = store_->BatchForHandoff(RowOf(b.root).batch_id);
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->leaves, nullptr);
  ASSERT_TRUE(batch->root.has_value());
  EXPECT_EQ(batch->root->digest.raw(), b.root);
}

// A leaf goes into its provider's open batch as it is stored; sealing the batch writes no leaf
// row. Leaves stored after the batcher read the batch's are not in its tree: the seal then marks
// the leaves it takes one by one, and the later ones stay in the open batch (its count follows),
// sealed next. The backlog counts every leaf once throughout.
TEST_P(MerkleStoreTest, LeavesStoredAfterTheBatcherReadStayInTheOpenBatch) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2)}, kNow).ok());
  const int64_t open = Row(1).batch_id;
  ASSERT_NE(open, 0);
  EXPECT_EQ(Row(2).batch_id, open);
  std::vector<WaitingLeaf> read = Unbatched();
  ASSERT_EQ(read.size(), 2u);
  ASSERT_TRUE(store_->InsertBatch({Leaf(3)}, kNow + absl::Seconds(1)).ok());
  EXPECT_EQ(Row(3).batch_id, open);
  EXPECT_EQ(Scalar(absl::StrCat("SELECT leaf_count FROM batches WHERE id = ", open)), 3);
  EXPECT_EQ(*store_->CountBacklog(), 3);

  TestBatch first = MakeBatch(read);
  auto id = store_->CreateMerkleBatch(first, kNow + absl::Seconds(2));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_NE(*id, open);
  EXPECT_TRUE(Sealed(Row(1)));
  EXPECT_TRUE(Sealed(Row(2)));
  EXPECT_EQ(Row(1).batch_id, *id);
  EXPECT_FALSE(Sealed(Row(3)));
  EXPECT_EQ(Row(3).batch_id, open);
  EXPECT_EQ(Scalar(absl::StrCat("SELECT leaf_count FROM batches WHERE id = ", open)), 1);
  auto waiting = store_->UnbatchedWaiting("fake");
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting->count, 1);
  EXPECT_EQ(waiting->oldest, kNow);               // the open batch's age: when its first leaf came
  EXPECT_EQ(*store_->CountBacklog(), 1 + 2 + 1);  // the root, its leaves, the one waiting

  std::vector<WaitingLeaf> rest = Unbatched();
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].digest.raw(), D(3));
  const absl::Time stored3 = Row(3).updated_at;
  auto second = store_->CreateMerkleBatch(MakeBatch(rest), kNow + absl::Seconds(3));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, open);  // the open batch itself, sealed: its leaf row is not written
  EXPECT_TRUE(Sealed(Row(3)));
  EXPECT_EQ(Row(3).updated_at, stored3);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM batches WHERE length(root) = 0"), 0);
  EXPECT_EQ(*store_->CountBacklog(), 2 + 3);
  EXPECT_TRUE(Unbatched().empty());
}

// A database of an older release holds waiting leaves with batch id 0 and no open batch: they are
// sealed first (marked with their batch as before), then the leaves stored since in open batches.
TEST_P(MerkleStoreTest, WaitingLeavesOfAnOlderReleaseAreSealedFirst) {
  ASSERT_TRUE(store_->InsertBatch({Leaf(1)}, kNow).ok());
  ExecSql("UPDATE submissions SET batch_id = 0");
  ExecSql("DELETE FROM batches");
  store_.reset();
  auto reopened = OpenStore();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  ASSERT_TRUE(store_->InsertBatch({Leaf(2), Leaf(3)}, kNow + absl::Seconds(1)).ok());
  EXPECT_EQ(Row(1).batch_id, 0);
  EXPECT_NE(Row(2).batch_id, 0);
  EXPECT_EQ(*store_->CountBacklog(), 3);

  auto waiting = store_->UnbatchedWaiting("fake");
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting->count, 1);
  std::vector<WaitingLeaf> old = Unbatched();
  ASSERT_EQ(old.size(), 1u);
  EXPECT_EQ(old[0].digest.raw(), D(1));
  auto first = store_->CreateMerkleBatch(MakeBatch(old), kNow + absl::Seconds(2));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(Row(1).batch_id, *first);
  EXPECT_TRUE(Sealed(Row(1)));

  std::vector<WaitingLeaf> open = Unbatched();
  ASSERT_EQ(open.size(), 2u);
  auto second = store_->CreateMerkleBatch(MakeBatch(open), kNow + absl::Seconds(3));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(Row(2).batch_id, *second);
  EXPECT_EQ(Row(3).batch_id, *second);
  EXPECT_TRUE(Sealed(Row(3)));
  EXPECT_TRUE(Unbatched().empty());
  EXPECT_EQ(*store_->CountBacklog(), 2 + 3);
}

// --- Batcher -------------------------------------------------------------------------------------

// The Batcher over each store.
class BatcherTest : public MerkleFixture, public ::testing::WithParamInterface<Backend> {
 protected:
  Backend backend() const override { return GetParam(); }
  std::unique_ptr<Batcher> Make(int max_leaves, absl::Duration window, int* sealed_calls = nullptr,
                                SubmitterStore* store = nullptr) {
    BatcherOptions o;
    o.max_leaves = max_leaves;
    o.window = window;
    return std::make_unique<Batcher>(store ? store : store_.get(), std::vector<std::string>{"fake"},
                                     nullptr, &clock_, o, [sealed_calls] {
                                       if (sealed_calls) ++*sealed_calls;
                                     });
  }
  // A batcher for the loop's tests: batches of 3, a window that never runs out, a look every
  // `poll`; `calls` counts the seals.
  std::unique_ptr<Batcher> MakeLooping(absl::Duration poll, std::atomic<int>* calls) {
    BatcherOptions o;
    o.max_leaves = 3;
    o.window = absl::Hours(1);
    o.poll = poll;
    return std::make_unique<Batcher>(store_.get(), std::vector<std::string>{"fake"}, nullptr,
                                     &clock_, o, [calls] { ++*calls; });
  }
  std::vector<Submission> Roots() {
    std::vector<Submission> out;
    for (const std::string& digest :
         Column("SELECT digest FROM submissions WHERE mode = 2 ORDER BY id")) {
      out.push_back(RowOf(digest));
    }
    return out;
  }
  FakeClock clock_{kNow};
};

TEST_P(BatcherTest, SealsWhenFullNotBeforeTheWindowThenAfterIt) {
  int calls = 0;
  auto batcher = Make(4, absl::Seconds(5), &calls);
  std::vector<NewItem> items;
  for (int n = 1; n <= 6; ++n) items.push_back(Leaf(n));
  ASSERT_TRUE(store_->InsertBatch(items, clock_.Now()).ok());

  // 6 leaves, 4 per batch: one full batch at once; the 2 left wait for the window.
  auto sealed = batcher->SealDue();
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  EXPECT_EQ(*sealed, 1);
  EXPECT_EQ(calls, 1);
  ASSERT_EQ(Roots().size(), 1u);
  EXPECT_EQ(Roots()[0].leaf_count, 4);
  for (int n = 1; n <= 4; ++n) EXPECT_TRUE(Sealed(Row(n))) << n;
  EXPECT_FALSE(Sealed(Row(5)));

  clock_.Advance(absl::Seconds(4));
  sealed = batcher->SealDue();
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(*sealed, 0);
  EXPECT_EQ(Unbatched().size(), 2u);

  clock_.Advance(absl::Seconds(2));
  sealed = batcher->SealDue();
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(*sealed, 1);
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(Unbatched().empty());
  auto roots = Roots();
  ASSERT_EQ(roots.size(), 2u);
  EXPECT_EQ(roots[1].leaf_count, 2);
  EXPECT_EQ(Row(5).batch_id, roots[1].batch_id);
  EXPECT_EQ(Row(6).batch_id, roots[1].batch_id);

  // Nothing left: nothing sealed, no callback.
  sealed = batcher->SealDue();
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(*sealed, 0);
  EXPECT_EQ(calls, 2);
}

TEST_P(BatcherTest, WindowCountsFromTheOldestLeaf) {
  auto batcher = Make(100, absl::Seconds(5));
  ASSERT_TRUE(store_->InsertBatch({Leaf(1)}, clock_.Now()).ok());
  clock_.Advance(absl::Seconds(4));
  ASSERT_TRUE(store_->InsertBatch({Leaf(2)}, clock_.Now()).ok());
  EXPECT_EQ(*batcher->SealDue(), 0);
  clock_.Advance(absl::Seconds(1) + absl::Milliseconds(1));
  // The oldest waited 5 s: both go, though the newest waited 1 s only.
  EXPECT_EQ(*batcher->SealDue(), 1);
  EXPECT_TRUE(Unbatched().empty());
  EXPECT_EQ(Row(1).batch_id, Row(2).batch_id);
}

TEST_P(BatcherTest, PathsLeadToTheRootAndNoncesAreFreshAndDistinct) {
  auto batcher = Make(50, absl::ZeroDuration());
  std::vector<NewItem> items;
  for (int n = 1; n <= 37; ++n) items.push_back(Leaf(n));
  ASSERT_TRUE(store_->InsertBatch(items, clock_.Now()).ok());
  ASSERT_EQ(*batcher->SealDue(), 1);
  auto roots = Roots();
  ASSERT_EQ(roots.size(), 1u);
  const Submission& root = roots[0];
  EXPECT_EQ(root.leaf_count, 37);
  EXPECT_EQ(root.file.size_bytes, 37 * 32);
  EXPECT_EQ(root.file.filename.rfind("anchord-merkle-root-", 0), 0u) << root.file.filename;
  std::set<std::string> nonces;
  for (int n = 1; n <= 37; ++n) {
    Submission l = Row(n);
    EXPECT_EQ(l.nonce.size(), merkle::kNonceSize);
    nonces.insert(l.nonce);
    EXPECT_EQ(l.merkle_root, root.digest.raw());
    EXPECT_EQ(l.batch_id, root.batch_id);
    auto r = merkle::PathRoot(AsDigest(l.digest), l.merkle_path);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, root.digest) << n;
    // A path applies to its own digest only.
    auto wrong = merkle::PathRoot(AsDigest(D(1000 + n)), l.merkle_path);
    ASSERT_TRUE(wrong.ok());
    EXPECT_NE(*wrong, root.digest);
  }
  EXPECT_EQ(nonces.size(), 37u);
}

// One intake commit of more leaves than a batch takes fills open batches of max_leaves each (the
// store has the batcher's limit), so each full one is sealed as it is.
TEST_P(BatcherTest, OneCommitFillsOpenBatchesOfMaxLeavesEach) {
  auto batcher = Make(4, absl::Hours(1));
  std::vector<NewItem> items;
  for (int n = 1; n <= 10; ++n) items.push_back(Leaf(n));
  ASSERT_TRUE(store_->InsertBatch(items, clock_.Now()).ok());
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM batches WHERE length(root) = 0"), 3);
  EXPECT_EQ(Scalar("SELECT MAX(leaf_count) FROM batches"), 4);
  EXPECT_EQ(Scalar("SELECT CAST(SUM(leaf_count) AS BIGINT) FROM batches"), 10);
  EXPECT_EQ(*batcher->SealDue(), 2);
  ASSERT_EQ(Roots().size(), 2u);
  EXPECT_EQ(Roots()[0].batch_id, Row(1).batch_id);
  EXPECT_EQ(Roots()[1].batch_id, Row(5).batch_id);
  EXPECT_FALSE(Sealed(Row(9)));
  EXPECT_EQ(Unbatched().size(), 2u);
}

// An open batch without leaves (its count says otherwise) never holds up the batches after it:
// the batcher finds the oldest open batch by its leaves.
TEST_P(BatcherTest, AnOpenBatchWithoutLeavesHoldsNothingUp) {
  auto batcher = Make(4, absl::Seconds(5));
  ExecSql(
      "INSERT INTO batches (provider, root, leaf_count, created_at, leaves) VALUES ('fake', "
      "'', 4, 0, '')");
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2)}, clock_.Now()).ok());
  EXPECT_GT(Row(1).batch_id, 1);  // not the empty one: it is full
  auto waiting = store_->UnbatchedWaiting("fake");
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting->count, 2);
  EXPECT_EQ(Unbatched().size(), 2u);
  clock_.Advance(absl::Seconds(6));
  EXPECT_EQ(*batcher->SealDue(), 1);
  EXPECT_TRUE(Sealed(Row(1)));
  EXPECT_TRUE(Sealed(Row(2)));
}

TEST_P(BatcherTest, ManyFullBatchesAndOnlyTheGivenProvider) {
  auto batcher = Make(10, absl::Hours(1));
  std::vector<NewItem> items;
  for (int n = 1; n <= 35; ++n) items.push_back(Leaf(n));
  items.push_back(Leaf(99, "other"));
  ASSERT_TRUE(store_->InsertBatch(items, clock_.Now()).ok());
  EXPECT_EQ(*batcher->SealDue("nobody"), 0);
  EXPECT_EQ(*batcher->SealDue(), 3);  // 3 full, 5 wait
  EXPECT_EQ(Unbatched().size(), 5u);
  EXPECT_FALSE(Sealed(Row(99, "other")));  // not a provider of this batcher
}

TEST_P(BatcherTest, TwoBatchersRacingNeverShareALeaf) {
  constexpr int kLeaves = 300;
  std::vector<NewItem> items;
  for (int n = 1; n <= kLeaves; ++n) items.push_back(Leaf(n));
  ASSERT_TRUE(store_->InsertBatch(items, clock_.Now()).ok());
  clock_.Advance(absl::Seconds(10));
  // Two connections to the same file, as two processes would have.
  auto s2 = OpenStore();
  ASSERT_TRUE(s2.ok()) << s2.status();
  std::unique_ptr<SubmitterStore> store2 = std::move(*s2);
  auto a = Make(7, absl::Seconds(1), nullptr, store_.get());
  auto b = Make(7, absl::Seconds(1), nullptr, store2.get());
  std::atomic<int> sealed_total{0};
  std::atomic<int> errors{0};
  auto run = [&](Batcher* batcher) {
    for (int i = 0; i < 200; ++i) {
      auto n = batcher->SealDue();
      if (!n.ok()) {
        ++errors;
        continue;
      }
      sealed_total += *n;
      if (*n == 0) break;
    }
  };
  std::thread ta(run, a.get());
  std::thread tb(run, b.get());
  ta.join();
  tb.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_TRUE(Unbatched().empty());

  auto roots = Roots();
  // SealDue counts batches actually committed (a lost race is not a batch).
  EXPECT_EQ(sealed_total.load(), static_cast<int>(roots.size()));
  std::map<int64_t, std::string> root_of_batch;
  int64_t leaves_in_roots = 0;
  for (const Submission& r : roots) {
    EXPECT_TRUE(root_of_batch.emplace(r.batch_id, r.digest.raw()).second);
    leaves_in_roots += r.leaf_count;
  }
  EXPECT_EQ(leaves_in_roots, kLeaves);
  std::map<int64_t, int64_t> count_of_batch;
  for (int n = 1; n <= kLeaves; ++n) {
    Submission l = Row(n);
    ASSERT_NE(l.batch_id, 0) << n;
    ++count_of_batch[l.batch_id];
    ASSERT_EQ(root_of_batch.count(l.batch_id), 1u);
    EXPECT_EQ(l.merkle_root, root_of_batch[l.batch_id]);
    auto r = merkle::PathRoot(AsDigest(l.digest), l.merkle_path);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), l.merkle_root);
  }
  for (const Submission& r : roots) EXPECT_EQ(count_of_batch[r.batch_id], r.leaf_count);
}

TEST_P(BatcherTest, StartAndStopSealOnTheThread) {
  std::atomic<int> calls{0};
  std::unique_ptr<Batcher> looping = MakeLooping(absl::Milliseconds(10), &calls);
  Batcher& batcher = *looping;
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2), Leaf(3)}, clock_.Now()).ok());
  batcher.Start();
  EXPECT_TRUE(anchord::testing::WaitUntil([&] { return calls.load() > 0; }, absl::Seconds(10)));
  batcher.Stop();
  batcher.Stop();  // idempotent
  EXPECT_EQ(calls.load(), 1);
  EXPECT_TRUE(Unbatched().empty());
}

// Leaves noted by the intake wake the loop once they could fill a batch: with a poll of an hour,
// only the note can bring the second seal.
TEST_P(BatcherTest, NotedLeavesThatCouldFillABatchWakeTheLoop) {
  std::atomic<int> calls{0};
  std::unique_ptr<Batcher> looping = MakeLooping(absl::Hours(1), &calls);
  Batcher& batcher = *looping;
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2), Leaf(3)}, clock_.Now()).ok());
  batcher.Start();  // its first pass seals these
  ASSERT_TRUE(anchord::testing::WaitUntil([&] { return calls.load() == 1; }, absl::Seconds(10)));
  ASSERT_TRUE(store_->InsertBatch({Leaf(4), Leaf(5)}, clock_.Now()).ok());
  batcher.NoteLeaves(2);  // not enough for a batch: no pass
  ASSERT_TRUE(store_->InsertBatch({Leaf(6)}, clock_.Now()).ok());
  batcher.NoteLeaves(1);
  EXPECT_TRUE(anchord::testing::WaitUntil([&] { return calls.load() == 2; }, absl::Seconds(10)));
  batcher.Stop();
  EXPECT_EQ(calls.load(), 2);
  EXPECT_TRUE(Unbatched().empty());
}

INSTANTIATE_TEST_SUITE_P(Backends, BatcherTest, ANCHORD_ALL_BACKENDS);

// Replicas sharing a PostgreSQL database each fill open batches of their own (their intakes never
// wait for one another's batch row); any replica's batcher seals them all, oldest first, without
// writing a leaf row.
class MerklePgTest : public BatcherTest {
 protected:
  Backend backend() const override { return Backend::kPostgres; }
};

TEST_F(MerklePgTest, ReplicasFillOpenBatchesOfTheirOwnAndAnyBatcherSealsThem) {
  auto other = OpenStore();
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2)}, kNow).ok());
  ASSERT_TRUE((*other)->InsertBatch({Leaf(3)}, kNow + absl::Seconds(1)).ok());
  ASSERT_TRUE(store_->InsertBatch({Leaf(4)}, kNow + absl::Seconds(2)).ok());
  const int64_t mine = Row(1).batch_id;
  ASSERT_NE(mine, 0);
  EXPECT_EQ(Row(2).batch_id, mine);
  EXPECT_EQ(Row(4).batch_id, mine);
  const int64_t theirs = Row(3).batch_id;
  ASSERT_NE(theirs, 0);
  EXPECT_NE(theirs, mine);
  EXPECT_EQ(Scalar(absl::StrCat("SELECT leaf_count FROM batches WHERE id = ", mine)), 3);
  EXPECT_EQ(Scalar(absl::StrCat("SELECT leaf_count FROM batches WHERE id = ", theirs)), 1);

  auto batcher = Make(10, absl::Seconds(5), nullptr, other->get());
  clock_.Advance(absl::Seconds(6));
  EXPECT_EQ(*batcher->SealDue(), 2);
  std::vector<Submission> roots = Roots();
  ASSERT_EQ(roots.size(), 2u);
  EXPECT_EQ(roots[0].batch_id, mine);  // the oldest first
  EXPECT_EQ(roots[0].leaf_count, 3);
  EXPECT_EQ(roots[1].batch_id, theirs);
  for (int n : {1, 2, 3, 4}) {
    EXPECT_TRUE(Sealed(Row(n))) << n;
    EXPECT_LE(Row(n).updated_at, kNow + absl::Seconds(2)) << n << ": written by the seal";
  }
  EXPECT_TRUE(Unbatched().empty());
}

}  // namespace
}  // namespace anchord::submitter
