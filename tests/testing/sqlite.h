// Reading and changing a store's SQLite file from a connection of the test's own, as another
// process would (what a query sees after a commit, what an older release or a damaged disk left).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "libs/ledger/sqlite_db.h"

namespace anchord::testing {

// The first column of the first row `sql` returns, as an integer; -1, with a test failure naming
// the trouble, when the file cannot be opened, the statement fails or returns no row.
inline int64_t SqliteScalar(const std::string& path, const std::string& sql) {
  auto db = ledger::SqliteDb::Open(path);
  EXPECT_TRUE(db.ok()) << db.status();
  if (!db.ok()) return -1;
  ledger::Session session(**db);
  auto st = session.Prepare(sql);
  EXPECT_TRUE(st.ok()) << st.status();
  if (!st.ok()) return -1;
  auto row = st->Step();
  EXPECT_TRUE(row.ok() && *row) << (row.ok() ? "no row: " + sql : row.status().ToString());
  return row.ok() && *row ? st->ColumnInt(0) : -1;
}

// Hands each row of `sql` to `on_row` (a test failure names any trouble).
template <typename OnRow>
void ForEachSqliteRow(const std::string& path, const std::string& sql, const OnRow& on_row) {
  auto db = ledger::SqliteDb::Open(path);
  EXPECT_TRUE(db.ok()) << db.status();
  if (!db.ok()) return;
  ledger::Session session(**db);
  auto st = session.Prepare(sql);
  EXPECT_TRUE(st.ok()) << st.status();
  if (!st.ok()) return;
  for (;;) {
    auto row = st->Step();
    EXPECT_TRUE(row.ok()) << row.status();
    if (!row.ok() || !*row) break;
    on_row(static_cast<const ledger::Statement&>(*st));
  }
}

// The first column of every row of `sql`, as bytes.
inline std::vector<std::string> SqliteColumn(const std::string& path, const std::string& sql) {
  std::vector<std::string> out;
  ForEachSqliteRow(path, sql,
                   [&](const ledger::Statement& st) { out.push_back(st.ColumnText(0)); });
  return out;
}

// SQLite's query plan of `sql` (its EXPLAIN QUERY PLAN details, one line each, e.g. "SEARCH t
// USING INDEX i (a=?)"); empty, with a test failure naming the trouble, when it cannot be read.
inline std::string SqliteQueryPlan(const std::string& path, const std::string& sql) {
  std::string plan;
  ForEachSqliteRow(path, "EXPLAIN QUERY PLAN " + sql,
                   [&](const ledger::Statement& st) { plan += st.ColumnText(3) + "\n"; });
  return plan;
}

// Runs `sql` (one or several statements) and returns its status.
inline absl::Status SqliteExec(const std::string& path, const std::string& sql) {
  auto db = ledger::SqliteDb::Open(path);
  if (!db.ok()) return db.status();
  ledger::Session session(**db);
  return session.Exec(sql);
}

// The stored CREATE statement of table, index or trigger `name` in the database at `path`; empty
// when there is none.
inline std::string StoredSql(const std::string& path, const std::string& name) {
  auto db = ledger::SqliteDb::Open(path);
  if (!db.ok()) return "";
  ledger::Session session(**db);
  auto s = session.Prepare("SELECT sql FROM sqlite_master WHERE name = ?1");
  if (!s.ok()) return "";
  s->Bind(1, name);
  auto found = s->Step();
  return found.ok() && *found ? s->ColumnText(0) : std::string();
}

// Rebuilds `table` with `clause` (e.g. "UNIQUE (digest, provider)") added as its last table
// constraint, rows unchanged, then runs `then` (more statements, may be empty), all in one
// transaction. The table's indexes and triggers go with the old table.
inline absl::Status AddTableClause(const std::string& path, const std::string& table,
                                   const std::string& clause, const std::string& then = "") {
  const std::string sql = StoredSql(path, table);
  const size_t close = sql.rfind(')');
  if (close == std::string::npos) return absl::NotFoundError(absl::StrCat("no table ", table));
  std::string old = absl::StrCat(sql.substr(0, close), ",\n  ", clause, "\n)");
  old.replace(old.find(table), table.size(), table + "_old");
  auto db = ledger::SqliteDb::Open(path);
  if (!db.ok()) return db.status();
  ledger::Session session(**db);
  return session.ExecInTransaction(absl::StrCat(old, "; INSERT INTO ", table, "_old SELECT * FROM ",
                                                table, "; DROP TABLE ", table, "; ALTER TABLE ",
                                                table, "_old RENAME TO ", table, "; ", then));
}

}  // namespace anchord::testing
