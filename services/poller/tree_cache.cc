#include "services/poller/tree_cache.h"

namespace anchord::poller {

absl::StatusOr<std::shared_ptr<const merkle::SealedBatch>> TreeCache::Get(const Digest& root,
                                                                          const Loader& load) {
  {
    absl::MutexLock lock(&mu_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->first == root) {
        auto hit = std::move(*it);
        entries_.erase(it);
        entries_.push_back(std::move(hit));
        return entries_.back().second;
      }
    }
  }
  // Read and decoded outside the lock: two readers of one new root may both decode it (the same
  // result), but readers of other roots never wait for a decode.
  absl::StatusOr<std::optional<std::string>> leaves = load();
  if (!leaves.ok()) return leaves.status();
  if (!leaves->has_value()) return std::shared_ptr<const merkle::SealedBatch>();
  absl::StatusOr<std::shared_ptr<const merkle::SealedBatch>> tree =
      merkle::SealedBatch::Decode(**leaves, std::string(root.bytes()));
  if (!tree.ok()) return tree.status();
  absl::MutexLock lock(&mu_);
  for (const auto& e : entries_) {
    if (e.first == root) return e.second;
  }
  if (capacity_ == 0) return *tree;
  if (entries_.size() >= capacity_) entries_.erase(entries_.begin());
  entries_.emplace_back(root, *tree);
  return *tree;
}

}  // namespace anchord::poller
