#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/ledger/sqlite_db.h"
#include "libs/ledger/sqlite_rows.h"

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
    {
      Session session(**db);
      ASSERT_TRUE(session.Exec("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB, n INTEGER)").ok());
    }
    {
      Transaction tx(**db);
      ASSERT_TRUE(tx.begin_status().ok());
      auto ins = tx.Prepare("INSERT INTO t (k, v, n) VALUES (?, ?, ?)");
      ASSERT_TRUE(ins.ok());
      ins->Bind(1, "a").BindBlob(2, std::string("\x00\x01", 2)).Bind(3, int64_t{42});
      ASSERT_TRUE(ins->Run().ok());
      ASSERT_TRUE(tx.Commit().ok());
      EXPECT_EQ(tx.Commit().code(), absl::StatusCode::kFailedPrecondition);
    }
    {
      Transaction tx(**db);
      auto ins = tx.Prepare("INSERT INTO t (k, v, n) VALUES ('b', NULL, 1)");
      ASSERT_TRUE(ins->Run().ok());
      // No commit: destructor rolls back.
    }
  }
  auto db = SqliteDb::Open(path);
  ASSERT_TRUE(db.ok());
  Session session(**db);
  auto q = session.Prepare("SELECT k, v, n FROM t ORDER BY k");
  ASSERT_TRUE(q.ok());
  auto row = q->Step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(q->ColumnText(0), "a");
  EXPECT_EQ(q->ColumnText(1), std::string("\x00\x01", 2));
  EXPECT_EQ(q->ColumnInt(2), 42);
  row = q->Step();
  ASSERT_TRUE(row.ok());
  EXPECT_FALSE(*row) << "rolled-back row must not exist";

  auto mode = session.Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode->Step().ok());
  EXPECT_EQ(mode->ColumnText(0), "wal");
}

// A reader connection's snapshot sees one committed state: the writer on another connection
// commits while it is open (without waiting for it), and the snapshot's reads still see the state
// of its first read; the next snapshot sees the commit.
TEST(SqliteDb, ASnapshotSeesOneStateAndNeverHoldsTheWriterUp) {
  std::string path = TempDb("snapshot");
  auto writer = SqliteDb::Open(path);
  ASSERT_TRUE(writer.ok()) << writer.status();
  {
    Session session(**writer);
    ASSERT_TRUE(session.Exec("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1)").ok());
  }
  auto reader = SqliteDb::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto count = [](Session& s) -> int64_t {
    auto q = s.Prepare("SELECT count(*) FROM t");
    if (!q.ok() || !q->Step().ok()) return -1;
    return q->ColumnInt(0);
  };
  {
    Snapshot snap(**reader);
    ASSERT_TRUE(snap.begin_status().ok()) << snap.begin_status();
    EXPECT_EQ(count(snap), 1);
    {
      Transaction tx(**writer);
      ASSERT_TRUE(tx.begin_status().ok()) << tx.begin_status();
      auto ins = tx.Prepare("INSERT INTO t VALUES (2)");
      ASSERT_TRUE(ins.ok() && ins->Run().ok());
      ASSERT_TRUE(tx.Commit().ok());
    }
    EXPECT_EQ(count(snap), 1) << "a snapshot's reads all see the state of its first read";
  }
  Snapshot next(**reader);
  ASSERT_TRUE(next.begin_status().ok());
  EXPECT_EQ(count(next), 2);
}

TEST(SqliteDb, DurabilityChoosesTheSyncMode) {
  auto full = SqliteDb::Open(TempDb("full"));
  auto normal = SqliteDb::Open(TempDb("normal"), Durability::kProcessCrash);
  ASSERT_TRUE(full.ok() && normal.ok());
  Session full_session(**full);
  Session normal_session(**normal);
  auto q_full = full_session.Prepare("PRAGMA synchronous");
  auto q_normal = normal_session.Prepare("PRAGMA synchronous");
  ASSERT_TRUE(q_full->Step().ok() && q_normal->Step().ok());
  EXPECT_EQ(q_full->ColumnInt(0), 2);    // FULL: fsync on every commit
  EXPECT_EQ(q_normal->ColumnInt(0), 1);  // NORMAL: WAL synced at checkpoints
}

