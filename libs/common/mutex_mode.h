// Process-wide Abseil mutex settings for the release binaries (called first thing in main()).
#pragma once

#include "absl/synchronization/mutex.h"

namespace anchord {

// Debian's Abseil has mutex deadlock detection on: every lock and unlock updates a global lock
// graph (GraphCycles::GetId, UpdateStackTrace), a few % of every service's CPU in a profile. Lock
// order is checked at compile time by the thread-safety analysis and at run time by the unit
// tests, which have no service main() and keep detection on.
inline void DisableMutexDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace anchord
