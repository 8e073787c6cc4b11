// Asks the submitter to anchor a stalled proof's digest with the proof's fallback provider
// (SubmitterService.Reanchor, an internal RPC: `submitter` is a channel to its internal port). The
// submitter is idempotent on (digest, provider), so asking again after a lost answer changes
// nothing.
#pragma once

#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

// OK once the submitter acknowledged the digest as durable; the error otherwise.
absl::Status RequestFallback(const std::shared_ptr<grpc::Channel>& submitter, const ProofRow& row);

}  // namespace anchord::poller
