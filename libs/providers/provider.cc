#include "libs/providers/provider.h"

namespace anchord::providers {

const char* OutcomeKindName(OutcomeKind kind) {
  return OutcomeName(kind, {.ok = "OK",
                            .duplicate = "DUPLICATE",
                            .retry = "RETRY",
                            .rate_limited = "RATE_LIMITED",
                            .quota_exhausted = "QUOTA_EXHAUSTED",
                            .permanent = "PERMANENT",
                            .not_found = "NOT_FOUND",
                            .unknown = "UNKNOWN"});
}

}  // namespace anchord::providers
