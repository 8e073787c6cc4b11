#include "libs/ratelimit/rate_limiter.h"

#include <algorithm>
#include <deque>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace anchord::ratelimit {
namespace {

// Longest single sleep: Stop() is noticed within this much real time.
constexpr absl::Duration kSleepSlice = absl::Milliseconds(100);

// Sliding-window log: the send times of the last `limit` requests are kept; a new request may go
// when fewer than `limit` of them lie within the last window+margin. Exact (no bucket rounding),
// and memory is bounded by `limit`.
class LocalRateLimiter final : public RateLimiter {
 public:
  LocalRateLimiter(std::string name, RateLimit limit, Clock* clock)
      : name_(std::move(name)), limit_(limit), span_(limit.window + limit.margin), clock_(clock) {}

  absl::StatusOr<absl::Duration> Acquire() override {
    const absl::Time start = clock_->Now();
    // Bounded: each pass either returns or sleeps at least until a deadline that moves forward;
    // a Stop() ends it within one slice.
    while (true) {
      absl::Time wake;
      absl::Time now;
      {
        absl::MutexLock lock(&mu_);
        if (stopped_) return absl::CancelledError(absl::StrCat("rate limiter ", name_, " stopped"));
        now = clock_->Now();
        Prune(now);
        absl::Time ready = gate_ > now ? gate_ : now;
        if (limit_.limit > 0 && static_cast<int>(log_.size()) >= limit_.limit) {
          // The oldest entry that must leave the window before one more fits.
          const absl::Time frees = log_[log_.size() - limit_.limit] + span_;
          ready = std::max(ready, frees);
        }
        if (ready <= now) {
          if (limit_.limit > 0) log_.push_back(now);
          return now - start;
        }
        wake = std::min(ready, now + kSleepSlice);
      }
      clock_->SleepUntil(wake);
    }
  }

  void BlockUntil(absl::Time until) override {
    absl::MutexLock lock(&mu_);
    if (until > gate_) gate_ = until;
  }

  absl::Time blocked_until() override {
    absl::MutexLock lock(&mu_);
    if (gate_ <= clock_->Now()) return absl::InfinitePast();
    return gate_;
  }

  void Record(absl::Time when) override {
    absl::MutexLock lock(&mu_);
    if (limit_.limit <= 0) return;
    // Keep the log sorted: seeded times may arrive out of order.
    auto it = std::upper_bound(log_.begin(), log_.end(), when);
    log_.insert(it, when);
    Prune(clock_->Now());
  }

  void Stop() override {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }

  const std::string& name() const override { return name_; }

 private:
  // Drops entries that can no longer affect any decision: those outside the window, and any beyond
  // the newest `limit` (only the newest `limit` matter for "fewer than limit in the window").
  void Prune(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (!log_.empty() && log_.front() <= now - span_) log_.pop_front();
    while (limit_.limit > 0 && static_cast<int>(log_.size()) > limit_.limit) log_.pop_front();
  }

  const std::string name_;
  const RateLimit limit_;
  const absl::Duration span_;
  Clock* const clock_;
  absl::Mutex mu_;
  std::deque<absl::Time> log_ ABSL_GUARDED_BY(mu_);  // sorted send times
  absl::Time gate_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

std::unique_ptr<RateLimiter> MakeLocalRateLimiter(std::string name, RateLimit limit, Clock* clock) {
  if (clock == nullptr) clock = Clock::Real();
  return std::make_unique<LocalRateLimiter>(std::move(name), limit, clock);
}

std::unique_ptr<RateLimiter> MakeLimiter(const LimiterFactory& factory, const std::string& name,
                                         RateLimit limit, Clock* clock) {
  std::unique_ptr<RateLimiter> limiter = factory ? factory(name, limit) : nullptr;
  return limiter != nullptr ? std::move(limiter) : MakeLocalRateLimiter(name, limit, clock);
}

absl::StatusOr<absl::Time> ParseRetryAfter(absl::string_view value, absl::Time now) {
  absl::string_view v = absl::StripAsciiWhitespace(value);
  if (v.empty()) return absl::InvalidArgumentError("Retry-After: empty");
  if (std::all_of(v.begin(), v.end(), [](char c) { return absl::ascii_isdigit(c); })) {
    int64_t seconds = 0;
    if (v.size() > 12 || !absl::SimpleAtoi(v, &seconds)) {
      return absl::InvalidArgumentError("Retry-After: delta-seconds out of range");
    }
    return now + absl::Seconds(seconds);
  }
  // HTTP-date (RFC 9110 5.6.7): IMF-fixdate, plus the obsolete RFC 850 and asctime forms that
  // recipients must still accept.
  static const char* const kFormats[] = {
      "%a, %d %b %Y %H:%M:%S GMT",  // Sun, 06 Nov 1994 08:49:37 GMT
      "%A, %d-%b-%y %H:%M:%S GMT",  // Sunday, 06-Nov-94 08:49:37 GMT
      "%a %b %e %H:%M:%S %Y",       // Sun Nov  6 08:49:37 1994
  };
  const std::string s(v);
  for (const char* f : kFormats) {
    absl::Time t;
    std::string err;
    if (absl::ParseTime(f, s, absl::UTCTimeZone(), &t, &err)) return t;
  }
  return absl::InvalidArgumentError("Retry-After: neither delta-seconds nor an HTTP-date");
}

}  // namespace anchord::ratelimit
