#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/ledger/sqlite_db.h"

namespace anchord::ledger {
namespace {

std::string TempDb(const char* name) {
  std::string path = absl::StrCat(::testing::TempDir(), "/", name, "-", getpid(), ".db");
  std::filesystem::remove(path);
  return path;
}

TEST(SqliteDb, CommittedRowsSurviveReopenAndRollbackDiscards) {
  std::string path = TempDb("ledger");
  {
    auto db = SqliteDb::Open(path);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)->Exec("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB, n INTEGER)").ok());
    {
      Transaction tx(**db);
      ASSERT_TRUE(tx.begin_status().ok());
      auto ins = (*db)->Prepare("INSERT INTO t (k, v, n) VALUES (?, ?, ?)");
      ASSERT_TRUE(ins.ok());
      ins->Bind(1, "a").BindBlob(2, std::string("\x00\x01", 2)).Bind(3, int64_t{42});
      ASSERT_TRUE(ins->Run().ok());
      ASSERT_TRUE(tx.Commit().ok());
    }
    {
      Transaction tx(**db);
      auto ins = (*db)->Prepare("INSERT INTO t (k, v, n) VALUES ('b', NULL, 1)");
      ASSERT_TRUE(ins->Run().ok());
      // No commit: destructor rolls back.
    }
  }
  auto db = SqliteDb::Open(path);
  ASSERT_TRUE(db.ok());
  auto q = (*db)->Prepare("SELECT k, v, n FROM t ORDER BY k");
  ASSERT_TRUE(q.ok());
  auto row = q->Step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(q->ColumnText(0), "a");
  EXPECT_EQ(q->ColumnText(1), std::string("\x00\x01", 2));
  EXPECT_EQ(q->ColumnInt(2), 42);
  row = q->Step();
  ASSERT_TRUE(row.ok());
  EXPECT_FALSE(*row) << "rolled-back row must not exist";

  auto mode = (*db)->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode->Step().ok());
  EXPECT_EQ(mode->ColumnText(0), "wal");
}

TEST(SqliteDb, DurabilityChoosesTheSyncMode) {
  auto full = SqliteDb::Open(TempDb("full"));
  auto normal = SqliteDb::Open(TempDb("normal"), Durability::kProcessCrash);
  ASSERT_TRUE(full.ok() && normal.ok());
  auto q_full = (*full)->Prepare("PRAGMA synchronous");
  auto q_normal = (*normal)->Prepare("PRAGMA synchronous");
  ASSERT_TRUE(q_full->Step().ok() && q_normal->Step().ok());
  EXPECT_EQ(q_full->ColumnInt(0), 2);    // FULL: fsync on every commit
  EXPECT_EQ(q_normal->ColumnInt(0), 1);  // NORMAL: WAL synced at checkpoints
}

TEST(SqliteDb, ErrorsAreStatusesNotCrashes) {
  auto db = SqliteDb::Open(TempDb("errors"));
  ASSERT_TRUE(db.ok());
  auto bad = (*db)->Prepare("SELEKT nonsense");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("prepare"), absl::string_view::npos);
  ASSERT_TRUE((*db)->Exec("CREATE TABLE u (k TEXT PRIMARY KEY)").ok());
  ASSERT_TRUE((*db)->Exec("INSERT INTO u VALUES ('x')").ok());
  EXPECT_FALSE((*db)->Exec("INSERT INTO u VALUES ('x')").ok());  // constraint violation
  auto nodir = SqliteDb::Open("/nonexistent-dir-anchord/x.db");
  EXPECT_FALSE(nodir.ok());
}

}  // namespace
}  // namespace anchord::ledger
