#include "services/poller/poller_store.h"

#include <gtest/gtest.h>

#include <set>

#include <atomic>
#include <thread>

#include "libs/ledger/pg_db.h"
#include "libs/ledger/sqlite_db.h"
#include "services/poller/event_bus.h"
#include "services/poller/pg_event_relay.h"
#include "services/poller/pg_poller_store.h"
#include "services/poller/poll_engine.h"
#include "tests/poller/test_util.h"
#include "tests/support/backend.h"
#include "tests/support/pg_server.h"
#include "tests/testing/wait.h"

namespace anchord::poller {
namespace {

using testing::Digest;
using testing::Pending;
using testing::TempDir;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

using ::anchord::testing::Backend;

// Every test runs against SQLite (a file) and PostgreSQL (a real server, a database per test).
class PollerStoreTest : public ::anchord::testing::BackendStoreTest<PollerStore> {
 protected:
  // Another store object over the same data (a restart; another replica on PostgreSQL).
  absl::StatusOr<std::unique_ptr<PollerStore>> Open() override {
    if (GetParam() == Backend::kSqlite) return OpenSqlitePollerStore(dir_.File("poller.db"));
    auto db = OpenPg();
    if (!db.ok()) return db.status();
    return OpenPgPollerStore(*db);
  }
  ProofRow MustGet(const anchord::Digest& digest, const std::string& provider = "fake") {
    auto r = store_->Get(digest, provider);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->has_value());
    return r->has_value() ? **r : ProofRow{};
  }
};

TEST_P(PollerStoreTest, UpsertIsIdempotent) {
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

TEST_P(PollerStoreTest, SubmittedIsStoredAsPending) {
  TrackInput in = Pending(Digest(2), "id-2");
  in.proof.state = anchord::v1::DIGEST_STATE_SUBMITTED;
  ASSERT_TRUE(store_->Track({in}, kT0).ok());
  EXPECT_EQ(MustGet(Digest(2)).state, anchord::v1::DIGEST_STATE_PENDING);
}

TEST_P(PollerStoreTest, StateNeverMovesBackwards) {
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

TEST_P(PollerStoreTest, OtsOnlyForConfirmedAndOnlyOnce) {
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

TEST_P(PollerStoreTest, PagingHasNoGapsOrDuplicates) {
  std::vector<TrackInput> batch;
  for (int i = 0; i < 130; ++i) batch.push_back(Pending(Digest(i), "id-" + std::to_string(i)));
  ASSERT_TRUE(store_->Track(batch, kT0).ok());
  std::vector<anchord::Digest> seen;
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
  std::set<anchord::Digest> unique(seen.begin(), seen.end());
  EXPECT_EQ(unique.size(), 131u);
  for (int i = 0; i < 130; ++i) EXPECT_EQ(seen[i], Digest(i));  // oldest first
  EXPECT_EQ(seen.back(), Digest(500));

  auto token = DecodePageToken(EncodePageToken(12345));
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(*token, 12345);
  EXPECT_FALSE(DecodePageToken("not a token!").ok());
  EXPECT_FALSE(DecodePageToken(EncodePageToken(-5)).ok());
}

TEST_P(PollerStoreTest, FilesPerJobAndFilters) {
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

TEST_P(PollerStoreTest, SurvivesReopen) {
  ASSERT_TRUE(store_->Track({Pending(Digest(20), "id-20")}, kT0).ok());
  store_.reset();
  auto s = Open();
  ASSERT_TRUE(s.ok()) << s.status();
  auto row = (*s)->Get(Digest(20), "");
  ASSERT_TRUE(row.ok());
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ((*row)->proof_id, "id-20");
  EXPECT_EQ((*row)->files.size(), 1u);
}

// Claims split a round's lookups: a proof one owner holds is not given to another until the
// claim ends; the holder may claim it again.
TEST_P(PollerStoreTest, ClaimChecksGiveEachProofToOneOwner) {
  for (int i = 30; i < 34; ++i) {
    ASSERT_TRUE(store_->Track({Pending(Digest(i), "id-" + std::to_string(i))}, kT0).ok());
  }
  auto other = Open();
  ASSERT_TRUE(other.ok()) << other.status();
  auto candidates = store_->PendingToCheck("fake", absl::InfiniteFuture(), 10);
  ASSERT_TRUE(candidates.ok());
  ASSERT_EQ(candidates->size(), 4u);
  std::vector<ProofRow> first_two(candidates->begin(), candidates->begin() + 2);
  auto a = store_->ClaimChecks("fake", first_two, "a", kT0, kT0 + absl::Seconds(30));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->size(), 2u);
  auto b = (*other)->ClaimChecks("fake", *candidates, "b", kT0, kT0 + absl::Seconds(30));
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->size(), 2u);
  EXPECT_EQ((*b)[0].seq, (*candidates)[2].seq);
  EXPECT_EQ((*b)[1].seq, (*candidates)[3].seq);
  auto again =
      store_->ClaimChecks("fake", first_two, "a", kT0 + absl::Seconds(1), kT0 + absl::Seconds(31));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->size(), 2u);
  // After the claim ends, another owner may take it.
  auto later = (*other)->ClaimChecks("fake", first_two, "b", kT0 + absl::Seconds(40),
                                     kT0 + absl::Seconds(70));
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->size(), 2u);
}

// A candidate read before another replica checked the proof is stale: not claimed, even though
// the other replica's claim ended (confirming a proof releases its claim).
TEST_P(PollerStoreTest, ClaimChecksSkipProofsCheckedSinceTheyWereRead) {
  for (int i = 40; i < 43; ++i) {
    ASSERT_TRUE(store_->Track({Pending(Digest(i), "id-" + std::to_string(i))}, kT0).ok());
  }
  auto other = Open();
  ASSERT_TRUE(other.ok()) << other.status();
  auto stale = (*other)->PendingToCheck("fake", absl::InfiniteFuture(), 10);
  ASSERT_TRUE(stale.ok());
  ASSERT_EQ(stale->size(), 3u);
  // Meanwhile this replica claims all three, looks 40 up (still pending) and confirms 41.
  auto mine = store_->ClaimChecks("fake", *stale, "a", kT0, kT0 + absl::Seconds(30));
  ASSERT_TRUE(mine.ok());
  ASSERT_EQ(mine->size(), 3u);
  ASSERT_TRUE(store_->MarkChecked(Digest(40), "fake", kT0 + absl::Seconds(1)).ok());
  ConfirmInput ci;
  ci.block_height = 800000;
  auto confirmed = store_->MarkConfirmed(Digest(41), "fake", ci, kT0 + absl::Seconds(2));
  ASSERT_TRUE(confirmed.ok());
  ASSERT_TRUE(confirmed->has_value());
  // After every claim ended, the stale candidates 40 and 41 are refused, 42 (untouched) is not.
  auto b =
      (*other)->ClaimChecks("fake", *stale, "b", kT0 + absl::Seconds(40), kT0 + absl::Seconds(70));
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ((*b)[0].digest, Digest(42));
  // Read again, 40 is a candidate like any other.
  auto fresh = (*other)->PendingToCheck("fake", absl::InfiniteFuture(), 10);
  ASSERT_TRUE(fresh.ok());
  auto again =
      (*other)->ClaimChecks("fake", *fresh, "b", kT0 + absl::Seconds(40), kT0 + absl::Seconds(70));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->size(), 2u);  // 40 and 42 (41 is confirmed)
}

