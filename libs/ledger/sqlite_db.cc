#include "libs/ledger/sqlite_db.h"

#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "libs/ledger/sqlite_wal_vfs.h"

namespace anchord::ledger {
namespace {
absl::Status SqliteError(sqlite3* db, absl::string_view what) {
  return absl::InternalError(absl::StrCat("sqlite: ", what, ": ", sqlite3_errmsg(db)));
}

// Bounds the cache: the stores use a few dozen distinct statements; ad-hoc SQL (a filter with a
// variable number of placeholders) must not grow it without limit.
constexpr size_t kMaxIdleStatements = 256;

// SQLite counts every allocation it makes under a global mutex (memory status), which nothing here
// reads. It can be turned off only before the library initializes; when something else in the
// process initialized it first, the call fails and the counting stays (harmless).
void ConfigureLibraryOnce() {
  static const bool done = [] {
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return true;
  }();
  (void)done;
}
}  // namespace

Statement::~Statement() {
  if (stmt_ != nullptr) owner_->Release(stmt_, cache_);
}

void SqliteDb::Release(sqlite3_stmt* stmt, bool cache) {
  // A Statement normally dies inside its Session, on the thread that holds mu_; one that outlives
  // it must not touch the connection beside another thread's Session.
  std::optional<absl::MutexLock> lock;
  if (holder_.load(std::memory_order_relaxed) != std::this_thread::get_id()) lock.emplace(&mu_);
  if (cache) {
    ResetAndCache(stmt);
  } else {
    sqlite3_finalize(stmt);
  }
}

void SqliteDb::ResetAndCache(sqlite3_stmt* stmt) {
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  absl::MutexLock lock(&cache_mu_);
  if (idle_.size() >= kMaxIdleStatements) {
    sqlite3_finalize(stmt);
    return;
  }
  idle_.emplace(sqlite3_sql(stmt), stmt);
}

sqlite3_stmt* SqliteDb::TakeIdle(absl::string_view sql) {
  absl::MutexLock lock(&cache_mu_);
  auto cached = idle_.find(std::string(sql));
  if (cached == idle_.end()) return nullptr;
  sqlite3_stmt* stmt = cached->second;
  idle_.erase(cached);
  return stmt;
}

Statement& Statement::Bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}
namespace {
// SQLite binds NULL for a null data pointer: an empty view may have one.
const char* NonNull(absl::string_view v) { return v.data() != nullptr ? v.data() : ""; }
}  // namespace

