// Merkle leaves handed off in the batch form (TrackInput::batch, ProofRow::leaf_index), on both
// poller stores: the tree is stored once per root, a leaf row carries its index instead of its
// path, its .ots size and .ots are exactly those of the same leaf stored with its path, a tree that
// does not hold the leaf is refused, and databases of the older schema are upgraded at open.
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/ledger/migrate.h"
#include "libs/ledger/pg_db.h"
#include "libs/merkle/merkle.h"
#include "libs/merkle/sealed_batch.h"
#include "services/poller/leaf_proof.h"
#include "services/poller/pg_poller_store.h"
#include "services/poller/poller_store.h"
#include "services/poller/poller_store_rows.h"
#include "tests/poller/test_util.h"
#include "tests/support/backend.h"
#include "tests/support/pg_server.h"
#include "tests/testing/sqlite.h"

namespace anchord::poller {
namespace {

using ::anchord::testing::Backend;
using testing::DigestBytes;
using testing::MakeOts;
using testing::Pending;
namespace v1 = anchord::v1;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

// A sealed batch of `n` leaves (digests first..first+n-1) with its paths, as the submitter
// builds it.
struct Sealed {
  std::shared_ptr<const merkle::SealedBatch> batch;
  anchord::Digest root;
  std::vector<std::string> paths;
};

Sealed MakeSealed(int first, int n) {
  std::vector<std::string> digests, nonces;
  for (int i = 0; i < n; ++i) {
    digests.push_back(DigestBytes(first + i));
    nonces.push_back(merkle::RandomNonce());
  }
  Sealed s;
  auto encoded = merkle::EncodeBatchLeaves(digests, nonces);
  EXPECT_TRUE(encoded.ok()) << encoded.status();
  if (!encoded.ok()) return s;
  std::vector<anchord::Digest> leaves;
  for (const std::string& d : digests) leaves.push_back(*anchord::Digest::FromBytes(d));
  auto tree = merkle::Tree::Build(leaves, nonces);
  EXPECT_TRUE(tree.ok()) << tree.status();
  if (!tree.ok()) return s;
  s.root = tree->root();
  for (int i = 0; i < n; ++i) s.paths.push_back(tree->PathBytes(i));
  auto batch = merkle::SealedBatch::Decode(*encoded, s.root.raw());
  EXPECT_TRUE(batch.ok()) << batch.status();
  if (batch.ok()) s.batch = *batch;
  return s;
}

// The root's hand-off; with `batch` in the batch form.
TrackInput RootInput(const Sealed& s, const std::string& provider, bool batch) {
  TrackInput in = Pending(s.root, "root-id", provider, "", "merkle-batch/root");
  in.files.clear();
  in.proof.leaf_count = static_cast<int64_t>(s.paths.size());
  if (batch) in.batch = s.batch;
  return in;
}

// Leaf i's hand-off. The batch form carries its path too (as TrackBatch's expansion does today):
// the store must not keep it.
TrackInput LeafInput(const Sealed& s, int first, int i, const std::string& provider, bool batch) {
  TrackInput in =
      Pending(DigestBytes(first + i), "root-id", provider, "job", absl::StrCat("f/", i));
  in.proof.merkle_root = s.root.raw();
  in.proof.merkle_path = s.paths[i];
  if (batch) {
    in.batch = s.batch;
    in.proof.leaf_index = i;
  }
  return in;
}

// The root's hand-off and every leaf's (leaf i's digest is first + i), in one form.
std::vector<TrackInput> BatchInputs(const Sealed& s, int first, const std::string& provider,
                                    bool batch) {
  std::vector<TrackInput> in = {RootInput(s, provider, batch)};
  for (size_t i = 0; i < s.paths.size(); ++i) {
    in.push_back(LeafInput(s, first, static_cast<int>(i), provider, batch));
  }
  return in;
}

// The proof of (digest, provider) in `store`; an empty row (and a failure) when it is missing.
ProofRow MustGetFrom(PollerStore& store, const std::string& digest, const std::string& provider) {
  auto r = store.Get(*anchord::Digest::FromBytes(digest), provider);
  EXPECT_TRUE(r.ok() && r->has_value()) << (r.ok() ? "missing" : r.status().ToString());
  return r.ok() && r->has_value() ? **r : ProofRow{};
}

class PollerBatchStoreTest : public ::anchord::testing::BackendStoreTest<PollerStore> {
 protected:
  absl::StatusOr<std::unique_ptr<PollerStore>> Open() override {
    if (GetParam() == Backend::kSqlite) return OpenSqlitePollerStore(dir_.File("poller.db"));
    auto db = OpenPg();
    if (!db.ok()) return db.status();
    return OpenPgPollerStore(*db);
  }
  // The first column of the first row of `sql`, as an integer (-1 on failure, which fails).
  int64_t Scalar(const std::string& sql) {
    if (GetParam() == Backend::kSqlite) {
      return ::anchord::testing::SqliteScalar(dir_.File("poller.db"), sql);
    }
    auto db = OpenPg();
    EXPECT_TRUE(db.ok()) << db.status();
    if (!db.ok()) return -1;
    int64_t out = -1;
    absl::Status st = (*db)->Run([&](ledger::PgConn& c) -> absl::Status {
      auto r = c.Exec(sql);
      if (!r.ok()) return r.status();
      if (r->rows() > 0) out = r->Int(0, 0);
      return absl::OkStatus();
    });
    EXPECT_TRUE(st.ok()) << st;
    return out;
  }
  absl::Status Exec(const std::string& sql) {
    if (GetParam() == Backend::kSqlite) {
      return ::anchord::testing::SqliteExec(dir_.File("poller.db"), sql);
    }
    auto db = OpenPg();
    if (!db.ok()) return db.status();
    return (*db)->Run([&](ledger::PgConn& c) { return c.Exec(sql).status(); });
  }
  ProofRow MustGet(const std::string& digest, const std::string& provider) {
    auto r = store_->Get(*anchord::Digest::FromBytes(digest), provider);
    EXPECT_TRUE(r.ok() && r->has_value()) << (r.ok() ? "missing" : r.status().ToString());
    return r.ok() && r->has_value() ? **r : ProofRow{};
  }
  // The root of `provider` confirmed with `ots`, and its state carried to its leaves.
  void ConfirmRoot(const Sealed& s, const std::string& provider, const std::string& ots) {
    ConfirmInput in;
    in.block_height = 812345;
    in.ots = ots;
    auto r = store_->MarkConfirmed(s.root, provider, in, kT0 + absl::Seconds(10));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->has_value());
    auto moved = store_->PropagateToLeaves(s.root, provider, kT0 + absl::Seconds(10));
    ASSERT_TRUE(moved.ok()) << moved.status();
  }
};

constexpr int kFirst = 100;
constexpr int kLeaves = 7;  // odd: paths of unequal lengths

TEST_P(PollerBatchStoreTest, LeavesAreStoredWithoutPathAndTheTreeOnce) {
  const Sealed s = MakeSealed(kFirst, kLeaves);
  ASSERT_NE(s.batch, nullptr);
  // As the hand-off splits a root's leaves over calls: the root with the first leaves, then the
  // rest without their root.
  std::vector<TrackInput> first = {RootInput(s, "fake", true)};
  for (int i = 0; i < 4; ++i) first.push_back(LeafInput(s, kFirst, i, "fake", true));
  std::vector<TrackInput> second;
  for (int i = 4; i < kLeaves; ++i) second.push_back(LeafInput(s, kFirst, i, "fake", true));
  auto a = store_->Track(first, kT0);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = store_->Track(second, kT0);
  ASSERT_TRUE(b.ok()) << b.status();
  for (size_t i = 1; i < a->size(); ++i) {
    EXPECT_TRUE((*a)[i].inserted);
    EXPECT_EQ((*a)[i].proof.leaf_index, static_cast<int64_t>(i - 1));
    EXPECT_TRUE((*a)[i].proof.merkle_path.empty());
  }
  for (int i = 0; i < kLeaves; ++i) {
    const ProofRow row = MustGet(DigestBytes(kFirst + i), "fake");
    EXPECT_EQ(row.leaf_index, i);
    EXPECT_TRUE(row.merkle_path.empty());
    EXPECT_EQ(row.merkle_root, s.root.raw());
    EXPECT_EQ(row.state, v1::DIGEST_STATE_PENDING);
    EXPECT_EQ(row.files.size(), 1u);
  }
  EXPECT_EQ(MustGet(s.root.raw(), "fake").leaf_index, -1);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM merkle_trees"), 1);
  EXPECT_EQ(Scalar("SELECT SUM(length(merkle_path)) FROM proofs"), 0);

  // A repeated hand-off (at-least-once delivery) changes nothing and writes no second tree.
  auto again = store_->Track(first, kT0 + absl::Seconds(1));
  ASSERT_TRUE(again.ok()) << again.status();
  for (const TrackOutcome& o : *again) EXPECT_FALSE(o.inserted);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM merkle_trees"), 1);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM proofs"), kLeaves + 1);

  auto tree = store_->TreeOf(s.root);
  ASSERT_TRUE(tree.ok()) << tree.status();
  ASSERT_NE(*tree, nullptr);
  EXPECT_EQ((*tree)->encoded(), s.batch->encoded());
  auto none = store_->TreeOf(testing::Digest(1));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, nullptr);
}

