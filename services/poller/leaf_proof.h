// The .ots a caller downloads for a proof. For an ordinary proof it is the stored evidence; for a
// file anchored through a Merkle batch it is built on demand: the file's path to the root joined
// to the root's stored .ots (libs/merkle), a standalone proof that verifies with nothing else.
// Where the root's provider gives no .ots (ProofLedger), the file gets its path and the provider's
// record of the root (certificate URL, else proof id) once the root is confirmed.
#pragma once

#include <optional>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

// nullopt when nothing can be offered yet (or the proof is unknown). `provider` may be empty
// (the oldest proof of the digest). `without_ots` names the providers that never give an .ots:
// only their leaves get a path-only proof; the others wait for the root's .ots.
// The path bytes of a Merkle leaf `leaf` (is_leaf()): its stored merkle_path, or for a leaf
// stored in the batch form (leaf_index >= 0) the path derived from its root's stored tree
// (PollerStore::TreeOf), byte-identical to the one the batcher built. FAILED_PRECONDITION when
// the tree is missing or its leaf at leaf_index is not the leaf's digest: a proof is never built
// from a tree that does not hold the file.
absl::StatusOr<std::string> LeafPath(PollerStore* store, const ProofRow& leaf);

absl::StatusOr<std::optional<std::string>> LoadProofOts(
    PollerStore* store, const Digest& digest, const std::string& provider,
    const std::set<std::string>& without_ots = {});

}  // namespace anchord::poller
