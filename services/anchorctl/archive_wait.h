// How `anchorctl archive --wait` learns the poller's states of its digests: a Watch of the job
// opened before hashing starts (so the job's new digests need no snapshot), and ListProofs for the
// digests the job's Watch may not show.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/anchorctl/archive_state.h"
#include "services/anchorctl/clients.h"

namespace anchord::anchorctl {

// Follows PollerService.Watch for the job and raises digest states as events come (several per
// message: it asks for batches), reopening the stream (with a pause) when it ends, e.g. when the
// poller restarts, until Stop().
//
// The first stream asks for no snapshot: opened before the run submits anything, it sees every
// event of the run's new digests. Every later stream (after a break, or when the first one was
// not open in time, see WaitOpen) starts with a snapshot of the job's proofs, so a break loses
// nothing.
class WatchFollower {
 public:
  // `clients` and `state` must outlive the follower.
  WatchFollower(Clients* clients, ArchiveState* state, std::string job, absl::Time deadline);
  ~WatchFollower() { Stop(); }
  WatchFollower(const WatchFollower&) = delete;
  WatchFollower& operator=(const WatchFollower&) = delete;

  // Waits up to `timeout` for the first stream to be subscribed at the poller (or to have ended).
  // On timeout the first stream is abandoned once it opens and the next one takes a snapshot, so
  // the caller may start submitting either way. True when the first stream opened in time.
  bool WaitOpen(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  // Streams opened so far (for tests and diagnostics).
  int streams() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  Clients* clients_;
  ArchiveState* state_;
  const std::string job_;
  const absl::Time deadline_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool first_open_ ABSL_GUARDED_BY(mu_) =
      false;                                // the first stream's headers arrived (or it ended)
  bool late_ ABSL_GUARDED_BY(mu_) = false;  // WaitOpen gave up on the first stream
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

// Asks the poller (ListProofs, 500 digests a call) for the digests not done yet, all of them or
// (`only_known_before`) those the submitter knew before this run, whose proofs may carry another
// job's files and so not appear in this job's Watch.
absl::Status Reconcile(Clients& clients, ArchiveState& state, bool only_known_before);

// When the next reconciliation may start, after one that ran from `started` to `ended`: `period`
// after it started, and no sooner than 20 times as long as it took after it ended. A pass over
// 100,000 open digests (a rerun of a job whose files are unchanged: every digest was known before)
// kept the poller half a core busy when it ran every 2 s; paced by its cost it takes at most about
// 5% of the poller's time, however large the job. The last few hundred digests (one call) are
// still asked about every `period`.
absl::Time NextReconcile(absl::Time started, absl::Time ended, absl::Duration period);

}  // namespace anchord::anchorctl
