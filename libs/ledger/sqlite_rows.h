// Writing many rows with few statements. A statement costs SQLite a fixed amount per run (reset,
// bindings cleared, the program started, its cursors opened and closed) besides its rows: with the
// poller's proofs and files 16 rows to an INSERT took its Track path from 9.8 to 8.6 us of CPU per
// leaf and its fill from ~100,000 to ~115,000 proofs/s (bench/results/track-s10.md,
// backlog-s10.md); more rows to a statement measured no better.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "libs/common/status_macros.h"
#include "libs/ledger/sqlite_db.h"

namespace anchord::ledger {

// "(?, ?), (?, ?)" for params = 2, rows = 2: what follows VALUES in an INSERT of `rows` rows.
std::string Placeholders(int params, size_t rows);

// The statement kept in `slot`, compiled at its first use in `session`, reset for new bindings.
absl::StatusOr<Statement*> Reuse(Session& session, std::optional<Statement>& slot,
                                 absl::string_view sql);

// The same for SQL that is put together (absl::StrCat, Placeholders): make_sql() runs at the first
// use only. A statement reused for every row of a hot path (a digest's look-up, a queue's INSERT)
// then does not build its text again each time: the poller's look-up per leaf spent 1,000
// instructions on it (callgrind, bench/RESULTS.md issue 11 session 20).
template <typename MakeSql, typename = std::enable_if_t<std::is_invocable_v<const MakeSql&>>>
absl::StatusOr<Statement*> Reuse(Session& session, std::optional<Statement>& slot,
                                 const MakeSql& make_sql) {
  if (slot.has_value()) {
    slot->Reset();
    return &*slot;
  }
  const std::string sql = make_sql();
  return Reuse(session, slot, absl::string_view(sql));
}

// Reads for every key of `keys` what `branch(i)` selects for the key bound as ?i, `per_statement`
// keys to a statement (the branches joined by UNION ALL, kept in `slot`), and calls
// on_row(k, statement) for each row of keys[k]. A branch's first column must be the literal i:
// "SELECT <i>, ... WHERE ... = ?<i>". For a writer that looks up each of a batch's keys before it
// writes: one statement per key costs its run, reset and bindings besides its seek, more than
// the seek itself (the poller's Track, bench/RESULTS.md issue 11 session 20).
template <typename Branch, typename OnRow>
absl::Status LookAhead(Session& session, std::optional<Statement>& slot,
                       const std::vector<absl::string_view>& keys, int per_statement,
                       const Branch& branch, const OnRow& on_row) {
  if (keys.empty()) return absl::OkStatus();
  ANCHORD_ASSIGN_OR_RETURN(Statement * st, Reuse(session, slot, [&] {
                             std::string sql;
                             for (int i = 1; i <= per_statement; ++i) {
                               absl::StrAppend(&sql, i == 1 ? "" : " UNION ALL ", branch(i));
                             }
                             return sql;
                           }));
  const size_t n = static_cast<size_t>(per_statement);
  for (size_t first = 0; first < keys.size(); first += n) {
    st->Reset();
    // The last statement's spare places repeat its last key; their rows are skipped.
    for (size_t i = 0; i < n; ++i) {
      st->BindBlobView(static_cast<int>(i) + 1, keys[std::min(first + i, keys.size() - 1)]);
    }
    for (;;) {
      ANCHORD_ASSIGN_OR_RETURN(const bool has_row, st->Step());
      if (!has_row) break;
      const int64_t place = st->ColumnInt(0);
      if (place < 1 || place > per_statement) {
        return absl::InternalError("look-ahead: a row without its place");
      }
      const size_t k = first + static_cast<size_t>(place) - 1;
      if (k < keys.size()) on_row(k, *st);
    }
  }
  st->Reset();
  return absl::OkStatus();
}

// The rowid SQLite would give the next row of `table`, an AUTOINCREMENT table whose INTEGER
// PRIMARY KEY is `key`: above every key it holds or ever gave (its sqlite_sequence counter). A
// writer that chooses the keys of the rows it queues asks once, in its write transaction.
absl::StatusOr<int64_t> NextAutoincrementKey(Session& session, std::optional<Statement>& slot,
                                             absl::string_view table, absl::string_view key);

// Runs `insert` (an INSERT up to and including VALUES, then the rows' placeholders, then `tail`,
// e.g. an ON CONFLICT clause) for `count` rows of `params` parameters each: `per_statement` rows
// to a statement (kept in `many`), the rest one by one (kept in `one`). bind(statement, base, i)
// binds row i at parameters base + 1 .. base + params.
template <typename Bind>
absl::Status InsertRows(Session& session, size_t count, int params, absl::string_view insert,
                        size_t per_statement, std::optional<Statement>& many,
                        std::optional<Statement>& one, const Bind& bind,
                        absl::string_view tail = {}) {
  size_t i = 0;
  if (per_statement > 1 && count >= per_statement) {
    ANCHORD_ASSIGN_OR_RETURN(Statement * st, Reuse(session, many, [&] {
                               return absl::StrCat(insert, Placeholders(params, per_statement),
                                                   tail);
                             }));
    for (; i + per_statement <= count; i += per_statement) {
      st->Reset();
      for (size_t k = 0; k < per_statement; ++k) bind(*st, static_cast<int>(k) * params, i + k);
      ANCHORD_RETURN_IF_ERROR(st->Run());
    }
  }
  if (i == count) return absl::OkStatus();
  ANCHORD_ASSIGN_OR_RETURN(Statement * st, Reuse(session, one, [&] {
                             return absl::StrCat(insert, Placeholders(params, 1), tail);
                           }));
  for (; i < count; ++i) {
    st->Reset();
    bind(*st, 0, i);
    ANCHORD_RETURN_IF_ERROR(st->Run());
  }
  return absl::OkStatus();
}

}  // namespace anchord::ledger
