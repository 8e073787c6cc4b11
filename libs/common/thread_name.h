// Names the calling thread, as `top -H`, `ps -L`, perf and /proc/PID/task/*/comm show it: an
// operator (and bench/pipeline_bench.sh) can then tell a service's stages apart (the submitter's
// intake, batcher and hand-off) instead of seeing every thread under the process's name.
#pragma once

#include <string>
#include <thread>
#include <utility>

#include "absl/strings/string_view.h"

namespace anchord {

// Linux keeps 15 bytes of a thread's name: a longer one is cut there. Best effort (a failure
// leaves the name as it was).
void NameThisThread(absl::string_view name);

// A thread named `name` that runs `fn`: how every long-lived service thread starts, so each one
// is named before it does any work.
template <typename Fn>
std::thread StartNamedThread(std::string name, Fn&& fn) {
  return std::thread([name = std::move(name), fn = std::forward<Fn>(fn)]() mutable {
    NameThisThread(name);
    fn();
  });
}

}  // namespace anchord
