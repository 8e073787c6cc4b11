// PollerService.Track, the submitter's hand-off stream (bidi, internal port only). Requests are
// batched per stream and stored on the worker pool, one transaction per batch; each response is
// written after the commit that made its proof durable, so an acknowledged proof is never lost.
// At most PollerServiceOptions::track_max_in_flight requests of a stream are between read and
// acknowledgement: a fast sender is slowed by HTTP/2 flow control instead of growing memory.
#pragma once

#include <grpcpp/grpcpp.h>

#include <deque>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "anchord/v1/poller.grpc.pb.h"
#include "libs/rpc/reactor_lifetime.h"

namespace anchord::poller {

class PollerServiceImpl;

class TrackReactor final
    : public rpc::ReactorLifetime<
          grpc::ServerBidiReactor<anchord::v1::TrackRequest, anchord::v1::TrackResponse>> {
 public:
  // Registers itself with `service` (which must outlive the stream) and starts reading.
  explicit TrackReactor(PollerServiceImpl* service);

  // Called by the service on shutdown: reads nothing more, answers what was read once it is
  // stored, then ends the stream with UNAVAILABLE so the sender reconnects (to a restarted
  // poller) and resends whatever it did not get an answer for.
  void Drain() ABSL_LOCKS_EXCLUDED(mu_);

  // grpc::ServerBidiReactor
  void OnReadDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnWriteDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnCancel() override ABSL_LOCKS_EXCLUDED(mu_);
  void OnDone() override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void MaybeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Worker thread: validates, stores and answers the requests read so far.
  void Process() ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<anchord::v1::TrackResponse> StoreBatch(
      const std::vector<anchord::v1::TrackRequest>& batch) ABSL_LOCKS_EXCLUDED(mu_);

  PollerServiceImpl* const service_;
  // Owned by the read in flight (one at a time), so not under mu_ while gRPC fills it.
  anchord::v1::TrackRequest read_buf_;
  anchord::v1::TrackResponse write_buf_ ABSL_GUARDED_BY(mu_);
  std::deque<anchord::v1::TrackRequest> inbox_ ABSL_GUARDED_BY(mu_);
  std::deque<anchord::v1::TrackResponse> outbox_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool task_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace anchord::poller
