// The decoded Merkle trees of the last few roots read, shared by both poller stores'
// PollerStore::TreeOf. A batch's leaves are read one after another (their .ots downloads, the
// events of a root's confirmation), and rebuilding a 10,000-leaf tree for each would cost more
// than reading it: a handful of trees (a few MB each at 10,000 leaves: the digests, nonces, the
// tree's inner hashes and a digest index) serves them all.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "libs/digest/digest.h"
#include "libs/merkle/sealed_batch.h"

namespace anchord::poller {

class TreeCache {
 public:
  // Reads a root's stored leaves: nullopt when none are stored.
  using Loader = std::function<absl::StatusOr<std::optional<std::string>>()>;

  explicit TreeCache(size_t capacity = 4) : capacity_(capacity) {}

  // The tree of `root`, from the cache or else loaded and decoded (SealedBatch::Decode checks it
  // leads to `root`: FAILED_PRECONDITION otherwise, and nothing is cached). nullptr when `load`
  // finds nothing stored.
  absl::StatusOr<std::shared_ptr<const merkle::SealedBatch>> Get(const Digest& root,
                                                                 const Loader& load)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const size_t capacity_;
  absl::Mutex mu_;
  // Most recently used last; a linear scan over a handful of entries.
  std::vector<std::pair<Digest, std::shared_ptr<const merkle::SealedBatch>>> entries_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace anchord::poller
