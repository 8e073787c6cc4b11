// PollerService.Watch (server stream): subscribe first, so no event is lost between the snapshot
// and the live events; then, with include_current, the matching proofs in pages loaded on the
// worker pool, SNAPSHOT_DONE, and the live events from a bounded subscription. A watcher whose
// queue overflows is ended with RESOURCE_EXHAUSTED rather than slowing the publishers.
//
// Bursts cost few writes: with WatchRequest.batch, one response carries every event queued (up to
// kMaxBatchEvents), and without it each event is written with gRPC's buffer hint while another
// one is ready behind it, so a burst leaves in a few large socket writes; the last write of a
// burst goes without the hint, so nothing is held back once the queue is empty.
#pragma once

#include <grpcpp/grpcpp.h>

#include <deque>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "anchord/v1/poller.grpc.pb.h"
#include "libs/rpc/reactor_lifetime.h"
#include "services/poller/event_bus.h"

namespace anchord::poller {

class PollerServiceImpl;

class WatchReactor final
    : public rpc::ReactorLifetime<grpc::ServerWriteReactor<anchord::v1::WatchResponse>> {
 public:
  // Validates `req` (ending the stream with INVALID_ARGUMENT naming the field), subscribes and
  // registers with `service`, which must outlive the stream.
  WatchReactor(PollerServiceImpl* service, const anchord::v1::WatchRequest& req)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Called by the service on shutdown.
  void End(grpc::Status st) ABSL_LOCKS_EXCLUDED(mu_);

  // grpc::ServerWriteReactor
  void OnSendInitialMetadataDone(bool ok) override {}
  void OnWriteDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_);

  // Bounds of one batched response: a burst of Track stores is up to a few thousand events, and a
  // response must stay well under the 4 MiB a gRPC client accepts by default.
  static constexpr size_t kMaxBatchEvents = 512;
  static constexpr size_t kMaxBatchBytes = 1 << 20;
  void OnCancel() override ABSL_LOCKS_EXCLUDED(mu_);
  void OnDone() override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Bus thread.
  void OnEvent() ABSL_LOCKS_EXCLUDED(mu_);
  void LoadPageLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Worker thread: loads the next snapshot page.
  void LoadPage() ABSL_LOCKS_EXCLUDED(mu_);
  void NextWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The next snapshot response (one event, or a batch); true when another one is ready behind it.
  bool NextSnapshotLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The next live response from the subscription; current_ stays null when none is queued.
  bool NextLiveLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  PollerServiceImpl* const service_;
  // Set in the constructor before any other thread sees the reactor, read-only afterwards.
  WatchFilter filter_;
  bool batch_ = false;
  bool brief_ = false;  // WatchRequest.brief: events trimmed by Brief()
  bool registered_ = false;
  EventBus::SubscriptionPtr sub_ ABSL_GUARDED_BY(mu_);
  bool snapshot_phase_ ABSL_GUARDED_BY(mu_) = false;
  bool snapshot_loaded_ ABSL_GUARDED_BY(mu_) = false;
  bool loading_ ABSL_GUARDED_BY(mu_) = false;
  int64_t snapshot_after_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<anchord::v1::WatchResponse> snapshot_ ABSL_GUARDED_BY(mu_);
  EventPtr current_ ABSL_GUARDED_BY(mu_);
  std::vector<EventPtr> popped_ ABSL_GUARDED_BY(mu_);  // reused by NextLiveLocked
};

}  // namespace anchord::poller
