#include "libs/rpc/messages.h"

#include <algorithm>
#include <cstdint>

namespace anchord::rpc {

namespace {
// google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
constexpr int64_t kMinSeconds = -62135596800;
constexpr int64_t kMaxSeconds = 253402300799;
}  // namespace

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  int64_t micros = absl::ToUnixMicros(t);
  int64_t secs = micros / 1000000;
  int64_t rem = micros % 1000000;
  if (rem < 0) {
    rem += 1000000;
    --secs;
  }
  out->set_seconds(secs);
  out->set_nanos(static_cast<int32_t>(rem * 1000));
}

absl::Time FromTimestamp(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return absl::InfinitePast();
  int64_t secs = std::clamp<int64_t>(ts.seconds(), kMinSeconds, kMaxSeconds);
  int32_t nanos = std::clamp<int32_t>(ts.nanos(), 0, 999999999);
  return absl::FromUnixSeconds(secs) + absl::Nanoseconds(nanos);
}

}  // namespace anchord::rpc
