// PollerService.Track and TrackBatch, the submitter's hand-off streams (bidi, internal port only).
// Requests are batched per stream (at most PollerServiceOptions::track_max_per_commit proofs)
// and stored on the worker pool, one transaction per batch, the next batch validated and expanded
// while one is stored; each response is written after the commit that made its proofs durable,
// so an acknowledged proof is never lost. At most PollerServiceOptions::track_max_in_flight proofs
// of a stream (a Track request is one, a TrackBatch request its root and leaves) are between read
// and acknowledgement: a fast sender is slowed by HTTP/2 flow control instead of growing memory.
#pragma once

#include <grpcpp/grpcpp.h>

#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "anchord/v1/poller.grpc.pb.h"
#include "libs/rpc/reactor_lifetime.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

class PollerServiceImpl;

// What the service keeps of an open hand-off stream, to end it on shutdown.
class HandoffStream {
 public:
  virtual ~HandoffStream() = default;
  // Reads nothing more, answers what was read once it is stored, then ends the stream with
  // UNAVAILABLE so the sender reconnects (to a restarted poller) and resends whatever it did not
  // get an answer for.
  virtual void Drain() = 0;
};

// `Request` is anchord::v1::TrackRequest or anchord::v1::TrackBatchRequest (instantiated in the
// .cc); the two differ only in how a request becomes store inputs.
template <typename Request>
class TrackReactor final
    : public HandoffStream,
      public rpc::ReactorLifetime<grpc::ServerBidiReactor<Request, anchord::v1::TrackResponse>> {
  using Base = rpc::ReactorLifetime<grpc::ServerBidiReactor<Request, anchord::v1::TrackResponse>>;
  using Base::finished_;
  using Base::mu_;
  using Base::refs_;
  using Base::writing_;

 public:
  // Registers itself with `service` (which must outlive the stream) and starts reading.
  explicit TrackReactor(PollerServiceImpl* service);

  void Drain() override ABSL_LOCKS_EXCLUDED(mu_);

  // grpc::ServerBidiReactor
  void OnReadDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnWriteDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnCancel() override ABSL_LOCKS_EXCLUDED(mu_);
  void OnDone() override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // A response and the proofs it acknowledges (what it releases of track_max_in_flight).
  using Answer = std::pair<anchord::v1::TrackResponse, int>;

  void MaybeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The batch that held the task slot has its store turn: the next task may gather and prepare
  // while it is stored.
  void ScheduleNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What a batch of requests becomes before it is stored: each request's answer so far, and the
  // store inputs of those that passed validation.
  struct Prepared {
    std::vector<Answer> answers;
    std::vector<TrackInput> inputs;
    // The inputs of request i are inputs[i == 0 ? 0 : ends[i - 1], ends[i]).
    std::vector<size_t> ends;
  };

  // Worker thread: validates and expands up to track_max_per_commit proofs read so far, then
  // stores them (StoreInTurn) or, while the stream's previous batch is being stored, parks them
  // for that store to hand on: a batch waiting its turn holds no worker.
  void Process() ABSL_LOCKS_EXCLUDED(mu_, publish_mu_);
  // Validates `batch` and expands it into store inputs; touches no store, so it runs beside the
  // previous batch's store.
  Prepared Prepare(const std::vector<Request>& batch) ABSL_LOCKS_EXCLUDED(mu_);
  // In the stream's store turn (storing_): stores `prepared`, hands the turn to the parked batch
  // (on a worker of its own) or ends it, then publishes and queues the answers. Releases the
  // reference its batch held.
  void StoreInTurn(Prepared prepared) ABSL_LOCKS_EXCLUDED(mu_, publish_mu_);
  // Applies the hand-off policy and stores the inputs (in the stream's turn: the policy reads
  // what the previous batch stored): the store's outcomes in *stored.
  void Store(Prepared* prepared, std::vector<TrackOutcome>* stored, absl::Time* now)
      ABSL_LOCKS_EXCLUDED(mu_);
  void PublishOutcomes(std::vector<TrackOutcome>* outcomes, absl::Time now)
      ABSL_LOCKS_EXCLUDED(mu_);

  PollerServiceImpl* const service_;
  // A stream's batches are stored and published in the order they were read: one batch at a time
  // is in its store turn (storing_), the next one waits parked (parked_), and a batch takes
  // publish_mu_ before it hands the turn on, holding it until its answers are queued. So the next
  // batch is prepared while this one is stored, and stored while this one's events are published.
  absl::Mutex publish_mu_;
  // Owned by the read in flight (one at a time), so not under mu_ while gRPC fills it.
  Request read_buf_;
  anchord::v1::TrackResponse write_buf_ ABSL_GUARDED_BY(mu_);
  int write_cost_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Request> inbox_ ABSL_GUARDED_BY(mu_);
  int inbox_cost_ ABSL_GUARDED_BY(mu_) = 0;  // the proofs of inbox_
  std::deque<Answer> outbox_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // proofs read and not yet acknowledged
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  // A task is preparing a batch, or its batch is parked: no other is scheduled.
  bool task_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  bool storing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<Prepared> parked_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace anchord::poller
