// The poller's gRPC surface: PollerService (Track, Watch, GetProof, ListProofs, DownloadProof)
// and StatusService (Locate, SummarizeJob), both on the callback API.
//
// Reactors never block: every store access runs on the WorkerPool, and results come back to the
// reactor, which writes one message at a time (the next from OnWriteDone). Track keeps at most
// kTrackMaxInFlight requests of a stream between read and acknowledgement, so a fast sender is
// slowed by HTTP/2 flow control instead of growing memory.
#pragma once

#include <memory>
#include <mutex>
#include <set>

#include "anchord/v1/common.grpc.pb.h"
#include "anchord/v1/poller.grpc.pb.h"
#include "libs/common/clock.h"
#include "libs/rpc/internal.h"
#include "services/poller/event_bus.h"
#include "services/poller/poller_metrics.h"
#include "services/poller/poller_store.h"
#include "libs/common/worker_pool.h"

namespace anchord::poller {

struct PollerServiceOptions {
  // Events a Watch stream may have queued before it is ended with RESOURCE_EXHAUSTED.
  size_t watch_queue_capacity = 1024;
  // Providers that never give an .ots (Provider::OffersOts false): their Merkle leaves are
  // offered a path-only proof once confirmed (see leaf_proof.h).
  std::set<std::string> providers_without_ots;
  // Track requests of one stream read but not yet acknowledged.
  int track_max_in_flight = 64;
  // Proofs loaded per snapshot page of Watch(include_current).
  int snapshot_page = 200;
  // Which port this instance serves: the public one (Track refused) or the internal one (only
  // Track, for callers with the internal token). main() registers one instance on each.
  rpc::RpcGate gate = rpc::RpcGate::Public();
};

class WatchReactor;

class PollerServiceImpl final : public anchord::v1::PollerService::CallbackService {
 public:
  // Nothing is owned; all must outlive the service. `metrics` may be null.
  PollerServiceImpl(PollerStore* store, EventBus* bus, PollerMetrics* metrics, Clock* clock,
                    WorkerPool* pool, PollerServiceOptions options = {});
  ~PollerServiceImpl() override;

  // Ends every open Watch stream with UNAVAILABLE ("server shutting down"), so a graceful drain
  // does not wait for the grace period on streams that never end by themselves.
  void EndWatches();

  // anchord::v1::PollerService::CallbackService
  grpc::ServerBidiReactor<anchord::v1::TrackRequest, anchord::v1::TrackResponse>* Track(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerWriteReactor<anchord::v1::WatchResponse>* Watch(
      grpc::CallbackServerContext* ctx, const anchord::v1::WatchRequest* request) override;
  grpc::ServerUnaryReactor* GetProof(grpc::CallbackServerContext* ctx,
                                     const anchord::v1::GetProofRequest* request,
                                     anchord::v1::GetProofResponse* response) override;
  grpc::ServerUnaryReactor* ListProofs(grpc::CallbackServerContext* ctx,
                                       const anchord::v1::ListProofsRequest* request,
                                       anchord::v1::ListProofsResponse* response) override;
  grpc::ServerWriteReactor<anchord::v1::DownloadProofResponse>* DownloadProof(
      grpc::CallbackServerContext* ctx, const anchord::v1::DownloadProofRequest* request) override;

 private:
  friend class WatchReactor;
  friend class TrackReactor;
  friend class DownloadReactor;
  void AddWatcher(WatchReactor* w);
  void RemoveWatcher(WatchReactor* w);

  PollerStore* store_;
  EventBus* bus_;
  PollerMetrics* metrics_;
  Clock* clock_;
  WorkerPool* pool_;
  PollerServiceOptions options_;

  std::mutex watchers_mu_;
  std::set<WatchReactor*> watchers_;
  bool ending_ = false;
};

class StatusServiceImpl final : public anchord::v1::StatusService::CallbackService {
 public:
  StatusServiceImpl(PollerStore* store, WorkerPool* pool) : store_(store), pool_(pool) {}

  // anchord::v1::StatusService::CallbackService
  grpc::ServerUnaryReactor* Locate(grpc::CallbackServerContext* ctx,
                                   const anchord::v1::LocateRequest* request,
                                   anchord::v1::LocateResponse* response) override;
  grpc::ServerUnaryReactor* SummarizeJob(grpc::CallbackServerContext* ctx,
                                         const anchord::v1::SummarizeJobRequest* request,
                                         anchord::v1::SummarizeJobResponse* response) override;

 private:
  PollerStore* store_;
  WorkerPool* pool_;
};

}  // namespace anchord::poller
