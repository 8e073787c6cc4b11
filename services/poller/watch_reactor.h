// PollerService.Watch (server stream): subscribe first, so no event is lost between the snapshot
// and the live events; then, with include_current, the matching proofs in pages loaded on the
// worker pool, SNAPSHOT_DONE, and the live events from a bounded subscription. A watcher whose
// queue overflows is ended with RESOURCE_EXHAUSTED rather than slowing the publishers.
#pragma once

#include <grpcpp/grpcpp.h>

#include <deque>

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
  void OnCancel() override ABSL_LOCKS_EXCLUDED(mu_);
  void OnDone() override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Bus thread.
  void OnEvent() ABSL_LOCKS_EXCLUDED(mu_);
  void LoadPageLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Worker thread: loads the next snapshot page.
  void LoadPage() ABSL_LOCKS_EXCLUDED(mu_);
  void NextWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  PollerServiceImpl* const service_;
  // Set in the constructor before any other thread sees the reactor, read-only afterwards.
  WatchFilter filter_;
  bool registered_ = false;
  EventBus::SubscriptionPtr sub_ ABSL_GUARDED_BY(mu_);
  bool snapshot_phase_ ABSL_GUARDED_BY(mu_) = false;
  bool snapshot_loaded_ ABSL_GUARDED_BY(mu_) = false;
  bool loading_ ABSL_GUARDED_BY(mu_) = false;
  int64_t snapshot_after_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<anchord::v1::WatchResponse> snapshot_ ABSL_GUARDED_BY(mu_);
  EventPtr current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace anchord::poller
