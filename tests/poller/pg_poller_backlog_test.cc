// The PostgreSQL poller store with a large backlog (issue 11 goal 5): the per-state counts kept by
// triggers and folded by Stats equal a COUNT(*) after every kind of change, a rollback, writers
// and folds running at once, and an upgrade; the bounded walk that finds stranded leaves; and each
// statement of a polling round touching a number of buffers that does not grow with the pending
// leaves (read from pg_stat_statements, which tests/support/pg_ctl.sh loads).
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/ledger/migrate.h"
#include "libs/ledger/pg_db.h"
#include "services/poller/pg_poller_store.h"
#include "services/poller/poller_store.h"
#include "tests/poller/test_util.h"
#include "tests/support/pg_server.h"

namespace anchord::poller {
namespace {

using testing::Digest;
using testing::PathLeaf;
using testing::Pending;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);
constexpr int64_t kPend = anchord::v1::DIGEST_STATE_PENDING;
constexpr int64_t kConf = anchord::v1::DIGEST_STATE_CONFIRMED;
constexpr int64_t kFail = anchord::v1::DIGEST_STATE_FAILED;

using Counts = std::map<std::tuple<std::string, int64_t, int64_t>, int64_t>;

TrackInput Root(int n, int leaves, const std::string& provider = "fake") {
  TrackInput in = Pending(Digest(n), "id-" + std::to_string(n), provider);
  in.proof.leaf_count = leaves;
  return in;
}

class PgPollerBacklogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto url = ::anchord::testing::CreateSharedDatabase();
    ASSERT_TRUE(url.ok()) << url.status();
    url_ = *url;
    auto db = ledger::PgDb::Open(url_);
    ASSERT_TRUE(db.ok()) << db.status();
    sql_ = std::move(*db);
  }

  absl::StatusOr<std::unique_ptr<PollerStore>> OpenStore() {
    auto db = ledger::PgDb::Open(url_);
    if (!db.ok()) return db.status();
    return OpenPgPollerStore(std::shared_ptr<ledger::PgDb>(std::move(*db)));
  }

  void Exec(const std::string& sql) {
    absl::Status st = sql_->Run([&](ledger::PgConn& c) { return c.ExecScript(sql); });
    ASSERT_TRUE(st.ok()) << st << " in " << sql;
  }

  // Rows of (bytes, int, int, int) from `sql`.
  Counts Read(const std::string& sql) {
    Counts out;
    absl::Status st = sql_->Run([&](ledger::PgConn& c) -> absl::Status {
      auto r = c.Exec(sql);
      if (!r.ok()) return r.status();
      out.clear();
      for (int i = 0; i < r->rows(); ++i) {
        out[{r->Bytes(i, 0), r->Int(i, 1), r->Int(i, 2)}] = r->Int(i, 3);
      }
      return absl::OkStatus();
    });
    EXPECT_TRUE(st.ok()) << st << " in " << sql;
    return out;
  }

  int64_t Scalar(const std::string& sql) {
    int64_t out = -1;
    absl::Status st = sql_->Run([&](ledger::PgConn& c) -> absl::Status {
      auto r = c.Exec(sql);
      if (!r.ok()) return r.status();
      if (r->rows() != 1) return absl::InternalError("not one row");
      out = r->Int(0, 0);
      return absl::OkStatus();
    });
    EXPECT_TRUE(st.ok()) << st << " in " << sql;
    return out;
  }

  Counts TableCounts() {
    return Read(
        "SELECT provider, state, stalled, COUNT(*) FROM proofs GROUP BY provider, state, stalled");
  }
  // proof_counts plus the changes not folded yet: what Stats reports.
  Counts KeptCounts() {
    return Read(
        "SELECT provider, state, stalled, SUM(n)::bigint FROM (SELECT provider, state, stalled, n "
        "FROM proof_counts UNION ALL SELECT provider, state, stalled, n FROM "
        "proof_count_changes) c GROUP BY provider, state, stalled HAVING SUM(n) > 0");
  }
  // The counts as Stats returns them, per (provider, state, stalled).
  Counts StatsCounts(PollerStore& store) {
    Counts out;
    auto stats = store.Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    if (!stats.ok()) return out;
    for (const auto& [provider, ps] : *stats) {
      for (const auto& [state, n] : ps.proofs_by_state) {
        const int64_t stalled = state == kPend ? ps.stalled : 0;
        if (n - stalled > 0) out[{provider, state, 0}] = n - stalled;
        if (stalled > 0) out[{provider, state, 1}] = stalled;
      }
    }
    return out;
  }
  void ExpectCountsMatch(PollerStore& store, const char* when) {
    const Counts table = TableCounts();
    EXPECT_FALSE(table.empty()) << when;
    EXPECT_EQ(KeptCounts(), table) << when;
    EXPECT_EQ(StatsCounts(store), table) << when;
    // Stats folded every change it could into proof_counts.
    EXPECT_EQ(Scalar("SELECT COUNT(*) FROM proof_count_changes"), 0) << when;
    EXPECT_EQ(Read("SELECT provider, state, stalled, n FROM proof_counts WHERE n > 0"), table)
        << when;
  }

  std::string url_;
  std::unique_ptr<ledger::PgDb> sql_;
};

