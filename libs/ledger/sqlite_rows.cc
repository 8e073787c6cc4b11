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

}  // namespace anchord::ledger
