// A sealed Merkle batch's leaves, stored once in the batch's row instead of per leaf row.
//
// A leaf row used to carry its nonce, its path (up to ~700 bytes) and the root's record, each
// written when the batch was sealed and again when the root was accepted: most of the submitter's
// disk writes per file in Merkle mode. The batch row now holds the batch's leaves in tree order
// (every digest, then every nonce: 48 bytes per leaf, written once), and a leaf row only its
// batch id and state. What a reader of a leaf row needs (nonce, path, root, and once the root was
// accepted the root's record) is derived here: the tree is rebuilt from the stored leaves (the
// same libs/merkle tree the batcher built, so the path is byte-identical to the one it would have
// stored) and checked against the batch's stored root.
//
// Rows written by older releases (path and record stored per leaf) are returned as stored.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "libs/merkle/merkle.h"
#include "libs/merkle/sealed_batch.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

using merkle::EncodeBatchLeaves;
using merkle::SealedBatch;

// What a store reads for one batch: its stored leaves (empty for a batch sealed by an older
// release, whose leaf rows carry their own paths) and root.
struct StoredBatch {
  std::string leaves;
  std::string root;
};

// Fills leaf rows with what is stored once per batch. Each store owns one; thread-safe. Keeps the
// few most recently used trees, so the hand-off, which reads a batch's leaves in windows, rebuilds
// each tree once.
class LeafDetails {
 public:
  struct Source {
    // The batch row (NOT_FOUND when there is none).
    std::function<absl::StatusOr<StoredBatch>(int64_t batch_id)> batch;
    // The batch's root row (nullopt when there is none).
    std::function<absl::StatusOr<std::optional<Submission>>(int64_t batch_id)> root;
  };

  // For every leaf row of a sealed batch: without a stored path, sets nonce, merkle_path and
  // merkle_root; SUBMITTED without a stored record (also a leaf sealed by an older release whose
  // root was accepted by this one), the root's record (not its evidence) and request id, as the
  // root's acceptance gave them. Other rows are left as they are.
  absl::Status Fill(std::vector<Submission>* rows, const Source& source) ABSL_LOCKS_EXCLUDED(mu_);

  // SubmitterStore::BatchForHandoff: the batch's decoded leaves (from the same few cached trees
  // Fill just used for the window) and its root row as stored.
  absl::StatusOr<HandoffBatch> ForHandoff(int64_t batch_id, const Source& source)
      ABSL_LOCKS_EXCLUDED(mu_);

  // After the commit of batch `batch_id` sealed from `b`: keeps b.sealed as the batch's tree when
  // it is the batch's (its root and leaf count), so the batch's first hand-off window finds it.
  void Sealed(int64_t batch_id, const NewBatch& b) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::StatusOr<std::shared_ptr<const SealedBatch>> Tree(int64_t batch_id, const Source& source)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Keep(int64_t batch_id, std::shared_ptr<const SealedBatch> batch) ABSL_LOCKS_EXCLUDED(mu_);

  static constexpr size_t kCached = 4;
  absl::Mutex mu_;
  std::deque<std::pair<int64_t, std::shared_ptr<const SealedBatch>>> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace anchord::submitter
