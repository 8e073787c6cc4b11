// A small fixed pool of threads for blocking work (SQLite) handed off by gRPC reactors, which
// must never block. The queue is bounded: Post fails instead of growing without limit.
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/thread_name.h"

namespace anchord {

class WorkerPool {
 public:
  // `max_queue` bounds the tasks waiting (not running); the default is unbounded for callers that
  // bound their own work (the hasher's in-flight window). Each thread is named `name`
  // (thread_name.h).
  explicit WorkerPool(int threads, size_t max_queue = static_cast<size_t>(-1),
                      std::string name = "pool")
      : max_queue_(max_queue) {
    for (int i = 0; i < std::max(1, threads); ++i) {
      threads_.push_back(StartNamedThread(name, [this] { Run(); }));
    }
  }
  ~WorkerPool() { Stop(); }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`; false when the queue is full or the pool is stopping (the task is dropped).
  bool Post(std::function<void()> task) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (stopping_ || queue_.size() >= max_queue_) return false;
    queue_.push_back(std::move(task));
    return true;
  }

  // Runs the tasks already queued, then joins the threads. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
  }

 private:
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !queue_.empty();
  }

  void Run() ABSL_LOCKS_EXCLUDED(mu_) {
    while (true) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &WorkerPool::HasWorkOrStopping));
        if (queue_.empty()) return;  // stopping and drained
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  const size_t max_queue_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Touched only by the constructor and Stop (which the owner calls from one thread).
  std::vector<std::thread> threads_;
};

}  // namespace anchord
