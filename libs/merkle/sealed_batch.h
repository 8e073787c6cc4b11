// A sealed Merkle batch's leaves in their stored form, shared by the submitter (which stores them
// once per batch row instead of a path per leaf row) and the poller (which receives them with a
// batch's hand-off, PollerService.TrackBatch, and stores them once per root).
//
// The form: every leaf's file digest (32 bytes each), then every nonce (16 bytes each), in tree
// order: 48 bytes per leaf. Everything a leaf needs (nonce, path, root) is derived by rebuilding
// the tree (merkle::Tree, the same tree the batcher built, so a derived path is byte-identical to
// the one it would have written), and a decoded batch is checked against its root before use.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "libs/merkle/merkle.h"

namespace anchord::merkle {

// The stored form of a batch's leaves. INVALID_ARGUMENT on a count mismatch or a digest or nonce
// of the wrong size.
absl::StatusOr<std::string> EncodeBatchLeaves(const std::vector<std::string>& digests,
                                              const std::vector<std::string>& nonces);

// One sealed batch's tree, rebuilt from its stored leaves. Immutable; safe to share.
class SealedBatch {
 public:
  // FAILED_PRECONDITION when `leaves` is malformed or does not lead to `root` (32 bytes): a batch
  // that does not match its root is never used to build a proof.
  static absl::StatusOr<std::shared_ptr<const SealedBatch>> Decode(const std::string& leaves,
                                                                   const std::string& root);

  // The leaf's position in the tree; nullopt when `digest` is not a leaf of this batch.
  std::optional<size_t> IndexOf(const std::string& digest) const;
  // The file digest of leaf i (32 bytes); empty when i >= size().
  absl::string_view digest(size_t i) const;
  size_t size() const { return tree_.size(); }
  const Tree& tree() const { return tree_; }
  // The stored form this batch was decoded from.
  const std::string& encoded() const { return encoded_; }

 private:
  SealedBatch(Tree tree, std::string encoded)
      : tree_(std::move(tree)), encoded_(std::move(encoded)) {}
  Tree tree_;
  std::string encoded_;
  absl::flat_hash_map<std::string, size_t> index_;  // digest -> position
};

}  // namespace anchord::merkle
