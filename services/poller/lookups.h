// The poller's unary methods as plain functions of the store and the request (PollerService
// GetProof and ListProofs, StatusService Locate and SummarizeJob). They know nothing of gRPC:
// poller_service.cc runs them on the worker pool through rpc::RunUnary, and tests call them
// directly. Each validates its request first (INVALID_ARGUMENT naming the field), and a store
// failure becomes rpc::StoreUnavailable("poller", ...) so no store detail reaches a caller.
#pragma once

#include "absl/status/statusor.h"
#include "anchord/v1/common.pb.h"
#include "anchord/v1/poller.pb.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

// The proof of request.digest with request.provider (the oldest proof of the digest when no
// provider is named); NOT_FOUND when there is none.
absl::StatusOr<anchord::v1::GetProofResponse> GetProof(PollerStore& store,
                                                       const anchord::v1::GetProofRequest& request);

// One page of proofs, oldest first, filtered by job, state and digests; next_page_token is set
// when another page exists. page_size 0 means 100, at most 1,000; at most 1,000 digests.
absl::StatusOr<anchord::v1::ListProofsResponse> ListProofs(
    PollerStore& store, const anchord::v1::ListProofsRequest& request);

// Every proof of a digest; state is the furthest of them, files those of the first proof, and
// status the failure of a FAILED one. NOT_FOUND when the poller knows nothing of the digest.
absl::StatusOr<anchord::v1::LocateResponse> Locate(PollerStore& store,
                                                   const anchord::v1::LocateRequest& request);

// The digests of a job counted by state.
absl::StatusOr<anchord::v1::SummarizeJobResponse> SummarizeJob(
    PollerStore& store, const anchord::v1::SummarizeJobRequest& request);

}  // namespace anchord::poller
