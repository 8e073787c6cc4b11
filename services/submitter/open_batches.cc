#include "services/submitter/open_batches.h"

#include "libs/common/status_macros.h"

namespace anchord::submitter {

absl::StatusOr<int64_t> OpenBatchTally::Take(const std::string& provider) {
  auto it = current_.find(provider);
  if (it == current_.end()) {
    ANCHORD_ASSIGN_OR_RETURN(Open found, FindOpen(provider));
    it = current_.emplace(provider, found).first;
  }
  // A full batch (or none) is followed by a new one, never filled again: the batcher seals the
  // oldest open batch first, and a batch of more than max_leaves would not be sealed as it is.
  if (it->second.id == 0 || it->second.count >= max_leaves_) {
    if (it->second.id != 0) filled_.push_back(it->second);
    ANCHORD_ASSIGN_OR_RETURN(const int64_t id, OpenNew(provider));
    it->second = Open{id, 0, 0};
  }
  ++it->second.count;
  return it->second.id;
}

void OpenBatchTally::PutBack(int64_t batch_id) {
  for (auto& [provider, o] : current_) {
    if (o.id == batch_id) {
      --o.count;
      return;
    }
  }
  for (Open& o : filled_) {
    if (o.id == batch_id) {
      --o.count;
      return;
    }
  }
}

std::vector<std::pair<int64_t, int64_t>> OpenBatchTally::Added() const {
  std::vector<std::pair<int64_t, int64_t>> out;
  auto note = [&](const Open& o) {
    if (o.count != o.stored) out.emplace_back(o.id, o.count - o.stored);
  };
  for (const Open& o : filled_) note(o);
  for (const auto& [provider, o] : current_) note(o);
  return out;
}

}  // namespace anchord::submitter
