#include "services/anchorctl/archive_state.h"

#include <algorithm>
#include <utility>

#include "libs/common/validate.h"

namespace anchord::anchorctl {

using namespace anchord::v1;

bool ArchiveState::ToKey(absl::string_view digest, Key* key) {
  if (digest.size() != kDigestBytes) return false;
  std::memcpy(key->data(), digest.data(), kDigestBytes);
  return true;
}

void ArchiveState::OnHashResult(const HashTreeResponse& r) {
  absl::MutexLock lock(&mu_);
  OnHashResultLocked(r, r.files_total(), r.walk_complete());
}

void ArchiveState::OnHashResults(const HashTreeResponse& message) {
  absl::MutexLock lock(&mu_);
  for (const HashTreeResponse& r : message.results()) {
    OnHashResultLocked(r, message.files_total(), message.walk_complete());
  }
}

void ArchiveState::OnHashResultLocked(const HashTreeResponse& r, int64_t files_total,
                                      bool walk_complete) {
  counts_.files_seen++;
  counts_.files_total = std::max(counts_.files_total, files_total);
  counts_.walk_complete = walk_complete;
  Key key;
  if (r.status().code() != 0 || !ToKey(r.digest(), &key)) {
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
    known_before_.insert(key);
  }
  RaiseLocked(key, std::max<int>(r.state(), DIGEST_STATE_HASHED), /*add=*/true);
  if (early_.empty()) return;
  auto early = early_.find(key);
  if (early == early_.end()) return;
  std::map<std::string, int> seen = std::move(early->second);
  early_.erase(early);
  for (const auto& [provider, state] : seen) RaiseKnownLocked(key, state, provider);
}

void ArchiveState::Raise(absl::string_view digest, int state, absl::string_view provider) {
  absl::MutexLock lock(&mu_);
  RaiseUnknownLocked(digest, state, provider);
}

void ArchiveState::RaiseAll(const WatchResponse& message) {
  absl::MutexLock lock(&mu_);
  for (const WatchResponse& e : message.events()) RaiseEventLocked(e);
  RaiseEventLocked(message);
}

void ArchiveState::RaiseEventLocked(const WatchResponse& e) {
  if (!e.has_proof()) return;
  const Proof& p = e.proof();
  if (e.digests().empty()) {
    RaiseUnknownLocked(p.digest(), p.state(), p.provider());
    return;
  }
  // A grouped event (WatchRequest.grouped): 32 bytes a digest. A trailing part that is not a
  // whole digest is not one (ToKey would refuse it as well).
  const absl::string_view all = e.digests();
  for (size_t at = 0; at + kDigestBytes <= all.size(); at += kDigestBytes) {
    RaiseUnknownLocked(all.substr(at, kDigestBytes), p.state(), p.provider());
  }
}

void ArchiveState::RaiseUnknownLocked(absl::string_view digest, int state,
                                      absl::string_view provider) {
  Key key;
  if (!ToKey(digest, &key)) return;
  if (states_.find(key) == states_.end()) {
    if (hashing_) {
      int& s = early_[key][std::string(provider)];
      s = std::max(s, state);
    }
    return;
  }
  RaiseKnownLocked(key, state, provider);
}

void ArchiveState::EndHashing() {
  absl::MutexLock lock(&mu_);
  hashing_ = false;
  early_.clear();
}

void ArchiveState::RaiseKnownLocked(const Key& digest, int state, absl::string_view provider) {
  if (providers_.size() <= 1) {
    RaiseLocked(digest, state, /*add=*/false);
    return;
  }
  if (std::find(providers_.begin(), providers_.end(), provider) == providers_.end()) return;
  std::map<std::string, int>& seen = per_provider_[digest];
  int& mine = seen[std::string(provider)];
  mine = std::max(mine, state);
  if (seen.size() < providers_.size()) return;  // a provider has not accepted it yet
  int least = DIGEST_STATE_FAILED;
  for (const auto& [p, st] : seen) least = std::min(least, st);
  RaiseLocked(digest, least, /*add=*/false);
}

std::vector<std::string> ArchiveState::NotDone(bool only_known_before) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  if (only_known_before) {
    for (const Key& d : known_before_) {
      auto it = states_.find(d);
      if (it != states_.end() && !Done(it->second)) out.emplace_back(d.data(), d.size());
    }
    return out;
  }
  for (const auto& [d, s] : states_) {
    if (!Done(s)) out.emplace_back(d.data(), d.size());
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

void ArchiveState::RaiseLocked(const Key& digest, int state, bool add) {
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
