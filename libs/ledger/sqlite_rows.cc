#include "libs/ledger/sqlite_rows.h"

namespace anchord::ledger {

std::string Placeholders(int params, size_t rows) {
  std::string one = "(?";
  for (int i = 1; i < params; ++i) one += ", ?";
  one += ")";
  std::string out;
  out.reserve(rows * (one.size() + 2));
  for (size_t r = 0; r < rows; ++r) absl::StrAppend(&out, r == 0 ? "" : ", ", one);
  return out;
}

absl::StatusOr<Statement*> Reuse(Session& session, std::optional<Statement>& slot,
                                 absl::string_view sql) {
  if (!slot.has_value()) {
    ANCHORD_ASSIGN_OR_RETURN(Statement st, session.Prepare(sql));
    slot.emplace(std::move(st));
  }
  slot->Reset();
  return &*slot;
}

absl::StatusOr<int64_t> NextAutoincrementKey(Session& session, std::optional<Statement>& slot,
                                             absl::string_view table, absl::string_view key) {
  ANCHORD_ASSIGN_OR_RETURN(Statement * st, Reuse(session, slot, [&] {
                             return absl::StrCat(
                                 "SELECT MAX(IFNULL((SELECT MAX(", key, ") FROM ", table,
                                 "), 0), IFNULL((SELECT seq FROM sqlite_sequence WHERE name = '",
                                 table, "'), 0))");
                           }));
  ANCHORD_ASSIGN_OR_RETURN(const bool has_row, st->Step());
  const int64_t last = has_row ? st->ColumnInt(0) : 0;
  st->Reset();
  return last + 1;
}

}  // namespace anchord::ledger
