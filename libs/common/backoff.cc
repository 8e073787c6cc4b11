#include "libs/common/backoff.h"

#include <algorithm>
#include <cmath>

namespace anchord {

absl::Duration BackoffDelay(const BackoffPolicy& policy, int attempt) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  double base_s = absl::ToDoubleSeconds(policy.initial) *
                  std::pow(policy.multiplier, std::clamp(attempt, 0, 62));
  base_s = std::min(base_s, absl::ToDoubleSeconds(policy.max));
  std::uniform_real_distribution<double> dist(base_s / 2, base_s);
  return absl::Seconds(dist(rng));
}

}  // namespace anchord
