// The hasher's gRPC services: HasherService (HashTree, HashFiles, ListFiles) and StatusService
// (Locate, SummarizeJob), both callback-API services over one HasherStore.
//
// Source files: hash_tree.cc (the HashTree pipeline), hash_files.cc (the HashFiles pipeline),
// hasher_service.cc (ListFiles, StatusService, the service's lifecycle), call_common.h (what the
// two pipelines share).
//
// Threading: reactors never block. Each HashTree/HashFiles call gets one coordinator thread (the
// directory walk, waiting for the end of the call, closing its Submit stream); hashing runs on a
// shared pool of --workers threads; store queries for ListFiles/StatusService run on a separate
// one-thread pool so that they are not stuck behind hashing. At most kMaxActiveCalls
// HashTree/HashFiles calls run at once (RESOURCE_EXHAUSTED beyond), which bounds the threads.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "anchord/v1/common.grpc.pb.h"
#include "anchord/v1/hasher.grpc.pb.h"
#include "libs/digest/tree_walk.h"
#include "services/hasher/call_registry.h"
#include "services/hasher/hasher_metrics.h"
#include "services/hasher/hasher_store.h"
#include "services/hasher/submit_session.h"
#include "libs/common/worker_pool.h"

namespace anchord::hasher {

struct HasherOptions {
  // Directory HashTree paths are relative to; must exist.
  std::string root;
  // Channel to the submitter; null means "no submitter configured" (only dry runs work).
  std::shared_ptr<grpc::Channel> submitter;
  int workers = 2;
  // Per call: files admitted (being hashed, sent and unacknowledged, or waiting to be written to
  // the caller) at most. Bounds memory and the digests unacknowledged by the submitter.
  int max_inflight = 256;
  SubmitSessionOptions submit;
  // Read buffer per hashing worker.
  size_t hash_buffer_bytes = 1 << 20;
};

inline constexpr int kMaxActiveCalls = 16;

class HasherServiceImpl final : public anchord::v1::HasherService::CallbackService {
 public:
  // `store` and `metrics` must outlive the service.
  static absl::StatusOr<std::unique_ptr<HasherServiceImpl>> Create(HasherOptions options,
                                                                   HasherStore* store,
                                                                   HasherMetrics* metrics);
  // Cancels the calls still running and waits for their threads. Destroy only after the gRPC
  // server was shut down.
  ~HasherServiceImpl() override;

  // anchord::v1::HasherService
  grpc::ServerWriteReactor<anchord::v1::HashTreeResponse>* HashTree(
      grpc::CallbackServerContext* ctx, const anchord::v1::HashTreeRequest* request) override;
  grpc::ServerBidiReactor<anchord::v1::HashFilesRequest, anchord::v1::HashFilesResponse>* HashFiles(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerWriteReactor<anchord::v1::ListFilesResponse>* ListFiles(
      grpc::CallbackServerContext* ctx, const anchord::v1::ListFilesRequest* request) override;

  // Shared with the reactors in the .cc file.
  struct Shared {
    Shared(HasherOptions o, digest::TreeWalker w, HasherStore* st, HasherMetrics* m)
        : options(std::move(o)), walker(std::move(w)), store(st), metrics(m) {}
    HasherOptions options;
    digest::TreeWalker walker;
    HasherStore* store;
    HasherMetrics* metrics;
    std::unique_ptr<WorkerPool> hash_pool;
    std::unique_ptr<WorkerPool> query_pool;
    // Admitted HashTree/HashFiles calls whose coordinator thread still runs.
    CallRegistry calls{kMaxActiveCalls};
  };
  Shared* shared() { return shared_.get(); }

 private:
  explicit HasherServiceImpl(std::unique_ptr<Shared> shared) : shared_(std::move(shared)) {}
  std::unique_ptr<Shared> shared_;
};

class HasherStatusServiceImpl final : public anchord::v1::StatusService::CallbackService {
 public:
  // Store queries run on `hasher`'s query pool; `hasher` must outlive this service.
  explicit HasherStatusServiceImpl(HasherServiceImpl::Shared* shared) : shared_(shared) {}
  grpc::ServerUnaryReactor* Locate(grpc::CallbackServerContext* ctx,
                                   const anchord::v1::LocateRequest* request,
                                   anchord::v1::LocateResponse* response) override;
  grpc::ServerUnaryReactor* SummarizeJob(grpc::CallbackServerContext* ctx,
                                         const anchord::v1::SummarizeJobRequest* request,
                                         anchord::v1::SummarizeJobResponse* response) override;

 private:
  HasherServiceImpl::Shared* shared_;
};

// StatusService's methods as plain functions over the store (run on the query pool by
// rpc::RunUnary). Validation errors name the field; a store failure is "hasher store unavailable".
// Locate: NOT_FOUND when no file has the digest, else every file with it and the furthest state.
absl::StatusOr<anchord::v1::LocateResponse> LocateDigest(HasherStore& store,
                                                         const anchord::v1::LocateRequest& request);
absl::StatusOr<anchord::v1::SummarizeJobResponse> SummarizeHashJob(
    HasherStore& store, const anchord::v1::SummarizeJobRequest& request);

}  // namespace anchord::hasher
