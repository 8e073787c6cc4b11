// The Merkle batcher: seals the leaves waiting for each provider into batches and queues each
// batch's root as one ordinary submission, so a batch costs one provider request and one quota
// unit.
//
// A batch is sealed when `max_leaves` leaves wait, or when the oldest has waited `window`. Sealing
// draws a fresh random nonce per leaf (a file's proof then reveals nothing about its neighbours),
// builds the tree (libs/merkle) and commits the batch (its leaves in tree order and their nonces,
// from which each leaf's path is derived when it is read), the root row and every leaf's batch id
// in ONE transaction: a crash before the commit leaves the leaves unbatched (sealed again later,
// with new nonces, nothing was sent), a crash after it leaves a root row that the engine sends with
// the usual idempotency, so no file is lost and no root is anchored twice.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/common/clock.h"
#include "services/submitter/metrics.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

struct BatcherOptions {
  int max_leaves = 10000;                    // at most 14 levels: ~500-byte paths
  absl::Duration window = absl::Seconds(5);  // the longest a leaf waits for company
  absl::Duration poll = absl::Milliseconds(200);
};

class Batcher {
 public:
  // `store`, `metrics` (may be null) and `clock` must outlive the batcher. `on_sealed` is called
  // after a batch was committed (the engine's Wake).
  // Tells `store` how many leaves a batch takes (SubmitterStore::SetLeavesPerBatch): construct the
  // batcher before the intake stores leaves.
  Batcher(SubmitterStore* store, std::vector<std::string> providers, SubmitterMetrics* metrics,
          Clock* clock, BatcherOptions options, std::function<void()> on_sealed);
  ~Batcher();

  void Start();
  void Stop();  // idempotent

  // Tells the loop that `n` leaves were stored. Once the leaves told of since its last pass reach
  // max_leaves, a batch may be full: the loop looks at once instead of at its next poll (a full
  // batch waited up to `poll` for its seal, and the hand-off behind it with it). A hint only: the
  // loop still counts the waiting leaves in the store before it seals.
  void NoteLeaves(int64_t n) ABSL_LOCKS_EXCLUDED(mu_);

  // Seals every batch that is due now for `provider` (all providers when empty); returns how
  // many batches were sealed. For tests and for the loop.
  absl::StatusOr<int> SealDue(const std::string& provider = "");

 private:
  // True when the caller should look again (a batch was sealed, or another batcher won the
  // race for these leaves); *committed is set only when this call committed a batch.
  absl::StatusOr<bool> SealOne(const std::string& provider, absl::Time now, bool* committed);
  void Loop();

  SubmitterStore* store_;
  std::vector<std::string> providers_;
  SubmitterMetrics* metrics_;
  Clock* clock_;
  BatcherOptions options_;
  std::function<void()> on_sealed_;

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t noted_ ABSL_GUARDED_BY(mu_) = 0;  // leaves told of by NoteLeaves since the last pass
  bool full_ ABSL_GUARDED_BY(mu_) = false;  // noted_ reached max_leaves: look now
  std::thread thread_;
};

}  // namespace anchord::submitter