// A root's batch-form leaves follow it through its tree: a propagation reaches every leaf of the
// tree that was handed off (and nothing else), and one cut off after the root became final (a
// crash between the two) is made good by SettleStrandedLeaves, once.
TEST_P(PollerBatchStoreTest, BatchFormLeavesFollowTheirRootAndAreSettledWhenLeftBehind) {
  const Sealed s = MakeSealed(kFirst, kLeaves);
  const Sealed other = MakeSealed(kFirst + 50, 3);
  ASSERT_NE(s.batch, nullptr);
  ASSERT_NE(other.batch, nullptr);
  // Every leaf of s but the last; all of `other` (pending throughout).
  std::vector<TrackInput> in = {RootInput(s, "fake", true), RootInput(other, "fake", true)};
  for (int i = 0; i + 1 < kLeaves; ++i) in.push_back(LeafInput(s, kFirst, i, "fake", true));
  for (int i = 0; i < 3; ++i) in.push_back(LeafInput(other, kFirst + 50, i, "fake", true));
  ASSERT_TRUE(store_->Track(in, kT0).ok());

  ConfirmInput ci;
  ci.block_height = 800002;
  auto confirmed = store_->MarkConfirmed(s.root, "fake", ci, kT0 + absl::Seconds(1));
  ASSERT_TRUE(confirmed.ok()) << confirmed.status();
  ASSERT_TRUE(confirmed->has_value());
  ASSERT_EQ(MustGet(DigestBytes(kFirst), "fake").state, v1::DIGEST_STATE_PENDING);

  auto none = store_->SettleStrandedLeaves("another", kT0 + absl::Seconds(2), 100);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  auto settled = store_->SettleStrandedLeaves("fake", kT0 + absl::Seconds(2), 100);
  ASSERT_TRUE(settled.ok()) << settled.status();
  std::set<std::string> digests;
  for (const ProofRow& r : *settled) {
    digests.insert(r.digest.raw());
    EXPECT_EQ(r.state, v1::DIGEST_STATE_CONFIRMED);
    EXPECT_EQ(r.block_height, 800002);
    EXPECT_EQ(r.files.size(), 1u);  // with their files, for the events
  }
  std::set<std::string> expected;
  for (int i = 0; i + 1 < kLeaves; ++i) expected.insert(DigestBytes(kFirst + i));
  EXPECT_EQ(digests, expected);
  for (int i = 0; i + 1 < kLeaves; ++i) {
    EXPECT_EQ(MustGet(DigestBytes(kFirst + i), "fake").state, v1::DIGEST_STATE_CONFIRMED) << i;
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(MustGet(DigestBytes(kFirst + 50 + i), "fake").state, v1::DIGEST_STATE_PENDING) << i;
  }
  auto again = store_->SettleStrandedLeaves("fake", kT0 + absl::Seconds(3), 100);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->empty());

  // The last leaf handed off late takes the final root's state at once.
  auto late =
      store_->Track({LeafInput(s, kFirst, kLeaves - 1, "fake", true)}, kT0 + absl::Seconds(4));
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_EQ(MustGet(DigestBytes(kFirst + kLeaves - 1), "fake").state, v1::DIGEST_STATE_CONFIRMED);
}

