// The hand-off to the poller: streams SUBMITTED and FAILED rows the poller has not acknowledged
// over PollerService.TrackBatch (a Merkle batch's leaves in the batch form, handoff_window.h),
// two windows of rows in flight, marks them handed off on the poller's OK (on a thread of its own,
// so the next window is read and sent while a mark commits), and reconnects (with
// jittered backoff) when the stream breaks; unacknowledged rows are simply sent again, which is
// safe because the poller is idempotent on (digest, provider).
//
// A poller of an older release answers TrackBatch with UNIMPLEMENTED: the hand-off then streams
// every row over PollerService.Track (the per-row form, as before) and tries TrackBatch again
// after track_batch_retry, so a poller upgraded meanwhile gets the batch form without a restart.
//
// Runs on its own thread with the sync client API (allowed for a dedicated client thread).
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "anchord/v1/poller.grpc.pb.h"
#include "libs/common/backoff.h"
#include "services/submitter/metrics.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

struct HandoffOptions {
  // Deadline of one Track stream; the stream is reopened when it expires.
  absl::Duration track_deadline = absl::Hours(1);
  // Rows of one window, read and sent together. Two windows are in flight at most: the next is read
  // and sent while the previous one awaits its answers. A Merkle batch hands off up to 10,000
  // leaves at once, so a window holds a whole batch and more. The poller reads as many ahead
  // (PollerServiceOptions::track_max_in_flight), so its commits grow with the window and each
  // random-key index page it rewrites is shared by more leaves (4.3 -> 2.7 KiB written per leaf
  // from 4,096 to 16,384, bench/RESULTS.md).
  int batch = 16384;
  absl::Duration idle_poll = absl::Milliseconds(500);
  BackoffPolicy reconnect{absl::Milliseconds(100), absl::Seconds(10), 2.0};
  // Hand off over TrackBatch (false: always over Track, the per-row form).
  bool track_batch = true;
  // After a poller answered TrackBatch with UNIMPLEMENTED, how long Track is used before
  // TrackBatch is tried again (one cheap failed call each time).
  absl::Duration track_batch_retry = absl::Minutes(10);
  // Size of one TrackBatch request of a batch's leaves (handoff_window.h).
  int max_leaves_per_request = 4096;
  size_t max_request_bytes = size_t{4} << 20;
  // Backpressure. A hand-off that falls behind the intake (on one machine: the intake, the hasher
  // and the poller share the cores, and each of the hand-off's round trips waits its turn for
  // one) leaves the poller a backlog to store alone after the files are hashed, on one core. So
  // while a read of a stream the poller is answering finds at least `behind_rows` rows waiting
  // beyond those in flight, the hand-off is behind, and the intake waits for it, up to
  // `behind_yield` before each group commit (WaitWhileBehind): the Submit callers' windows fill
  // and their hashing yields the cores to the hand-off and the poller. Measured in
  // bench/RESULTS.md (issue 11, session 26). The default is one Merkle batch of the default size
  // (--merkle-max-leaves). 0: never behind.
  int behind_rows = 10000;
  absl::Duration behind_yield = absl::Milliseconds(50);
  // A hand-off behind is believed this long after the read that found it so: one stuck waiting
  // for the poller's answers (a poller that stopped answering) stops holding the intake back.
  absl::Duration behind_for = absl::Seconds(1);
  // Tests only: runs when a read found nothing to hand off, before the wait for a Wake (to put a
  // Wake exactly between the two).
  std::function<void()> on_nothing_to_send;
  // Tests only: runs after each read of a stream, with the rows it found beyond those in flight
  // (after Behind() took the read into account).
  std::function<void(size_t waiting)> on_read;
  // Tests only: runs on the marker thread before each mark of acknowledged rows.
  std::function<void()> before_mark;
};

// Builds the Proof the poller is sent for a row and its files.
anchord::v1::Proof BuildProof(const Submission& row, const std::vector<FileRef>& files);

class Handoff {
 public:
  // `store` and `metrics` (may be null) must outlive the hand-off.
  Handoff(SubmitterStore* store, std::shared_ptr<grpc::Channel> channel, SubmitterMetrics* metrics,
          HandoffOptions options);
  ~Handoff();

  void Start();
  // Cancels the stream and joins the thread. Idempotent.
  void Stop();
  // Rows became ready: look now rather than at the next poll.
  void Wake();
  // Whether the hand-off is behind the intake (HandoffOptions::behind_rows).
  bool Behind() ABSL_LOCKS_EXCLUDED(mu_);
  // Waits while Behind(), at most HandoffOptions::behind_yield (the intake, before each group
  // commit; SubmitterCore's ServiceOptions::before_group).
  void WaitWhileBehind() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop();
  enum class StreamEnd { kProgressed, kNoProgress, kUnimplemented };
  // Runs one stream (TrackBatch when batch_form, else Track) until it breaks or the thread stops.
  // kUnimplemented: the poller does not serve the method.
  StreamEnd RunStream(grpc::ClientContext* ctx, bool batch_form);
  // Waits `d` or until a Wake after the one `seen` counted (WakeSeq); true when stopping. The
  // count is taken before the store is read: a Wake between the read and the wait (the engine
  // recorded a row the read just missed) then ends the wait at once instead of being lost.
  bool WaitFor(absl::Duration d, uint64_t seen) ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t WakeSeq() ABSL_LOCKS_EXCLUDED(mu_);
  // After each read of a stream: `waiting` rows were found beyond those in flight; `answered`:
  // the poller has acknowledged a request on this stream.
  void NoteRead(size_t waiting, bool answered) ABSL_LOCKS_EXCLUDED(mu_);
  bool BehindLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  SubmitterStore* store_;
  std::unique_ptr<anchord::v1::PollerService::Stub> stub_;
  SubmitterMetrics* metrics_;
  prometheus::Counter* intake_yield_ = nullptr;  // metrics_->intake_yield's series
  HandoffOptions options_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t wake_seq_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::ClientContext* active_ ABSL_GUARDED_BY(mu_) = nullptr;  // cancelled by Stop()
  // When a read last found the hand-off behind; InfinitePast: it is not.
  absl::Time behind_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::thread thread_;
  // The hand-off thread's own: TrackBatch is not tried before this (a poller without it).
  absl::Time track_batch_after_ = absl::InfinitePast();
  // Rows whose batch-form request the poller refused (INVALID_ARGUMENT): sent one by one, so
  // each is judged on its own. Only grows on such refusals (a few ids per refused request).
  absl::flat_hash_set<int64_t> one_by_one_;
};

}  // namespace anchord::submitter
