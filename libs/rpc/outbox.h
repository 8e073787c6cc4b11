// Outbox: the bounded path from worker threads to a server stream's writes.
//
// A call's work items (files, requests) are "admitted" before work starts on them, and each holds
// its slot until its result was written to the caller (OnWriteDone). At most `window` slots exist,
// so the results waiting to be written, the items being worked on and whatever the work keeps
// outstanding elsewhere (digests unacknowledged by a peer) are all bounded: a slow peer or a slow
// caller pauses the producer in Admit().
//
// One write is in flight at a time; the next one starts from OnWriteDone. The callbacks (stamp,
// start_write, on_room) are never invoked with the outbox's lock held, so they may call back into
// the outbox and take the reactor's own lock (lock order: the reactor's lock, then the outbox's).
//
// Writes are corked: start_write is told whether another result will be written as soon as this
// one completes (`more`), so the reactor can pass gRPC's buffer hint and a burst of results goes
// out in a few large socket writes instead of one per result. gRPC completes a buffered write at
// once while less than its write buffer (64 KiB) is held, so the next write starts right away; the
// last result of a burst is written without the hint, which sends everything held. A result is
// therefore never held back by the cork when nothing follows it.
//
// A message may answer several admitted items at once (Push with `items`): it releases all their
// slots when it was written, so a caller that packs many results into one message keeps the same
// window, counted in items, with fewer writes.
//
// The outbox also counts the call's tasks running on other threads (TaskStarted/TaskDone), so the
// thread that ends the call can wait until nothing touches the call any more (WaitFinished).
#pragma once

#include <deque>
#include <functional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace anchord::rpc {

template <typename Resp>
class Outbox {
 public:
  // With `hold_back_last`, the newest result is not written until another one follows or
  // ReleaseHeld() is called, so that the caller's last message can be written after the work
  // completed (and carry "complete" fields stamped at that moment). The held result does not count
  // against the window (else a window of 1 would deadlock the producer). A window below 1 is 1.
  Outbox(int window, bool hold_back_last)
      : window_(window < 1 ? 1 : window), hold_back_(hold_back_last) {}
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Set before the first Push and not changed afterwards. `stamp` (optional) fills fields into
  // the response just before it is written; `start_write` starts the write (the reactor's
  // StartWrite; the response stays alive and unchanged until OnWriteDone), with `more` true when
  // another result is queued to be written right after it (see the header comment). `on_room`
  // (optional) runs after a slot was released by a completed write.
  std::function<void(Resp*)> stamp;
  std::function<void(Resp*, bool more)> start_write;
  std::function<void()> on_room;

