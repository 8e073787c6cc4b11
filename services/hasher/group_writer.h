// GroupWriter: one thread that hands everything queued to a write function in one go (group
// commit). Items added while a write runs are written together by the next one, so the number of
// items per write grows with the rate they arrive at, and an item never waits for others to arrive:
// the writer starts as soon as it has anything and nothing is being written.
//
// Why: the hasher records hashed files in SQLite (a dry run reports a file only after its row is
// committed). One transaction per file, or per small burst of them, dirtied about one page of the
// random digest index per row and commit; fewer, larger commits write each such page once for many
// rows. The same writer reports forwarded files as the submitter answers them.
//
// With Options{min_items, max_delay} the writer instead waits for at least min_items queued, or
// for max_delay after it saw the first of them, before it writes: for writes nobody waits on
// (the hasher's record of forwarded files, whose results do not wait for it), where each write
// costs about the same whatever its size and larger ones are cheaper per item.
//
// Thread-safe. The write function runs on the writer's thread only, one call at a time.
#pragma once

#include <cstddef>

#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "libs/common/thread_name.h"

namespace anchord::hasher {

template <typename T>
class GroupWriter {
 public:
  using WriteFn = std::function<void(std::vector<T>& batch)>;
  struct Options {
    // A write starts once this many items are queued (1: as soon as anything is)...
    size_t min_items = 1;
    // ...or this long after the writer found the first of them queued, whichever comes first.
    absl::Duration max_delay = absl::ZeroDuration();
    // The writer thread's name (libs/common/thread_name.h).
    const char* thread_name = "writer";
  };

  // Starts the writer thread.
  explicit GroupWriter(WriteFn write) : GroupWriter(std::move(write), Options()) {}
  GroupWriter(WriteFn write, Options options) : write_(std::move(write)), options_(options) {
    thread_ = StartNamedThread(options_.thread_name, [this] { Run(); });
  }
  GroupWriter(const GroupWriter&) = delete;
  GroupWriter& operator=(const GroupWriter&) = delete;
  // Finish()es.
  ~GroupWriter() { Finish(); }

  void Add(T item) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(item));
  }
  // Several items at once (one lock), written in this order.
  void AddAll(std::vector<T> items) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (queue_.empty()) {
      queue_.swap(items);
      return;
    }
    for (T& item : items) queue_.push_back(std::move(item));
  }

  // Writes what is still queued, then stops the thread. Items added afterwards are never written.
  // Idempotent; must not be called from the write function.
  void Finish() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

  // Calls of the write function so far (for tests and benchmarks).
  int writes() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return writes_;
  }

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<T> batch;
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](GroupWriter* w)
                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) { return w->stop_ || !w->queue_.empty(); },
            this));
        if (!stop_ && queue_.size() < options_.min_items) {
          mu_.AwaitWithDeadline(absl::Condition(
                                    +[](GroupWriter* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
                                      return w->stop_ || w->queue_.size() >= w->options_.min_items;
                                    },
                                    this),
                                absl::Now() + options_.max_delay);
        }
        if (queue_.empty()) return;  // stopping, and everything was written
        batch.swap(queue_);
        ++writes_;
      }
      write_(batch);
      batch.clear();
    }
  }

  const WriteFn write_;
  const Options options_;
  absl::Mutex mu_;
  std::vector<T> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int writes_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace anchord::hasher
