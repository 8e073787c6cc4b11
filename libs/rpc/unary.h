// Unary methods as plain functions. A service's unary method (StatusService, the lookups) is a
// function returning absl::StatusOr<Response> that knows nothing of gRPC, so it is tested without
// a server; RunUnary runs it on the service's worker pool (it reads a store, and a reaction must
// not block) and finishes the call with its result.
//
//   grpc::ServerUnaryReactor* Impl::Locate(grpc::CallbackServerContext* ctx,
//                                          const v1::LocateRequest* req, v1::LocateResponse* resp)
//                                          {
//     return rpc::RunUnary(ctx, pool_, "poller", resp, [this, req] { return DoLocate(*store_,
//     *req); });
//   }
//
// The request and response live until the call finishes, so the function may hold pointers to
// them. A function's error status goes to the caller as it is (ToGrpcStatus): it must already be
// fit for a caller (a field named, no internal detail; see StoreUnavailable).
#pragma once

#include <grpcpp/grpcpp.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/common/worker_pool.h"
#include "libs/rpc/status.h"

namespace anchord::rpc {

// UNAVAILABLE "<service> overloaded; retry later": the pool's queue is full.
absl::Status Overloaded(absl::string_view service);
// Logs `store_error` (it may name files, SQL or the database) and returns the UNAVAILABLE status a
// caller sees instead: "<service> store unavailable; retry later".
absl::Status StoreUnavailable(absl::string_view service, const absl::Status& store_error);

template <typename Response, typename Fn>
grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* ctx, WorkerPool* pool,
                                   absl::string_view service, Response* response, Fn fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  bool posted = pool->Post([reactor, response, fn = std::move(fn)]() mutable {
    absl::StatusOr<Response> result = fn();
    if (!result.ok()) return reactor->Finish(ToGrpcStatus(result.status()));
    *response = std::move(*result);
    reactor->Finish(grpc::Status::OK);
  });
  if (!posted) reactor->Finish(ToGrpcStatus(Overloaded(service)));
  return reactor;
}

}  // namespace anchord::rpc
