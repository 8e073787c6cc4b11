// Jittered exponential backoff ("full jitter"): retries of many clients spread out instead of
// arriving together after an outage.
#pragma once

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace anchord {

struct BackoffPolicy {
  absl::Duration initial = absl::Milliseconds(200);
  absl::Duration max = absl::Seconds(30);
  double multiplier = 2.0;
};

// Delay before retry number `attempt` (0 = first retry): uniform in [base/2, base] where
// base = min(max, initial * multiplier^attempt). Thread-safe.
absl::Duration BackoffDelay(const BackoffPolicy& policy, int attempt);

}  // namespace anchord
