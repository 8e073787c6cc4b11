// ledger::PrefixFilter against real SQLite files: what the table holds is always "may hold",
// whoever wrote it (this connection through the filter, another connection without it), and the
// filter only ever saves look-ups of digests the table does not hold.
#include "libs/ledger/prefix_filter.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "libs/ledger/sqlite_db.h"
#include "tests/testing/temp_dir.h"

namespace anchord::ledger {
namespace {

// A 32-byte digest made from `n` (distinct 8-byte prefixes for distinct n).
std::string D(int n) {
  std::string d(32, '\0');
  for (int i = 0; i < 8; ++i) d[i] = static_cast<char>((n >> (8 * (i % 4))) + i);
  d[31] = static_cast<char>(n);
  return d;
}

class PrefixFilterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    path_ = dir_.File("prefix-filter.db");
    auto db = SqliteDb::Open(path_);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    Session s(*db_);
    ASSERT_TRUE(s.Exec("CREATE TABLE rows (id INTEGER PRIMARY KEY AUTOINCREMENT, digest BLOB "
                       "NOT NULL)")
                    .ok());
  }
  // Inserts digests of `ns` through `db` in one transaction, without any filter.
  static void InsertOther(SqliteDb& db, std::initializer_list<int> ns) {
    Transaction tx(db);
    ASSERT_TRUE(tx.begin_status().ok());
    for (int n : ns) {
      auto ins = tx.Prepare("INSERT INTO rows (digest) VALUES (?1)");
      ASSERT_TRUE(ins.ok());
      ins->BindBlob(1, D(n));
      ASSERT_TRUE(ins->Run().ok());
    }
    ASSERT_TRUE(tx.Commit().ok());
  }
  // One writer's transaction through the filter, as the stores use it: Sync, Add, insert, Settle,
  // Commit, Committed. Returns what MayHold said for each digest after Sync.
  std::vector<bool> Write(PrefixFilter& f, std::initializer_list<int> ns, bool commit = true,
                          int64_t reported = -1) {
    std::vector<bool> may;
    Transaction tx(*db_);
    EXPECT_TRUE(tx.begin_status().ok());
    EXPECT_TRUE(f.Sync(tx).ok());
    for (int n : ns) may.push_back(f.MayHold(D(n)));
    for (int n : ns) f.Add(D(n));
    for (int n : ns) {
      auto ins = tx.Prepare("INSERT INTO rows (digest) VALUES (?1)");
      EXPECT_TRUE(ins.ok());
      ins->BindBlob(1, D(n));
      EXPECT_TRUE(ins->Run().ok());
    }
    EXPECT_TRUE(f.Settle(tx, reported >= 0 ? reported : static_cast<int64_t>(ns.size())).ok());
    if (commit) {
      EXPECT_TRUE(tx.Commit().ok());
      f.Committed();
    }
    return may;
  }
  // MayHold for each digest, in a fresh transaction after Sync.
  std::vector<bool> Check(PrefixFilter& f, std::initializer_list<int> ns) {
    Transaction tx(*db_);
    EXPECT_TRUE(tx.begin_status().ok());
    EXPECT_TRUE(f.Sync(tx).ok());
    std::vector<bool> out;
    for (int n : ns) out.push_back(f.MayHold(D(n)));
    return out;
  }

  anchord::testing::TempDir dir_;
  std::string path_;
  std::unique_ptr<SqliteDb> db_;
};

TEST_F(PrefixFilterTest, RowsOfEveryWriterMayBeHeldAndOthersNot) {
  InsertOther(*db_, {1, 2, 3});  // before the filter's first Sync
  PrefixFilter f("rows", "id", "digest", 1000);
  EXPECT_TRUE(f.MayHold(D(99)));  // not synced yet: nothing is ruled out
  EXPECT_EQ(Write(f, {4, 5}), (std::vector<bool>{false, false}));
  EXPECT_EQ(Check(f, {1, 2, 3, 4, 5, 6}), (std::vector<bool>{true, true, true, true, true, false}));

  // Another connection (another process on the same file) adds rows the filter never saw.
  auto other = SqliteDb::Open(path_);
  ASSERT_TRUE(other.ok()) << other.status();
  InsertOther(**other, {6, 7});
  EXPECT_EQ(Check(f, {6, 7, 8}), (std::vector<bool>{true, true, false}));
  // And a row of this connection that did not go through the filter.
  InsertOther(*db_, {8});
  EXPECT_EQ(Write(f, {8, 9}), (std::vector<bool>{true, false}));
  EXPECT_EQ(Check(f, {9, 10}), (std::vector<bool>{true, false}));
}

// A rolled-back write leaves its digests "may hold" (a look-up too many, never one too few), and
// rows whose count Settle was told wrong are read again by the next Sync.
TEST_F(PrefixFilterTest, RollbacksAndMiscountsCostLookUpsNotRows) {
  PrefixFilter f("rows", "id", "digest", 1000);
  Write(f, {1});
  Write(f, {2, 3}, /*commit=*/false);
  EXPECT_EQ(Check(f, {1, 2, 3, 4}), (std::vector<bool>{true, true, true, false}));
  Write(f, {4});
  // Two rows written, one reported: the next Sync reads from the last key it trusted.
  {
    Transaction tx(*db_);
    ASSERT_TRUE(tx.begin_status().ok());
    ASSERT_TRUE(f.Sync(tx).ok());
    for (int n : {5, 6}) {
      auto ins = tx.Prepare("INSERT INTO rows (digest) VALUES (?1)");
      ASSERT_TRUE(ins.ok());
      ins->BindBlob(1, D(n));
      ASSERT_TRUE(ins->Run().ok());
    }
    f.Add(D(5));  // 6 was not added, and the count is wrong
    ASSERT_TRUE(f.Settle(tx, 1).ok());
    ASSERT_TRUE(tx.Commit().ok());
    f.Committed();
  }
  EXPECT_EQ(Check(f, {5, 6, 7}), (std::vector<bool>{true, true, false}));
}

// A table that outgrows the bound turns the filter off: every digest may be held, no memory kept.
TEST_F(PrefixFilterTest, ALargerTableThanTheBoundTurnsItOff) {
  PrefixFilter f("rows", "id", "digest", 3);
  EXPECT_EQ(Write(f, {1, 2}), (std::vector<bool>{false, false}));
  EXPECT_TRUE(f.enabled());
  InsertOther(*db_, {3, 4});
  EXPECT_EQ(Check(f, {1, 9}), (std::vector<bool>{true, true}));
  EXPECT_FALSE(f.enabled());
  EXPECT_EQ(f.size(), 0u);
}

}  // namespace
}  // namespace anchord::ledger
