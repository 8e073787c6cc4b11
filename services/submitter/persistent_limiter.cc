#include "services/submitter/persistent_limiter.h"

#include "libs/common/log.h"

namespace anchord::submitter {
namespace {

class PersistentLimiter final : public ratelimit::RateLimiter {
 public:
  PersistentLimiter(std::unique_ptr<ratelimit::RateLimiter> inner, ratelimit::RateLimit limit,
                    SubmitterStore* store, Clock* clock)
      : inner_(std::move(inner)),
        store_(store),
        clock_(clock),
        horizon_(limit.window + limit.margin),
        enabled_(limit.limit > 0) {
    const std::string& name = inner_->name();
    absl::StatusOr<absl::Time> gate = store_->LoadGate(name);
    if (!gate.ok()) {
      ANCHORD_LOG(Warning) << "rate limiter " << name << ": cannot restore gate: " << gate.status();
    } else if (*gate > clock_->Now()) {
      ANCHORD_LOG(Info) << "rate limiter " << name << ": gate closed until "
                        << absl::FormatTime(*gate) << " by a previous run";
      inner_->BlockUntil(*gate);
    }
    absl::StatusOr<std::vector<absl::Time>> sends =
        store_->RecentSends(name, clock_->Now() - horizon_);
    if (!sends.ok()) {
      ANCHORD_LOG(Warning) << "rate limiter " << name
                           << ": cannot restore sends: " << sends.status();
    } else {
      for (absl::Time t : *sends) inner_->Record(t);
    }
  }

  absl::StatusOr<absl::Duration> Acquire() override {
    absl::StatusOr<absl::Duration> waited = inner_->Acquire();
    // A disabled bucket paces nothing, so its sends need no record: skipping it saves a commit
    // (an fsync) per request when the provider has no limit.
    if (waited.ok() && enabled_) {
      absl::Time now = clock_->Now();
      absl::Status st = store_->RecordSend(inner_->name(), now, now - horizon_);
      if (!st.ok()) {
        ANCHORD_LOG(Warning) << "rate limiter " << inner_->name() << ": " << st;
      }
    }
    return waited;
  }
  void BlockUntil(absl::Time until) override {
    inner_->BlockUntil(until);
    absl::Status st = store_->SaveGate(inner_->name(), until);
    if (!st.ok()) {
      ANCHORD_LOG(Warning) << "rate limiter " << inner_->name() << ": " << st;
    }
  }
  absl::Time blocked_until() override { return inner_->blocked_until(); }
  void Record(absl::Time when) override { inner_->Record(when); }
  void Stop() override { inner_->Stop(); }
  const std::string& name() const override { return inner_->name(); }

 private:
  std::unique_ptr<ratelimit::RateLimiter> inner_;
  SubmitterStore* store_;
  Clock* clock_;
  absl::Duration horizon_;
  bool enabled_;
};

}  // namespace

std::unique_ptr<ratelimit::RateLimiter> MakePersistentLimiter(
    std::unique_ptr<ratelimit::RateLimiter> inner, ratelimit::RateLimit limit,
    SubmitterStore* store, Clock* clock) {
  return std::make_unique<PersistentLimiter>(std::move(inner), limit, store, clock);
}

}  // namespace anchord::submitter
