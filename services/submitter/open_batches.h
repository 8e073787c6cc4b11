// What one intake transaction adds to the open Merkle batches (sqlite_batches.h, pg_batches.h):
// which open batch each new leaf goes into, and how many leaves each batch gained. A batch holds
// at most `max_leaves` (the batcher's --merkle-max-leaves): a full one stays open for the
// batcher, and the next leaf opens another. Each store finds and opens batches its own way and
// writes the counts before its commit.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace anchord::submitter {

class OpenBatchTally {
 public:
  explicit OpenBatchTally(int64_t max_leaves) : max_leaves_(max_leaves < 1 ? 1 : max_leaves) {}
  virtual ~OpenBatchTally() = default;

  // The batch of a new leaf of `provider`. Counted at once: PutBack when it is not stored.
  absl::StatusOr<int64_t> Take(const std::string& provider);
  void PutBack(int64_t batch_id);

 protected:
  struct Open {
    int64_t id = 0;
    int64_t count = 0;
    int64_t stored = 0;  // leaf_count as read
  };
  // The open batch of `provider` that new leaves go into, as stored (id 0: none).
  virtual absl::StatusOr<Open> FindOpen(const std::string& provider) = 0;
  // Opens a batch of `provider` (no leaves yet); its id.
  virtual absl::StatusOr<int64_t> OpenNew(const std::string& provider) = 0;
  // {batch id, leaves added} of every batch taken from whose count changed.
  std::vector<std::pair<int64_t, int64_t>> Added() const;

 private:
  const int64_t max_leaves_;
  absl::flat_hash_map<std::string, Open> current_;  // by provider
  std::vector<Open> filled_;                        // taken from and full
};

}  // namespace anchord::submitter