  // Blocks until a slot is free and takes it. False (no slot taken) when cancelled.
  bool Admit() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_, absl::Condition(this, &Outbox::AdmittableLocked));
    if (cancelled_) return false;
    ++outstanding_;
    return true;
  }
  // Takes a slot without waiting (the caller checked HasRoom, or accepts exceeding the window by
  // the one item it cannot refuse).
  void ForceAdmit() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++outstanding_;
  }
  // True when Admit would not block on the window.
  bool HasRoom() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return outstanding_ < window_;
  }
  // Gives up an admitted slot without a result (work dropped after cancellation).
  void Drop() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    --outstanding_;
  }
  // Queues the result of `items` admitted items (their slots are released once it was written).
  // After cancellation the result is discarded and the slots released at once.
  void Push(Resp r, int items = 1) ABSL_LOCKS_EXCLUDED(mu_) {
    PendingWrite write;
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) {
        outstanding_ -= items;
        return;
      }
      queue_.push_back(Entry{std::move(r), items});
      if (!writing_ && CanWriteFrontLocked()) write = BeginWriteLocked();
    }
    Write(write);
  }
  // Ends hold-back mode and writes what was held.
  void ReleaseHeld() ABSL_LOCKS_EXCLUDED(mu_) {
    PendingWrite write;
    {
      absl::MutexLock lock(&mu_);
      hold_back_ = false;
      if (!writing_ && !queue_.empty() && !cancelled_) write = BeginWriteLocked();
    }
    Write(write);
  }
  // From the reactor's OnWriteDone. `ok` false means the caller is gone: the outbox cancels
  // itself, nothing more is written.
  void OnWriteDone(bool ok) ABSL_LOCKS_EXCLUDED(mu_) {
    PendingWrite write;
    {
      absl::MutexLock lock(&mu_);
      if (!queue_.empty()) {
        outstanding_ -= queue_.front().items;
        queue_.pop_front();
      }
      if (!ok) {
        cancelled_ = true;
        for (const Entry& e : queue_) outstanding_ -= e.items;
        queue_.clear();
      }
      writing_ = false;
      if (!queue_.empty() && !cancelled_ && CanWriteFrontLocked()) write = BeginWriteLocked();
    }
    Write(write);
    if (on_room) on_room();
  }
  // Discards the queued results (not the one being written: its buffer is in use until
  // OnWriteDone) and wakes Admit()/Wait*() callers. Idempotent.
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    const size_t keep = writing_ ? 1 : 0;
    while (queue_.size() > keep) {
      outstanding_ -= queue_.back().items;
      queue_.pop_back();
    }
  }
  bool cancelled() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }
  int outstanding() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return outstanding_;
  }

  // A task of the call starts/ends on another thread.
  void TaskStarted() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++tasks_;
  }
  void TaskDone() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    --tasks_;
  }
  // Re-evaluates the conditions of Wait*() callers after a flag outside the outbox changed.
  void Notify() ABSL_LOCKS_EXCLUDED(mu_) { absl::MutexLock lock(&mu_); }

  // Waits until every admitted item was written and no task runs (true), or until cancelled and
  // quiet: no task runs and no write is in flight (false).
  bool WaitFinished() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_, absl::Condition(this, &Outbox::FinishedLocked));
    return !cancelled_;
  }
  // Waits until no task runs and `extra()` holds, or until cancelled. `extra` reads state outside
  // the outbox (call Notify() after changing it) and must not take the outbox's lock.
  void WaitTasks(const std::function<bool()>& extra) ABSL_LOCKS_EXCLUDED(mu_) {
    auto done = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {  // the Condition runs with mu_ held
      return cancelled_ || (tasks_ == 0 && extra());
    };
    absl::MutexLock lock(&mu_, absl::Condition(&done));
  }

 private:
  bool AdmittableLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return cancelled_ || outstanding_ - HeldLocked() < window_;
  }
  bool FinishedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (cancelled_) return tasks_ == 0 && !writing_;
    return outstanding_ == 0 && tasks_ == 0;
  }
  // The items of the newest result when it is held back (queued, not being written), else 0.
  int HeldLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!hold_back_ || queue_.empty()) return 0;
    return writing_ && queue_.size() == 1 ? 0 : queue_.back().items;
  }
  bool CanWriteFrontLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !hold_back_ || queue_.size() >= 2;
  }
  struct PendingWrite {
    Resp* r = nullptr;
    bool more = false;
  };
  // Marks the front as being written and returns it; the caller writes it after unlocking. The
  // front stays put until OnWriteDone (a deque keeps its address across push_back/pop_back, and
  // Cancel keeps it while writing_). `more`: the result behind the front will be writable when
  // the front's write completes (with hold-back, only if a third one holds the held place).
  PendingWrite BeginWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = true;
    return PendingWrite{&queue_.front().r, queue_.size() >= (hold_back_ ? 3u : 2u)};
  }
  void Write(const PendingWrite& w) ABSL_LOCKS_EXCLUDED(mu_) {
    if (w.r == nullptr) return;
    if (stamp) stamp(w.r);
    start_write(w.r, w.more);
  }

  // A queued result and the number of admitted items it answers.
  struct Entry {
    Resp r;
    int items;
  };

  const int window_;
  absl::Mutex mu_;
  std::deque<Entry> queue_ ABSL_GUARDED_BY(mu_);
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  int tasks_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_back_ ABSL_GUARDED_BY(mu_);
};

}  // namespace anchord::rpc
