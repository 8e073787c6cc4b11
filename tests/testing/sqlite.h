// Reading and changing a store's SQLite file from a connection of the test's own, as another
// process would (what a query sees after a commit, what an older release or a damaged disk left).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
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

// Runs `sql` (one or several statements) and returns its status.
inline absl::Status SqliteExec(const std::string& path, const std::string& sql) {
  auto db = ledger::SqliteDb::Open(path);
  if (!db.ok()) return db.status();
  ledger::Session session(**db);
  return session.Exec(sql);
}

}  // namespace anchord::testing