TEST(SqliteDb, ErrorsAreStatusesNotCrashes) {
  auto db = SqliteDb::Open(TempDb("errors"));
  ASSERT_TRUE(db.ok());
  Session session(**db);
  auto bad = session.Prepare("SELEKT nonsense");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("prepare"), absl::string_view::npos);
  ASSERT_TRUE(session.Exec("CREATE TABLE u (k TEXT PRIMARY KEY)").ok());
  ASSERT_TRUE(session.Exec("INSERT INTO u VALUES ('x')").ok());
  EXPECT_FALSE(session.Exec("INSERT INTO u VALUES ('x')").ok());  // constraint violation
  auto nodir = SqliteDb::Open("/nonexistent-dir-anchord/x.db");
  EXPECT_FALSE(nodir.ok());
}

// A statement returned to the cache comes back reset: no row, binding or cursor of its last use
// leaks into the next session that prepares the same SQL.
TEST(SqliteDb, CachedStatementsComeBackReset) {
  auto db = SqliteDb::Open(TempDb("cache"));
  ASSERT_TRUE(db.ok());
  {
    Session session(**db);
    ASSERT_TRUE(session
                    .Exec("CREATE TABLE c (k INTEGER PRIMARY KEY); "
                          "INSERT INTO c VALUES (1), (2), (3);")
                    .ok());
  }
  constexpr char kSql[] = "SELECT k FROM c WHERE k >= ?1 ORDER BY k";
  {
    Session session(**db);
    auto q = session.Prepare(kSql);
    ASSERT_TRUE(q.ok());
    q->Bind(1, int64_t{3});
    ASSERT_TRUE(q->Step().value_or(false));
    EXPECT_EQ(q->ColumnInt(0), 3);
    // Left mid-cursor, bound to 3.
  }
  Session session(**db);
  auto q = session.Prepare(kSql);
  ASSERT_TRUE(q.ok());
  auto row = q->Step();  // unbound: NULL, so no row matches
  ASSERT_TRUE(row.ok());
  EXPECT_FALSE(*row);
  q->Reset();
  q->Bind(1, int64_t{2});
  std::vector<int64_t> got;
  for (;;) {
    auto r = q->Step();
    ASSERT_TRUE(r.ok());
    if (!*r) break;
    got.push_back(q->ColumnInt(0));
  }
  EXPECT_EQ(got, (std::vector<int64_t>{2, 3}));
}

// LookAhead gives every key its rows (none, one or several) and no row to a key it was not asked
// for: keys filling several statements, the last one partly (its spare places repeat the last
// key), and the statement reused by a second call.
TEST(SqliteRows, LookAheadGivesEachKeyItsRowsOnly) {
  std::string path = TempDb("lookahead");
  auto db = SqliteDb::Open(path);
  ASSERT_TRUE(db.ok()) << db.status();
  Session session(**db);
  ASSERT_TRUE(session
                  .Exec("CREATE TABLE t (k BLOB NOT NULL, v INTEGER NOT NULL);"
                        "CREATE INDEX t_k ON t (k)")
                  .ok());
  // Key "k<n>" has n % 3 rows (v = 100 n + j).
  std::vector<std::string> owned;
  for (int n = 0; n < 37; ++n) owned.push_back(absl::StrCat("k", n));
  for (int n = 0; n < 37; ++n) {
    for (int j = 0; j < n % 3; ++j) {
      ASSERT_TRUE(
          session.Exec(absl::StrCat("INSERT INTO t VALUES ('", owned[n], "', ", 100 * n + j, ")"))
              .ok());
    }
  }
  std::optional<Statement> slot;
  for (size_t count : {size_t{37}, size_t{5}, size_t{0}}) {
    SCOPED_TRACE(count);
    std::vector<absl::string_view> keys(owned.begin(), owned.begin() + count);
    std::map<size_t, std::vector<int64_t>> got;
    absl::Status st = LookAhead(
        session, slot, keys, 8,
        [](int i) {
          return absl::StrCat("SELECT ", i, ", v FROM t WHERE k = CAST(?", i, " AS TEXT)");
        },
        [&](size_t k, const Statement& row) { got[k].push_back(row.ColumnInt(1)); });
    ASSERT_TRUE(st.ok()) << st;
    std::map<size_t, std::vector<int64_t>> want;
    for (size_t n = 0; n < count; ++n) {
      for (int j = 0; j < static_cast<int>(n) % 3; ++j)
        want[n].push_back(100 * static_cast<int64_t>(n) + j);
    }
    for (auto& [k, v] : got) std::sort(v.begin(), v.end());
    EXPECT_EQ(got, want);
  }
}

