#include "services/hasher/call_common.h"

#include "absl/strings/str_cat.h"
#include "anchord/v1/common.pb.h"
#include "libs/digest/reason.h"

namespace anchord::hasher::internal {

namespace v1 = anchord::v1;

v1::ItemStatus ItemStatusOf(const absl::Status& st, absl::string_view fallback_reason) {
  std::string reason = digest::ReasonOf(st);
  if (reason.empty()) reason = std::string(fallback_reason);
  return rpc::ToItemStatus(st, reason);
}

std::string Basename(absl::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path : path.substr(slash + 1));
}

void SetTimestampNs(google::protobuf::Timestamp* ts, int64_t ns) {
  ts->set_seconds(ns / 1000000000LL);
  ts->set_nanos(static_cast<int32_t>(ns % 1000000000LL));
}

int64_t TimestampNs(const google::protobuf::Timestamp& ts) {
  return ts.seconds() * 1000000000LL + ts.nanos();
}

absl::Status TooManyCalls(int limit) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "too many concurrent HashTree/HashFiles calls (limit ", limit, "); retry later"));
}

absl::Status ValidateAnchoring(const google::protobuf::RepeatedPtrField<std::string>& providers,
                               int anchor_mode, absl::string_view fallback_provider) {
  for (const std::string& p : providers) {
    if (p.empty() || p.size() > 64) {
      return absl::InvalidArgumentError("providers: each name must be 1 to 64 bytes");
    }
  }
  if (!v1::AnchorMode_IsValid(anchor_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("anchor_mode: unknown value ", anchor_mode));
  }
  if (fallback_provider.size() > 64) {
    return absl::InvalidArgumentError("fallback_provider: at most 64 bytes");
  }
  return absl::OkStatus();
}

}  // namespace anchord::hasher::internal
