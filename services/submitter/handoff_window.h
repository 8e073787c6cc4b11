// How one hand-off window (PendingHandoff's rows and their files) becomes requests to the poller.
//
// Per-row form (PollerService.Track, and a poller of an older release): one request per row, a
// Merkle leaf carrying its own merkle_path (derived per leaf from the batch's stored leaves).
//
// Batch form (PollerService.TrackBatch): ordinary and root rows still go one per request (just
// `track`), but the SUBMITTED leaves of a batch go together: one request per group of the window's
// leaves of a batch, carrying the root's Track request (as the root row itself is handed off), the
// batch's stored leaves verbatim as merkle_tree, and each leaf as {index, files}. When the root row
// is in the same window it rides with its batch's first request instead of going alone. The
// batch's tree (48 B per leaf) is sent once per request instead of a ~450-byte path per leaf.
// Leaves go the per-row way (as a TrackBatchRequest with just `track` carrying merkle_path, which
// the contract allows) when the batch form cannot carry them: a batch sealed by an older release
// (no stored leaves), a batch of more than 65,536 leaves, a FAILED leaf (it carries its own
// failure), and a leaf whose root row is not SUBMITTED (which should not happen: leaves become
// SUBMITTED in the root's transaction; sending it as before is always correct). The window's rows
// come from SubmitterStore::PendingHandoffForBatchForm in the batch form: a thin leaf that goes the
// per-row way is read whole first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "anchord/v1/poller.pb.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

// One request and the rows ({row id, change seq}) its acknowledgement marks handed off.
struct HandoffRequest {
  anchord::v1::TrackBatchRequest request;
  std::vector<std::pair<int64_t, int64_t>> rows;
  bool leaf_group = false;  // a batch's leaves in the batch form
};

struct HandoffWindowOptions {
  // Leaves in the batch form (TrackBatch); false: every row in the per-row form.
  bool batch_form = true;
  // A batch's leaves are split over requests of at most this many leaves and about this many
  // bytes, well under the poller's message limit (8 MiB by default; a whole 65,536-leaf tree is
  // 3 MiB).
  int max_leaves_per_request = 4096;
  size_t max_request_bytes = size_t{4} << 20;
  // Rows (ids) sent the per-row way whatever they are: the poller refused their batch-form
  // request (one bad field refuses all of its rows, which one by one may be accepted).
  const absl::flat_hash_set<int64_t>* one_by_one = nullptr;
};

// The largest batch the batch form carries (the contract's limit on merkle_tree).
inline constexpr size_t kMaxBatchFormLeaves = 65536;

// Builds the Track request a row is handed off with (per-row form; a leaf carries its path).
void BuildTrackRequest(const Submission& row, const std::vector<FileRef>& files,
                       anchord::v1::TrackRequest* req);

// Calls `send` with each request of the window (rows in PendingHandoff's order, `files` per row),
// in order: per-row requests first, then the batch-form groups. The request passed is reused
// between calls. Returns false as soon as `send` does (the stream broke). `store` is asked for
// each batch of the window (BatchForHandoff); a batch it cannot give is sent the per-row way.
bool SendHandoffWindow(SubmitterStore* store, const std::vector<Submission>& rows,
                       const std::vector<std::vector<FileRef>>& files,
                       const HandoffWindowOptions& options,
                       const std::function<bool(const HandoffRequest&)>& send);

}  // namespace anchord::submitter
