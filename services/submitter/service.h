// The gRPC side of the submitter: SubmitterService (Submit stream, ResumeQueue) and StatusService
// (Locate, SummarizeJob), all on the callback API. Reactors never block: every store access runs
// on the intake thread (Submit) or on a small worker pool (unary calls).
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "anchord/v1/common.grpc.pb.h"
#include "anchord/v1/submitter.grpc.pb.h"
#include "libs/rpc/internal.h"
#include "services/submitter/engine.h"
#include "services/submitter/metrics.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

struct ServiceOptions {
  // Reading stops while QUEUED+SUBMITTING rows exceed this.
  int64_t high_water = 100000;
  // Items of one stream accepted but not yet answered; reading stops while it is reached. Large
  // enough that a stream keeps the intake busy while the previous group commit is on disk.
  int max_outstanding_per_stream = 1024;
  // Items per intake transaction (group commit across every open stream).
  int max_batch = 4096;
  absl::Duration backlog_refresh = absl::Milliseconds(200);
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
  void Stop();

  // Called after each committed intake batch (e.g. to wake the engine).
  void set_on_stored(std::function<void()> f) { on_stored_ = std::move(f); }

  struct IntakeItem {
    NewItem item;
    std::string request_id;
    std::function<void(anchord::v1::SubmitResponse)> done;  // called on the intake thread
  };
  void Enqueue(IntakeItem item);
  // Runs `fn` on the worker pool.
  void Post(std::function<void()> fn);

  bool AboveHighWater() const { return backlog_.load() > options_.high_water; }
  // A reactor stopped reading because of the high-water mark; it is resumed by the monitor.
  void RegisterPaused(SubmitReactor* r);
  void Unregister(SubmitReactor* r);
  // Open Submit streams, for DrainStreams. RegisterLive returns true when already draining.
  bool RegisterLive(SubmitReactor* r);
  void UnregisterLive(SubmitReactor* r);
  // For shutdown: every open (and later) Submit stream stops reading, answers each item it read
  // once that item is committed, and then ends with UNAVAILABLE, so the server's drain does not
  // wait out its grace on streams that never end by themselves. Call before ServerRunner::Shutdown.
  void DrainStreams();

  SubmitterStore* store() { return store_; }
  Engine* engine() { return engine_; }
  SubmitterMetrics* metrics() { return metrics_; }
  const ServiceOptions& options() const { return options_; }

 private:
  void IntakeLoop();
  void PoolLoop();
  void MonitorLoop();

  SubmitterStore* store_;
  Engine* engine_;
  SubmitterMetrics* metrics_;
  ServiceOptions options_;
  std::function<void()> on_stored_;
  std::atomic<int64_t> backlog_{0};

  std::mutex mu_;
  // One condition per kind of waiter, so that an intake item wakes only the intake thread.
  std::condition_variable intake_cv_;
  std::condition_variable work_cv_;
  std::condition_variable monitor_cv_;
  bool stopping_ = false;
  std::deque<IntakeItem> intake_;           // guarded by mu_
  std::deque<std::function<void()>> work_;  // guarded by mu_
  std::set<SubmitReactor*> paused_;         // guarded by paused_mu_
  std::recursive_mutex paused_mu_;
  std::mutex live_mu_;
  std::set<SubmitReactor*> live_;  // guarded by live_mu_
  bool draining_ = false;          // guarded by live_mu_
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

}  // namespace anchord::submitter
