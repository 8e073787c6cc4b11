// A PollerStore decorator that counts, per method, the calls made and the rows returned, and the
// time spent in them. It exists to measure (bench/backlog_bench) and to bound (tests) the
// database work of a polling round; it changes nothing it forwards.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

class CountingStore final : public PollerStore {
 public:
  struct Count {
    int64_t calls = 0;
    int64_t rows = 0;  // rows returned (ProofRow or Stats entries)
    double seconds = 0;
  };
  // `inner` is not owned and must outlive this.
  explicit CountingStore(PollerStore* inner) : inner_(inner) {}

  std::map<std::string, Count> Snapshot() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return counts_;
  }
  void ResetCounts() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    counts_.clear();
  }
  // Sums over every method.
  Count Total() const ABSL_LOCKS_EXCLUDED(mu_) {
    Count t;
    for (const auto& [_, c] : Snapshot()) {
      t.calls += c.calls;
      t.rows += c.rows;
      t.seconds += c.seconds;
    }
    return t;
  }

 private:
  template <typename T>
  static int64_t RowsOf(const absl::StatusOr<std::vector<T>>& r) {
    return r.ok() ? static_cast<int64_t>(r->size()) : 0;
  }
  template <typename T>
  static int64_t RowsOf(const absl::StatusOr<std::optional<T>>& r) {
    return r.ok() && r->has_value() ? 1 : 0;
  }
  template <typename K, typename V>
  static int64_t RowsOf(const absl::StatusOr<std::map<K, V>>& r) {
    return r.ok() ? static_cast<int64_t>(r->size()) : 0;
  }
  template <typename T>
  static int64_t RowsOf(const T&) {
    return 0;
  }

  template <typename Fn>
  auto Timed(const char* method, Fn fn) ABSL_LOCKS_EXCLUDED(mu_) {
    const auto start = std::chrono::steady_clock::now();
    auto result = fn();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    absl::MutexLock lock(&mu_);
    Count& c = counts_[method];
    ++c.calls;
    c.rows += RowsOf(result);
    c.seconds += secs;
    return result;
  }

 public:
  absl::StatusOr<std::vector<TrackOutcome>> Track(const std::vector<TrackInput>& inputs,
                                                  absl::Time now) override {
    return Timed("Track", [&] { return inner_->Track(inputs, now); });
  }
  absl::StatusOr<std::optional<ProofRow>> Get(const Digest& digest,
                                              const std::string& provider) override {
    return Timed("Get", [&] { return inner_->Get(digest, provider); });
  }
  absl::StatusOr<std::vector<ProofRow>> GetAll(const Digest& digest) override {
    return Timed("GetAll", [&] { return inner_->GetAll(digest); });
  }
  absl::StatusOr<std::vector<ProofRow>> List(const ListFilter& filter, int64_t after_seq,
                                             int limit) override {
    return Timed("List", [&] { return inner_->List(filter, after_seq, limit); });
  }
  absl::StatusOr<std::vector<ProofRow>> PendingToCheck(const std::string& provider,
                                                       absl::Time tracked_before,
                                                       int limit) override {
    return Timed("PendingToCheck",
                 [&] { return inner_->PendingToCheck(provider, tracked_before, limit); });
  }
  absl::StatusOr<std::vector<ProofRow>> ClaimChecks(const std::string& provider,
                                                    std::vector<ProofRow> candidates,
                                                    const std::string& owner, absl::Time now,
                                                    absl::Time until) override {
    return Timed("ClaimChecks", [&] {
      return inner_->ClaimChecks(provider, std::move(candidates), owner, now, until);
    });
  }
  absl::StatusOr<std::vector<ProofRow>> ConfirmedWithoutOts(const std::string& provider,
                                                            int limit) override {
    return Timed("ConfirmedWithoutOts",
                 [&] { return inner_->ConfirmedWithoutOts(provider, limit); });
  }
  absl::StatusOr<std::vector<ProofRow>> NewlyStalled(const std::string& provider,
                                                     absl::Time pending_before,
                                                     int limit) override {
    return Timed("NewlyStalled",
                 [&] { return inner_->NewlyStalled(provider, pending_before, limit); });
  }
  absl::StatusOr<std::optional<ProofRow>> MarkConfirmed(const Digest& digest,
                                                        const std::string& provider,
                                                        const ConfirmInput& in,
                                                        absl::Time now) override {
    return Timed("MarkConfirmed", [&] { return inner_->MarkConfirmed(digest, provider, in, now); });
  }
  absl::StatusOr<std::optional<ProofRow>> MarkFailed(
      const Digest& digest, const std::string& provider, int32_t code, const std::string& message,
      const std::string& reason, const std::string& request_id, absl::Time now) override {
    return Timed("MarkFailed", [&] {
      return inner_->MarkFailed(digest, provider, code, message, reason, request_id, now);
    });
  }
  absl::StatusOr<std::optional<ProofRow>> StoreOts(const Digest& digest,
                                                   const std::string& provider,
                                                   const std::string& ots,
                                                   absl::Time now) override {
    return Timed("StoreOts", [&] { return inner_->StoreOts(digest, provider, ots, now); });
  }
  absl::StatusOr<std::optional<ProofRow>> MarkStalled(const Digest& digest,
                                                      const std::string& provider,
                                                      absl::Time now) override {
    return Timed("MarkStalled", [&] { return inner_->MarkStalled(digest, provider, now); });
  }
  absl::StatusOr<std::optional<ProofRow>> ReplaceOts(const Digest& digest,
                                                     const std::string& provider,
                                                     const std::string& ots,
                                                     absl::Time now) override {
    return Timed("ReplaceOts", [&] { return inner_->ReplaceOts(digest, provider, ots, now); });
  }
  absl::StatusOr<std::vector<ProofRow>> PropagateToLeaves(const Digest& root,
                                                          const std::string& provider,
                                                          absl::Time now) override {
    return Timed("PropagateToLeaves",
                 [&] { return inner_->PropagateToLeaves(root, provider, now); });
  }
  absl::StatusOr<std::vector<ProofRow>> SettleStrandedLeaves(const std::string& provider,
                                                             absl::Time now,
                                                             int max_roots) override {
    return Timed("SettleStrandedLeaves",
                 [&] { return inner_->SettleStrandedLeaves(provider, now, max_roots); });
  }
  absl::StatusOr<std::vector<ProofRow>> FallbacksDue(const std::string& provider,
                                                     int limit) override {
    return Timed("FallbacksDue", [&] { return inner_->FallbacksDue(provider, limit); });
  }
  absl::Status MarkFallbackSent(const Digest& digest, const std::string& provider) override {
    return Timed("MarkFallbackSent", [&] { return inner_->MarkFallbackSent(digest, provider); });
  }
  absl::Status MarkCheckedAll(const std::vector<CheckedProof>& checked) override {
    return Timed("MarkChecked", [&] { return inner_->MarkCheckedAll(checked); });
  }
  absl::StatusOr<std::optional<std::string>> GetOts(const Digest& digest,
                                                    const std::string& provider) override {
    return Timed("GetOts", [&] { return inner_->GetOts(digest, provider); });
  }
  absl::StatusOr<std::shared_ptr<const merkle::SealedBatch>> TreeOf(const Digest& root) override {
    return Timed("TreeOf", [&] { return inner_->TreeOf(root); });
  }
  absl::StatusOr<Summary> Summarize(const std::string& job) override {
    return Timed("Summarize", [&] { return inner_->Summarize(job); });
  }
  absl::StatusOr<std::map<std::string, ProviderStats>> Stats() override {
    return Timed("Stats", [&] { return inner_->Stats(); });
  }

 private:
  PollerStore* inner_;
  mutable absl::Mutex mu_;
  std::map<std::string, Count> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace anchord::poller
