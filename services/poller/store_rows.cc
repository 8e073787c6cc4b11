#include "services/poller/store_rows.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace anchord::poller {

int64_t ToDb(absl::Time t) {
  if (t == absl::InfinitePast()) return 0;
  if (t == absl::InfiniteFuture()) return std::numeric_limits<int64_t>::max();
  return absl::ToUnixMicros(t);
}

absl::Time FromDb(int64_t micros) {
  return micros == 0 ? absl::InfinitePast() : absl::FromUnixMicros(micros);
}

DigestState DigestStateFromDb(int64_t v) {
  const int state = static_cast<int>(v);
  return anchord::v1::DigestState_IsValid(state) ? static_cast<DigestState>(state)
                                                 : anchord::v1::DIGEST_STATE_PENDING;
}

absl::StatusOr<BatchForm> BatchFormOf(const TrackInput& in) {
  BatchForm out;
  if (in.batch == nullptr) return out;
  const ProofRow& p = in.proof;
  const merkle::SealedBatch& batch = *in.batch;
  if (p.leaf_count > 0) {
    if (batch.tree().root() != p.digest) {
      return absl::InvalidArgumentError("batch: does not lead to proof.digest (the root)");
    }
    out.tree_root = p.digest.raw();
    return out;
  }
  if (p.merkle_root.empty() || p.leaf_index < 0) return out;
  if (batch.tree().root().bytes() != p.merkle_root) {
    return absl::InvalidArgumentError("batch: does not lead to proof.merkle_root");
  }
  if (static_cast<uint64_t>(p.leaf_index) >= batch.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "proof.leaf_index: ", p.leaf_index, " is beyond the batch's ", batch.size(), " leaves"));
  }
  const size_t i = static_cast<size_t>(p.leaf_index);
  if (batch.digest(i) != p.digest.bytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("proof.leaf_index: leaf ", i, " of the batch is not proof.digest"));
  }
  out.leaf_index = p.leaf_index;
  out.path_size = static_cast<int64_t>(batch.tree().PathSize(i));
  out.tree_root = p.merkle_root;
  return out;
}

absl::StatusOr<std::vector<ProofRow>> SettleRoots(PollerStore& store, std::vector<ProofRow> found,
                                                  std::vector<ProofRow> behind,
                                                  const std::string& provider, absl::Time now,
                                                  int max_roots) {
  for (ProofRow& r : behind) {
    const bool seen =
        std::any_of(found.begin(), found.end(), [&](const ProofRow& o) { return o.seq == r.seq; });
    if (!seen) found.push_back(std::move(r));
  }
  std::sort(found.begin(), found.end(),
            [](const ProofRow& a, const ProofRow& b) { return a.seq < b.seq; });
  if (found.size() > static_cast<size_t>(std::max(max_roots, 0))) {
    found.resize(static_cast<size_t>(std::max(max_roots, 0)));
  }
  std::vector<ProofRow> out;
  for (const ProofRow& root : found) {
    auto changed = store.PropagateToLeaves(root.digest, provider, now);
    if (!changed.ok()) return changed.status();
    for (ProofRow& leaf : *changed) out.push_back(std::move(leaf));
  }
  return out;
}

}  // namespace anchord::poller
