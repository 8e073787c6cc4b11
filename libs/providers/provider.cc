#include "libs/providers/provider.h"

namespace anchord::providers {

const char* OutcomeKindName(OutcomeKind kind) {
  switch (kind) {
    case OutcomeKind::kOk:
      return "OK";
    case OutcomeKind::kDuplicate:
      return "DUPLICATE";
    case OutcomeKind::kRetry:
      return "RETRY";
    case OutcomeKind::kRateLimited:
      return "RATE_LIMITED";
    case OutcomeKind::kQuotaExhausted:
      return "QUOTA_EXHAUSTED";
    case OutcomeKind::kPermanent:
      return "PERMANENT";
    case OutcomeKind::kNotFound:
      return "NOT_FOUND";
  }
  return "UNKNOWN";
}

}  // namespace anchord::providers