TEST_F(PgPollerBacklogTest, CountsFollowEveryChange) {
  auto s = OpenStore();
  ASSERT_TRUE(s.ok()) << s.status();
  PollerStore& store = **s;
  std::vector<TrackInput> batch;
  for (int i = 0; i < 20; ++i) batch.push_back(Pending(Digest(i), "id-" + std::to_string(i)));
  for (int i = 20; i < 25; ++i) {
    batch.push_back(Pending(Digest(i), "id-" + std::to_string(i), "other"));
  }
  batch.push_back(Root(100, 2));
  batch.push_back(PathLeaf(100, 101));
  batch.push_back(PathLeaf(100, 102));
  ASSERT_TRUE(store.Track(batch, kT0).ok());
  ExpectCountsMatch(store, "after inserts");
  EXPECT_EQ(TableCounts(), (Counts{{{"fake", kPend, 0}, 23}, {{"other", kPend, 0}, 5}}));

  // A repeated hand-off, a check and a claim change no count (and log no change).
  ASSERT_TRUE(store.Track({Pending(Digest(1), "id-1")}, kT0).ok());
  ASSERT_TRUE(store.MarkChecked(Digest(2), "fake", kT0 + absl::Seconds(1)).ok());
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM proof_count_changes"), 0);

  ConfirmInput ci;
  ci.block_height = 812345;
  ASSERT_TRUE(store.MarkConfirmed(Digest(3), "fake", ci, kT0).ok());
  ASSERT_TRUE(store.MarkFailed(Digest(4), "fake", 3, "rejected", "bad", "", kT0).ok());
  ASSERT_TRUE(store.MarkStalled(Digest(5), "fake", kT0).ok());
  ASSERT_TRUE(store.MarkStalled(Digest(21), "other", kT0).ok());
  TrackInput done = Pending(Digest(6), "id-6");
  done.proof.state = anchord::v1::DIGEST_STATE_CONFIRMED;
  ASSERT_TRUE(store.Track({done}, kT0).ok());
  ASSERT_TRUE(store.MarkConfirmed(Digest(100), "fake", ci, kT0).ok());
  ASSERT_TRUE(store.PropagateToLeaves(Digest(100), "fake", kT0).ok());
  // An operator's own statements are counted too.
  Exec(
      "DELETE FROM proofs WHERE seq = (SELECT MIN(seq) FROM proofs WHERE provider = 'other' "
      "AND state = 4 AND stalled = 0)");
  ExpectCountsMatch(store, "after state changes");
  EXPECT_EQ(TableCounts(), (Counts{{{"fake", kPend, 0}, 16},
                                   {{"fake", kPend, 1}, 1},
                                   {{"fake", kConf, 0}, 5},
                                   {{"fake", kFail, 0}, 1},
                                   {{"other", kPend, 0}, 3},
                                   {{"other", kPend, 1}, 1}}));
}

// A Track call that fails halfway rolls back its proofs and their logged changes together.
TEST_F(PgPollerBacklogTest, RolledBackTrackLeavesCountsAlone) {
  auto s = OpenStore();
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->Track({Pending(Digest(1), "id-1")}, kT0).ok());
  TrackInput bad = Pending(Digest(3), "id-3");
  bad.proof.state = anchord::v1::DIGEST_STATE_UNSPECIFIED;
  auto r = (*s)->Track({Pending(Digest(2), "id-2"), bad}, kT0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(KeptCounts(), (Counts{{{"fake", kPend, 0}, 1}}));
  ExpectCountsMatch(**s, "after a rollback");
}