Statement& Statement::Bind(int index, absl::string_view text) {
  sqlite3_bind_text(stmt_, index, NonNull(text), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::BindBlob(int index, absl::string_view bytes) {
  sqlite3_bind_blob(stmt_, index, NonNull(bytes), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::BindView(int index, absl::string_view text) {
  sqlite3_bind_text(stmt_, index, NonNull(text), static_cast<int>(text.size()), SQLITE_STATIC);
  return *this;
}
Statement& Statement::BindBlobView(int index, absl::string_view bytes) {
  sqlite3_bind_blob(stmt_, index, NonNull(bytes), static_cast<int>(bytes.size()), SQLITE_STATIC);
  return *this;
}
Statement& Statement::BindNull(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

absl::StatusOr<bool> Statement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(db_, "step");
}

absl::Status Statement::Run() {
  for (;;) {
    absl::StatusOr<bool> row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
  }
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t Statement::ColumnInt(int col) const { return sqlite3_column_int64(stmt_, col); }

std::string Statement::ColumnText(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  int n = sqlite3_column_bytes(stmt_, col);
  if (p == nullptr || n <= 0) return "";
  return std::string(static_cast<const char*>(p), static_cast<size_t>(n));
}

bool Statement::ColumnIsNull(int col) const {
  return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

absl::StatusOr<std::unique_ptr<SqliteDb>> SqliteDb::Open(const std::string& path,
                                                         Durability durability) {
  ConfigureLibraryOnce();
  sqlite3* db = nullptr;
  // NOMUTEX: the SqliteDb's own lock serializes every use of the connection (see mu_), so SQLite's
  // per-call mutex only cost a lock and an unlock per bind, step and column (13-15% of the
  // submitter's and the poller's CPU in a Merkle run).
  // With synchronous=FULL every commit syncs its WAL frames before it is published or returns, so
  // they can reach the kernel in a few large writes instead of two per page (sqlite_wal_vfs.h).
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           durability == Durability::kMachineCrash ? WalCoalescingVfs() : nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    if (db) sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("sqlite: cannot open ", path, ": ", msg));
  }
  sqlite3_busy_timeout(db, 10000);
  std::unique_ptr<SqliteDb> out(new SqliteDb(db));
  Session session(*out);
  // WAL lets readers (status queries) run beside the writer; FULL makes each commit durable.
  absl::Status st = session.Exec(durability == Durability::kMachineCrash
                                     ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                                       "PRAGMA foreign_keys=ON;"
                                     : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                                       "PRAGMA foreign_keys=ON;");
  if (!st.ok()) return st;
  // Digests are random keys, so every insert touches index pages all over the file. With the
  // default 2 MiB page cache each of them was read again through pread once the file outgrew it;
  // a 64 MiB cache (grown only as pages are used) and reads through a memory map keep them at
  // hand. Neither changes what a commit writes or when it is durable.
  // Checkpoints every 32,768 pages of WAL (128 MiB with 4 KiB pages) instead of SQLite's 1,000:
  // a page written by many commits is copied into the database file once per checkpoint, so
  // fewer checkpoints write less (8,192 -> 32,768: the submitter 3.1 -> 2.8 KiB per file of a
  // Merkle run). The price: a WAL of up to that size on disk, read back at open after a crash.
  st = session.Exec(
      "PRAGMA cache_size=-65536; PRAGMA mmap_size=1073741824; "
      "PRAGMA wal_autocheckpoint=32768;");
  if (!st.ok()) return st;
  return out;
}

SqliteDb::~SqliteDb() {
  {
    absl::MutexLock lock(&cache_mu_);
    for (auto& [sql, stmt] : idle_) sqlite3_finalize(stmt);
    idle_.clear();
  }
  sqlite3_close_v2(db_);
}

Session::Session(SqliteDb& db) : db_(db) {
  db.mu_.Lock();
  db.holder_.store(std::this_thread::get_id(), std::memory_order_relaxed);
}

Session::~Session() {
  db_.holder_.store(std::thread::id(), std::memory_order_relaxed);
  db_.mu_.Unlock();
}

sqlite3* Session::conn() {
  // Every Session holds the lock from its construction; this tells the analysis so.
  db_.mu_.AssertHeld();
  return db_.db_;
}

absl::StatusOr<std::set<std::string>> Session::ColumnsOf(absl::string_view table) {
  std::set<std::string> have;
  absl::StatusOr<Statement> info = Prepare(absl::StrCat("PRAGMA table_info(", table, ")"));
  if (!info.ok()) return info.status();
  for (;;) {
    absl::StatusOr<bool> row = info->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    have.insert(info->ColumnText(1));
  }
  return have;
}

absl::Status Session::ExecInTransaction(absl::string_view sql) {
  absl::Status st = Exec("BEGIN IMMEDIATE");
  if (!st.ok()) return st;
  st = Exec(sql);
  if (st.ok()) st = Exec("COMMIT");
  if (!st.ok()) Exec("ROLLBACK").IgnoreError();
  return st;
}

absl::StatusOr<std::string> Session::StoredSqlOf(absl::string_view type, absl::string_view name) {
  absl::StatusOr<Statement> s =
      Prepare("SELECT sql FROM sqlite_master WHERE type = ?1 AND name = ?2");
  if (!s.ok()) return s.status();
  s->Bind(1, type).Bind(2, name);
  absl::StatusOr<bool> found = s->Step();
  if (!found.ok()) return found.status();
  return *found ? s->ColumnText(0) : std::string();
}

absl::Status Session::DropTableClause(absl::string_view table, absl::string_view clause) {
  absl::StatusOr<std::string> stored = StoredSqlOf("table", table);
  if (!stored.ok()) return stored.status();
  const std::string& sql = *stored;
  const size_t at = sql.find(std::string(clause));
  if (at == std::string::npos) return absl::OkStatus();
  // The clause is a table constraint: it follows the column list's last comma.
  const size_t comma = sql.rfind(',', at);
  const size_t open = sql.find('(');
  if (comma == std::string::npos || open == std::string::npos || open > comma) {
    return absl::FailedPreconditionError(
        absl::StrCat(table, ": cannot read the table's stored definition to drop ", clause));
  }
  const std::string rebuilt = absl::StrCat(table, "_rebuilt");
  return ExecInTransaction(absl::StrCat(
      "DROP TABLE IF EXISTS ", rebuilt, "; CREATE TABLE ", rebuilt, " ",
      sql.substr(open, comma - open), sql.substr(at + clause.size()), "; INSERT INTO ", rebuilt,
      " SELECT * FROM ", table, " ORDER BY rowid; ",
      // sqlite_sequence exists only in a database with an AUTOINCREMENT table; this one has one
      // when its counter is to be carried, else both statements change nothing.
      sql.find("AUTOINCREMENT") == std::string::npos
          ? std::string()
          : absl::StrCat("DELETE FROM sqlite_sequence WHERE name = '", rebuilt,
                         "'; INSERT INTO sqlite_sequence (name, seq) SELECT '", rebuilt,
                         "', seq FROM sqlite_sequence WHERE name = '", table, "'; "),
      "DROP TABLE ", table, "; ALTER TABLE ", rebuilt, " RENAME TO ", table));
}

absl::Status Session::AddMissingColumns(absl::string_view table,
                                        const std::vector<SqliteDb::ColumnDecl>& columns) {
  absl::StatusOr<std::set<std::string>> have = ColumnsOf(table);
  if (!have.ok()) return have.status();
  for (const SqliteDb::ColumnDecl& c : columns) {
    if (have->count(c.name)) continue;
    absl::Status st =
        Exec(absl::StrCat("ALTER TABLE ", table, " ADD COLUMN ", c.name, " ", c.decl));
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status Session::Exec(absl::string_view sql) {
  sqlite3* c = conn();
  char* err = nullptr;
  std::string s(sql);
  int rc = sqlite3_exec(c, s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(c);
    sqlite3_free(err);
    return absl::InternalError(absl::StrCat("sqlite: exec: ", msg));
  }
  return absl::OkStatus();
}

absl::StatusOr<Statement> Session::Prepare(absl::string_view sql) {
  sqlite3* c = conn();
  if (sqlite3_stmt* cached = db_.TakeIdle(sql)) return Statement(cached, c, &db_, true);
  const char* tail = nullptr;
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(c, sql.data(), static_cast<int>(sql.size()), &stmt, &tail);
  if (rc != SQLITE_OK) return SqliteError(c, absl::StrCat("prepare \"", sql, "\""));
  // Cached under sqlite3_sql(), the text it was compiled from; only a statement whose text is the
  // whole of `sql` can be found again under `sql`.
  const bool whole = stmt != nullptr && tail == sql.data() + sql.size();
  return Statement(stmt, c, &db_, whole);
}

int64_t Session::LastInsertRowId() { return sqlite3_last_insert_rowid(conn()); }
int Session::Changes() { return sqlite3_changes(conn()); }

Transaction::Transaction(SqliteDb& db) : Session(db) {
  begin_ = Exec("BEGIN IMMEDIATE");
  if (!begin_.ok()) done_ = true;
}

Transaction::~Transaction() {
  if (!done_) (void)Exec("ROLLBACK");
}

absl::Status Transaction::Commit() {
  if (done_) return absl::FailedPreconditionError("transaction already finished");
  absl::Status st = Exec("COMMIT");
  done_ = st.ok();
  return st;
}

Snapshot::Snapshot(SqliteDb& db) : Session(db) { begin_ = Exec("BEGIN DEFERRED"); }

Snapshot::~Snapshot() {
  // A read transaction has nothing to keep: COMMIT ends it (ROLLBACK would as well).
  if (begin_.ok()) (void)Exec("COMMIT");
}

}  // namespace anchord::ledger
