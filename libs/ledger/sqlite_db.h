// A small RAII layer over SQLite, the embedded store every service uses by default.
//
// Each service keeps its own database file (it owns its state). The database is opened in WAL
// mode with synchronous=FULL, so a committed transaction survives a crash of the process or the
// machine: an acknowledgement sent after Commit() is a promise the store keeps.
//
// Thread safety: a SqliteDb serializes all use through its own mutex; take a Transaction (which
// holds that mutex) for any multi-statement work. Statements must not outlive their SqliteDb.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace anchord::ledger {

class SqliteDb;

// A prepared statement. Bind parameters are 1-based, as in SQLite. When it goes out of scope it
// returns (reset, bindings cleared) to its SqliteDb's cache, so the next Prepare of the same SQL
// does not compile it again.
class Statement {
 public:
  Statement(Statement&& other) noexcept : stmt_(other.stmt_), db_(other.db_), owner_(other.owner_) {
    other.stmt_ = nullptr;
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, absl::string_view text);  // bound as TEXT
  Statement& BindBlob(int index, absl::string_view bytes);
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
  friend class SqliteDb;
  Statement(sqlite3_stmt* stmt, sqlite3* db, SqliteDb* owner)
      : stmt_(stmt), db_(db), owner_(owner) {}
  sqlite3_stmt* stmt_;
  sqlite3* db_;
  SqliteDb* owner_;  // the cache it returns to; null: finalized on destruction
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

class SqliteDb {
 public:
  // Opens (creating if needed) the database at `path` (":memory:" for tests) and applies the
  // pragmas above. The parent directory must exist.
  static absl::StatusOr<std::unique_ptr<SqliteDb>> Open(
      const std::string& path, Durability durability = Durability::kMachineCrash);
  ~SqliteDb();

  // Runs one or more statements that return no rows (schema, pragmas).
  absl::Status Exec(absl::string_view sql);
  absl::StatusOr<Statement> Prepare(absl::string_view sql);
  // Schema upgrades: adds each of `columns` ({name, declaration}) that `table` lacks, so a
  // database created by an older release opens with the columns the code expects.
  struct ColumnDecl {
    const char* name;
    const char* decl;
  };
  absl::Status AddMissingColumns(absl::string_view table, const std::vector<ColumnDecl>& columns);
  int64_t LastInsertRowId();
  int Changes();

  // The lock that serializes use of the connection. Transaction takes it; code that runs a single
  // statement outside a transaction takes it too.
  std::recursive_mutex& mutex() { return mu_; }

 private:
  friend class Statement;
  explicit SqliteDb(sqlite3* db) : db_(db) {}
  // Takes back a statement that went out of scope. Finalizes it when the cache is full.
  void Release(sqlite3_stmt* stmt);
  sqlite3* db_;
  std::recursive_mutex mu_;
  // Idle prepared statements by their SQL text (guarded by mu_). A statement in use is not in the
  // cache, so two live statements of the same SQL are two compiled statements.
  std::unordered_multimap<std::string, sqlite3_stmt*> idle_;
};

// BEGIN IMMEDIATE on construction; ROLLBACK on destruction unless Commit() succeeded. Holds the
// database's mutex for its lifetime.
class Transaction {
 public:
  explicit Transaction(SqliteDb& db);
  ~Transaction();
  // The status of BEGIN; check before using the transaction.
  const absl::Status& begin_status() const { return begin_; }
  absl::Status Commit();

 private:
  SqliteDb& db_;
  std::unique_lock<std::recursive_mutex> lock_;
  absl::Status begin_;
  bool done_ = false;
};

}  // namespace anchord::ledger