// A round's marks in one call: each stored proof gets its own time, a proof marked twice its
// later one, a digest not stored is skipped; the check order follows.
TEST_P(PollerStoreTest, MarkCheckedAllSetsEachProofsTime) {
  for (int i = 50; i < 53; ++i) {
    ASSERT_TRUE(store_->Track({Pending(Digest(i), "id-" + std::to_string(i))}, kT0).ok());
  }
  const absl::Time t1 = kT0 + absl::Seconds(1), t3 = kT0 + absl::Seconds(3);
  const absl::Time t5 = kT0 + absl::Seconds(5);
  ASSERT_TRUE(store_
                  ->MarkCheckedAll({{Digest(50), "fake", t3},
                                    {Digest(99), "fake", t1},
                                    {Digest(51), "fake", t1},
                                    {Digest(50), "fake", t5},
                                    {Digest(52), "other", t5}})
                  .ok());
  auto rows = store_->PendingToCheck("fake", absl::InfiniteFuture(), 10);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 3u);
  // Never checked (52 of "fake": the mark named another provider), then 51, then 50.
  EXPECT_EQ((*rows)[0].digest, Digest(52));
  EXPECT_EQ((*rows)[1].digest, Digest(51));
  EXPECT_EQ((*rows)[1].last_checked_at, t1);
  EXPECT_EQ((*rows)[2].digest, Digest(50));
  EXPECT_EQ((*rows)[2].last_checked_at, t5);
  EXPECT_LT((*rows)[0].last_checked_at, t1);
  EXPECT_FALSE(store_->Get(Digest(99), "fake")->has_value());
  EXPECT_TRUE(store_->MarkCheckedAll({}).ok());
}

