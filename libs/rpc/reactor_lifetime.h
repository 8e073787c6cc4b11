// Bookkeeping shared by callback reactors that hand work to other threads (SQLite on a worker
// pool, events from a bus). Reactions must not block, so the work happens elsewhere and comes back
// later; these two rules keep that safe:
//  - Reference counting: gRPC holds one reference until OnDone, and every task in flight holds
//    one, so the reactor is deleted only when nothing can touch it any more.
//  - A Finish requested while a write is in flight is sent when that write completes (gRPC allows
//    one operation of each kind at a time), and only the first Finish counts.
// Derived classes take mu_ around every reaction and call the *Locked helpers with it held.
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include <utility>

namespace anchord::rpc {

// `Reactor` is a grpc::ServerBidiReactor<...>, ServerReadReactor<...> or ServerWriteReactor<...>.
template <typename Reactor>
class ReactorLifetime : public Reactor {
 protected:
  // Takes a reference for a task about to run on another thread. Call with mu_ held.
  void RefLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { ++refs_; }
  // Releases a reference (gRPC's in OnDone, or a task's); deletes the reactor on the last one.
  // Call without mu_ held.
  void Unref() ABSL_LOCKS_EXCLUDED(mu_) {
    bool last;
    {
      absl::MutexLock lock(&mu_);
      last = --refs_ == 0;
    }
    if (last) delete this;
  }

  // Finishes the RPC with `status`, after the write in flight if there is one. Later calls are
  // ignored. Call with mu_ held.
  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    if (writing_) {
      deferred_status_ = std::move(status);
      finish_deferred_ = true;
      return;
    }
    this->Finish(std::move(status));
  }
  // From OnWriteDone (with writing_ cleared): sends a Finish that waited for the write. True when
  // it did. Call with mu_ held.
  bool SendDeferredFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!finish_deferred_) return false;
    finish_deferred_ = false;
    this->Finish(std::move(deferred_status_));
    return true;
  }

  absl::Mutex mu_;
  int refs_ ABSL_GUARDED_BY(mu_) = 1;  // gRPC's reference, released in OnDone
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;

 private:
  bool finish_deferred_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status deferred_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace anchord::rpc