// The same leaves stored both ways (the path form under one provider, the batch form under
// another, one root): the same .ots size once the root has its .ots, and byte-identical .ots.
TEST_P(PollerBatchStoreTest, BatchFormGivesThePathFormsOtsAndSize) {
  const Sealed s = MakeSealed(kFirst, kLeaves);
  ASSERT_NE(s.batch, nullptr);
  std::vector<TrackInput> in = {RootInput(s, "paths", false), RootInput(s, "batch", true)};
  for (int i = 0; i < kLeaves; ++i) {
    in.push_back(LeafInput(s, kFirst, i, "paths", false));
    in.push_back(LeafInput(s, kFirst, i, "batch", true));
  }
  ASSERT_TRUE(store_->Track(in, kT0).ok());
  for (int i = 0; i < kLeaves; ++i) {
    auto ots = LoadProofOts(store_.get(), testing::Digest(kFirst + i), "batch");
    ASSERT_TRUE(ots.ok()) << ots.status();
    EXPECT_FALSE(ots->has_value());  // the root has no .ots yet
  }
  const std::string root_ots = MakeOts(s.root, 300);
  ConfirmRoot(s, "paths", root_ots);
  ConfirmRoot(s, "batch", root_ots);
  for (int i = 0; i < kLeaves; ++i) {
    SCOPED_TRACE(i);
    const ProofRow by_path = MustGet(DigestBytes(kFirst + i), "paths");
    const ProofRow by_batch = MustGet(DigestBytes(kFirst + i), "batch");
    EXPECT_EQ(by_path.leaf_index, -1);
    EXPECT_EQ(by_path.merkle_path, s.paths[i]);
    EXPECT_EQ(by_batch.state, v1::DIGEST_STATE_CONFIRMED);
    auto from_path = LoadProofOts(store_.get(), by_path.digest, "paths");
    auto from_tree = LoadProofOts(store_.get(), by_batch.digest, "batch");
    ASSERT_TRUE(from_path.ok()) << from_path.status();
    ASSERT_TRUE(from_tree.ok()) << from_tree.status();
    ASSERT_TRUE(from_path->has_value() && from_tree->has_value());
    EXPECT_EQ(**from_tree, **from_path);
    auto joined = merkle::JoinProof(by_batch.digest, s.paths[i], root_ots);
    ASSERT_TRUE(joined.ok()) << joined.status();
    EXPECT_EQ(**from_tree, *joined);
    EXPECT_EQ(by_batch.ots_size, static_cast<int64_t>(joined->size()));
    EXPECT_EQ(by_path.ots_size, by_batch.ots_size);
  }

  // Leaves stored after their root is final take its state and .ots size at insert.
  const Sealed late = MakeSealed(kFirst + 50, 5);
  ASSERT_NE(late.batch, nullptr);
  TrackInput root = RootInput(late, "batch", true);
  root.proof.state = v1::DIGEST_STATE_CONFIRMED;
  root.evidence = MakeOts(late.root, 120);
  ASSERT_TRUE(store_->Track({root}, kT0).ok());
  std::vector<TrackInput> leaves;
  for (int i = 0; i < 5; ++i) leaves.push_back(LeafInput(late, kFirst + 50, i, "batch", true));
  auto out = store_->Track(leaves, kT0 + absl::Seconds(1));
  ASSERT_TRUE(out.ok()) << out.status();
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE((*out)[i].state_changed);
    const ProofRow row = MustGet(DigestBytes(kFirst + 50 + i), "batch");
    EXPECT_EQ(row.state, v1::DIGEST_STATE_CONFIRMED);
    EXPECT_EQ((*out)[i].proof.ots_size, row.ots_size);
    auto ots = LoadProofOts(store_.get(), row.digest, "batch");
    ASSERT_TRUE(ots.ok()) << ots.status();
    ASSERT_TRUE(ots->has_value());
    EXPECT_EQ(row.ots_size, static_cast<int64_t>((*ots)->size()));
    auto joined = merkle::JoinProof(row.digest, late.paths[i], root.evidence);
    ASSERT_TRUE(joined.ok()) << joined.status();
    EXPECT_EQ(**ots, *joined);
  }
}

