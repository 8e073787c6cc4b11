// The gRPC side of the submitter: SubmitterService (Submit stream, ResumeQueue, Reanchor) and
// StatusService (Locate, SummarizeJob), all on the callback API. Reactors never block: every store
// access runs on the intake thread (Submit) or on a small worker pool (the unary methods, plain
// functions in methods.h run by rpc::RunUnary).
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "anchord/v1/common.grpc.pb.h"
#include "anchord/v1/submitter.grpc.pb.h"
#include "libs/common/worker_pool.h"
#include "libs/rpc/internal.h"
#include "services/submitter/engine.h"
#include "services/submitter/metrics.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

struct ServiceOptions {
  // Reading stops while QUEUED+SUBMITTING rows exceed this.
  int64_t high_water = 100000;
  // Items of one stream accepted but not yet answered; reading stops while it is reached. Large
  // enough that a stream keeps the intake busy while the previous group commit is on disk: with
  // two streams, more than one max_batch is outstanding, so the next commit's items arrive while
  // the current one is written instead of after its answers. The hasher's window per call
  // (--max-inflight) is the same.
  int max_outstanding_per_stream = 16384;
  // Items per intake transaction (group commit across every open stream). Each commit rewrites
  // the pages of the (digest, provider) index it touches (random keys: a few thousand rows touch
  // nearly all of them), so the index's disk writes per item fall with the group's size: 4,096
  // -> 16,384 took the submitter from 2.65 to 1.41 KiB written per file of a 100,000-file Merkle
  // run (bench/RESULTS.md). The items wait in memory either way (a few hundred bytes each).
  int max_batch = 16384;
  absl::Duration backlog_refresh = absl::Milliseconds(200);
  // Called on the intake thread before it takes each group of items (may wait): the hand-off's
  // backpressure (Handoff::WaitWhileBehind). Items wait in memory meanwhile, unanswered; each
  // stream's window (max_outstanding_per_stream) bounds them.
  std::function<void()> before_group;
  std::vector<std::string> providers;  // known names
  std::string default_provider;
};

class SubmitReactor;

// Shared machinery behind both services: intake batching, backlog accounting, the worker pool.
class SubmitterCore {
 public:
  // `store`, `engine` (may be null), `metrics` (may be null) must outlive the core.
  SubmitterCore(SubmitterStore* store, Engine* engine, SubmitterMetrics* metrics,
                ServiceOptions options);
  ~SubmitterCore();
  // Runs the work already posted to the pool, answers every item already enqueued, then joins
  // the threads. Idempotent.
  void Stop();

  // Called after each committed intake batch (e.g. to wake the engine), with the number of Merkle
  // leaf rows it added (for the batcher).
  void set_on_stored(std::function<void(int64_t merkle_leaves)> f) { on_stored_ = std::move(f); }

  struct IntakeItem {
    NewItem item;
    std::string request_id;
    std::function<void(anchord::v1::SubmitResponse)> done;  // called on the intake thread
  };
  void Enqueue(IntakeItem item) ABSL_LOCKS_EXCLUDED(mu_);
  // Enqueues several items at once (a batch-form request), in order, so that they usually share
  // one group commit.
  void EnqueueMany(std::vector<IntakeItem> items) ABSL_LOCKS_EXCLUDED(mu_);
  // Enqueues one item and waits for its answer (the item's status says whether it was stored).
  // Blocks the calling thread for one group commit: call it from the pool, never from a reaction.
  anchord::v1::SubmitResponse SubmitAndWait(NewItem item, std::string request_id)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Where the unary methods run (rpc::RunUnary).
  WorkerPool* pool() { return &pool_; }

  bool AboveHighWater() const { return backlog_.load() > options_.high_water; }
  // A reactor stopped reading because of the high-water mark; the monitor calls its Resume once
  // the backlog is under it. Membership holds a reference on the reactor, released by Resume (or
  // by the reactor's OnDone when UnregisterPaused returns true).
  void RegisterPaused(SubmitReactor* r) ABSL_LOCKS_EXCLUDED(paused_mu_);
  bool UnregisterPaused(SubmitReactor* r) ABSL_LOCKS_EXCLUDED(paused_mu_);
  // Open Submit streams, for DrainStreams. RegisterLive returns true when already draining.
  bool RegisterLive(SubmitReactor* r) ABSL_LOCKS_EXCLUDED(live_mu_);
  void UnregisterLive(SubmitReactor* r) ABSL_LOCKS_EXCLUDED(live_mu_);
  // For shutdown: every open (and later) Submit stream stops reading, answers each item it read
  // once that item is committed, and then ends with UNAVAILABLE, so the server's drain does not
  // wait out its grace on streams that never end by themselves. Call before ServerRunner::Shutdown.
  void DrainStreams() ABSL_LOCKS_EXCLUDED(live_mu_);

