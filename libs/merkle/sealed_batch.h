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

#include "absl/base/call_once.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/merkle/merkle.h"

namespace anchord::merkle {

// The stored form of a batch's leaves. INVALID_ARGUMENT on a count mismatch or a digest or nonce
// of the wrong size. A leaf's digest as raw bytes (a store's column) or as a Digest (the
// batcher's own leaves, 32 bytes by type): the two instantiations in sealed_batch.cc.
template <typename D>
absl::StatusOr<std::string> EncodeBatchLeaves(const std::vector<D>& digests,
                                              const std::vector<std::string>& nonces);

// One sealed batch's tree, rebuilt from its stored leaves. Immutable; safe to share.
class SealedBatch {
 public:
  // FAILED_PRECONDITION when `leaves` is malformed or does not lead to `root` (32 bytes): a batch
  // that does not match its root is never used to build a proof.
  static absl::StatusOr<std::shared_ptr<const SealedBatch>> Decode(const std::string& leaves,
                                                                   const std::string& root);
  // A new batch of `digests` (32 bytes each) and `nonces` (16 bytes each, one per digest), as the
  // batcher seals it: the tree it builds is the one Decode would rebuild from the stored form, so
  // the process that sealed a batch can keep it instead of rebuilding it. INVALID_ARGUMENT as
  // EncodeBatchLeaves.
  // Digests as std::string or Digest (EncodeBatchLeaves).
  template <typename D>
  static absl::StatusOr<std::shared_ptr<const SealedBatch>> Build(
      const std::vector<D>& digests, const std::vector<std::string>& nonces);

  SealedBatch(const SealedBatch&) = delete;  // index_ points into encoded_
  SealedBatch& operator=(const SealedBatch&) = delete;

  // The leaf's position in the tree; nullopt when `digest` is not a leaf of this batch. The first
  // call builds the index (the submitter's hand-off asks for every leaf; the poller, which only
  // reads leaves by position, never pays for it).
  std::optional<size_t> IndexOf(absl::string_view digest) const;
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
  const std::string encoded_;
  // digest -> position; the keys are views into encoded_, which never changes or moves.
  mutable absl::once_flag index_once_;
  mutable absl::flat_hash_map<absl::string_view, size_t> index_;
};

}  // namespace anchord::merkle