// Hand-offs of a Merkle root of two leaves (pending) and of its leaf `n`.
TrackInput Leaf(const anchord::Digest& root, int n) {
  TrackInput in = Pending(Digest(n), "", "fake", "", "leaf" + std::to_string(n));
  in.proof.merkle_root = root.raw();
  in.proof.merkle_path = std::string(1, static_cast<char>(n & 0x7f));
  return in;
}
TrackInput Root(const anchord::Digest& root) {
  TrackInput in = Pending(root, "id-root");
  in.proof.leaf_count = 2;
  return in;
}

// A leaf handed off after its root became final is stored final, with the root's fields.
TEST_P(PollerStoreTest, LeafStoredAfterItsRootIsFinalEndsFinal) {
  const anchord::Digest root = Digest(500);
  ASSERT_TRUE(store_->Track({Root(root)}, kT0).ok());
  ConfirmInput ci;
  ci.block_height = 812345;
  ci.bitcoin_tx = "tx";
  auto confirmed = store_->MarkConfirmed(root, "fake", ci, kT0 + absl::Seconds(1));
  ASSERT_TRUE(confirmed.ok());
  ASSERT_TRUE(confirmed->has_value());
  ASSERT_TRUE(store_->PropagateToLeaves(root, "fake", kT0 + absl::Seconds(1)).ok());
  // Another replica stores the leaf late.
  auto other = Open();
  ASSERT_TRUE(other.ok()) << other.status();
  auto tracked = (*other)->Track({Leaf(root, 501)}, kT0 + absl::Seconds(2));
  ASSERT_TRUE(tracked.ok()) << tracked.status();
  ASSERT_EQ(tracked->size(), 1u);
  EXPECT_EQ((*tracked)[0].proof.state, anchord::v1::DIGEST_STATE_CONFIRMED);
  const ProofRow leaf = MustGet(Digest(501));
  EXPECT_EQ(leaf.state, anchord::v1::DIGEST_STATE_CONFIRMED);
  EXPECT_EQ(leaf.block_height, 812345);
  EXPECT_EQ(leaf.proof_id, "id-root");
  // The same for a failed root.
  const anchord::Digest failed_root = Digest(600);
  ASSERT_TRUE(store_->Track({Root(failed_root)}, kT0).ok());
  auto failed = store_->MarkFailed(failed_root, "fake", 3, "rejected", "bad", "", kT0);
  ASSERT_TRUE(failed.ok());
  ASSERT_TRUE(failed->has_value());
  ASSERT_TRUE((*other)->Track({Leaf(failed_root, 601)}, kT0 + absl::Seconds(2)).ok());
  EXPECT_EQ(MustGet(Digest(601)).state, anchord::v1::DIGEST_STATE_FAILED);
}

// The safety net: a leaf left PENDING under a final root (its propagation missed it) is settled
// by SettleStrandedLeaves, once; leaves of pending roots and of other providers are not touched.
TEST_P(PollerStoreTest, StrandedLeavesAreSettled) {
  const anchord::Digest root = Digest(700);
  const anchord::Digest pending_root = Digest(710);
  ASSERT_TRUE(store_
                  ->Track({Root(root), Leaf(root, 701), Leaf(root, 702), Root(pending_root),
                           Leaf(pending_root, 711)},
                          kT0)
                  .ok());
  // The root becomes final without its propagation: the state the race used to leave behind.
  ConfirmInput ci;
  ci.block_height = 800001;
  auto confirmed = store_->MarkConfirmed(root, "fake", ci, kT0 + absl::Seconds(1));
  ASSERT_TRUE(confirmed.ok());
  ASSERT_TRUE(confirmed->has_value());
  ASSERT_EQ(MustGet(Digest(701)).state, anchord::v1::DIGEST_STATE_PENDING);

  auto none = store_->SettleStrandedLeaves("other", kT0 + absl::Seconds(2), 100);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  auto settled = store_->SettleStrandedLeaves("fake", kT0 + absl::Seconds(2), 100);
  ASSERT_TRUE(settled.ok()) << settled.status();
  std::set<anchord::Digest> digests;
  for (const ProofRow& r : *settled) digests.insert(r.digest);
  EXPECT_EQ(digests, (std::set<anchord::Digest>{Digest(701), Digest(702)}));
  EXPECT_EQ(MustGet(Digest(701)).state, anchord::v1::DIGEST_STATE_CONFIRMED);
  EXPECT_EQ(MustGet(Digest(702)).block_height, 800001);
  EXPECT_EQ(MustGet(Digest(711)).state, anchord::v1::DIGEST_STATE_PENDING);
  auto again = store_->SettleStrandedLeaves("fake", kT0 + absl::Seconds(3), 100);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
}

