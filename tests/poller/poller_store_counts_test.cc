// The backlog gauges of the poller store: Stats on both backends, and for SQLite the per-state
// counts kept by Track (inserts) and triggers (moves, deletes), equal to a COUNT(*) by state after
// every kind of change, a rollback, a process exit and an upgrade; the plan of the oldest-pending
// seek and the memory options.
#include "services/poller/poller_store_counts.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <string>
#include <tuple>

#include "libs/ledger/pg_db.h"
#include "services/poller/pg_poller_store.h"
#include "services/poller/poller_store.h"
#include "tests/poller/test_util.h"
#include "tests/support/backend.h"
#include "tests/support/pg_server.h"
#include "tests/testing/sqlite.h"

namespace anchord::poller {
namespace {

using ::anchord::testing::Backend;
using testing::Digest;
using testing::PathLeaf;
using testing::Pending;
using testing::TempDir;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

TrackInput Root(int n, const std::string& provider = "fake") {
  TrackInput in = Pending(Digest(n), "id-" + std::to_string(n), provider);
  in.proof.leaf_count = 2;
  return in;
}

using Counts = std::map<std::tuple<std::string, int64_t, int64_t>, int64_t>;

// Reads `sql` (provider, state, stalled, count) over a second connection to the file.
Counts ReadCounts(const std::string& path, const std::string& sql) {
  Counts out;
  anchord::testing::ForEachSqliteRow(path, sql, [&](const ledger::Statement& st) {
    out[{st.ColumnText(0), st.ColumnInt(1), st.ColumnInt(2)}] = st.ColumnInt(3);
  });
  return out;
}

Counts TableCounts(const std::string& path) {
  return ReadCounts(path,
                    "SELECT provider, state, stalled, COUNT(*) FROM proofs "
                    "GROUP BY provider, state, stalled");
}

Counts KeptCounts(const std::string& path) {
  return ReadCounts(path, "SELECT provider, state, stalled, n FROM proof_counts WHERE n > 0");
}

constexpr int64_t kPend = anchord::v1::DIGEST_STATE_PENDING;
constexpr int64_t kConf = anchord::v1::DIGEST_STATE_CONFIRMED;
constexpr int64_t kFail = anchord::v1::DIGEST_STATE_FAILED;

class PollerStoreCountsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    auto s = OpenSqlitePollerStore(path());
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  std::string path() const { return dir_.File("poller.db"); }
  void ExpectCountsMatch(const char* when) {
    Counts table = TableCounts(path());
    EXPECT_FALSE(table.empty()) << when;
    EXPECT_EQ(KeptCounts(path()), table) << when;
  }
  TempDir dir_;
  std::unique_ptr<PollerStore> store_;
};

TEST_F(PollerStoreCountsTest, CountsFollowEveryChange) {
  std::vector<TrackInput> batch;
  for (int i = 0; i < 20; ++i) batch.push_back(Pending(Digest(i), "id-" + std::to_string(i)));
  for (int i = 20; i < 25; ++i) {
    batch.push_back(Pending(Digest(i), "id-" + std::to_string(i), "other"));
  }
  batch.push_back(Root(100));
  batch.push_back(PathLeaf(100, 101));
  batch.push_back(PathLeaf(100, 102));
  ASSERT_TRUE(store_->Track(batch, kT0).ok());
  ExpectCountsMatch("after inserts");
  EXPECT_EQ(KeptCounts(path()), (Counts{{{"fake", kPend, 0}, 23}, {{"other", kPend, 0}, 5}}));

  // A repeated hand-off changes nothing; MarkChecked and ClaimChecks touch no counted column.
  ASSERT_TRUE(store_->Track({Pending(Digest(1), "id-1")}, kT0).ok());
  ASSERT_TRUE(store_->MarkChecked(Digest(2), "fake", kT0 + absl::Seconds(1)).ok());
  ExpectCountsMatch("after a repeat and a check");

  ConfirmInput ci;
  ci.block_height = 812345;
  ASSERT_TRUE(store_->MarkConfirmed(Digest(3), "fake", ci, kT0).ok());
  ASSERT_TRUE(store_->MarkFailed(Digest(4), "fake", 3, "rejected", "bad", "", kT0).ok());
  ASSERT_TRUE(store_->MarkStalled(Digest(5), "fake", kT0).ok());
  ASSERT_TRUE(store_->MarkStalled(Digest(21), "other", kT0).ok());
  // A final hand-off moves a pending proof forward.
  TrackInput done = Pending(Digest(6), "id-6");
  done.proof.state = anchord::v1::DIGEST_STATE_CONFIRMED;
  ASSERT_TRUE(store_->Track({done}, kT0).ok());
  // The root confirmed: its two leaves follow.
  ASSERT_TRUE(store_->MarkConfirmed(Digest(100), "fake", ci, kT0).ok());
  ASSERT_TRUE(store_->PropagateToLeaves(Digest(100), "fake", kT0).ok());
  ExpectCountsMatch("after state changes");
  EXPECT_EQ(KeptCounts(path()), (Counts{{{"fake", kPend, 0}, 16},
                                        {{"fake", kPend, 1}, 1},
                                        {{"fake", kConf, 0}, 5},
                                        {{"fake", kFail, 0}, 1},
                                        {{"other", kPend, 0}, 4},
                                        {{"other", kPend, 1}, 1}}));

  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  const PollerStore::ProviderStats& fake = (*stats)["fake"];
  EXPECT_EQ(fake.proofs_by_state.at(anchord::v1::DIGEST_STATE_PENDING), 17);
  EXPECT_EQ(fake.proofs_by_state.at(anchord::v1::DIGEST_STATE_CONFIRMED), 5);
  EXPECT_EQ(fake.proofs_by_state.at(anchord::v1::DIGEST_STATE_FAILED), 1);
  EXPECT_EQ(fake.stalled, 1);
  EXPECT_EQ((*stats)["other"].stalled, 1);
}

// A proof inserted and moved forward in the same Track call (two hand-offs of it in one batch) on
// a fresh database, where its first state had no count yet, is counted once, at its last state.
TEST_F(PollerStoreCountsTest, AProofInsertedAndMovedInOneTrackCallIsCountedOnce) {
  TrackInput done = Pending(Digest(1), "id-1");
  done.proof.state = anchord::v1::DIGEST_STATE_CONFIRMED;
  auto r = store_->Track({Pending(Digest(1), "id-1"), done, Pending(Digest(2), "id-2")}, kT0);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectCountsMatch("after an insert and a move in one call");
  EXPECT_EQ(KeptCounts(path()), (Counts{{{"fake", kPend, 0}, 1}, {{"fake", kConf, 0}, 1}}));
}

// A batch that fails halfway rolls back its proofs and their counts together.
TEST_F(PollerStoreCountsTest, RolledBackBatchLeavesCountsAlone) {
  ASSERT_TRUE(store_->Track({Pending(Digest(1), "id-1")}, kT0).ok());
  TrackInput bad = Pending(Digest(3), "id-3");
  bad.proof.state = anchord::v1::DIGEST_STATE_UNSPECIFIED;
  auto r = store_->Track({Pending(Digest(2), "id-2"), bad}, kT0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(KeptCounts(path()), (Counts{{{"fake", kPend, 0}, 1}}));
  ExpectCountsMatch("after a rollback");
}

// A process that ends without closing the store (as a crash after its commits) leaves counts
// that the next open reads as they were committed.
TEST_F(PollerStoreCountsTest, CountsSurviveAnExitWithoutClose) {
  store_.reset();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto s = OpenSqlitePollerStore(path());
    if (!s.ok()) _exit(2);
    std::vector<TrackInput> batch;
    for (int i = 0; i < 30; ++i) batch.push_back(Pending(Digest(i), "id-" + std::to_string(i)));
    if (!(*s)->Track(batch, kT0).ok()) _exit(3);
    if (!(*s)->MarkFailed(Digest(7), "fake", 3, "m", "r", "", kT0).ok()) _exit(4);
    _exit(0);  // no destructor: no close, no checkpoint
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  auto s = OpenSqlitePollerStore(path());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(KeptCounts(path()), (Counts{{{"fake", kPend, 0}, 29}, {{"fake", kFail, 0}, 1}}));
  ExpectCountsMatch("after reopen");
}

// A database written before the counts existed gets them from one full count at its next open.
TEST_F(PollerStoreCountsTest, OlderDatabaseIsCountedAtOpen) {
  std::vector<TrackInput> batch;
  for (int i = 0; i < 12; ++i) batch.push_back(Pending(Digest(i), "id-" + std::to_string(i)));
  ASSERT_TRUE(store_->Track(batch, kT0).ok());
  ASSERT_TRUE(store_->MarkConfirmed(Digest(0), "fake", {}, kT0).ok());
  store_.reset();
  absl::Status older = ::anchord::testing::SqliteExec(
      path(),
      "DROP TRIGGER proof_counts_delete; "
      "DROP TRIGGER proof_counts_update; DROP TABLE proof_counts;"
      "UPDATE proofs SET state = (SELECT state FROM proofs WHERE seq = 1) WHERE seq = 2;");
  ASSERT_TRUE(older.ok()) << older;
  auto s = OpenSqlitePollerStore(path());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(KeptCounts(path()), (Counts{{{"fake", kPend, 0}, 10}, {{"fake", kConf, 0}, 2}}));
  ExpectCountsMatch("after the upgrade");
  ASSERT_TRUE((*s)->Track({Pending(Digest(50), "id-50")}, kT0).ok());
  ExpectCountsMatch("after an insert on the upgraded database");
}

// A database of the release that counted inserts with a trigger: the trigger is dropped at open
// and its counts are kept as they are (no count of the table: a count made off on purpose below
// stays off), and inserts are counted from then on.
TEST_F(PollerStoreCountsTest, InsertTriggerOfTheReleaseBeforeIsDroppedAndItsCountsKept) {
  ASSERT_TRUE(store_->Track({Pending(Digest(1), "id-1"), Pending(Digest(2), "id-2")}, kT0).ok());
  store_.reset();
  auto triggers = [&] {
    return ::anchord::testing::SqliteScalar(
        path(),
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'proof_counts%'");
  };
  ASSERT_EQ(triggers(), 2);
  absl::Status older = ::anchord::testing::SqliteExec(
      path(),
      "CREATE TRIGGER proof_counts_insert AFTER INSERT ON proofs BEGIN "
      "INSERT INTO proof_counts (provider, state, stalled, n) "
      "VALUES (NEW.provider, NEW.state, NEW.stalled, 1) "
      "ON CONFLICT (provider, state, stalled) DO UPDATE SET n = n + 1; END;"
      "UPDATE proof_counts SET n = n + 100;");
  ASSERT_TRUE(older.ok()) << older;
  ASSERT_EQ(triggers(), 3);
  auto s = OpenSqlitePollerStore(path());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(triggers(), 2);
  EXPECT_TRUE(::anchord::testing::StoredSql(path(), "proof_counts_insert").empty());
  EXPECT_EQ(KeptCounts(path()), (Counts{{{"fake", kPend, 0}, 102}}));
  // Counted once each, by the store alone: a trigger left behind would count twice.
  ASSERT_TRUE(
      (*s)->Track({Pending(Digest(3), "id-3"), Pending(Digest(4), "id-4", "other")}, kT0).ok());
  EXPECT_EQ(KeptCounts(path()), (Counts{{{"fake", kPend, 0}, 103}, {{"other", kPend, 0}, 1}}));
}

// The oldest pending proof is found by a seek, not by reading every pending proof (the first
// entry of the seek is read from the table: the index does not hold merkle_root).
TEST_F(PollerStoreCountsTest, OldestPendingIsAnIndexSeek) {
  const std::string plan = anchord::testing::SqliteQueryPlan(path(), kOldestPendingQuery);
  EXPECT_NE(plan.find("SEARCH proofs USING INDEX proofs_stall_roots (provider=? AND state=? AND "
                      "stalled=?)"),
            std::string::npos)
      << plan;
  EXPECT_EQ(plan.find("SCAN"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
}

TEST(PollerStoreTuningTest, OptionsAreAppliedAndChecked) {
  TempDir dir;
  auto db = ledger::SqliteDb::Open(dir.File("t.db"));
  ASSERT_TRUE(db.ok()) << db.status();
  ledger::Session session(**db);
  SqlitePollerStoreOptions options;
  EXPECT_EQ(options.mmap_bytes, int64_t{64} << 20);  // the documented defaults
  EXPECT_EQ(options.cache_kib, 16384);
  options.mmap_bytes = int64_t{8} << 20;
  options.cache_kib = 2048;
  ASSERT_TRUE(ApplySqlitePollerTuning(session, options).ok());
  auto read = [&](const char* pragma) -> int64_t {
    auto st = session.Prepare(pragma);
    EXPECT_TRUE(st.ok()) << st.status();
    if (!st.ok()) return -1;
    auto row = st->Step();
    EXPECT_TRUE(row.ok() && *row);
    return st->ColumnInt(0);
  };
  EXPECT_EQ(read("PRAGMA mmap_size"), int64_t{8} << 20);
  EXPECT_EQ(read("PRAGMA cache_size"), -2048);
  EXPECT_EQ(read("PRAGMA temp_store"), 2);              // MEMORY: the triggers' statement journals
  EXPECT_EQ(read("PRAGMA wal_autocheckpoint"), 32768);  // 128 MiB of WAL between checkpoints

  options.mmap_bytes = -1;
  absl::Status bad = ApplySqlitePollerTuning(session, options);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("mmap_bytes"), std::string::npos) << bad;
  options.mmap_bytes = 0;
  options.cache_kib = 0;
  bad = ApplySqlitePollerTuning(session, options);
  EXPECT_NE(bad.message().find("cache_kib"), std::string::npos) << bad;
  // The store refuses bad options at open, naming them.
  SqlitePollerStoreOptions bad_store;
  bad_store.mmap_bytes = -5;
  auto store = OpenSqlitePollerStore(dir.File("p.db"), bad_store);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("mmap_bytes"), std::string::npos);
}

// Stats means the same on both backends (PostgreSQL counts with its own GROUP BY).
class PollerStoreStatsTest : public ::testing::TestWithParam<Backend> {};

TEST_P(PollerStoreStatsTest, CountsStalledAndOldestPendingPerProvider) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<PollerStore>> store;
  if (GetParam() == Backend::kSqlite) {
    store = OpenSqlitePollerStore(dir.File("poller.db"));
  } else {
    ::anchord::testing::PgServer* server = ::anchord::testing::PgServer::Shared();
    ASSERT_NE(server, nullptr) << "PostgreSQL must be installed (Debian package postgresql)";
    auto url = server->CreateDatabase();
    ASSERT_TRUE(url.ok()) << url.status();
    auto db = ledger::PgDb::Open(*url);
    ASSERT_TRUE(db.ok()) << db.status();
    store = OpenPgPollerStore(std::shared_ptr<ledger::PgDb>(std::move(*db)));
  }
  ASSERT_TRUE(store.ok()) << store.status();
  PollerStore& s = **store;
  auto empty = s.Stats();
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());
  for (int i = 0; i < 6; ++i) {
    TrackInput in = Pending(Digest(i), "id-" + std::to_string(i), i < 4 ? "fake" : "other");
    in.proof.submitted_at = kT0 + absl::Seconds(10 * i);
    ASSERT_TRUE(s.Track({in}, kT0 + absl::Minutes(5)).ok());
  }
  // The oldest pending proof stalls: the oldest is still found among the stalled ones.
  ASSERT_TRUE(s.MarkStalled(Digest(0), "fake", kT0).ok());
  ASSERT_TRUE(s.MarkConfirmed(Digest(1), "fake", {}, kT0).ok());
  ASSERT_TRUE(s.MarkConfirmed(Digest(4), "other", {}, kT0).ok());
  auto stats = s.Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  ASSERT_EQ(stats->size(), 2u);
  const PollerStore::ProviderStats& fake = stats->at("fake");
  EXPECT_EQ(fake.proofs_by_state.at(anchord::v1::DIGEST_STATE_PENDING), 3);
  EXPECT_EQ(fake.proofs_by_state.at(anchord::v1::DIGEST_STATE_CONFIRMED), 1);
  EXPECT_EQ(fake.stalled, 1);
  EXPECT_EQ(fake.oldest_pending, kT0);
  const PollerStore::ProviderStats& other = stats->at("other");
  EXPECT_EQ(other.proofs_by_state.at(anchord::v1::DIGEST_STATE_PENDING), 1);
  EXPECT_EQ(other.stalled, 0);
  EXPECT_EQ(other.oldest_pending, kT0 + absl::Seconds(50));
  // Nothing pending: no age.
  ASSERT_TRUE(s.MarkFailed(Digest(5), "other", 3, "m", "r", "", kT0).ok());
  stats = s.Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->at("other").oldest_pending, absl::InfiniteFuture());
  EXPECT_EQ(stats->at("other").proofs_by_state.count(anchord::v1::DIGEST_STATE_PENDING), 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, PollerStoreStatsTest, ANCHORD_ALL_BACKENDS);

}  // namespace
}  // namespace anchord::poller