  SubmitterStore* store() { return store_; }
  Engine* engine() { return engine_; }
  SubmitterMetrics* metrics() { return metrics_; }
  const ServiceOptions& options() const { return options_; }

 private:
  void IntakeLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // The intake has items to take, or the core stops.
  bool IntakeReadyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !intake_.empty();
  }
  void MonitorLoop() ABSL_LOCKS_EXCLUDED(mu_, paused_mu_);

  SubmitterStore* store_;
  Engine* engine_;
  SubmitterMetrics* metrics_;
  ServiceOptions options_;
  std::function<void(int64_t)> on_stored_;
  std::atomic<int64_t> backlog_{0};
  WorkerPool pool_{2, static_cast<size_t>(-1), "rpc-pool"};

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<IntakeItem> intake_ ABSL_GUARDED_BY(mu_);
  absl::Mutex paused_mu_;
  std::set<SubmitReactor*> paused_ ABSL_GUARDED_BY(paused_mu_);
  absl::Mutex live_mu_;
  std::set<SubmitReactor*> live_ ABSL_GUARDED_BY(live_mu_);
  bool draining_ ABSL_GUARDED_BY(live_mu_) = false;
  std::vector<std::thread> threads_;
};

class SubmitterServiceImpl final : public anchord::v1::SubmitterService::CallbackService {
 public:
  // `gate`: which port this instance serves (libs/rpc/internal.h). main() registers a public
  // instance (Submit, ResumeQueue) and an internal one (Reanchor) over the same core.
  explicit SubmitterServiceImpl(SubmitterCore* core, rpc::RpcGate gate = rpc::RpcGate::Public())
      : core_(core), gate_(std::move(gate)) {}

  // anchord::v1::SubmitterService
  grpc::ServerBidiReactor<anchord::v1::SubmitRequest, anchord::v1::SubmitResponse>* Submit(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* ResumeQueue(grpc::CallbackServerContext* ctx,
                                        const anchord::v1::ResumeQueueRequest* req,
                                        anchord::v1::ResumeQueueResponse* resp) override;
  grpc::ServerUnaryReactor* Reanchor(grpc::CallbackServerContext* ctx,
                                     const anchord::v1::ReanchorRequest* req,
                                     anchord::v1::ReanchorResponse* resp) override;

 private:
  SubmitterCore* core_;
  rpc::RpcGate gate_;
};

class StatusServiceImpl final : public anchord::v1::StatusService::CallbackService {
 public:
  explicit StatusServiceImpl(SubmitterCore* core) : core_(core) {}

  // anchord::v1::StatusService
  grpc::ServerUnaryReactor* Locate(grpc::CallbackServerContext* ctx,
                                   const anchord::v1::LocateRequest* req,
                                   anchord::v1::LocateResponse* resp) override;
  grpc::ServerUnaryReactor* SummarizeJob(grpc::CallbackServerContext* ctx,
                                         const anchord::v1::SummarizeJobRequest* req,
                                         anchord::v1::SummarizeJobResponse* resp) override;

 private:
  SubmitterCore* core_;
};

// Validates one request; the error names the field. On success fills `out`.
absl::Status ValidateSubmit(const anchord::v1::SubmitRequest& req, const ServiceOptions& options,
                            NewItem* out);

// Items one batch-form SubmitRequest may carry (SubmitRequest.items).
inline constexpr int kMaxSubmitItems = 4096;

// The rules of the batch form as a whole: at most kMaxSubmitItems items, and the single-form
// fields empty. The error names the field; such a message is refused whole.
absl::Status ValidateBatchForm(const anchord::v1::SubmitRequest& req);

// Validates items[index] of a batch-form request like a single-form request (and its own `items`
// must be empty); the error names the item by its index, e.g. "items[7].digest: ...".
absl::Status ValidateSubmitItem(const anchord::v1::SubmitRequest& item, int index,
                                const ServiceOptions& options, NewItem* out);

}  // namespace anchord::submitter
