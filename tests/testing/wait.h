// Waiting in tests: for a condition, never for a guessed amount of time. A test that needs
// something to happen elsewhere (another process, a server thread, a lease running out) waits
// until it can see it, with a bound that turns a hang into a failure.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace anchord::testing {

// Evaluates `condition` until it is true (returns true) or `timeout` has passed (returns false,
// after one last evaluation). Checks every `interval`: the conditions in these tests read files,
// stores or servers, which cannot signal the test. Use as
//   ASSERT_TRUE(WaitUntil([&] { return store.Count() == 3; }, absl::Seconds(10)));
inline bool WaitUntil(const std::function<bool()>& condition, absl::Duration timeout,
                      absl::Duration interval = absl::Milliseconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(interval));
  }
  return condition();
}

}  // namespace anchord::testing
