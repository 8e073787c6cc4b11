// Client-side pacing under a provider's documented limits.
//
// A RateLimiter admits at most `limit` requests in any sliding window of length `window` (the
// strictest reading of "N per minute", so a server counting fixed or sliding windows never sees
// more than N). It also holds a gate that a 429's Retry-After (or X-RateLimit-Reset with nothing
// remaining) closes: no request passes before the gate's time. Both are fed by the caller.
//
// It is an interface because one process paces itself with the in-memory implementation, while
// replicas sharing an API key will share a limiter kept in the PostgreSQL ledger: the adapters do
// not change, only the limiter handed to them.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/common/clock.h"

namespace anchord::ratelimit {

struct RateLimit {
  int limit = 30;                            // requests per window; <= 0 disables the bucket
  absl::Duration window = absl::Minutes(1);  // window length
  // Extra spacing added to the window, covering clock granularity and the time a request spends
  // in flight before the server counts it.
  absl::Duration margin = absl::Milliseconds(100);
};

class RateLimiter {
 public:
  virtual ~RateLimiter() = default;

  // Blocks until a slot is free and the gate is open, then takes the slot. Returns how long the
  // caller waited. CANCELLED once Stop() was called (also wakes current waiters).
  virtual absl::StatusOr<absl::Duration> Acquire() = 0;
  // Closes the gate until `until` (no-op if it is already closed longer).
  virtual void BlockUntil(absl::Time until) = 0;
  // The time the gate opens; InfinitePast when open.
  virtual absl::Time blocked_until() = 0;
  // Counts a request sent at `when` without waiting (seeding from a ledger after a restart).
  virtual void Record(absl::Time when) = 0;
  // Wakes waiters and makes every Acquire return CANCELLED from now on.
  virtual void Stop() = 0;
  virtual const std::string& name() const = 0;
};

// In-process sliding-window limiter. Thread-safe. `clock` must outlive it.
std::unique_ptr<RateLimiter> MakeLocalRateLimiter(std::string name, RateLimit limit,
                                                  Clock* clock = Clock::Real());

// Makes the limiter called `name` (a PostgreSQL-shared one, say); may return null.
using LimiterFactory =
    std::function<std::unique_ptr<RateLimiter>(const std::string& name, RateLimit)>;

// `factory`'s limiter for `name`, or an in-process one on `clock` when the factory is null or
// gives none: an adapter always has a limiter to pace itself with.
std::unique_ptr<RateLimiter> MakeLimiter(const LimiterFactory& factory, const std::string& name,
                                         RateLimit limit, Clock* clock);

// Parses a Retry-After value: delta seconds ("3") or an HTTP-date; nullopt-like error when
// malformed. Returns the time the wait ends, relative to `now`.
absl::StatusOr<absl::Time> ParseRetryAfter(absl::string_view value, absl::Time now);

}  // namespace anchord::ratelimit
