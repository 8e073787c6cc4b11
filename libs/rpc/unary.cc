#include "libs/rpc/unary.h"

#include "absl/strings/str_cat.h"
#include "libs/common/log.h"

namespace anchord::rpc {

absl::Status Overloaded(absl::string_view service) {
  return absl::UnavailableError(absl::StrCat(service, " overloaded; retry later"));
}

absl::Status StoreUnavailable(absl::string_view service, const absl::Status& store_error) {
  ANCHORD_LOG(Error) << service << " store: " << store_error;
  return absl::UnavailableError(absl::StrCat(service, " store unavailable; retry later"));
}

}  // namespace anchord::rpc
