#include "services/submitter/store_rows.h"

#include <limits>

namespace anchord::submitter {

int64_t ToMs(absl::Time t) {
  if (t == absl::InfinitePast()) return 0;
  if (t == absl::InfiniteFuture()) return std::numeric_limits<int64_t>::max();
  return absl::ToUnixMillis(t);
}

absl::Time FromMs(int64_t ms) {
  if (ms == 0) return absl::InfinitePast();
  if (ms == std::numeric_limits<int64_t>::max()) return absl::InfiniteFuture();
  return absl::FromUnixMillis(ms);
}

SubState StateFromInt(int64_t v) {
  if (v < 0 || v > 3) return SubState::kFailed;
  return static_cast<SubState>(v);
}

RowMode RowModeFromInt(int64_t v) {
  return v == 1 ? RowMode::kLeaf : v == 2 ? RowMode::kRoot : RowMode::kPerFile;
}

}  // namespace anchord::submitter
