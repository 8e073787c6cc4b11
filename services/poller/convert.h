// Conversions between the store's rows and the API messages, and the validation of a hand-off.
#pragma once

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "anchord/v1/poller.pb.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

// The API message of a stored proof (times and files through libs/rpc/messages.h).
anchord::v1::Proof ToProto(const ProofRow& row);

// Validates a TrackRequest; INVALID_ARGUMENT whose message starts with the offending field
// ("proof.digest: ..."). On success returns the store input (SUBMITTED kept; the store maps it).
absl::StatusOr<TrackInput> ValidateTrackRequest(const anchord::v1::TrackRequest& req);

// The event message for `row`.
anchord::v1::WatchResponse MakeEvent(anchord::v1::ProofEventType type, const ProofRow& row,
                                     absl::Time now);

}  // namespace anchord::poller