// Two replicas writing while two others fold the changes: every change is folded once.
TEST_F(PgPollerBacklogTest, ConcurrentWritersAndFoldsCountEachChangeOnce) {
  std::vector<std::unique_ptr<PollerStore>> stores;
  for (int i = 0; i < 4; ++i) {
    auto s = OpenStore();
    ASSERT_TRUE(s.ok()) << s.status();
    stores.push_back(std::move(*s));
  }
  std::atomic<int> writers_left{2};
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&, w] {
      for (int b = 0; b < 15 && !failed; ++b) {
        std::vector<TrackInput> batch;
        for (int i = 0; i < 20; ++i) {
          const int n = 10'000 * (w + 1) + 100 * b + i;
          batch.push_back(Pending(Digest(n), "id-" + std::to_string(n), w == 0 ? "fake" : "other"));
        }
        if (!stores[w]->Track(batch, kT0).ok()) failed = true;
        const int first = 10'000 * (w + 1) + 100 * b;
        if (!stores[w]->MarkConfirmed(Digest(first), w == 0 ? "fake" : "other", {}, kT0).ok() ||
            !stores[w]->MarkStalled(Digest(first + 1), w == 0 ? "fake" : "other", kT0).ok()) {
          failed = true;
        }
      }
      --writers_left;
    });
  }
  for (int f = 2; f < 4; ++f) {
    threads.emplace_back([&, f] {
      // Bounded: at most 2,000 folds while the writers run.
      for (int i = 0; i < 2000 && writers_left > 0 && !failed; ++i) {
        if (!stores[f]->Stats().ok()) failed = true;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_FALSE(failed);
  EXPECT_EQ(TableCounts(), (Counts{{{"fake", kPend, 0}, 270},
                                   {{"fake", kPend, 1}, 15},
                                   {{"fake", kConf, 0}, 15},
                                   {{"other", kPend, 0}, 270},
                                   {{"other", kPend, 1}, 15},
                                   {{"other", kConf, 0}, 15}}));
  ExpectCountsMatch(*stores[0], "after concurrent writes and folds");
}

// A database of the release before (schema version 2, no counts): migration 3 counts its proofs
// in the migrating transaction, and marks its final roots so their leaves are looked at once.
TEST_F(PgPollerBacklogTest, OlderDatabaseIsCountedAndItsFinalRootsLookedAt) {
  const std::vector<ledger::Migration>& all = PollerMigrations();
  ASSERT_GE(all.size(), 3u);
  ASSERT_TRUE(ledger::Migrate(*sql_, "poller", {all[0], all[1]}).ok());
  // As the release before stored them: three pending proofs, a root confirmed whose leaf's
  // propagation was cut off (the leaf still pending), and a failed proof.
  Exec(absl::StrCat(
      "INSERT INTO proofs (digest, provider, proof_id, state, pending_since, leaf_count) VALUES "
      "(sha256('a'), 'fake', 'id-a', 4, 10, 0), (sha256('b'), 'fake', 'id-b', 4, 20, 0), "
      "(sha256('c'), 'other', 'id-c', 4, 30, 0), (sha256('r'), 'fake', 'id-r', 5, 5, 1), "
      "(sha256('f'), 'fake', 'id-f', 6, 5, 0);"
      "INSERT INTO proofs (digest, provider, state, merkle_root, merkle_path) VALUES "
      "(sha256('l'), 'fake', 4, sha256('r'), '\\x01');"));
  auto s = OpenStore();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(TableCounts(), (Counts{{{"fake", kPend, 0}, 3},
                                   {{"fake", kConf, 0}, 1},
                                   {{"fake", kFail, 0}, 1},
                                   {{"other", kPend, 0}, 1}}));
  ExpectCountsMatch(**s, "after the upgrade");
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM proofs WHERE leaves_behind = 1"), 1);
  auto settled = (*s)->SettleStrandedLeaves("fake", kT0, 10);
  ASSERT_TRUE(settled.ok()) << settled.status();
  ASSERT_EQ(settled->size(), 1u);
  EXPECT_EQ(settled->front().state, anchord::v1::DIGEST_STATE_CONFIRMED);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM proofs WHERE leaves_behind = 1"), 0);
  ExpectCountsMatch(**s, "after the leaf was settled");
  ASSERT_TRUE((*s)->Track({Pending(Digest(50), "id-50")}, kT0).ok());
  ExpectCountsMatch(**s, "after an insert on the upgraded database");
}

// A root moved without its leaves following (a propagation cut off) is marked in the same
// transaction, and found through the mark; its propagation clears it.
TEST_F(PgPollerBacklogTest, ARootMovedWithoutItsLeavesIsMarkedUntilPropagated) {
  auto s = OpenStore();
  ASSERT_TRUE(s.ok()) << s.status();
  PollerStore& store = **s;
  ASSERT_TRUE(store.Track({Root(100, 2), PathLeaf(100, 101), PathLeaf(100, 102)}, kT0).ok());
  auto marked = [&] { return Scalar("SELECT COUNT(*) FROM proofs WHERE leaves_behind = 1"); };
  EXPECT_EQ(marked(), 0);
  ASSERT_TRUE(store.MarkStalled(Digest(100), "fake", kT0).ok());
  EXPECT_EQ(marked(), 1);
  // The stall reaches the leaves through the mark, the way a restarted poller would find it.
  auto settled = store.SettleStrandedLeaves("fake", kT0, 10);
  ASSERT_TRUE(settled.ok()) << settled.status();
  EXPECT_EQ(settled->size(), 2u);
  EXPECT_EQ(marked(), 0);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM proofs WHERE stalled = 1"), 3);
  ASSERT_TRUE(store.MarkConfirmed(Digest(100), "fake", {}, kT0).ok());
  EXPECT_EQ(marked(), 1);
  ASSERT_TRUE(store.PropagateToLeaves(Digest(100), "fake", kT0).ok());
  EXPECT_EQ(marked(), 0);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM proofs WHERE state = 5"), 3);
}

// As on SQLite (PollerStoreIndexTest): a leaf stranded under a final root is found by a walk of
// at most 256 roots a call, resumed where the last call stopped.
TEST_F(PgPollerBacklogTest, StrandedLeavesAreFoundByABoundedWalkOfTheirRoots) {
  auto s = OpenStore();
  ASSERT_TRUE(s.ok()) << s.status();
  PollerStore& store = **s;
  std::vector<TrackInput> in;
  std::string last;  // the root the walk reaches last (roots are walked in byte order)
  int last_i = -1;
  for (int i = 0; i < 300; ++i) {
    in.push_back(Root(1000 + i, 1));
    in.push_back(PathLeaf(1000 + i, 5000 + i));
    if (Digest(1000 + i).raw() > last) last = Digest(1000 + i).raw(), last_i = i;
  }
  ASSERT_TRUE(store.Track(in, kT0).ok());
  const ::anchord::Digest stranded = Digest(5000 + last_i);
  ASSERT_TRUE(store.MarkFailed(Digest(1000 + last_i), "fake", 3, "rejected", "bad", "", kT0).ok());
  // Without the mark (the state a leaf stored during its root's final hand-off is left in).
  Exec("UPDATE proofs SET leaves_behind = 0");
  auto state_of = [&](const ::anchord::Digest& d) {
    auto row = store.Get(d, "fake");
    EXPECT_TRUE(row.ok() && row->has_value());
    return row.ok() && row->has_value() ? (*row)->state : anchord::v1::DIGEST_STATE_UNSPECIFIED;
  };
  ASSERT_EQ(state_of(stranded), anchord::v1::DIGEST_STATE_PENDING);
  auto first = store.SettleStrandedLeaves("fake", kT0 + absl::Seconds(1), 100);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->empty());
  EXPECT_EQ(state_of(stranded), anchord::v1::DIGEST_STATE_PENDING);
  auto second = store.SettleStrandedLeaves("fake", kT0 + absl::Seconds(2), 100);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->size(), 1u);
  EXPECT_EQ(second->front().digest, stranded);
  EXPECT_EQ(state_of(stranded), anchord::v1::DIGEST_STATE_FAILED);
  for (int call = 0; call < 2; ++call) {
    auto again = store.SettleStrandedLeaves("fake", kT0 + absl::Seconds(3 + call), 100);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_TRUE(again->empty());
  }
  EXPECT_EQ(state_of(Digest(5000 + (last_i == 0 ? 1 : 0))), anchord::v1::DIGEST_STATE_PENDING);
}

// Every statement a polling round runs touches about as many buffers over 30,000 pending leaves
// as over none: it reads what it returns (through partial indexes that hold no leaf, or only the
// leaves that may still change), never the backlog. Before them a round's statements each read
// every pending proof (bench/RESULTS.md, issue 11 session 30).
TEST_F(PgPollerBacklogTest, ARoundsStatementsDoNotReadTheBacklog) {
  auto s = OpenStore();
  ASSERT_TRUE(s.ok()) << s.status();
  PollerStore& store = **s;
  // 40 proofs of single files (one confirmed without its .ots, one stalled with a fallback due)
  // and a root with a pending leaf: what the round returns.
  std::vector<TrackInput> small;
  for (int i = 0; i < 40; ++i) {
    TrackInput p = Pending(Digest(i), "id-" + std::to_string(i));
    if (i == 1) p.proof.fallback_provider = "ots";
    small.push_back(std::move(p));
  }
  small.push_back(Root(900, 1));
  small.push_back(PathLeaf(900, 901));
  ASSERT_TRUE(store.Track(small, kT0).ok());
  ASSERT_TRUE(store.MarkConfirmed(Digest(0), "fake", {}, kT0).ok());
  ASSERT_TRUE(store.MarkStalled(Digest(1), "fake", kT0).ok());
  Exec("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");

  // The buffers each statement of a round touches, per call, by statement text.
  auto round_buffers = [&]() {
    Exec(
        "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = "
        "current_database()), 0)");
    const absl::Time now = kT0 + absl::Hours(2);
    EXPECT_TRUE(store.PendingToCheck("fake", now, 100).ok());
    EXPECT_TRUE(store.ConfirmedWithoutOts("fake", 100).ok());
    EXPECT_TRUE(store.NewlyStalled("fake", kT0 + absl::Hours(1), 100).ok());
    EXPECT_TRUE(store.FallbacksDue("fake", 100).ok());
    EXPECT_TRUE(store.SettleStrandedLeaves("fake", now, 100).ok());
    EXPECT_TRUE(store.Stats().ok());
    ListFilter walk;
    walk.provider = "fake";
    walk.state = anchord::v1::DIGEST_STATE_PENDING;
    walk.with_files = false;
    walk.with_leaves = false;
    EXPECT_TRUE(store.List(walk, 0, 500).ok());
    std::map<std::string, int64_t> out;
    absl::Status st = sql_->Run([&](ledger::PgConn& c) -> absl::Status {
      auto r = c.Exec(
          "SELECT query, ((shared_blks_hit + shared_blks_read) / calls)::bigint FROM "
          "pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = "
          "current_database()) AND calls > 0 AND query ILIKE '%proofs%' AND query NOT ILIKE "
          "'%pg_stat_statements%'");
      if (!r.ok()) return r.status();
      for (int i = 0; i < r->rows(); ++i) out[r->Bytes(i, 0)] = r->Int(i, 1);
      return absl::OkStatus();
    });
    EXPECT_TRUE(st.ok()) << st;
    return out;
  };
  const std::map<std::string, int64_t> before = round_buffers();
  ASSERT_GE(before.size(), 8u);

  // 30,000 more pending leaves of the same root, as Track stores leaves of their own path (their
  // count a change in the log, folded by the next Stats), then planner statistics. The round
  // returns what it returned before, so each statement's text (and its parameters) is the same.
  Exec(absl::StrCat(
      "INSERT INTO proofs (digest, provider, state, tracked_at, pending_since, merkle_root, "
      "merkle_path) SELECT sha256(int8send(i)), 'fake', 4, 1, 1, '\\x",
      HexEncode(Digest(900).raw()),
      "'::bytea, '\\x01' FROM generate_series(1, 30000) i; ANALYZE proofs"));
  ASSERT_TRUE(store.Stats().ok());
  const int64_t table_pages = Scalar("SELECT relpages FROM pg_class WHERE relname = 'proofs'");
  ASSERT_GT(table_pages, 300);
  const std::map<std::string, int64_t> after = round_buffers();
  ASSERT_EQ(after.size(), before.size());
  for (const auto& [query, buffers] : after) {
    ASSERT_TRUE(before.count(query)) << query;
    // A few index pages more (deeper trees), never a read of the leaves.
    EXPECT_LE(buffers, before.at(query) + 20) << query << " (table: " << table_pages << " pages)";
  }
}

}  // namespace
}  // namespace anchord::poller
