#include "services/submitter/handoff_window.h"

#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/merkle/sealed_batch.h"
#include "libs/rpc/messages.h"
#include "services/submitter/handoff.h"

namespace anchord::submitter {
namespace {

// The window's SUBMITTED leaves of one batch that go in the batch form.
struct LeafGroup {
  HandoffBatch batch;
  std::vector<FileRef> root_files;
  // The root row's version when the root row is in the window (it rides with the first request).
  std::optional<std::pair<int64_t, int64_t>> root_in_window;
  std::vector<std::pair<size_t, uint32_t>> leaves;  // {row position in the window, leaf index}
};

// Whether the batch form can carry the batch's leaves; reads the root row's files.
bool UsableForBatchForm(SubmitterStore* store, int64_t batch_id, LeafGroup* group) {
  absl::StatusOr<HandoffBatch> b = store->BatchForHandoff(batch_id);
  if (!b.ok()) {
    // A store without the read (UNIMPLEMENTED) or a transient error: the leaves go with their
    // paths (a thin leaf is read whole first).
    if (!absl::IsUnimplemented(b.status())) {
      ANCHORD_LOG(Warning) << "hand-off: batch " << batch_id << ": " << b.status()
                           << "; its leaves go one by one";
    }
    return false;
  }
  if (b->leaves == nullptr || b->leaves->size() > kMaxBatchFormLeaves || !b->root.has_value() ||
      b->root->state != SubState::kSubmitted) {
    return false;
  }
  absl::StatusOr<std::vector<std::vector<FileRef>>> files = store->RefsOfRows({*b->root});
  if (!files.ok() || files->size() != 1) {
    ANCHORD_LOG(Warning) << "hand-off: files of the root of batch " << batch_id << ": "
                         << files.status() << "; its leaves go one by one";
    return false;
  }
  group->root_files = std::move(files->front());
  group->batch = *std::move(b);
  return true;
}

// A thin row (SubmitterStore::PendingHandoffForBatchForm) read whole, as PendingHandoff gives it,
// to be sent the per-row way.
absl::StatusOr<Submission> ReadWhole(SubmitterStore* store, const Submission& thin) {
  absl::StatusOr<std::vector<Submission>> rows = store->GetByDigest(thin.digest);
  if (!rows.ok()) return rows.status();
  for (Submission& row : *rows) {
    if (row.id == thin.id) return std::move(row);
  }
  return absl::NotFoundError(absl::StrCat("no row ", thin.id, " of its digest"));
}

// Sends one group's leaves in as many requests as the size limits ask for.
bool SendGroup(int64_t batch_id, const LeafGroup& group, const std::vector<Submission>& rows,
               const std::vector<std::vector<FileRef>>& files, const HandoffWindowOptions& options,
               HandoffRequest& out, const std::function<bool(const HandoffRequest&)>& send) {
  const Submission& root = *group.batch.root;
  const std::string& tree = group.batch.leaves->encoded();
  bool first = true;
  size_t next = 0;
  anchord::v1::MerkleLeaf leaf;
  while (next < group.leaves.size()) {
    out.request.Clear();
    out.rows.clear();
    out.leaf_group = true;
    const size_t first_pos = group.leaves[next].first;
    BuildTrackRequest(root, group.root_files, out.request.mutable_track());
    // Unique on the stream: a leaf row is in one request of the window.
    out.request.mutable_track()->set_request_id(
        absl::StrCat("b", batch_id, "-", rows[first_pos].id, "-", rows[first_pos].change_seq));
    out.request.set_merkle_tree(tree);
    if (first && group.root_in_window.has_value()) out.rows.push_back(*group.root_in_window);
    first = false;
    size_t bytes = out.request.ByteSizeLong();
    while (next < group.leaves.size() &&
           out.request.leaves_size() < options.max_leaves_per_request) {
      const auto& [pos, index] = group.leaves[next];
      leaf.Clear();
      leaf.set_index(index);
      for (const FileRef& f : files[pos]) rpc::SetFileMetadata(f, leaf.add_files());
      const size_t leaf_bytes = leaf.ByteSizeLong() + 8;  // + tag and length
      if (out.request.leaves_size() > 0 && bytes + leaf_bytes > options.max_request_bytes) break;
      bytes += leaf_bytes;
      out.request.add_leaves()->Swap(&leaf);
      out.rows.emplace_back(rows[pos].id, rows[pos].change_seq);
      ++next;
    }
    if (!send(out)) return false;
  }
  return true;
}

}  // namespace

void BuildTrackRequest(const Submission& row, const std::vector<FileRef>& files,
                       anchord::v1::TrackRequest* req) {
  req->set_request_id(absl::StrCat("s", row.id, "-", row.change_seq));
  *req->mutable_proof() = BuildProof(row, files);
  req->set_evidence(row.record.evidence);
  if (row.mode == RowMode::kLeaf) req->set_merkle_path(row.merkle_path);
  req->set_fallback_provider(row.fallback_provider);
}

bool SendHandoffWindow(SubmitterStore* store, const std::vector<Submission>& rows,
                       const std::vector<std::vector<FileRef>>& files,
                       const HandoffWindowOptions& options,
                       const std::function<bool(const HandoffRequest&)>& send) {
  // Which leaves go in the batch form, grouped by batch (in batch id order).
  std::map<int64_t, LeafGroup> groups;
  std::map<int64_t, bool> usable;
  std::vector<bool> grouped(rows.size(), false);
  auto one_by_one = [&](const Submission& row) {
    return options.one_by_one != nullptr && options.one_by_one->contains(row.id);
  };
  if (options.batch_form) {
    for (size_t i = 0; i < rows.size(); ++i) {
      const Submission& row = rows[i];
      if (row.mode != RowMode::kLeaf || row.batch_id == 0 || row.state != SubState::kSubmitted ||
          one_by_one(row)) {
        continue;
      }
      auto u = usable.find(row.batch_id);
      if (u == usable.end()) {
        LeafGroup g;
        bool ok = UsableForBatchForm(store, row.batch_id, &g);
        u = usable.emplace(row.batch_id, ok).first;
        if (ok) groups.emplace(row.batch_id, std::move(g));
      }
      if (!u->second) continue;
      LeafGroup& g = groups[row.batch_id];
      std::optional<size_t> index = g.batch.leaves->IndexOf(row.digest.bytes());
      if (!index.has_value()) continue;  // not this batch's leaf: its path says what it is
      g.leaves.emplace_back(i, static_cast<uint32_t>(*index));
      grouped[i] = true;
    }
    // A root row in the window rides with its batch's first request (the same row version).
    for (size_t i = 0; i < rows.size(); ++i) {
      const Submission& row = rows[i];
      if (row.mode != RowMode::kRoot || row.state != SubState::kSubmitted || one_by_one(row)) {
        continue;
      }
      auto g = groups.find(row.batch_id);
      if (g == groups.end() || g->second.leaves.empty()) continue;
      g->second.batch.root = row;
      g->second.root_files = files[i];
      g->second.root_in_window = std::make_pair(row.id, row.change_seq);
      grouped[i] = true;
    }
  }

  HandoffRequest out;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (grouped[i]) continue;
    const Submission* row = &rows[i];
    absl::StatusOr<Submission> whole;
    if (row->thin) {
      whole = ReadWhole(store, *row);
      if (!whole.ok()) {
        // Not sent and not marked: the row is read again with the next window, after the
        // stream's reconnect backoff.
        ANCHORD_LOG(Warning) << "hand-off: leaf row " << row->id << ": " << whole.status();
        return false;
      }
      row = &*whole;
    }
    out.request.Clear();
    out.rows.assign(1, {row->id, row->change_seq});
    out.leaf_group = false;
    BuildTrackRequest(*row, files[i], out.request.mutable_track());
    if (!send(out)) return false;
  }
  for (const auto& [batch_id, group] : groups) {
    if (!SendGroup(batch_id, group, rows, files, options, out, send)) return false;
  }
  return true;
}

}  // namespace anchord::submitter
