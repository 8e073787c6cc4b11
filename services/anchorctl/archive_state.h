// The state of one `anchorctl archive` run: the furthest known state of each distinct digest, the
// counters of the progress line, and the files that could not be hashed.
//
// Results come from two sources that are not ordered with each other: the hasher's results (which
// introduce each digest of the run) and the poller's events (which raise a digest's state). The
// Watch is opened before hashing starts, so an event may arrive before the hash result of its
// digest; such early states are kept and applied when the result comes (until EndHashing(), after
// which a digest without a result is not part of the run).
#pragma once

#include <array>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "anchord/v1/hasher.pb.h"
#include "anchord/v1/poller.pb.h"
#include "libs/common/validate.h"
#include "services/anchorctl/format.h"

namespace anchord::anchorctl {

struct Problem {
  std::string path, reason, message;
};

// Thread-safe.
class ArchiveState {
 public:
  // `target`: the --wait state (a digest is done at it, or FAILED). With several providers
  // (redundancy), a digest counts as far as its LEAST advanced requested provider: "--wait
  // confirmed" then means confirmed with every one of them.
  explicit ArchiveState(int target, std::vector<std::string> providers = {})
      : target_(target), providers_(std::move(providers)) {}

  // One result in the single-result form (its own files_total and walk_complete apply).
  void OnHashResult(const anchord::v1::HashTreeResponse& r) ABSL_LOCKS_EXCLUDED(mu_);
  // Every result a batch_results message carries (the message's files_total and walk_complete
  // apply to them), under one lock.
  void OnHashResults(const anchord::v1::HashTreeResponse& message) ABSL_LOCKS_EXCLUDED(mu_);
  // Raises a digest's state (states only move forward) from one provider's proof. A digest with
  // no hash result yet is remembered until its result comes or EndHashing() is called. A digest
  // that is not 32 bytes is no digest of the run: ignored.
  void Raise(absl::string_view digest, int state, absl::string_view provider)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Raise() for every proof a Watch message carries (its events, or its own proof), under one
  // lock.
  void RaiseAll(const anchord::v1::WatchResponse& message) ABSL_LOCKS_EXCLUDED(mu_);
  // Every hash result is in: early states of digests that got none are dropped.
  void EndHashing() ABSL_LOCKS_EXCLUDED(mu_);

  // The digests not done yet. With `only_known_before`, only those the run may not see in its own
  // job's Watch: the submitter knew them before this run (a state past QUEUED, a duplicate, an
  // unchanged file), so their proofs may carry another job's files only.
  std::vector<std::string> NotDone(bool only_known_before = false) ABSL_LOCKS_EXCLUDED(mu_);
  bool AllDone() ABSL_LOCKS_EXCLUDED(mu_);
  void SetWaiting() ABSL_LOCKS_EXCLUDED(mu_);
  void SetPaused(const std::string& reason) ABSL_LOCKS_EXCLUDED(mu_);
  ProgressCounts Snapshot() ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<Problem> problems() ABSL_LOCKS_EXCLUDED(mu_);
  int target() const { return target_; }

 private:
  // A digest as a map key: its bytes in place (no allocation per digest, as a std::string of 32
  // bytes needs), hashed by its first 8 bytes (SHA-256 output is uniform).
  using Key = std::array<char, kDigestBytes>;
  struct KeyHash {
    size_t operator()(const Key& k) const {
      size_t h;
      std::memcpy(&h, k.data(), sizeof h);
      return h;
    }
  };
  // False when `digest` is not 32 bytes.
  static bool ToKey(absl::string_view digest, Key* key);

  bool Done(int s) const { return s >= target_ || s == anchord::v1::DIGEST_STATE_FAILED; }
  void Count(int s, int delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnHashResultLocked(const anchord::v1::HashTreeResponse& r, int64_t files_total,
                          bool walk_complete) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RaiseUnknownLocked(absl::string_view digest, int state, absl::string_view provider)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One event of a Watch response (its proof's, or a grouped event's every digest).
  void RaiseEventLocked(const anchord::v1::WatchResponse& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RaiseLocked(const Key& digest, int state, bool add) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Raise() for a digest of the run.
  void RaiseKnownLocked(const Key& digest, int state, absl::string_view provider)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int target_;
  const std::vector<std::string> providers_;
  absl::Mutex mu_;
  // Open addressing: one array probe per digest (a node map allocated and chased a node each,
  // 40% of the command's CPU in a 100,000-file archive --wait).
  absl::flat_hash_map<Key, int, KeyHash> states_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<Key, std::map<std::string, int>, KeyHash> per_provider_ ABSL_GUARDED_BY(mu_);
  // Digests -> provider -> state, for events that came before the digest's hash result.
  std::unordered_map<Key, std::map<std::string, int>, KeyHash> early_ ABSL_GUARDED_BY(mu_);
  bool hashing_ ABSL_GUARDED_BY(mu_) = true;
  absl::flat_hash_set<Key, KeyHash> known_before_ ABSL_GUARDED_BY(mu_);
  ProgressCounts counts_ ABSL_GUARDED_BY(mu_);
  std::vector<Problem> problems_ ABSL_GUARDED_BY(mu_);
};

}  // namespace anchord::anchorctl
