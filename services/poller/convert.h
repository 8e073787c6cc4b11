// Conversions between the store's rows and the API messages, and the validation of a hand-off.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "anchord/v1/poller.pb.h"
#include "libs/merkle/sealed_batch.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

// The API message of a stored proof (times and files through libs/rpc/messages.h).
anchord::v1::Proof ToProto(const ProofRow& row);

// Validates a TrackRequest; INVALID_ARGUMENT whose message starts with the offending field
// ("proof.digest: ..."). On success returns the store input (SUBMITTED kept; the store maps it).
absl::StatusOr<TrackInput> ValidateTrackRequest(const anchord::v1::TrackRequest& req);

// The most recently decoded Merkle trees of TrackBatch requests. A sender splits a large batch's
// leaves over several requests, each carrying the whole tree, and rebuilding a tree costs ~2
// SHA-256 per leaf: with the cache the tree is rebuilt once per batch, not once per request.
// Thread-safe (the streams of every peer share one).
class BatchTreeCache {
 public:
  explicit BatchTreeCache(size_t capacity = 4) : capacity_(capacity) {}
  // The batch decoded from `encoded`, checked against `root` (32 bytes); a cached batch is reused
  // only when its encoded bytes are those given. Errors as merkle::SealedBatch::Decode.
  absl::StatusOr<std::shared_ptr<const merkle::SealedBatch>> Decode(const std::string& encoded,
                                                                    const std::string& root)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const size_t capacity_;
  absl::Mutex mu_;
  std::deque<std::shared_ptr<const merkle::SealedBatch>> recent_
      ABSL_GUARDED_BY(mu_);  // newest first
};

// Most leaves (and most files per leaf) one TrackBatch request may carry, and the largest tree.
inline constexpr int kMaxBatchLeaves = 65536;

// Validates a TrackBatchRequest (INVALID_ARGUMENT naming the field as in the request:
// "track.proof.digest: ...", "merkle_tree: ...", "leaves[3].index: ...") and expands it into the
// store inputs of one Track call, appended to *out: first the root's, as ValidateTrackRequest
// makes it (with TrackInput::batch set when merkle_tree is), then one per leaf, with the root's
// provider record. Appended where the call reads them rather than moved there: a TrackInput is a
// large struct, and a window holds thousands. On error nothing is appended.
absl::Status AppendTrackBatchInputs(const anchord::v1::TrackBatchRequest& req,
                                    BatchTreeCache* trees, std::vector<TrackInput>* out);

// The event message for `row`.
anchord::v1::WatchResponse MakeEvent(anchord::v1::ProofEventType type, const ProofRow& row,
                                     absl::Time now);
// The same, taking the row's strings and files (left empty) instead of copying them.
anchord::v1::WatchResponse MakeEvent(anchord::v1::ProofEventType type, ProofRow&& row,
                                     absl::Time now);
// The brief form of MakeEvent's event (WatchRequest.brief): its type and time, and of the proof
// only digest, provider, state and stalled.
anchord::v1::WatchResponse BriefEvent(anchord::v1::ProofEventType type, const ProofRow& row,
                                      absl::Time now);
// The grouped form (WatchRequest.grouped) of the brief events of several proofs: `digests` their
// 32-byte digests one after the other, `shared` one of them (its provider, state and stalled are
// all of theirs).
anchord::v1::WatchResponse GroupEvent(anchord::v1::ProofEventType type, const ProofRow& shared,
                                      std::string digests, absl::Time now);

}  // namespace anchord::poller