// A hand-off whose batch does not hold the leaf where it says is refused, naming the field.
TEST_P(PollerBatchStoreTest, MismatchedBatchIsRefusedAtTrack) {
  const Sealed s = MakeSealed(kFirst, kLeaves);
  const Sealed other = MakeSealed(kFirst, kLeaves);  // same digests, other nonces: other root
  ASSERT_NE(s.batch, nullptr);
  ASSERT_NE(other.batch, nullptr);
  TrackInput wrong_index = LeafInput(s, kFirst, 2, "fake", true);
  wrong_index.proof.leaf_index = 3;
  auto r = store_->Track({wrong_index}, kT0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(r.status().message(), "proof.leaf_index:")) << r.status();
  TrackInput beyond = LeafInput(s, kFirst, 2, "fake", true);
  beyond.proof.leaf_index = kLeaves;
  r = store_->Track({beyond}, kT0);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StartsWith(r.status().message(), "proof.leaf_index:")) << r.status();
  TrackInput other_tree = LeafInput(s, kFirst, 2, "fake", true);
  other_tree.batch = other.batch;
  r = store_->Track({other_tree}, kT0);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StartsWith(r.status().message(), "batch:")) << r.status();
  TrackInput root = RootInput(s, "fake", true);
  root.batch = other.batch;
  r = store_->Track({root}, kT0);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StartsWith(r.status().message(), "batch:")) << r.status();
  // Nothing of the refused calls was stored.
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM proofs"), 0);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM merkle_trees"), 0);
}

