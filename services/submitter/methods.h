// The submitter's unary methods as plain functions: each takes the request and what it reads or
// writes, returns the response or an error fit for the caller (a field named), and knows nothing
// of gRPC. service.cc runs them on the worker pool with rpc::RunUnary, after the port gate.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "anchord/v1/common.pb.h"
#include "anchord/v1/submitter.pb.h"
#include "services/submitter/engine.h"
#include "services/submitter/service.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

// The state a caller sees for a row's state.
anchord::v1::DigestState ToDigestState(SubState s);

// StatusService.Locate: every provider's proof of the digest, its files, and why it waits (a
// paused queue, with the time until its next probe from `now`) or failed. NOT_FOUND when no row
// holds the digest.
absl::StatusOr<anchord::v1::LocateResponse> LocateDigest(SubmitterStore& store,
                                                         const anchord::v1::LocateRequest& req,
                                                         absl::Time now);

// StatusService.SummarizeJob: the job's rows counted by state, and the paused queues.
absl::StatusOr<anchord::v1::SummarizeJobResponse> SummarizeJob(
    SubmitterStore& store, const anchord::v1::SummarizeJobRequest& req);

// SubmitterService.ResumeQueue: lifts the pause of req.provider (every provider when empty),
// through `engine` when there is one (it also forgets the pause and wakes its workers), else in
// the store. `known` are the configured provider names.
absl::StatusOr<anchord::v1::ResumeQueueResponse> ResumeQueue(
    SubmitterStore& store, Engine* engine, const std::vector<std::string>& known,
    const anchord::v1::ResumeQueueRequest& req);

// SubmitterService.Reanchor (internal port): the digest is queued again with req.provider, with
// the same validation and the same durable intake as one Submit item; returns once the row is
// committed. Blocks the calling (pool) thread until the intake thread answers.
absl::StatusOr<anchord::v1::ReanchorResponse> Reanchor(SubmitterCore& core,
                                                       const anchord::v1::ReanchorRequest& req);

}  // namespace anchord::submitter