TEST(SqliteDb, AddMissingColumnsAddsOnlyWhatIsMissing) {
  auto db = SqliteDb::Open(TempDb("columns"));
  ASSERT_TRUE(db.ok());
  Session session(**db);
  ASSERT_TRUE(session.Exec("CREATE TABLE m (a INTEGER)").ok());
  const std::vector<SqliteDb::ColumnDecl> cols = {{"a", "INTEGER"},
                                                  {"b", "TEXT NOT NULL DEFAULT 'x'"}};
  ASSERT_TRUE(session.AddMissingColumns("m", cols).ok());
  ASSERT_TRUE(session.AddMissingColumns("m", cols).ok());  // the second run finds both
  ASSERT_TRUE(session.Exec("INSERT INTO m (a) VALUES (7)").ok());
  EXPECT_EQ(session.LastInsertRowId(), 1);
  auto q = session.Prepare("SELECT a, b FROM m");
  ASSERT_TRUE(q.ok() && q->Step().value_or(false));
  EXPECT_EQ(q->ColumnInt(0), 7);
  EXPECT_EQ(q->ColumnText(1), "x");
}

// A table rebuild either happens whole or not at all: a failing statement in the middle rolls
// back the ones before it, and the connection is usable afterwards (no transaction left open).
TEST(SqliteDb, ExecInTransactionIsAllOrNothing) {
  auto db = SqliteDb::Open(TempDb("rebuild"));
  ASSERT_TRUE(db.ok());
  Session session(**db);
  ASSERT_TRUE(session.Exec("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1)").ok());
  absl::Status failed = session.ExecInTransaction(
      "DROP TABLE t; CREATE TABLE t (b TEXT); INSERT INTO nowhere VALUES (1)");
  EXPECT_FALSE(failed.ok());
  auto columns = session.ColumnsOf("t");
  ASSERT_TRUE(columns.ok()) << columns.status();
  EXPECT_EQ(*columns, (std::set<std::string>{"a"}));
  ASSERT_TRUE(session.ExecInTransaction("ALTER TABLE t RENAME TO u").ok());
  auto renamed = session.ColumnsOf("u");
  ASSERT_TRUE(renamed.ok());
  EXPECT_EQ(*renamed, (std::set<std::string>{"a"}));
  auto gone = session.ColumnsOf("t");
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(gone->empty());
  EXPECT_TRUE(session.Exec("BEGIN IMMEDIATE; COMMIT").ok());  // nothing was left open
}

// A table constraint is dropped by rebuilding the table from its stored statement: every row and
// rowid stays, columns added later stay, the AUTOINCREMENT counter is carried (a deleted top id is
// not given again), the constraint no longer holds, and a second call changes nothing.
TEST(SqliteDb, DropTableClauseRebuildsWithoutTheConstraint) {
  auto db = SqliteDb::Open(TempDb("drop-clause"));
  ASSERT_TRUE(db.ok());
  Session session(**db);
  ASSERT_TRUE(
      session
          .Exec("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, k TEXT NOT NULL,\n"
                "  UNIQUE (k)\n); ALTER TABLE t ADD COLUMN extra INTEGER NOT NULL DEFAULT 7; "
                "INSERT INTO t (k) VALUES ('a'), ('b'), ('c'); DELETE FROM t WHERE k = 'c'")
          .ok());
  EXPECT_FALSE(session.Exec("INSERT INTO t (k) VALUES ('a')").ok());  // the constraint holds
  for (int call = 0; call < 2; ++call) {
    ASSERT_TRUE(session.DropTableClause("t", "UNIQUE (k)").ok()) << call;
    auto columns = session.ColumnsOf("t");
    ASSERT_TRUE(columns.ok());
    EXPECT_EQ(*columns, (std::set<std::string>{"id", "k", "extra"})) << call;
    auto rows = session.Prepare("SELECT group_concat(id || k || extra, ',') FROM t ORDER BY id");
    ASSERT_TRUE(rows.ok());
    ASSERT_TRUE(rows->Step().value_or(false));
    EXPECT_EQ(rows->ColumnText(0), "1a7,2b7") << call;
  }
  ASSERT_TRUE(session.Exec("INSERT INTO t (k) VALUES ('a')").ok());  // no longer unique
  EXPECT_EQ(session.LastInsertRowId(), 4);                           // 3 was given before
  auto gone = session.ColumnsOf("t_rebuilt");
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(gone->empty());
  // A statement without the clause is left alone.
  EXPECT_TRUE(session.DropTableClause("t", "UNIQUE (nothing)").ok());
}