// A stored tree that does not lead to the root, or whose leaf at the row's index is another
// file, never gives a proof.
TEST_P(PollerBatchStoreTest, TreeNotHoldingTheLeafIsRefusedAtRead) {
  const Sealed s = MakeSealed(kFirst, kLeaves);
  const Sealed other = MakeSealed(kFirst, kLeaves);
  ASSERT_NE(s.batch, nullptr);
  ASSERT_TRUE(store_->Track(BatchInputs(s, kFirst, "fake", true), kT0).ok());
  ConfirmRoot(s, "fake", MakeOts(s.root));
  auto good = LoadProofOts(store_.get(), testing::Digest(kFirst + 1), "fake");
  ASSERT_TRUE(good.ok()) << good.status();
  ASSERT_TRUE(good->has_value());

  // Leaf 1's row pointing at leaf 2's position.
  ASSERT_TRUE(Exec(absl::StrCat("UPDATE proofs SET leaf_index = 2 WHERE leaf_index = 1")).ok());
  auto moved = LoadProofOts(store_.get(), testing::Digest(kFirst + 1), "fake");
  ASSERT_FALSE(moved.ok());
  EXPECT_EQ(moved.status().code(), absl::StatusCode::kFailedPrecondition) << moved.status();
  // Index beyond the tree.
  ASSERT_TRUE(Exec("UPDATE proofs SET leaf_index = 99 WHERE leaf_index = 2").ok());
  auto beyond = LoadProofOts(store_.get(), testing::Digest(kFirst + 1), "fake");
  ASSERT_FALSE(beyond.ok());
  EXPECT_EQ(beyond.status().code(), absl::StatusCode::kFailedPrecondition) << beyond.status();

  // Another batch's leaves stored under the root: refused by a store that has not cached it.
  const std::string hex = [&] {
    std::string h;
    static const char* kHex = "0123456789abcdef";
    for (unsigned char c : other.batch->encoded()) {
      h.push_back(kHex[c >> 4]);
      h.push_back(kHex[c & 15]);
    }
    return h;
  }();
  const std::string blob = GetParam() == Backend::kSqlite ? absl::StrCat("x'", hex, "'")
                                                          : absl::StrCat("'\\x", hex, "'::bytea");
  ASSERT_TRUE(Exec(absl::StrCat("UPDATE merkle_trees SET leaves = ", blob)).ok());
  auto reopened = Open();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  auto tree = store_->TreeOf(s.root);
  ASSERT_FALSE(tree.ok());
  EXPECT_EQ(tree.status().code(), absl::StatusCode::kFailedPrecondition) << tree.status();
  auto ots = LoadProofOts(store_.get(), testing::Digest(kFirst + 3), "fake");
  ASSERT_FALSE(ots.ok());
  EXPECT_EQ(ots.status().code(), absl::StatusCode::kFailedPrecondition) << ots.status();
  // A missing tree is refused as well.
  ASSERT_TRUE(Exec("DELETE FROM merkle_trees").ok());
  reopened = Open();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  ots = LoadProofOts(store_.get(), testing::Digest(kFirst + 3), "fake");
  ASSERT_FALSE(ots.ok());
  EXPECT_EQ(ots.status().code(), absl::StatusCode::kFailedPrecondition) << ots.status();
}

INSTANTIATE_TEST_SUITE_P(Backends, PollerBatchStoreTest, ANCHORD_ALL_BACKENDS);

