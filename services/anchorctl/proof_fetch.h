// Downloads of proofs from the poller with several calls in flight, answered in the order they
// were asked for. `report` and `bundle` read a job's proofs one DownloadProof call each; one call
// at a time left anchorctl waiting on the poller for about half of each call (bench/RESULTS.md,
// "Session 35"), while both have a page of a thousand rows in hand whose proofs are known before
// any is needed.
#pragma once

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
  // At most `window` downloads are queued or held undelivered at once, so memory stays bounded
  // by `window` proofs (each at most ots::kMaxProofFileBytes) whatever the poller answers;
  // `workers` threads run them. `clients` and `g` must outlive the fetcher. The defaults: a
  // bundle of 20,000 proofs took 5.0 s with 2 workers, 4.7 s with 4 and 4.2 s with 8 (9.0 s one
  // call at a time), on two cores with the poller on the same machine.
  ProofFetcher(Clients& clients, const GlobalOptions& g, size_t workers = 8, size_t window = 32);
  ~ProofFetcher();
  ProofFetcher(const ProofFetcher&) = delete;
  ProofFetcher& operator=(const ProofFetcher&) = delete;

  // False (and nothing queued) when `window` downloads are already outstanding: Take one first.
  bool Push(std::string digest, std::string provider) ABSL_LOCKS_EXCLUDED(mu_);
  // The oldest outstanding download's answer (FetchOts's), waiting for it. Must not be called
  // with nothing outstanding.
  absl::StatusOr<std::string> Take() ABSL_LOCKS_EXCLUDED(mu_);
  size_t outstanding() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Slot {
    std::string digest;
    std::string provider;
    bool started = false;
    std::optional<absl::StatusOr<std::string>> answer;
  };
  void Work() ABSL_LOCKS_EXCLUDED(mu_);

  Clients& clients_;
  const GlobalOptions& g_;
  const size_t window_;
  absl::Mutex mu_;
  // Oldest first. A slot is not moved while a worker fills it: std::deque keeps references to
  // its elements across push_back and pop_front.
  std::deque<Slot> slots_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace anchord::anchorctl
