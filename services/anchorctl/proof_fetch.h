// Downloads of proofs from the poller ahead of the rows that need them, answered in the order
// they were asked for. `report` and `bundle` read a job's proofs a page at a time; one
// DownloadProof call per proof spent more in gRPC and the kernel, in anchorctl and in the poller,
// than in the proofs (bench/RESULTS.md, "Session 35"). The fetcher sends what is queued in one
// DownloadProofs call (up to 1,000 proofs) on a thread of its own while the caller works through
// the answers; a poller without DownloadProofs (an older release: UNIMPLEMENTED) is asked one
// proof at a time with DownloadProof instead.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "services/anchorctl/clients.h"
#include "services/anchorctl/commands.h"

namespace anchord::anchorctl {

class ProofFetcher {
 public:
  // The most proofs one DownloadProofs call may ask for (the poller's bound).
  static constexpr size_t kMaxPerCall = 1000;

  // At most `window` downloads are queued or held undelivered at once, and answers held but not
  // taken stop the reading of more at `max_held_bytes`, so memory stays bounded (plus one proof
  // of at most ots::kMaxProofFileBytes being read) whatever the poller sends. `clients` and `g`
  // must outlive the fetcher.
  ProofFetcher(Clients& clients, const GlobalOptions& g, size_t window = kMaxPerCall,
               size_t max_held_bytes = 32u << 20);
  ~ProofFetcher();
  ProofFetcher(const ProofFetcher&) = delete;
  ProofFetcher& operator=(const ProofFetcher&) = delete;

  struct ProofRef {
    std::string digest;  // raw, 32 bytes
    std::string provider;
  };
  // Queues refs[from, ...) while the window has room, all under one lock (so that one call
  // carries them together); returns how many were queued. Take one to make room.
  size_t Push(const std::vector<ProofRef>& refs, size_t from = 0) ABSL_LOCKS_EXCLUDED(mu_);
  // The oldest outstanding download's answer, as FetchOts gives it (NOT_FOUND while the poller
  // holds no proof file yet), waiting for it. FAILED_PRECONDITION with nothing outstanding.
  absl::StatusOr<std::string> Take() ABSL_LOCKS_EXCLUDED(mu_);
  size_t outstanding() ABSL_LOCKS_EXCLUDED(mu_);
  // Calls made so far, of either kind (for tests).
  int calls() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Slot {
    std::string digest;
    std::string provider;
    std::optional<absl::StatusOr<std::string>> answer;
  };
  void Work() ABSL_LOCKS_EXCLUDED(mu_);
  // One DownloadProofs call for `group`; false when the poller does not have the method (nothing
  // of the group is answered then).
  bool FetchMany(const std::vector<Slot*>& group) ABSL_LOCKS_EXCLUDED(mu_);
  void Answer(Slot* slot, absl::StatusOr<std::string> answer) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until the answers held are under the byte bound; false when the fetcher is stopping.
  bool AwaitRoom() ABSL_LOCKS_EXCLUDED(mu_);

  Clients& clients_;
  const GlobalOptions& g_;
  const size_t window_;
  const size_t max_held_bytes_;
  absl::Mutex mu_;
  // Oldest first. A slot is not moved while the worker fills it: std::deque keeps references to
  // its elements across push_back and pop_front, and only answered slots are popped.
  std::deque<Slot> slots_ ABSL_GUARDED_BY(mu_);
  size_t unstarted_ ABSL_GUARDED_BY(mu_) = 0;  // the last slots, not yet given to a call
  size_t held_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool one_at_a_time_ ABSL_GUARDED_BY(mu_) = false;  // the poller has no DownloadProofs
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::ClientContext* active_ ABSL_GUARDED_BY(mu_) = nullptr;  // cancelled on stop
  std::thread worker_;
};

}  // namespace anchord::anchorctl
