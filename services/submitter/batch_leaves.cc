#include "services/submitter/batch_leaves.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "libs/common/status_macros.h"

namespace anchord::submitter {

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
  Keep(batch_id, *batch);
  return batch;
}

void LeafDetails::Keep(int64_t batch_id, std::shared_ptr<const SealedBatch> batch) {
  absl::MutexLock lock(&mu_);
  for (const auto& [id, cached] : cache_) {
    if (id == batch_id) return;
  }
  cache_.emplace_front(batch_id, std::move(batch));
  if (cache_.size() > kCached) cache_.pop_back();
}

void LeafDetails::Sealed(int64_t batch_id, const NewBatch& b) {
  if (b.sealed == nullptr || b.sealed->size() != b.leaf_ids.size() ||
      b.sealed->tree().root().raw() != b.root) {
    return;
  }
  Keep(batch_id, b.sealed);
}

absl::StatusOr<HandoffBatch> LeafDetails::ForHandoff(int64_t batch_id, const Source& source) {
  HandoffBatch out;
  ANCHORD_ASSIGN_OR_RETURN(out.leaves, Tree(batch_id, source));
  ANCHORD_ASSIGN_OR_RETURN(out.root, source.root(batch_id));
  return out;
}

absl::Status LeafDetails::Fill(std::vector<Submission>* rows, const Source& source) {
  // Root rows read once per batch and call.
  std::map<int64_t, std::optional<Submission>> roots;
  for (Submission& row : *rows) {
    // A thin row (SubmitterStore::PendingHandoffForBatchForm) is read for the batch form only.
    if (row.mode != RowMode::kLeaf || row.batch_id == 0 || row.thin) continue;
    // A leaf sealed by an older release carries its path (and maybe a copy of the record).
    if (row.merkle_path.empty()) {
      absl::StatusOr<std::shared_ptr<const SealedBatch>> batch = Tree(row.batch_id, source);
      if (!batch.ok()) return batch.status();
      if (*batch != nullptr) {
        std::optional<size_t> i = (*batch)->IndexOf(row.digest.bytes());
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