// A row whose digest blob is not 32 bytes (a damaged database) is a store error naming the column,
// never a crash or a Digest made of the wrong bytes.
TEST_P(PollerStoreTest, ADigestBlobOfAnotherSizeIsAStoreErrorNamingTheColumn) {
  ASSERT_TRUE(store_->Track({Pending(Digest(80), "id-80")}, kT0).ok());
  if (GetParam() == Backend::kSqlite) {
    auto db = ledger::SqliteDb::Open(dir_.File("poller.db"));
    ASSERT_TRUE(db.ok()) << db.status();
    ledger::Session session(**db);
    auto st = session.Prepare("UPDATE proofs SET digest = substr(digest, 1, 31)");
    ASSERT_TRUE(st.ok()) << st.status();
    ASSERT_TRUE(st->Run().ok());
  } else {
    auto db = ledger::PgDb::Open(url_);
    ASSERT_TRUE(db.ok()) << db.status();
    absl::Status st = (*db)->Run([](ledger::PgConn& c) {
      return c.Exec("UPDATE proofs SET digest = substring(digest from 1 for 31)").status();
    });
    ASSERT_TRUE(st.ok()) << st;
  }
  auto rows = store_->PendingToCheck("fake", absl::InfiniteFuture(), 10);
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(rows.status().message(),
            "proofs.digest: a SHA-256 digest must be exactly 32 bytes, got 31");
}

INSTANTIATE_TEST_SUITE_P(Backends, PollerStoreTest, ANCHORD_ALL_BACKENDS);

// Poller replicas on one PostgreSQL database.
class PgPollerReplicaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto url = ::anchord::testing::CreateSharedDatabase();
    ASSERT_TRUE(url.ok()) << url.status();
    url_ = *url;
    for (int i = 0; i < 2; ++i) {
      auto db = ledger::PgDb::Open(url_);
      ASSERT_TRUE(db.ok()) << db.status();
      dbs_[i] = std::shared_ptr<ledger::PgDb>(std::move(*db));
      auto s = OpenPgPollerStore(dbs_[i]);
      ASSERT_TRUE(s.ok()) << s.status();
      stores_[i] = std::move(*s);
    }
  }
  std::string url_;
  std::shared_ptr<ledger::PgDb> dbs_[2];
  std::unique_ptr<PollerStore> stores_[2];
};

// Two engines running their rounds at the same moment ask about each pending proof once.
TEST_F(PgPollerReplicaTest, NoProofIsLookedUpTwiceInARound) {
  testing::FakeProvider provider("fake", /*list=*/false);
  for (int i = 0; i < 40; ++i) {
    const std::string id = "id-" + std::to_string(i);
    ASSERT_TRUE(stores_[0]->Track({Pending(Digest(100 + i), id)}, kT0).ok());
    provider.SetRecord(id, Digest(100 + i), providers::RecordState::kPending);
  }
  EventBus buses[2];
  PollEngineOptions opts;
  opts.poll_interval = absl::Seconds(60);
  opts.max_lookups_per_round = 100;
  FakeClock clock(kT0 + absl::Minutes(1));
  std::unique_ptr<PollEngine> engines[2];
  for (int i = 0; i < 2; ++i) {
    engines[i] = std::make_unique<PollEngine>(stores_[i].get(), &buses[i], nullptr, &clock,
                                              std::vector<providers::Provider*>{&provider}, opts);
  }
  RoundStats stats[2];
  std::thread t0([&] { stats[0] = engines[0]->RunRound(&provider); });
  std::thread t1([&] { stats[1] = engines[1]->RunRound(&provider); });
  t0.join();
  t1.join();
  EXPECT_EQ(stats[0].lookups + stats[1].lookups, 40);
  EXPECT_EQ(provider.total_lookups(), 40);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(provider.lookups("id-" + std::to_string(i)), 1) << i;

  // Confirmed in the next round: each .ots is downloaded by one replica only.
  for (int i = 0; i < 40; ++i) {
    provider.SetRecord("id-" + std::to_string(i), Digest(100 + i),
                       providers::RecordState::kConfirmed, 800000);
  }
  clock.Advance(absl::Minutes(2));
  std::thread t2([&] { stats[0] = engines[0]->RunRound(&provider); });
  std::thread t3([&] { stats[1] = engines[1]->RunRound(&provider); });
  t2.join();
  t3.join();
  EXPECT_EQ(stats[0].lookups + stats[1].lookups, 40);
  EXPECT_EQ(stats[0].confirmed + stats[1].confirmed, 40);
  EXPECT_EQ(provider.total_lookups(), 80);
  EXPECT_EQ(provider.downloads(), 40);
}

