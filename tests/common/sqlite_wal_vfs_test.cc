// The WAL-coalescing VFS under SqliteDb's synchronous=FULL connections
// (libs/ledger/sqlite_wal_vfs.h): its writes are fewer, and every reader (another connection of the
// process, as another process would read the file; the same connection after its cache let pages
// go; a reopen after a kill) sees exactly what was committed.
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/common/status_macros.h"
#include "libs/ledger/sqlite_db.h"
#include "libs/ledger/sqlite_wal_vfs.h"

namespace anchord::ledger {
namespace {

std::string TempDb(const char* name) {
  std::string path = absl::StrCat(::testing::TempDir(), "/", name, "-", getpid(), ".db");
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  return path;
}

// A value that differs in every byte from row to row, so a frame written at the wrong offset or
// left out shows as a wrong value, not only as a wrong count.
std::string Value(int64_t row, int64_t version, size_t bytes = 300) {
  std::string v(bytes, '\0');
  for (size_t i = 0; i < bytes; ++i)
    v[i] = static_cast<char>((row * 131 + version * 17 + i) & 0xff);
  return v;
}

// A new database at `path` with the table the tests write, t (k, v).
absl::StatusOr<std::unique_ptr<SqliteDb>> OpenWithTable(const std::string& path) {
  ANCHORD_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(path));
  Session session(*db);
  ANCHORD_RETURN_IF_ERROR(session.Exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)"));
  return db;
}

absl::Status Upsert(SqliteDb& db, int64_t from, int64_t to, int64_t version) {
  Transaction tx(db);
  if (!tx.begin_status().ok()) return tx.begin_status();
  auto ins =
      tx.Prepare("INSERT INTO t (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = ?2");
  if (!ins.ok()) return ins.status();
  for (int64_t k = from; k < to; ++k) {
    ins->Bind(1, k).BindBlob(2, Value(k, version));
    absl::Status st = ins->Run();
    if (!st.ok()) return st;
    ins->Reset();
  }
  return tx.Commit();
}

// A connection of the test's own through SQLite's default VFS: it reads the files as another
// process does, with its own file descriptors.
class PlainReader {
 public:
  explicit PlainReader(const std::string& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  }
  ~PlainReader() { sqlite3_close(db_); }

  // Rows whose value is not Value(k, version) for k in [from, to), plus the rows missing there.
  int64_t Wrong(int64_t from, int64_t to, int64_t version) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, "SELECT k, v FROM t WHERE k >= ?1 AND k < ?2 ORDER BY k", -1,
                                 &st, nullptr),
              SQLITE_OK);
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    int64_t wrong = 0, seen = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
      ++seen;
      const int64_t k = sqlite3_column_int64(st, 0);
      const char* v = static_cast<const char*>(sqlite3_column_blob(st, 1));
      const std::string got(v == nullptr ? "" : std::string(v, sqlite3_column_bytes(st, 1)));
      if (got != Value(k, version)) ++wrong;
    }
    sqlite3_finalize(st);
    return wrong + (to - from - seen);
  }

  int64_t Scalar(const char* sql) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql, -1, &st, nullptr), SQLITE_OK);
    int64_t out = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return out;
  }

  std::string Text(const char* sql) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql, -1, &st, nullptr), SQLITE_OK);
    std::string out;
    if (sqlite3_step(st) == SQLITE_ROW) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

