// The submission engine: worker threads that take ready rows from the store and anchor them with
// their provider, one request at a time per worker, applying the provider's outcome to the row.
//
// Crash safety: the exact request (idempotency key + body) is committed to the store BEFORE the
// first send; every later send of the row (retry, or after a restart) re-sends those same bytes,
// so the provider replays its original answer instead of creating (and billing) a second record.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/common/backoff.h"
#include "libs/common/clock.h"
#include "libs/providers/provider.h"
#include "services/submitter/metrics.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

struct EngineOptions {
  int workers = 4;
  // How long a quota pause lasts before one probe request is sent.
  absl::Duration quota_retry = absl::Hours(1);
  BackoffPolicy backoff{absl::Seconds(1), absl::Minutes(10), 2.0};
  // A claim's lease; long, because a create may wait for pacing. Expired leases are re-claimable.
  absl::Duration lease = absl::Minutes(30);
  // Idle workers look for ready rows at least this often (Wake() makes them look at once).
  absl::Duration idle_poll = absl::Milliseconds(500);
  absl::Duration gauge_interval = absl::Seconds(5);
  // The backlog gauges count every row of the store (on SQLite a scan of the table, about 0.5 us
  // per row on the 2-core build machine, holding the connection that intake also needs). They are
  // refreshed at most this share of the time: a store of millions of rows refreshes them less
  // often than gauge_interval instead of spending a tenth of a core on them and stalling intake.
  // Pauses are still read every gauge_interval.
  double gauge_max_duty = 0.02;
  std::string owner = "submitter";
  // A batch provider (SimpleProof: 25 digests per request, cost per hash, requests rate limited)
  // waits until its oldest ready row is this old before sending a batch that is not full, so a
  // steady intake fills batches instead of spending the request budget on small ones.
  absl::Duration batch_linger = absl::Seconds(1);
  // Rows a worker claims at once for a provider taking one digest per request: their requests
  // are committed in one transaction (one fsync instead of one per row) and then sent one by one,
  // each paced by the provider's limiters. The service sets it from --claim-group.
  int claim_group = 1;
  // Called after outcomes were recorded (SUBMITTED or FAILED rows the poller must hear of): the
  // hand-off's Wake, so a root's leaves leave at once rather than at its next idle poll.
  std::function<void()> on_recorded;
};

// How long after a refresh of the backlog gauges that took `took` the next one is due: the
// interval, or longer when `took` would be more than `max_duty` of the time between refreshes.
absl::Duration GaugeRefreshDelay(absl::Duration interval, absl::Duration took, double max_duty);

class Engine {
 public:
  // `store`, the providers, `metrics` (may be null) and `clock` must outlive the engine.
  Engine(SubmitterStore* store, std::vector<providers::Provider*> providers,
         SubmitterMetrics* metrics, Clock* clock, EngineOptions options);
  ~Engine();

  // Frees stale leases and loads the persisted pauses. Call once before RunOnce or Start.
  absl::Status Init();
  // Init() plus the worker and gauge threads.
  absl::Status Start();
  // Stops the workers promptly: providers' pacing waits are cancelled (Provider::Stop), a row whose
  // send was cancelled stays as it is and is sent again by the next process. Idempotent.
  void Stop();
  // New work arrived: idle workers look now.
  void Wake();

  // Processes one ready row (of `provider`, or of any provider when empty) in the calling thread.
  // false when no row was ready. For tests and for the worker loop.
  absl::StatusOr<bool> RunOnce(const std::string& provider = "");

  // Lifts the pause of `provider` (all when empty); returns the providers resumed.
  absl::StatusOr<std::vector<std::string>> Resume(const std::string& provider);
  std::optional<PauseInfo> Paused(const std::string& provider);
  void RefreshGauges();
  // Merges the pauses stored by other replicas (and their resumes) into this engine's view.
  void RefreshPauses();

 private:
  // Prepares the claimed rows (durably), sends them (one request for a batch provider) and
  // applies each answer to its row.
  absl::Status Process(providers::Provider* provider, std::vector<Submission> rows, bool probe);
  // One request for all of `ready` (a batch provider), each answer applied to its row.
  absl::Status SendBatch(providers::Provider* provider, std::vector<Submission> ready,
                         const std::vector<providers::PreparedCreate>& requests, bool probe,
                         absl::Status first_error);
  absl::Status Apply(providers::Provider* provider, Submission row,
                     const providers::CreateResult& result, bool probe);
  void WorkerLoop();
  void GaugeLoop();
  void SetPausedGauge(const std::string& provider, bool paused);

  SubmitterStore* store_;
  std::vector<providers::Provider*> providers_;
  SubmitterMetrics* metrics_;
  Clock* clock_;
  EngineOptions options_;

  absl::Mutex mu_;
  std::map<std::string, PauseInfo> pauses_ ABSL_GUARDED_BY(mu_);
  // Bumped by Wake(); an idle worker waits for it to move (or for stopping_).
  uint64_t wake_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> stop_flag_{false};
  std::atomic<size_t> rotate_{0};
  std::vector<std::thread> threads_;
};

}  // namespace anchord::submitter
