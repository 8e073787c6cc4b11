#include "services/submitter/batch_leaves.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace anchord::submitter {

absl::StatusOr<std::string> EncodeBatchLeaves(const std::vector<std::string>& digests,
                                              const std::vector<std::string>& nonces) {
  if (digests.empty() || digests.size() != nonces.size()) {
    return absl::InvalidArgumentError("merkle batch: one nonce per leaf digest is needed");
  }
  std::string out;
  out.reserve(digests.size() * (merkle::kDigestSize + merkle::kNonceSize));
  for (size_t i = 0; i < digests.size(); ++i) {
    if (digests[i].size() != merkle::kDigestSize) {
      return absl::InvalidArgumentError(absl::StrCat("merkle batch: leaf ", i, " digest size"));
    }
    out += digests[i];
  }
  for (size_t i = 0; i < nonces.size(); ++i) {
    if (nonces[i].size() != merkle::kNonceSize) {
      return absl::InvalidArgumentError(absl::StrCat("merkle batch: leaf ", i, " nonce size"));
    }
    out += nonces[i];
  }
  return out;
}

absl::StatusOr<std::shared_ptr<const SealedBatch>> SealedBatch::Decode(const std::string& leaves,
                                                                       const std::string& root) {
  constexpr size_t kPerLeaf = merkle::kDigestSize + merkle::kNonceSize;
  if (leaves.empty() || leaves.size() % kPerLeaf != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("merkle batch: stored leaves of ", leaves.size(), " bytes are malformed"));
  }
  const size_t n = leaves.size() / kPerLeaf;
  const absl::string_view all(leaves);
  absl::StatusOr<merkle::Tree> tree = merkle::Tree::BuildFlat(
      all.substr(0, n * merkle::kDigestSize), all.substr(n * merkle::kDigestSize));
  if (!tree.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("merkle batch: stored leaves: ", tree.status().message()));
  }
  if (tree->root().raw() != root) {
    return absl::FailedPreconditionError("merkle batch: stored leaves do not lead to its root");
  }
  std::shared_ptr<SealedBatch> batch(new SealedBatch(*std::move(tree)));
  batch->index_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    batch->index_.emplace(std::string(all.substr(i * merkle::kDigestSize, merkle::kDigestSize)), i);
  }
  return std::shared_ptr<const SealedBatch>(std::move(batch));
}

std::optional<size_t> SealedBatch::IndexOf(const std::string& digest) const {
  auto it = index_.find(digest);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::shared_ptr<const SealedBatch>> LeafDetails::Tree(int64_t batch_id,
                                                                     const Source& source) {
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, batch] : cache_) {
      if (id == batch_id) return batch;
    }
  }
  // Built outside the lock: a tree of 10,000 leaves takes milliseconds, and two threads building
  // the same one only waste a little work.
  absl::StatusOr<StoredBatch> stored = source.batch(batch_id);
  if (!stored.ok()) return stored.status();
  if (stored->leaves.empty()) return std::shared_ptr<const SealedBatch>();
  absl::StatusOr<std::shared_ptr<const SealedBatch>> batch =
      SealedBatch::Decode(stored->leaves, stored->root);
  if (!batch.ok()) {
    return absl::Status(batch.status().code(),
                        absl::StrCat("batch ", batch_id, ": ", batch.status().message()));
  }
  absl::MutexLock lock(&mu_);
  cache_.emplace_front(batch_id, *batch);
  if (cache_.size() > kCached) cache_.pop_back();
  return batch;
}

absl::Status LeafDetails::Fill(std::vector<Submission>* rows, const Source& source) {
  // Root rows read once per batch and call.
  std::map<int64_t, std::optional<Submission>> roots;
  for (Submission& row : *rows) {
    if (row.mode != RowMode::kLeaf || row.batch_id == 0) continue;
    // A leaf sealed by an older release carries its path (and maybe a copy of the record).
    if (row.merkle_path.empty()) {
      absl::StatusOr<std::shared_ptr<const SealedBatch>> batch = Tree(row.batch_id, source);
      if (!batch.ok()) return batch.status();
      if (*batch != nullptr) {
        std::optional<size_t> i = (*batch)->IndexOf(row.digest.raw());
        if (!i.has_value()) {
          return absl::FailedPreconditionError(
              absl::StrCat("merkle batch ", row.batch_id, " does not hold leaf row ", row.id));
        }
        const merkle::Tree& tree = (*batch)->tree();
        row.nonce = std::string(tree.nonce(*i));
        row.merkle_path = tree.PathBytes(*i);
        row.merkle_root = tree.root().raw();
      }
    }
    if (row.state != SubState::kSubmitted || !row.record.proof_id.empty() ||
        !row.request_id.empty()) {
      continue;
    }
    auto it = roots.find(row.batch_id);
    if (it == roots.end()) {
      absl::StatusOr<std::optional<Submission>> root = source.root(row.batch_id);
      if (!root.ok()) return root.status();
      // Leaves keep their own evidence: the root's (a calendar answer) is not copied into each.
      if (root->has_value()) (*root)->record.evidence.clear();
      it = roots.emplace(row.batch_id, *std::move(root)).first;
    }
    if (!it->second.has_value() || it->second->state != SubState::kSubmitted) continue;
    std::string evidence = std::move(row.record.evidence);
    row.record = it->second->record;
    row.record.evidence = std::move(evidence);  // the root row carries the evidence, not its leaves
    row.request_id = it->second->request_id;
  }
  return absl::OkStatus();
}

}  // namespace anchord::submitter
