// A small RAII layer over SQLite, the embedded store every service uses by default.
//
// Each service keeps its own database file (it owns its state). The database is opened in WAL
// mode with synchronous=FULL, so a committed transaction survives a crash of the process or the
// machine: an acknowledgement sent after Commit() is a promise the store keeps.
//
// Thread safety: one connection per SqliteDb, used by one thread at a time. The only way to reach
// the connection is a Session (or a Transaction, which is a Session inside BEGIN IMMEDIATE ...
// COMMIT/ROLLBACK): it holds the database's lock from construction to destruction, and clang's
// thread-safety analysis sees it do so. A store method opens one Session or Transaction; a helper
// that runs inside it takes the Session& as a parameter instead of locking again (the lock is not
// recursive: a second Session on the same thread deadlocks).
//
// Statements come from Session::Prepare. A Statement must be used and destroyed while the Session
// that prepared it is alive (declare it after the Session in the same scope); it must not outlive
// its SqliteDb.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace anchord::ledger {

class SqliteDb;
class Session;

// A prepared statement. Bind parameters are 1-based, as in SQLite. When it goes out of scope it
// returns (reset, bindings cleared) to its SqliteDb's cache, so the next Prepare of the same SQL
// does not compile it again.
class Statement {
 public:
  Statement(Statement&& other) noexcept
      : stmt_(other.stmt_), db_(other.db_), owner_(other.owner_), cache_(other.cache_) {
    other.stmt_ = nullptr;
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  Statement& Bind(int index, int64_t value);
  // Text and blobs are copied; an empty view binds an empty value (never NULL, whatever its
  // data pointer).
  Statement& Bind(int index, absl::string_view text);  // bound as TEXT
  Statement& BindBlob(int index, absl::string_view bytes);
  // As Bind and BindBlob without the copy: the bytes must stay where they are, unchanged, until
  // the statement has run and is reset. For the many-row inserts (sqlite_rows.h), where copying
  // every bound string was a measurable part of each row.
  Statement& BindView(int index, absl::string_view text);
  Statement& BindBlobView(int index, absl::string_view bytes);
  Statement& BindNull(int index);

  // Advances: true when a row is available, false when done. Errors carry SQLite's message.
  absl::StatusOr<bool> Step();
  // Runs to completion, for statements that return no rows.
  absl::Status Run();
  // Resets for re-use with new bindings.
  void Reset();

  int64_t ColumnInt(int col) const;
  std::string ColumnText(int col) const;  // TEXT or BLOB bytes; "" for NULL
  bool ColumnIsNull(int col) const;

 private:
  friend class Session;
  Statement(sqlite3_stmt* stmt, sqlite3* db, SqliteDb* owner, bool cache)
      : stmt_(stmt), db_(db), owner_(owner), cache_(cache) {}
  sqlite3_stmt* stmt_;
  sqlite3* db_;      // for error messages only
  SqliteDb* owner_;  // the database it returns to on destruction
  bool cache_;       // false: finalized on destruction instead of cached
};

enum class Durability {
  // synchronous=FULL: a committed transaction survives a crash of the process or the machine.
  // For stores whose acknowledgements are promises (submitter, poller).
  kMachineCrash,
  // synchronous=NORMAL (in WAL mode): a commit survives a crash of the process; a power loss may
  // lose the last commits. For caches that can be rebuilt (the hasher's record of what it hashed:
  // a lost row only means the file is hashed again), at a fraction of the cost per commit.
  kProcessCrash,
};

// One SQLite connection and its cache of compiled statements. Use it through a Session.
class SqliteDb {
 public:
  // Opens (creating if needed) the database at `path` (":memory:" for tests) and applies the
  // pragmas above. The parent directory must exist.
  static absl::StatusOr<std::unique_ptr<SqliteDb>> Open(
      const std::string& path, Durability durability = Durability::kMachineCrash);
  // No Session or Statement of this database may be alive.
  ~SqliteDb();

  // A column for Session::AddMissingColumns: {name, declaration}.
  struct ColumnDecl {
    const char* name;
    const char* decl;
  };

 private:
  friend class Session;
  friend class Transaction;
  friend class Snapshot;
  friend class Statement;
  explicit SqliteDb(sqlite3* db) : db_(db) {}

  // Takes back a statement that went out of scope: resets it (under mu_, taken here unless this
  // thread's Session holds it) and caches it, or finalizes it when the cache is full.
  // A statement that is not to be cached is finalized (under mu_ the same way).
  void Release(sqlite3_stmt* stmt, bool cache)
      ABSL_LOCKS_EXCLUDED(cache_mu_) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Resets and caches, or finalizes when the cache is full; the caller holds mu_.
  void ResetAndCache(sqlite3_stmt* stmt) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_)
      ABSL_LOCKS_EXCLUDED(cache_mu_);
  // Removes and returns an idle compiled statement of exactly `sql`, or null.
  sqlite3_stmt* TakeIdle(absl::string_view sql) ABSL_LOCKS_EXCLUDED(cache_mu_);

