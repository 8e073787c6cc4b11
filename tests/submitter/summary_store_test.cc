// SummarizeJob on both stores after every kind of transition: per distinct digest with a file in
// the job (every digest for ""), its least advanced state. Digests with one row, digests with a
// row per provider, duplicate files in another job, Merkle leaves and their root, a restart.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "libs/ledger/pg_db.h"
#include "services/submitter/pg_submitter_store.h"
#include "services/submitter/submitter_store.h"
#include "tests/submitter/backend_store.h"
#include "tests/submitter/test_util.h"
#include "tests/support/backend.h"
#include "tests/support/pg_server.h"

namespace anchord::submitter {
namespace {

using ::anchord::testing::Backend;
using testing::DigestOf;
using testing::Item;
using Counts = std::map<SubState, int64_t>;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);
constexpr SubState kQ = SubState::kQueued;
constexpr SubState kSending = SubState::kSubmitting;
constexpr SubState kDone = SubState::kSubmitted;
constexpr SubState kFailed = SubState::kFailed;

class SummaryStoreTest : public testing::SubmitterBackendTest {
 protected:
  Counts Summary(const std::string& job) {
    auto c = store_->SummarizeJob(job);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : Counts{{kFailed, -1}};
  }
  // The row of digest `c` at `provider`.
  int64_t RowId(char c, const std::string& provider) {
    auto rows = store_->GetByDigest(DigestOf(c));
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (!rows.ok()) return 0;
    for (const Submission& s : *rows) {
      if (s.provider == provider) return s.id;
    }
    ADD_FAILURE() << "no row of " << c << " at " << provider;
    return 0;
  }
  void Submitted(int64_t id) {
    StoredRecord rec;
    rec.proof_id = "p" + std::to_string(id);
    ASSERT_TRUE(store_->MarkSubmitted(id, rec, "req", kNow).ok());
  }
  void ExpectAll(const Counts& all, const Counts& a, const Counts& b) {
    EXPECT_EQ(Summary(""), all);
    EXPECT_EQ(Summary("a"), a);
    EXPECT_EQ(Summary("b"), b);
    EXPECT_EQ(Summary("nobody"), Counts{});
  }
};

TEST_P(SummaryStoreTest, CountsEachDigestOnceAtItsLeastAdvancedState) {
  // A in a; B in a with a duplicate file in b; C in b at two providers; leaves L and M in a.
  NewItem c = Item('c', "c.txt", "fake", "b");
  c.providers = {"fake", "other"};
  NewItem l = Item('l', "l.txt", "fake", "a");
  NewItem m = Item('m', "m.txt", "fake", "a");
  l.merkle = m.merkle = true;
  ASSERT_TRUE(store_
                  ->InsertBatch({Item('a', "a.txt", "fake", "a"), Item('b', "b.txt", "fake", "a"),
                                 Item('b', "copy-of-b.txt", "fake", "b"), c, l, m},
                                kNow)
                  .ok());
  ExpectAll({{kQ, 5}}, {{kQ, 4}}, {{kQ, 2}});

  // One of C's two rows done: C stays QUEUED, at its least advanced row.
  ASSERT_TRUE(store_->MarkPrepared(RowId('a', "fake"), "key-a", "body-a", kNow).ok());
  Submitted(RowId('c', "fake"));
  ExpectAll({{kQ, 4}, {kSending, 1}}, {{kQ, 3}, {kSending, 1}}, {{kQ, 2}});

  Submitted(RowId('c', "other"));
  ASSERT_TRUE(store_->MarkFailed(RowId('b', "fake"), 9, "bad", "refused", "req-b", kNow).ok());
  ExpectAll({{kQ, 2}, {kSending, 1}, {kDone, 1}, {kFailed, 1}},
            {{kQ, 2}, {kSending, 1}, {kFailed, 1}}, {{kDone, 1}, {kFailed, 1}});

  // A batch of L and M: its root is a digest of its own (no file, so in no job).
  NewBatch batch;
  batch.provider = "fake";
  batch.root = std::string(32, static_cast<char>(0xA0));
  batch.root_file.job = "a";
  batch.root_file.filename = "root";
  batch.leaf_ids = {RowId('l', "fake"), RowId('m', "fake")};
  batch.nonces = {std::string(16, '1'), std::string(16, '2')};
  ASSERT_TRUE(store_->CreateMerkleBatch(batch, kNow).ok());
  ExpectAll({{kQ, 3}, {kSending, 1}, {kDone, 1}, {kFailed, 1}},
            {{kQ, 2}, {kSending, 1}, {kFailed, 1}}, {{kDone, 1}, {kFailed, 1}});
  auto roots = store_->ClaimBatch("fake", "w", kNow, kNow + absl::Minutes(1), 10);
  ASSERT_TRUE(roots.ok()) << roots.status();
  int64_t root_id = 0;
  for (const Submission& r : *roots) {
    if (r.mode == RowMode::kRoot) root_id = r.id;
  }
  ASSERT_NE(root_id, 0);
  Submitted(root_id);  // the leaves follow their root
  ExpectAll({{kSending, 1}, {kDone, 4}, {kFailed, 1}}, {{kSending, 1}, {kDone, 2}, {kFailed, 1}},
            {{kDone, 1}, {kFailed, 1}});

  // A gains a second provider: its new QUEUED row makes it QUEUED again, in every job it is in.
  NewItem a2 = Item('a', "a-again.txt", "other", "b");
  ASSERT_TRUE(store_->InsertBatch({a2}, kNow).ok());
  const Counts all = {{kQ, 1}, {kDone, 4}, {kFailed, 1}};
  const Counts a = {{kQ, 1}, {kDone, 2}, {kFailed, 1}};
  const Counts b = {{kQ, 1}, {kDone, 1}, {kFailed, 1}};
  ExpectAll(all, a, b);
  Reopen();  // a restart reads the same
  ExpectAll(all, a, b);
}

INSTANTIATE_TEST_SUITE_P(Backends, SummaryStoreTest, ANCHORD_ALL_BACKENDS);

}  // namespace
}  // namespace anchord::submitter