// Path-form leaves in a database of the older schema, then the upgrade at open: they still load,
// and batch-form hand-offs work on the upgraded database.
void ExpectUpgradedStoreWorks(PollerStore* store, const Sealed& old, const Sealed& fresh) {
  const std::string root_ots = MakeOts(old.root, 200);
  ConfirmInput confirm;
  confirm.ots = root_ots;
  auto c = store->MarkConfirmed(old.root, "fake", confirm, kT0 + absl::Seconds(5));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->has_value());
  auto moved = store->PropagateToLeaves(old.root, "fake", kT0 + absl::Seconds(5));
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->size(), old.paths.size());
  for (size_t i = 0; i < old.paths.size(); ++i) {
    SCOPED_TRACE(i);
    auto row = store->Get(testing::Digest(kFirst + static_cast<int>(i)), "fake");
    ASSERT_TRUE(row.ok() && row->has_value());
    EXPECT_EQ((*row)->leaf_index, -1);
    EXPECT_EQ((*row)->merkle_path, old.paths[i]);
    auto ots = LoadProofOts(store, (*row)->digest, "fake");
    ASSERT_TRUE(ots.ok()) << ots.status();
    ASSERT_TRUE(ots->has_value());
    auto joined = merkle::JoinProof((*row)->digest, old.paths[i], root_ots);
    ASSERT_TRUE(joined.ok());
    EXPECT_EQ(**ots, *joined);
    EXPECT_EQ((*row)->ots_size, static_cast<int64_t>(joined->size()));
  }
  ASSERT_TRUE(store->Track(BatchInputs(fresh, kFirst + 20, "fake", true), kT0).ok());
  auto row = store->Get(testing::Digest(kFirst + 21), "fake");
  ASSERT_TRUE(row.ok() && row->has_value());
  EXPECT_EQ((*row)->leaf_index, 1);
  EXPECT_TRUE((*row)->merkle_path.empty());
  ConfirmInput confirm_fresh;
  confirm_fresh.ots = MakeOts(fresh.root);
  ASSERT_TRUE(store->MarkConfirmed(fresh.root, "fake", confirm_fresh, kT0).ok());
  ASSERT_TRUE(store->PropagateToLeaves(fresh.root, "fake", kT0).ok());
  auto ots = LoadProofOts(store, testing::Digest(kFirst + 21), "fake");
  ASSERT_TRUE(ots.ok()) << ots.status();
  ASSERT_TRUE(ots->has_value());
  auto joined = merkle::JoinProof(testing::Digest(kFirst + 21), fresh.paths[1], confirm_fresh.ots);
  ASSERT_TRUE(joined.ok());
  EXPECT_EQ(**ots, *joined);
}

// Turns a SQLite poller database back into what a release before leaves_behind left: its
// trigger, index and column gone, proofs_open_leaves over the leaves of both forms.
const std::string kBeforeLeavesBehind =
    "DROP TRIGGER proofs_mark_leaves_behind; DROP INDEX proofs_leaves_behind; "
    "ALTER TABLE proofs DROP COLUMN leaves_behind; DROP INDEX proofs_open_leaves; "
    "CREATE INDEX proofs_open_leaves ON proofs (provider, merkle_root, state) WHERE "
    "length(merkle_root) > 0 AND (state = 4 OR (state = 5 AND ots_size = 0)); ";

TEST(PollerBatchStoreUpgradeTest, SqliteDatabaseWithoutTreesIsUpgradedAtOpen) {
  testing::TempDir dir;
  const std::string path = dir.File("poller.db");
  const Sealed old = MakeSealed(kFirst, kLeaves);
  const Sealed fresh = MakeSealed(kFirst + 20, 4);
  {
    auto store = OpenSqlitePollerStore(path);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Track(BatchInputs(old, kFirst, "fake", false), kT0).ok());
  }
  // What the older release left: no tree table, no leaf_index or path_size column (nor what
  // came after them: leaves_behind, and proofs_open_leaves over every leaf).
  ASSERT_TRUE(::anchord::testing::SqliteExec(path, kBeforeLeavesBehind +
                                                       "DROP TABLE merkle_trees; "
                                                       "ALTER TABLE proofs DROP COLUMN leaf_index; "
                                                       "ALTER TABLE proofs DROP COLUMN path_size")
                  .ok());
  ASSERT_EQ(::anchord::testing::SqliteScalar(
                path, "SELECT COUNT(*) FROM pragma_table_info('proofs') WHERE name = 'leaf_index'"),
            0);
  auto store = OpenSqlitePollerStore(path);
  ASSERT_TRUE(store.ok()) << store.status();
  ExpectUpgradedStoreWorks(store->get(), old, fresh);
  EXPECT_EQ(::anchord::testing::SqliteScalar(path, "SELECT COUNT(*) FROM merkle_trees"), 1);
}

