// A fixed set of worker threads running posted tasks in order. Used for every blocking or CPU
// work a gRPC reactor must not do itself (hashing, SQLite). The queue itself is unbounded; callers
// bound what they post (HashTree admits at most --max-inflight files per call).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace anchord::hasher {

class WorkerPool {
 public:
  explicit WorkerPool(int threads);
  // Runs the tasks already posted, then joins.
  ~WorkerPool();
  void Post(std::function<void()> task);

 private:
  void Loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace anchord::hasher
