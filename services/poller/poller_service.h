// The poller's gRPC surface: PollerService (Track, TrackBatch, Watch, GetProof, ListProofs,
// DownloadProof)
// and StatusService (Locate, SummarizeJob), both on the callback API. This file holds the gates,
// the registry of open streams and DownloadProof; the streams are in track_reactor.h and
// watch_reactor.h, the unary methods are plain functions in lookups.h run through rpc::RunUnary.
//
// Reactors never block: every store access runs on the WorkerPool, and results come back to the
// reactor, which writes one message at a time (the next from OnWriteDone).
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "anchord/v1/common.grpc.pb.h"
#include "anchord/v1/poller.grpc.pb.h"
#include "libs/common/clock.h"
#include "libs/rpc/internal.h"
#include "services/poller/convert.h"
#include "services/poller/event_bus.h"
#include "services/poller/poller_metrics.h"
#include "services/poller/poller_store.h"
#include "libs/common/worker_pool.h"

namespace anchord::poller {

struct PollerServiceOptions {
  // Events a Watch stream may have queued before it is ended with RESOURCE_EXHAUSTED. One store
  // of Track publishes up to track_max_per_commit events at once, faster than any stream can write
  // them: the queue (32,768) holds two such bursts, so a watcher that keeps up is not ended by one.
  size_t watch_queue_capacity = 32768;
  // Providers that never give an .ots (Provider::OffersOts false): their Merkle leaves are
  // offered a path-only proof once confirmed (see leaf_proof.h).
  std::set<std::string> providers_without_ots;
  // Proofs of one stream stored in one transaction at most (a Track request counts one, a
  // TrackBatch request its root and leaves; a single request larger than this is stored alone).
  // The submitter hands off Merkle leaves in windows of 16,384 (HandoffOptions::batch). Each
  // commit rewrites most pages of the random-key indexes (digests) whatever its size, so larger
  // commits share each page among more leaves: bench/track_bench.sh at 100,000 leaves wrote
  // 4.3 KiB per leaf with 4,096 and 2.7 with 16,384 (bench/RESULTS.md, "Issue 11, session 5").
  int track_max_per_commit = 16384;
  // Proofs of one stream read but not yet acknowledged (one request more may be read while below
  // the limit). Twice track_max_per_commit: the next commit's requests are read and turned into
  // store inputs while this one is stored, so the store's writer never waits for that work
  // (bench/RESULTS.md, "Session 36"). The cost is memory: two commits' requests per stream, each
  // well under 1 KiB a proof.
  int track_max_in_flight = 32768;
  // Proofs loaded per snapshot page of Watch(include_current).
  int snapshot_page = 200;
  // Which port this instance serves: the public one (Track and TrackBatch refused) or the
  // internal one (only those two, for callers with the internal token). main() registers one
  // instance on each.
  rpc::RpcGate gate = rpc::RpcGate::Public();
  // Tests only: runs when a hand-off stream's batch has been validated and expanded, and in the
  // stream's store turn just before the batch is stored, with its number of store inputs.
  std::function<void()> on_prepared;
  std::function<void(size_t inputs)> before_store;
};

class WatchReactor;
class HandoffStream;
template <typename Request>
class TrackReactor;

class PollerServiceImpl final : public anchord::v1::PollerService::CallbackService {
 public:
  // Nothing is owned; all must outlive the service. `metrics` may be null.
  PollerServiceImpl(PollerStore* store, EventBus* bus, PollerMetrics* metrics, Clock* clock,
                    WorkerPool* pool, PollerServiceOptions options = {});
  ~PollerServiceImpl() override;

  // Ends every open Watch stream with UNAVAILABLE ("server shutting down"), and drains every
  // Track and TrackBatch stream (no more reads; what was read is stored and answered, then
  // UNAVAILABLE), so a graceful drain does not wait for the grace period on streams that never end
  // by themselves. Streams opened later are ended the same way.
  void EndWatches() ABSL_LOCKS_EXCLUDED(watchers_mu_, tracks_mu_);

  // anchord::v1::PollerService::CallbackService
  grpc::ServerBidiReactor<anchord::v1::TrackRequest, anchord::v1::TrackResponse>* Track(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerBidiReactor<anchord::v1::TrackBatchRequest, anchord::v1::TrackResponse>* TrackBatch(
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
  grpc::ServerWriteReactor<anchord::v1::DownloadProofsResponse>* DownloadProofs(
      grpc::CallbackServerContext* ctx, const anchord::v1::DownloadProofsRequest* request) override;

 private:
  friend class WatchReactor;
  template <typename Request>
  friend class TrackReactor;
  friend class DownloadReactor;
  friend class DownloadManyReactor;
  // A proof's file as DownloadProof sends it: NOT_FOUND (no such proof), FAILED_PRECONDITION
  // (none stored yet), UNAVAILABLE (the store failed), each naming what is missing.
  absl::StatusOr<std::string> LoadProofFile(const Digest& digest, const std::string& provider);
  // Called by the reactors, never with their own lock held (EndWatches takes the reactors'
  // locks under the service's).
  void AddWatcher(WatchReactor* w) ABSL_LOCKS_EXCLUDED(watchers_mu_);
  void RemoveWatcher(WatchReactor* w) ABSL_LOCKS_EXCLUDED(watchers_mu_);
  void AddTrack(HandoffStream* t) ABSL_LOCKS_EXCLUDED(tracks_mu_);
  void RemoveTrack(HandoffStream* t) ABSL_LOCKS_EXCLUDED(tracks_mu_);

  PollerStore* store_;
  EventBus* bus_;
  PollerMetrics* metrics_;
  Clock* clock_;
  WorkerPool* pool_;
  PollerServiceOptions options_;
  BatchTreeCache batch_trees_;  // TrackBatch's trees, shared by every stream

  absl::Mutex watchers_mu_;
  std::set<WatchReactor*> watchers_ ABSL_GUARDED_BY(watchers_mu_);
  bool ending_ ABSL_GUARDED_BY(watchers_mu_) = false;
  absl::Mutex tracks_mu_;
  std::set<HandoffStream*> tracks_ ABSL_GUARDED_BY(tracks_mu_);
  bool tracks_ending_ ABSL_GUARDED_BY(tracks_mu_) = false;
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
