// The HashTree/HashFiles calls running at once, each on its own coordinator thread. The registry
// bounds how many run (the threads they hold), and lets the service cancel them and wait for
// their threads before it goes away.
#pragma once

#include <cstdint>
#include <functional>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace anchord::hasher {

class CallRegistry {
 public:
  explicit CallRegistry(int max_calls) : max_calls_(max_calls) {}
  CallRegistry(const CallRegistry&) = delete;
  CallRegistry& operator=(const CallRegistry&) = delete;

  // Reserves one of the `max_calls` slots; false when all are taken. A reserved slot must be
  // handed to Start.
  bool Reserve() ABSL_LOCKS_EXCLUDED(mu_);
  // Starts the coordinator thread of a reserved call: it runs `body`, destroys it (dropping the
  // call's state), then frees the slot. `cancel` may be called from CancelAllAndWait while the
  // body runs; it must not block.
  void Start(std::function<void()> cancel, std::function<void()> body) ABSL_LOCKS_EXCLUDED(mu_);
  // Cancels every running call and waits until all coordinator threads are done.
  void CancelAllAndWait() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  bool IdleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return active_ == 0; }

  const int max_calls_;
  absl::Mutex mu_;
  int active_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, std::function<void()>> cancel_fns_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace anchord::hasher
