// The poll engine: follows every PENDING proof until its provider reports it confirmed or failed,
// then downloads and stores the .ots evidence.
//
// One thread per provider runs a round every poll_interval:
//  1. With list support, walk the provider's pending list (bounded pages) to learn which proof ids
//     are still pending; only our PENDING proofs handed off before the walk started and absent
//     from that list are looked up, found by comparing at most max_scan_rows stored proofs with
//     the list per round (from where the last round stopped) (one list page covers 50 proofs, so
//     this spends far fewer requests of the shared per-key budget than a lookup per proof). When
//     the walk fails or does not finish within its page bound, fall back to (2).
//  2. Without list support, look up PENDING proofs least recently checked first.
//     Either way at most max_lookups_per_round lookups per round.
//  3. Download the .ots of CONFIRMED proofs that have none (again every round until it comes).
//  4. Flag proofs pending longer than stall_after (STALLED event once).
// Everything a provider returns is validated before it is stored: a record for another digest or
// an .ots that is not about our digest is logged and the proof stays as it was.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/common/clock.h"
#include "libs/providers/provider.h"
#include "services/poller/event_bus.h"
#include "services/poller/poller_metrics.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

// Publishes `type` for `row` on the bus and counts it. `metrics` may be null.
void PublishEvent(EventBus& bus, PollerMetrics* metrics, anchord::v1::ProofEventType type,
                  const ProofRow& row, absl::Time now);
// The same, taking the row's strings and files when the event is built (a row not read after).
void PublishEvent(EventBus& bus, PollerMetrics* metrics, anchord::v1::ProofEventType type,
                  ProofRow&& row, absl::Time now);

// Publishes the events of one store transaction together (EventBus::PublishAll) and counts them.
void PublishEvents(EventBus& bus, PollerMetrics* metrics, const std::vector<RowEvent>& events,
                   absl::Time now);

// Appends what happened to Merkle batch leaves that followed their root: CONFIRMED, FAILED,
// STALLED or OTS_STORED (a confirmed leaf whose joined proof became available).
// `were_confirmed`: the leaves were CONFIRMED already (their CONFIRMED event was published), so
// a leaf whose proof became available gets OTS_STORED only.
void AppendLeafEvents(const std::vector<ProofRow>& leaves, bool were_confirmed,
                      std::vector<RowEvent>* out);
// AppendLeafEvents' events, published with PublishEvents.
void PublishLeafEvents(EventBus& bus, PollerMetrics* metrics, const std::vector<ProofRow>& leaves,
                       absl::Time now, bool were_confirmed = false);

// Asks the submitter to anchor a stalled proof's digest with its fallback provider. OK once the
// submitter stored the request durably; the poller then never asks again for that proof.
using FallbackFn = std::function<absl::Status(const ProofRow& stalled)>;

// A round's marks of the proofs it asked about (PollerStore::MarkCheckedAll), stored a group at a
// time instead of a commit each: when kGroup are held, when the oldest held is kHold older than
// the newest (a slow provider's marks are not held long: a claim lasts at least a second), and on
// destruction, which ends each of a round's phases, so none is held past its phase. A mark a crash
// loses only means that proof is asked about again. Not thread-safe (one round's).
class CheckMarks {
 public:
  static constexpr size_t kGroup = 128;
  static constexpr absl::Duration kHold = absl::Milliseconds(250);

  explicit CheckMarks(PollerStore* store) : store_(store) {}
  ~CheckMarks() { Flush(); }
  CheckMarks(const CheckMarks&) = delete;
  CheckMarks& operator=(const CheckMarks&) = delete;

  void Add(const ProofRow& row, absl::Time at);
  void Flush();

 private:
  PollerStore* const store_;
  std::vector<PollerStore::CheckedProof> held_;
};

struct PollEngineOptions {
  absl::Duration poll_interval = absl::Seconds(30);
  absl::Duration stall_after = absl::Hours(24);
  int max_lookups_per_round = 100;
  int list_page_limit = 50;
  int max_list_pages = 200;
  // Store rows a walk round compares with the provider's list, at most (in pages of 500). The
  // comparison resumes where the last round stopped and wraps at the end, so a round's store work
  // does not grow with the backlog and every pending proof is reached in turn.
  int max_scan_rows = 2000;
  FallbackFn fallback;  // empty: stalls are flagged, nothing is re-anchored
  // Names this engine's claims on proofs (PollerStore::ClaimChecks).
  std::string owner = "poller";
};

struct RoundStats {
  bool walked = false;  // the pending list was walked completely
  int lookups = 0;
  int confirmed = 0;
  int failed = 0;
  int downloads = 0;
  int ots_stored = 0;
  int stalled = 0;
};

class PollEngine {
 public:
  // Nothing is owned; all must outlive the engine. `metrics` may be null.
  PollEngine(PollerStore* store, EventBus* bus, PollerMetrics* metrics, Clock* clock,
             std::vector<providers::Provider*> providers, PollEngineOptions options);
  ~PollEngine();

  // Starts one thread per provider. Call once.
  void Start();
  // Stops the threads after their current provider call returns (call Provider::Stop first so a
  // pacing wait does not hold shutdown up). Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // A provider's callback named `digest_hex` (a hint): check that proof at the start of the
  // provider's next round, which starts now. False when the digest is not a PENDING proof of
  // `provider` (an unknown or stale callback changes nothing).
  bool Hint(const std::string& provider, const Digest& digest) ABSL_LOCKS_EXCLUDED(mu_);

  // One round for `provider`, in the calling thread. Public so tests drive rounds directly.
  RoundStats RunRound(providers::Provider* provider) ABSL_LOCKS_EXCLUDED(mu_);
  // Recomputes the backlog, oldest-pending and stalled gauges from the store.
  void RefreshGauges();

 private:
  // Walks the pending list; false when it failed or did not finish within max_list_pages.
  bool WalkPending(providers::Provider* p, std::vector<std::string>* ids);
  // Returns false when the round should stop (rate limited, quota, permanent provider error).
  bool LookupOne(providers::Provider* p, const ProofRow& row, RoundStats* stats, CheckMarks* marks);
  bool DownloadOne(providers::Provider* p, const ProofRow& row, RoundStats* stats,
                   CheckMarks* marks);
  // The provider's handle on a proof, with its stored evidence.
  providers::ProofRef RefOf(const ProofRow& row);
  // Carries a batch root's new state to its leaves, with events.
  void Propagate(const ProofRow& root, absl::Time now, bool ots_only = false);
  void Loop(providers::Provider* p) ABSL_LOCKS_EXCLUDED(mu_);

  PollerStore* store_;
  EventBus* bus_;
  PollerMetrics* metrics_;
  Clock* clock_;
  std::vector<providers::Provider*> providers_;
  PollEngineOptions options_;

  absl::Mutex mu_;
  absl::CondVar cv_;  // signalled on stop_ and on a new hint
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // provider -> digests (raw) named by callbacks, checked first in the provider's next round.
  std::map<std::string, std::set<Digest>> hints_ ABSL_GUARDED_BY(mu_);
  uint64_t hint_seq_ ABSL_GUARDED_BY(mu_) = 0;
  // provider -> seq after which the next walk round's store scan starts.
  std::map<std::string, int64_t> scan_after_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

}  // namespace anchord::poller
