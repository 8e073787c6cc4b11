// A RateLimiter wrapper that survives restarts: gate closures (Retry-After) are written to the
// store and restored at construction, and every admitted request is recorded so that the next
// process seeds its sliding window with the sends of the previous one. Without this a restart
// right after a 429 would send at once and earn another 429 (or a ban). A disabled bucket
// (limit <= 0) records no sends (nothing paces on them); its gate closures are still kept.
#pragma once

#include <memory>

#include "libs/common/clock.h"
#include "libs/ratelimit/rate_limiter.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

// Wraps `inner` (restoring its gate and recent sends from `store` first). `store` and `clock`
// must outlive the result. Store errors are logged, never returned: pacing must go on.
std::unique_ptr<ratelimit::RateLimiter> MakePersistentLimiter(
    std::unique_ptr<ratelimit::RateLimiter> inner, ratelimit::RateLimit limit,
    SubmitterStore* store, Clock* clock = Clock::Real());

}  // namespace anchord::submitter