// Watch on one replica sees the events of proofs another replica stores, small and large.
TEST_F(PgPollerReplicaTest, EventsReachWatchersOfOtherReplicas) {
  EventBus bus_a, bus_b;
  PgEventRelay relay_a(dbs_[0], &bus_a, stores_[0].get());
  PgEventRelay relay_b(dbs_[1], &bus_b, stores_[1].get());
  relay_a.Start();
  relay_b.Start();
  std::atomic<int> notified{0};
  auto sub_b = bus_b.Subscribe(WatchFilter{}, 100, [&] { ++notified; });
  auto sub_a = bus_a.Subscribe(WatchFilter{}, 100, [] {});
  // A proof with many long file names: its event is too large for one notification and travels
  // as a reference, read back from the shared store.
  TrackInput big = Pending(Digest(60), "id-60");
  for (int i = 0; i < 60; ++i) {
    big.files.push_back(
        FileRow{"default", "some/long/directory/name/" + std::string(150, 'x') + std::to_string(i),
                "f" + std::to_string(i), 1, "x"});
  }
  auto tracked = stores_[0]->Track({Pending(Digest(61), "id-61"), big}, kT0);
  ASSERT_TRUE(tracked.ok()) << tracked.status();
  for (const TrackOutcome& o : *tracked) {
    PublishEvent(bus_a, nullptr, anchord::v1::PROOF_EVENT_TYPE_TRACKED, o.proof, kT0);
  }
  std::vector<EventPtr> got;
  // Bounded: 10 s for two notifications over loopback.
  EXPECT_TRUE(::anchord::testing::WaitUntil(
      [&] {
        while (EventPtr ev = sub_b->Pop()) got.push_back(ev);
        return got.size() >= 2;
      },
      absl::Seconds(10)));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]->type(), anchord::v1::PROOF_EVENT_TYPE_TRACKED);
  EXPECT_EQ(got[0]->proof().digest(), testing::DigestBytes(61));
  EXPECT_EQ(got[1]->proof().digest(), testing::DigestBytes(60));
  EXPECT_EQ(got[1]->proof().files_size(), 61);
  // The publisher's own watchers got each event once (not again through the database). To know
  // that an echo would have arrived by now, replica b publishes a marker after it received both
  // events: PostgreSQL delivers notifications in commit order, so when the marker reaches a, a's
  // listener has already been handed its own two.
  auto marker = stores_[1]->Track({Pending(Digest(62), "id-62")}, kT0);
  ASSERT_TRUE(marker.ok()) << marker.status();
  PublishEvent(bus_b, nullptr, anchord::v1::PROOF_EVENT_TYPE_TRACKED, marker->front().proof, kT0);
  std::vector<EventPtr> at_a;
  EXPECT_TRUE(::anchord::testing::WaitUntil(
      [&] {
        while (EventPtr ev = sub_a->Pop()) at_a.push_back(ev);
        return !at_a.empty() && at_a.back()->proof().digest() == testing::DigestBytes(62);
      },
      absl::Seconds(10)))
      << "the marker never reached replica a";
  ASSERT_EQ(at_a.size(), 3u) << "replica a's watchers got an event twice";
  EXPECT_EQ(at_a[0]->proof().digest(), testing::DigestBytes(61));
  EXPECT_EQ(at_a[1]->proof().digest(), testing::DigestBytes(60));
  bus_a.Unsubscribe(sub_a);
  bus_b.Unsubscribe(sub_b);
}

}  // namespace
}  // namespace anchord::poller
