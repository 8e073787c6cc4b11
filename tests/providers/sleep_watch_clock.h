// The real clock, counting the sleeps that begin on it: a test that must act while a limiter is
// blocked (to Stop it, or to show another call is not held up) waits until it sees the limiter
// sleep, instead of guessing how long the other thread takes to get there.
#pragma once

#include <atomic>

#include "libs/common/clock.h"

namespace anchord::testing {

class SleepWatchClock final : public Clock {
 public:
  absl::Time Now() override { return Clock::Real()->Now(); }
  void SleepUntil(absl::Time deadline) override {
    sleeps_.fetch_add(1);
    Clock::Real()->SleepUntil(deadline);
  }
  // How many sleeps have begun (a limiter sleeps in slices, so this keeps growing while one waits).
  int sleeps() const { return sleeps_.load(); }

 private:
  std::atomic<int> sleeps_{0};
};

}  // namespace anchord::testing