// Sessions from many threads take turns on the one connection: each read-modify-write in its
// transaction sees the previous one's commit, so no increment is lost and no BEGIN meets another
// thread's open transaction.
// The connection has no mutex of SQLite's own (SQLITE_OPEN_NOMUTEX): a Statement destroyed after
// its Session ended must wait for the connection's lock before it resets, not touch the
// connection beside another thread's Session.
TEST(SqliteDb, AStatementThatOutlivesItsSessionWaitsForTheConnection) {
  auto db = SqliteDb::Open(TempDb("outlive"));
  ASSERT_TRUE(db.ok());
  constexpr char kSql[] = "SELECT k FROM o ORDER BY k";
  std::optional<Statement> kept;
  {
    Session session(**db);
    ASSERT_TRUE(
        session.Exec("CREATE TABLE o (k INTEGER PRIMARY KEY); INSERT INTO o VALUES (7);").ok());
    auto q = session.Prepare(kSql);
    ASSERT_TRUE(q.ok());
    ASSERT_TRUE(q->Step().value_or(false));  // left mid-cursor
    kept.emplace(std::move(*q));
  }
  std::atomic<bool> released{false};
  std::thread other;
  {
    Session held(**db);
    other = std::thread([&] {
      kept.reset();
      released = true;
    });
    // Bounded: the release must still be waiting for `held` after this.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_FALSE(released.load()) << "the statement was reset while another Session held the "
                                     "connection";
  }
  other.join();
  EXPECT_TRUE(released.load());
  // It came back to the cache reset: the same SQL reads from the first row again.
  Session session(**db);
  auto q = session.Prepare(kSql);
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(q->Step().value_or(false));
  EXPECT_EQ(q->ColumnInt(0), 7);
}

TEST(SqliteDb, TransactionsFromManyThreadsTakeTurns) {
  auto db = SqliteDb::Open(TempDb("threads"));
  ASSERT_TRUE(db.ok());
  {
    Session session(**db);
    ASSERT_TRUE(session
                    .Exec("CREATE TABLE n (id INTEGER PRIMARY KEY, v INTEGER NOT NULL); "
                          "INSERT INTO n VALUES (1, 0);")
                    .ok());
  }
  constexpr int kThreads = 4;
  constexpr int kEach = 50;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        Transaction tx(**db);
        if (!tx.begin_status().ok()) {
          ++failures[t];
          continue;
        }
        auto read = tx.Prepare("SELECT v FROM n WHERE id = 1");
        if (!read.ok() || !read->Step().value_or(false)) {
          ++failures[t];
          continue;
        }
        const int64_t v = read->ColumnInt(0);
        auto write = tx.Prepare("UPDATE n SET v = ?1 WHERE id = 1");
        if (!write.ok() || !write->Bind(1, v + 1).Run().ok() || tx.Changes() != 1 ||
            !tx.Commit().ok()) {
          ++failures[t];
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
  Session session(**db);
  auto q = session.Prepare("SELECT v FROM n WHERE id = 1");
  ASSERT_TRUE(q.ok() && q->Step().value_or(false));
  EXPECT_EQ(q->ColumnInt(0), kThreads * kEach);
}

}  // namespace
}  // namespace anchord::ledger
