#include "services/poller/store_rows.h"

#include <limits>

namespace anchord::poller {

int64_t ToDb(absl::Time t) {
  if (t == absl::InfinitePast()) return 0;
  if (t == absl::InfiniteFuture()) return std::numeric_limits<int64_t>::max();
  return absl::ToUnixMicros(t);
}

absl::Time FromDb(int64_t micros) {
  return micros == 0 ? absl::InfinitePast() : absl::FromUnixMicros(micros);
}

DigestState DigestStateFromDb(int64_t v) {
  const int state = static_cast<int>(v);
  return anchord::v1::DigestState_IsValid(state) ? static_cast<DigestState>(state)
                                                 : anchord::v1::DIGEST_STATE_PENDING;
}

}  // namespace anchord::poller