// SQLite: no index entry per batch-form leaf. proofs_open_leaves holds the path-form leaves only,
// a root's change marks it (leaves_behind) until its leaves are brought up to it, and a stall cut
// off before its propagation reaches the leaves through SettleStrandedLeaves.
TEST(PollerBatchStoreSqliteTest, BatchFormLeavesHaveNoOpenLeafEntryAndTheirRootSaysWhenTheyLag) {
  testing::TempDir dir;
  const std::string path = dir.File("poller.db");
  const Sealed s = MakeSealed(kFirst, kLeaves);
  ASSERT_NE(s.batch, nullptr);
  auto store = OpenSqlitePollerStore(path);
  ASSERT_TRUE(store.ok()) << store.status();
  std::vector<TrackInput> in = BatchInputs(s, kFirst, "paths", false);
  for (TrackInput& b : BatchInputs(s, kFirst, "batch", true)) in.push_back(std::move(b));
  ASSERT_TRUE((*store)->Track(in, kT0).ok());
  auto open_leaves = [&](const std::string& provider) {
    return ::anchord::testing::SqliteScalar(
        path, absl::StrCat("SELECT COUNT(*) FROM proofs INDEXED BY proofs_open_leaves WHERE "
                           "provider = '",
                           provider, "' AND ", kSqliteOpenLeaf));
  };
  EXPECT_EQ(open_leaves("paths"), kLeaves);
  EXPECT_EQ(open_leaves("batch"), 0);
  auto behind = [&](const std::string& provider) {
    return ::anchord::testing::SqliteScalar(
        path, absl::StrCat("SELECT leaves_behind FROM proofs WHERE provider = '", provider,
                           "' AND leaf_count > 0"));
  };
  EXPECT_EQ(behind("batch"), 0);

  // A stall of the batch root, its propagation cut off: the root says its leaves lag.
  auto stalled = (*store)->MarkStalled(s.root, "batch", kT0 + absl::Seconds(1));
  ASSERT_TRUE(stalled.ok()) << stalled.status();
  ASSERT_TRUE(stalled->has_value());
  EXPECT_EQ(behind("batch"), 1);
  EXPECT_FALSE(MustGetFrom(**store, DigestBytes(kFirst), "batch").stalled);
  auto settled = (*store)->SettleStrandedLeaves("batch", kT0 + absl::Seconds(2), 100);
  ASSERT_TRUE(settled.ok()) << settled.status();
  EXPECT_EQ(settled->size(), static_cast<size_t>(kLeaves));
  for (int i = 0; i < kLeaves; ++i) {
    const ProofRow leaf = MustGetFrom(**store, DigestBytes(kFirst + i), "batch");
    EXPECT_TRUE(leaf.stalled) << i;
    EXPECT_EQ(leaf.state, v1::DIGEST_STATE_PENDING) << i;
  }
  EXPECT_EQ(behind("batch"), 0);

  // Confirmed with its .ots and propagated at once, as the poll engine does: nothing lags, and
  // both forms reach the same state and .ots size.
  ConfirmInput ci;
  ci.block_height = 812345;
  ci.ots = MakeOts(s.root.raw());
  for (const std::string provider : {"paths", "batch"}) {
    auto r = (*store)->MarkConfirmed(s.root, provider, ci, kT0 + absl::Seconds(3));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->has_value());
    EXPECT_EQ(behind(provider), 1) << provider;
    auto moved = (*store)->PropagateToLeaves(s.root, provider, kT0 + absl::Seconds(3));
    ASSERT_TRUE(moved.ok()) << moved.status();
    EXPECT_EQ(moved->size(), static_cast<size_t>(kLeaves)) << provider;
    EXPECT_EQ(behind(provider), 0) << provider;
  }
  for (int i = 0; i < kLeaves; ++i) {
    const ProofRow a = MustGetFrom(**store, DigestBytes(kFirst + i), "paths");
    const ProofRow b = MustGetFrom(**store, DigestBytes(kFirst + i), "batch");
    EXPECT_EQ(b.state, v1::DIGEST_STATE_CONFIRMED) << i;
    EXPECT_GT(b.ots_size, 0) << i;
    EXPECT_EQ(a.ots_size, b.ots_size) << i;
  }
  auto nothing = (*store)->SettleStrandedLeaves("batch", kT0 + absl::Seconds(4), 100);
  ASSERT_TRUE(nothing.ok()) << nothing.status();
  EXPECT_TRUE(nothing->empty());
}

