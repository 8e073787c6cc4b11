#include "services/anchorctl/archive_state.h"

#include <algorithm>
#include <utility>

#include "libs/common/validate.h"

namespace anchord::anchorctl {

using namespace anchord::v1;

void ArchiveState::OnHashResult(const HashTreeResponse& r) {
  absl::MutexLock lock(&mu_);
  counts_.files_seen++;
  counts_.files_total = std::max(counts_.files_total, r.files_total());
  counts_.walk_complete = r.walk_complete();
  if (r.status().code() != 0 || r.digest().size() != kDigestBytes) {
    counts_.problems++;
    if (problems_.size() < 10000) {
      problems_.push_back({r.path(), r.status().reason(), r.status().message()});
    }
    return;
  }
  counts_.hashed++;
  if (r.unchanged()) counts_.unchanged++;
  if (!r.duplicate_of().empty()) counts_.duplicates++;
  if (r.unchanged() || !r.duplicate_of().empty() || r.state() > DIGEST_STATE_QUEUED) {
    known_before_.insert(r.digest());
  }
  RaiseLocked(r.digest(), std::max<int>(r.state(), DIGEST_STATE_HASHED), /*add=*/true);
  auto early = early_.find(r.digest());
  if (early == early_.end()) return;
  std::map<std::string, int> seen = std::move(early->second);
  early_.erase(early);
  for (const auto& [provider, state] : seen) RaiseKnownLocked(r.digest(), state, provider);
}

void ArchiveState::Raise(const std::string& digest, int state, const std::string& provider) {
  absl::MutexLock lock(&mu_);
  if (states_.find(digest) == states_.end()) {
    if (hashing_) {
      int& s = early_[digest][provider];
      s = std::max(s, state);
    }
    return;
  }
  RaiseKnownLocked(digest, state, provider);
}

void ArchiveState::EndHashing() {
  absl::MutexLock lock(&mu_);
  hashing_ = false;
  early_.clear();
}

void ArchiveState::RaiseKnownLocked(const std::string& digest, int state,
                                    const std::string& provider) {
  if (providers_.size() <= 1) {
    RaiseLocked(digest, state, /*add=*/false);
    return;
  }
  if (std::find(providers_.begin(), providers_.end(), provider) == providers_.end()) return;
  int& mine = per_provider_[digest][provider];
  mine = std::max(mine, state);
  const auto& seen = per_provider_[digest];
  if (seen.size() < providers_.size()) return;  // a provider has not accepted it yet
  int least = DIGEST_STATE_FAILED;
  for (const auto& [p, st] : seen) least = std::min(least, st);
  RaiseLocked(digest, least, /*add=*/false);
}

std::vector<std::string> ArchiveState::NotDone(bool only_known_before) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  if (only_known_before) {
    for (const std::string& d : known_before_) {
      auto it = states_.find(d);
      if (it != states_.end() && !Done(it->second)) out.push_back(d);
    }
    return out;
  }
  for (const auto& [d, s] : states_) {
    if (!Done(s)) out.push_back(d);
  }
  return out;
}

bool ArchiveState::AllDone() {
  absl::MutexLock lock(&mu_);
  return counts_.wait_done == counts_.distinct;
}

void ArchiveState::SetWaiting() {
  absl::MutexLock lock(&mu_);
  counts_.waiting = true;
}

void ArchiveState::SetPaused(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  counts_.paused = reason;
}

ProgressCounts ArchiveState::Snapshot() {
  absl::MutexLock lock(&mu_);
  return counts_;
}

std::vector<Problem> ArchiveState::problems() {
  absl::MutexLock lock(&mu_);
  return problems_;
}

void ArchiveState::Count(int s, int delta) {
  if (s == DIGEST_STATE_HASHED || s == DIGEST_STATE_QUEUED || s == DIGEST_STATE_SUBMITTED)
    counts_.queued += delta;
  if (s == DIGEST_STATE_PENDING) counts_.pending += delta;
  if (s == DIGEST_STATE_CONFIRMED) counts_.confirmed += delta;
  if (s == DIGEST_STATE_FAILED) counts_.failed += delta;
  if (Done(s)) counts_.wait_done += delta;
}

void ArchiveState::RaiseLocked(const std::string& digest, int state, bool add) {
  auto it = states_.find(digest);
  if (it == states_.end()) {
    if (!add) return;
    states_.emplace(digest, state);
    counts_.distinct++;
    Count(state, +1);
    return;
  }
  if (state <= it->second) return;
  Count(it->second, -1);
  it->second = state;
  Count(state, +1);
}

}  // namespace anchord::anchorctl
