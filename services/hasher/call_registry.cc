#include "services/hasher/call_registry.h"

#include <thread>
#include <utility>
#include <vector>

#include "libs/common/thread_name.h"

namespace anchord::hasher {

bool CallRegistry::Reserve() {
  absl::MutexLock lock(&mu_);
  if (active_ >= max_calls_) return false;
  ++active_;
  return true;
}

void CallRegistry::Start(std::function<void()> cancel, std::function<void()> body) {
  uint64_t id;
  {
    absl::MutexLock lock(&mu_);
    id = next_id_++;
    cancel_fns_[id] = std::move(cancel);
  }
  // "call": a HashTree call's walk, a HashFiles call's reads.
  StartNamedThread("call", [this, id, body = std::move(body)]() mutable {
    body();
    body = nullptr;  // drop the call's state before the service may be destroyed
    absl::MutexLock lock(&mu_);
    cancel_fns_.erase(id);
    --active_;
  }).detach();
}

void CallRegistry::CancelAllAndWait() {
  // Called outside the lock: a cancel function may drop the last reference to its call, whose
  // destruction must not run under the registry's lock.
  std::vector<std::function<void()>> cancels;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, cancel] : cancel_fns_) cancels.push_back(cancel);
  }
  for (const auto& cancel : cancels) cancel();
  cancels.clear();
  absl::MutexLock lock(&mu_, absl::Condition(this, &CallRegistry::IdleLocked));
}

}  // namespace anchord::hasher