// A database of the release before: proofs_open_leaves over the leaves of both forms, no
// leaves_behind. At open the index is made again without batch-form leaves, and a final root
// whose batch-form leaf its propagation left PENDING is settled.
TEST(PollerBatchStoreSqliteTest, OpenLeavesIndexOfTheReleaseBeforeIsRebuiltAndItsRootsSettled) {
  testing::TempDir dir;
  const std::string path = dir.File("poller.db");
  const Sealed s = MakeSealed(kFirst, kLeaves);
  ASSERT_NE(s.batch, nullptr);
  {
    auto store = OpenSqlitePollerStore(path);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Track(BatchInputs(s, kFirst, "fake", true), kT0).ok());
  }
  ASSERT_TRUE(::anchord::testing::SqliteExec(path, kBeforeLeavesBehind).ok());
  // The root confirmed by that release, its propagation cut off.
  ASSERT_TRUE(::anchord::testing::SqliteExec(
                  path, "UPDATE proofs SET state = 5, block_height = 7 WHERE leaf_count > 0")
                  .ok());
  ASSERT_EQ(::anchord::testing::SqliteScalar(
                path,
                "SELECT COUNT(*) FROM proofs INDEXED BY proofs_open_leaves WHERE "
                "provider = 'fake' AND length(merkle_root) > 0 AND (state = 4 OR (state = "
                "5 AND ots_size = 0))"),
            kLeaves);
  auto store = OpenSqlitePollerStore(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(::anchord::testing::SqliteScalar(
                path, absl::StrCat("SELECT COUNT(*) FROM proofs INDEXED BY proofs_open_leaves "
                                   "WHERE provider = 'fake' AND ",
                                   kSqliteOpenLeaf)),
            0);
  auto settled = (*store)->SettleStrandedLeaves("fake", kT0 + absl::Seconds(2), 100);
  ASSERT_TRUE(settled.ok()) << settled.status();
  EXPECT_EQ(settled->size(), static_cast<size_t>(kLeaves));
  for (int i = 0; i < kLeaves; ++i) {
    const ProofRow leaf = MustGetFrom(**store, DigestBytes(kFirst + i), "fake");
    EXPECT_EQ(leaf.state, v1::DIGEST_STATE_CONFIRMED) << i;
    EXPECT_EQ(leaf.block_height, 7) << i;
  }
  // Reopened, the index is current: nothing is marked again.
  store->reset();
  auto reopened = OpenSqlitePollerStore(path);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto again = (*reopened)->SettleStrandedLeaves("fake", kT0 + absl::Seconds(3), 100);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->empty());
}

TEST(PollerBatchStoreUpgradeTest, PostgresDatabaseAtSchemaOneIsUpgradedAtOpen) {
  auto url = ::anchord::testing::CreateSharedDatabase();
  ASSERT_TRUE(url.ok()) << url.status();
  auto opened = ledger::PgDb::Open(*url);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::shared_ptr<ledger::PgDb> db(std::move(*opened));
  const std::vector<ledger::Migration> first = {PollerMigrations().front()};
  ASSERT_EQ(first.front().version, 1);
  auto applied = ledger::Migrate(*db, "poller", first);
  ASSERT_TRUE(applied.ok()) << applied.status();
  const Sealed old = MakeSealed(kFirst, kLeaves);
  const Sealed fresh = MakeSealed(kFirst + 20, 4);
  // The older release's rows, as it wrote them: the root and its leaves with their paths.
  absl::Status st = db->Run([&](ledger::PgConn& c) -> absl::Status {
    auto r = c.Exec(
        "INSERT INTO proofs (digest, provider, proof_id, state, leaf_count) "
        "VALUES ($1, 'fake'::bytea, 'root-id'::bytea, $2, $3)",
        ledger::PgParams()
            .AddBytes(old.root.bytes())
            .Add(int64_t{v1::DIGEST_STATE_PENDING})
            .Add(int64_t{kLeaves}));
    if (!r.ok()) return r.status();
    for (int i = 0; i < kLeaves; ++i) {
      auto l = c.Exec(
          "INSERT INTO proofs (digest, provider, proof_id, state, merkle_root, merkle_path) "
          "VALUES ($1, 'fake'::bytea, 'root-id'::bytea, $2, $3, $4)",
          ledger::PgParams()
              .AddBytes(DigestBytes(kFirst + i))
              .Add(int64_t{v1::DIGEST_STATE_PENDING})
              .AddBytes(old.root.bytes())
              .AddBytes(old.paths[i]));
      if (!l.ok()) return l.status();
    }
    return absl::OkStatus();
  });
  ASSERT_TRUE(st.ok()) << st;
  auto store = OpenPgPollerStore(db);
  ASSERT_TRUE(store.ok()) << store.status();
  auto version = ledger::SchemaVersion(*db, "poller");
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, static_cast<int>(PollerMigrations().size()));
  ExpectUpgradedStoreWorks(store->get(), old, fresh);
}

}  // namespace
}  // namespace anchord::poller
