#include "services/anchorctl/proof_fetch.h"

#include <utility>

namespace anchord::anchorctl {

ProofFetcher::ProofFetcher(Clients& clients, const GlobalOptions& g, size_t workers, size_t window)
    : clients_(clients), g_(g), window_(window < 1 ? 1 : window) {
  if (workers < 1) workers = 1;
  workers_.reserve(workers);
  for (size_t i = 0; i < workers; ++i) workers_.emplace_back([this] { Work(); });
}

ProofFetcher::~ProofFetcher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  // A worker in the middle of a call finishes it (each call has its deadline, and Ctrl-C cancels
  // it through the Interrupter) before it sees stop_.
  for (std::thread& t : workers_) t.join();
}

bool ProofFetcher::Push(std::string digest, std::string provider) {
  absl::MutexLock lock(&mu_);
  if (slots_.size() >= window_) return false;
  Slot& s = slots_.emplace_back();
  s.digest = std::move(digest);
  s.provider = std::move(provider);
  return true;
}

absl::StatusOr<std::string> ProofFetcher::Take() {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return slots_.empty() || slots_.front().answer.has_value();
  };
  mu_.Await(absl::Condition(&ready));
  if (slots_.empty()) return absl::FailedPreconditionError("ProofFetcher::Take: nothing queued");
  absl::StatusOr<std::string> answer = *std::move(slots_.front().answer);
  slots_.pop_front();
  return answer;
}

size_t ProofFetcher::outstanding() {
  absl::MutexLock lock(&mu_);
  return slots_.size();
}

void ProofFetcher::Work() {
  absl::MutexLock lock(&mu_);
  while (true) {
    Slot* next = nullptr;
    auto have_work = [this, &next]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (stop_) return true;
      for (Slot& s : slots_) {
        if (!s.started) {
          next = &s;
          return true;
        }
      }
      return false;
    };
    mu_.Await(absl::Condition(&have_work));
    if (stop_) return;
    next->started = true;
    const std::string digest = next->digest;
    const std::string provider = next->provider;
    absl::StatusOr<std::string> answer;
    {
      mu_.Unlock();
      answer = FetchOts(clients_, g_, digest, provider);
      mu_.Lock();
    }
    // The slot is still there: only Take removes slots, and only answered ones.
    next->answer = std::move(answer);
  }
}

}  // namespace anchord::anchorctl