  // Serializes use of the connection; held by a Session for its lifetime. The connection is opened
  // without SQLite's own per-call mutex (SQLITE_OPEN_NOMUTEX): this lock is the only one, so every
  // use of the connection and of its statements must hold it.
  absl::Mutex mu_;
  // The thread whose Session holds mu_ (a default id when none does), so that a Statement released
  // by that thread resets under the lock it already holds and one released by another thread
  // (after its Session ended) takes the lock first.
  std::atomic<std::thread::id> holder_{};
  sqlite3* const db_ ABSL_GUARDED_BY(mu_);
  // Guards only the cache, so that a Statement can return to it without the connection's lock.
  // Taken after mu_ when both are held.
  absl::Mutex cache_mu_ ABSL_ACQUIRED_AFTER(mu_);
  // Idle prepared statements by their SQL text. A statement in use is not in the cache, so two
  // live statements of the same SQL are two compiled statements.
  std::unordered_multimap<std::string, sqlite3_stmt*> idle_ ABSL_GUARDED_BY(cache_mu_);
};

// Exclusive use of a SqliteDb's connection: holds its lock from construction to destruction.
// Statements outside an explicit transaction each run in their own (SQLite's autocommit).
class ABSL_SCOPED_LOCKABLE Session {
 public:
  explicit Session(SqliteDb& db) ABSL_EXCLUSIVE_LOCK_FUNCTION(db.mu_);
  ~Session() ABSL_UNLOCK_FUNCTION();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Runs one or more statements that return no rows (schema, pragmas).
  absl::Status Exec(absl::string_view sql);
  // Compiles `sql` (or takes it from the cache). See the header comment for its lifetime.
  absl::StatusOr<Statement> Prepare(absl::string_view sql);
  // Schema upgrades: adds each of `columns` that `table` lacks, so a database created by an older
  // release opens with the columns the code expects.
  absl::Status AddMissingColumns(absl::string_view table,
                                 const std::vector<SqliteDb::ColumnDecl>& columns);
  // The names of `table`'s columns (empty when there is no such table).
  absl::StatusOr<std::set<std::string>> ColumnsOf(absl::string_view table);
  // The CREATE statement SQLite stored for the `type` ("table", "index", "trigger") named `name`;
  // empty when there is none. Upgrades read it to tell an older release's definition.
  absl::StatusOr<std::string> StoredSqlOf(absl::string_view type, absl::string_view name);
  // Schema upgrades that rebuild a table: runs `sql` in one BEGIN IMMEDIATE ... COMMIT, rolled
  // back when any statement fails, so a database is either upgraded or left as it was.
  absl::Status ExecInTransaction(absl::string_view sql);
  // Schema upgrades that drop a table constraint (e.g. "UNIQUE (digest, provider)", written as its
  // CREATE statement has it): rebuilds `table` from its own stored CREATE statement (which holds
  // every column added since) without `clause`, in one transaction: rows and rowids unchanged, an
  // AUTOINCREMENT counter carried over. The table's indexes and triggers go with the old table:
  // the caller creates them again. Nothing is done when the statement does not hold `clause`.
  absl::Status DropTableClause(absl::string_view table, absl::string_view clause);
  // Of the last INSERT, and the rows changed by the last statement, on this connection.
  int64_t LastInsertRowId();
  int Changes();

 private:
  // The connection, for a caller that holds the lock (every Session does, by construction).
  sqlite3* conn();
  SqliteDb& db_;
};

// A Session inside BEGIN IMMEDIATE (the write lock is taken at once, so a read-then-write cannot
// be overtaken by another connection); ROLLBACK on destruction unless Commit() succeeded.
class ABSL_SCOPED_LOCKABLE Transaction : public Session {
 public:
  explicit Transaction(SqliteDb& db) ABSL_EXCLUSIVE_LOCK_FUNCTION(db.mu_);
  ~Transaction() ABSL_UNLOCK_FUNCTION();
  // The status of BEGIN; check before using the transaction.
  const absl::Status& begin_status() const { return begin_; }
  absl::Status Commit();

 private:
  absl::Status begin_;
  bool done_ = false;
};

// A Session inside a read transaction (BEGIN DEFERRED ... COMMIT): every read in it sees the
// same committed state, the one of its first read, whatever other connections commit meanwhile.
// For a reader connection beside the writer's (WAL: it never waits for a writer, nor a writer
// for it); nothing in it may write.
class ABSL_SCOPED_LOCKABLE Snapshot : public Session {
 public:
  explicit Snapshot(SqliteDb& db) ABSL_EXCLUSIVE_LOCK_FUNCTION(db.mu_);
  ~Snapshot() ABSL_UNLOCK_FUNCTION();
  // The status of BEGIN; check before using the snapshot.
  const absl::Status& begin_status() const { return begin_; }

 private:
  absl::Status begin_;
};

}  // namespace anchord::ledger