// The VFS's own contract, file call by file call, against a model of what the WAL must hold:
// the file on disk lags only while nothing could look at it.
class DirectFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = TempDb("walvfs-direct");
    vfs_ = sqlite3_vfs_find(WalCoalescingVfs());
    ASSERT_NE(vfs_, nullptr);
    // Names as SQLite's pager makes them: the WAL's leads to its database's.
    name_ = sqlite3_create_filename(path_.c_str(), (path_ + "-journal").c_str(),
                                    (path_ + "-wal").c_str(), 0, nullptr);
    ASSERT_NE(name_, nullptr);
    const size_t words = (static_cast<size_t>(vfs_->szOsFile) + 7) / 8;
    db_mem_.assign(words, 0);
    wal_mem_.assign(words, 0);
    int out = 0;
    ASSERT_EQ(vfs_->xOpen(vfs_, name_, db(),
                          SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &out),
              SQLITE_OK);
    ASSERT_EQ(vfs_->xOpen(vfs_, sqlite3_filename_wal(name_), wal(),
                          SQLITE_OPEN_WAL | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &out),
              SQLITE_OK);
    wal_open_ = db_open_ = true;
  }
  void TearDown() override {
    if (wal_open_) wal()->pMethods->xClose(wal());
    if (db_open_) db()->pMethods->xClose(db());
    sqlite3_free_filename(name_);
  }

  sqlite3_file* db() { return reinterpret_cast<sqlite3_file*>(db_mem_.data()); }
  sqlite3_file* wal() { return reinterpret_cast<sqlite3_file*>(wal_mem_.data()); }
  std::string wal_path() const { return path_ + "-wal"; }

  // Writes `bytes` bytes at `off` through the VFS and into the model.
  void Write(int64_t off, int bytes) {
    std::string data(static_cast<size_t>(bytes), '\0');
    for (int i = 0; i < bytes; ++i) data[i] = static_cast<char>((off + i) * 7 + writes_);
    ++writes_;
    ASSERT_EQ(wal()->pMethods->xWrite(wal(), data.data(), bytes, off), SQLITE_OK);
    if (model_.size() < static_cast<size_t>(off + bytes)) model_.resize(off + bytes, '\0');
    model_.replace(off, bytes, data);
  }
  // The WAL file as the kernel has it (what another process reads).
  std::string OnDisk() const {
    std::ifstream in(wal_path(), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::string path_;
  sqlite3_vfs* vfs_ = nullptr;
  sqlite3_filename name_ = nullptr;
  std::vector<uint64_t> db_mem_, wal_mem_;
  bool db_open_ = false, wal_open_ = false;
  std::string model_;
  int writes_ = 0;
};

TEST_F(DirectFiles, AWalsBytesReachTheFileBeforeAnythingCouldLookAtThem) {
  // Frames as SQLite writes them: a header, then its page.
  Write(0, 32);
  for (int frame = 0; frame < 3; ++frame) {
    Write(32 + frame * 4120, 24);
    Write(32 + frame * 4120 + 24, 4096);
  }
  EXPECT_EQ(OnDisk().size(), 0u) << "appended writes are gathered";
  // A read of buffered bytes sees them.
  std::string got(4120, '\0');
  ASSERT_EQ(wal()->pMethods->xRead(wal(), got.data(), 4120, 32 + 4120), SQLITE_OK);
  EXPECT_EQ(got, model_.substr(32 + 4120, 4120));
  EXPECT_EQ(OnDisk(), model_);

  // The size query counts buffered bytes.
  Write(32 + 3 * 4120, 24);
  Write(32 + 3 * 4120 + 24, 4096);
  sqlite3_int64 size = 0;
  ASSERT_EQ(wal()->pMethods->xFileSize(wal(), &size), SQLITE_OK);
  EXPECT_EQ(size, static_cast<sqlite3_int64>(model_.size()));
  EXPECT_EQ(OnDisk(), model_);

  // The database file's barrier (a commit published in the WAL index) flushes its WAL.
  Write(32 + 4 * 4120, 24);
  Write(32 + 4 * 4120 + 24, 4096);
  EXPECT_LT(OnDisk().size(), model_.size());
  db()->pMethods->xShmBarrier(db());
  EXPECT_EQ(OnDisk(), model_);

  // A sync.
  Write(32 + 5 * 4120, 24);
  Write(32 + 5 * 4120 + 24, 4096);
  ASSERT_EQ(wal()->pMethods->xSync(wal(), SQLITE_SYNC_NORMAL), SQLITE_OK);
  EXPECT_EQ(OnDisk(), model_);

  // A page rewritten in place, then the next frame appended: both land where they belong.
  Write(32 + 2 * 4120 + 24, 4096);
  Write(32 + 6 * 4120, 24);
  Write(32 + 6 * 4120 + 24, 4096);
  // More than one write's worth: the buffer goes out as it fills.
  for (int frame = 7; frame < 80; ++frame) {
    Write(32 + frame * 4120, 24);
    Write(32 + frame * 4120 + 24, 4096);
  }
  EXPECT_GT(OnDisk().size(), 32u + 7 * 4120);
  ASSERT_EQ(wal()->pMethods->xSync(wal(), SQLITE_SYNC_NORMAL), SQLITE_OK);
  EXPECT_EQ(OnDisk(), model_);

  // The WAL started over: a write at its beginning, then a truncate.
  Write(0, 32);
  Write(32, 24);
  ASSERT_EQ(wal()->pMethods->xTruncate(wal(), 32 + 24), SQLITE_OK);
  model_.resize(32 + 24);
  EXPECT_EQ(OnDisk(), model_);

  // Whatever is buffered at the close is written.
  Write(32 + 24, 4096);
  ASSERT_EQ(wal()->pMethods->xClose(wal()), SQLITE_OK);
  wal_open_ = false;
  EXPECT_EQ(OnDisk(), model_);
}

TEST(WalCoalescingVfs, ACommitsFramesGoOutInFewWritesAndReadBackExactly) {
  const std::string path = TempDb("walvfs-few");
  auto db = OpenWithTable(path);
  ASSERT_TRUE(db.ok()) << db.status();
  const WalWriteTotals before = WalCoalescingTotals();
  ASSERT_TRUE(Upsert(**db, 0, 2000, 1).ok());
  const WalWriteTotals after = WalCoalescingTotals();
  const int64_t requested = after.requested - before.requested;
  const int64_t issued = after.issued - before.issued;
  // 2,000 rows of 300 bytes are some 170 pages: two writes each from SQLite.
  EXPECT_GE(requested, 300);
  // At most 31 frames fit one write.
  EXPECT_LE(issued, requested / 40);
  EXPECT_GE(issued, 1);
  PlainReader reader(path);
  EXPECT_EQ(reader.Wrong(0, 2000, 1), 0);
}

TEST(WalCoalescingVfs, AnotherConnectionSeesEveryCommitAsSoonAsItReturns) {
  const std::string path = TempDb("walvfs-each");
  auto db = OpenWithTable(path);
  ASSERT_TRUE(db.ok()) << db.status();
  PlainReader reader(path);
  for (int64_t i = 0; i < 120; ++i) {
    // Small and large commits alternately: some fit the buffer, some flush it on the way.
    const int64_t n = i % 2 == 0 ? 3 : 700;
    ASSERT_TRUE(Upsert(**db, i * 1000, i * 1000 + n, i).ok());
    ASSERT_EQ(reader.Wrong(i * 1000, i * 1000 + n, i), 0) << "commit " << i;
  }
  EXPECT_EQ(reader.Text("PRAGMA integrity_check"), "ok");
}

// Every row of t[0, 3000) updated three times in one transaction, in a scattered order, then
// committed or rolled back. Within the transaction each row must read back as last written.
absl::Status ScatteredUpdates(SqliteDb& db, bool commit) {
  Transaction tx(db);
  if (!tx.begin_status().ok()) return tx.begin_status();
  auto up = tx.Prepare("UPDATE t SET v = ?2 WHERE k = ?1");
  if (!up.ok()) return up.status();
  for (int64_t version = 2; version <= 4; ++version) {
    for (int64_t i = 0; i < 3000; ++i) {
      const int64_t k = (i * 7919) % 3000;
      up->Bind(1, k).BindBlob(2, Value(k, version));
      absl::Status st = up->Run();
      if (!st.ok()) return st;
      up->Reset();
    }
  }
  auto check = tx.Prepare("SELECT v FROM t WHERE k = 1234");
  if (!check.ok()) return check.status();
  auto row = check->Step();
  if (!row.ok()) return row.status();
  if (!*row || check->ColumnText(0) != Value(1234, 4)) {
    return absl::DataLossError("row 1234 does not read back as written");
  }
  return commit ? tx.Commit() : absl::OkStatus();
}

// A small page cache makes SQLite spill pages of an open transaction into the WAL, write a page's
// frame again in place when it spills twice, and, at the commit, read those frames back to
// recompute their checksums: reads and writes that are not appends.
TEST(WalCoalescingVfs, SpilledRewrittenAndRolledBackPagesReadBackExactly) {
  const std::string path = TempDb("walvfs-spill");
  auto db = OpenWithTable(path);
  ASSERT_TRUE(db.ok()) << db.status();
  {
    Session session(**db);
    ASSERT_TRUE(session.Exec("PRAGMA cache_size=10").ok());
  }
  ASSERT_TRUE(Upsert(**db, 0, 3000, 1).ok());
  PlainReader reader(path);
  // Rolled back: its spilled frames must not become visible.
  ASSERT_TRUE(ScatteredUpdates(**db, /*commit=*/false).ok());
  EXPECT_EQ(reader.Wrong(0, 3000, 1), 0);
  ASSERT_TRUE(ScatteredUpdates(**db, /*commit=*/true).ok());
  EXPECT_EQ(reader.Wrong(0, 3000, 4), 0);
  EXPECT_EQ(reader.Text("PRAGMA integrity_check"), "ok");
  // The files as a crash would leave them: a connection that opens the copy rebuilds the WAL
  // index from the WAL, and keeps only frames whose checksums chain. The commit's recomputed
  // checksums must have been made over the frames as written.
  const std::string copy = TempDb("walvfs-spill-copy");
  std::filesystem::copy_file(path, copy);
  std::filesystem::copy_file(path + "-wal", copy + "-wal");
  PlainReader recovered(copy);
  EXPECT_EQ(recovered.Wrong(0, 3000, 4), 0);
  EXPECT_EQ(recovered.Text("PRAGMA integrity_check"), "ok");
}

// Checkpoints copy the WAL into the database file and the WAL starts over at its beginning: the
// writes then land before the buffered ones' offsets.
TEST(WalCoalescingVfs, CheckpointsAndARestartedWalKeepEveryRow) {
  const std::string path = TempDb("walvfs-ckpt");
  {
    auto db = OpenWithTable(path);
    ASSERT_TRUE(db.ok()) << db.status();
    {
      Session session(**db);
      ASSERT_TRUE(session.Exec("PRAGMA wal_autocheckpoint=40").ok());
    }
    for (int64_t i = 0; i < 30; ++i) {
      ASSERT_TRUE(Upsert(**db, i * 100, i * 100 + 400, i).ok());
      if (i % 10 == 9) {
        Session session(**db);
        ASSERT_TRUE(session.Exec("PRAGMA wal_checkpoint(TRUNCATE)").ok());
      }
    }
  }
  // Reopened: the last commit's values are what a reader sees, and nothing else changed.
  auto db = SqliteDb::Open(path);
  ASSERT_TRUE(db.ok()) << db.status();
  PlainReader reader(path);
  EXPECT_EQ(reader.Wrong(29 * 100, 29 * 100 + 400, 29), 0);
  EXPECT_EQ(reader.Wrong(0, 100, 0), 0);
  EXPECT_EQ(reader.Scalar("SELECT count(*) FROM t"), 29 * 100 + 400);
  EXPECT_EQ(reader.Text("PRAGMA integrity_check"), "ok");
}

// A process killed at any point keeps every commit that returned, and none that did not: here it
// is killed inside a transaction whose frames partly sit in the buffer.
TEST(WalCoalescingVfs, AKilledProcessKeepsEveryCommitThatReturned) {
  const std::string path = TempDb("walvfs-kill");
  {
    auto db = OpenWithTable(path);
    ASSERT_TRUE(db.ok()) << db.status();
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    auto db = SqliteDb::Open(path);
    if (!db.ok()) _exit(2);
    for (int64_t i = 0; i < 25; ++i) {
      if (!Upsert(**db, i * 500, i * 500 + 500, i).ok()) _exit(3);
      const char done = 1;
      if (write(fds[1], &done, 1) != 1) _exit(4);
    }
    Transaction tx(**db);
    auto ins = tx.Prepare("INSERT INTO t (k, v) VALUES (?1, ?2)");
    for (int64_t k = 100000; k < 100400; ++k) {
      ins->Bind(1, k).BindBlob(2, Value(k, 99));
      if (!ins->Run().ok()) _exit(5);
      ins->Reset();
    }
    raise(SIGKILL);
    _exit(6);
  }
  close(fds[1]);
  int committed = 0;
  char c;
  while (read(fds[0], &c, 1) == 1) ++committed;
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;
  ASSERT_EQ(committed, 25);
  auto db = SqliteDb::Open(path);
  ASSERT_TRUE(db.ok()) << db.status();
  PlainReader reader(path);
  for (int64_t i = 0; i < 25; ++i) EXPECT_EQ(reader.Wrong(i * 500, i * 500 + 500, i), 0) << i;
  EXPECT_EQ(reader.Scalar("SELECT count(*) FROM t WHERE k >= 100000"), 0);
  EXPECT_EQ(reader.Text("PRAGMA integrity_check"), "ok");
}

}  // namespace
}  // namespace anchord::ledger
