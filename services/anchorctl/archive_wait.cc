#include "services/anchorctl/archive_wait.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "libs/common/log.h"
#include "services/anchorctl/command_common.h"

namespace anchord::anchorctl {

using namespace anchord::v1;

WatchFollower::WatchFollower(Clients* clients, ArchiveState* state, std::string job,
                             absl::Time deadline)
    : clients_(clients), state_(state), job_(std::move(job)), deadline_(deadline) {
  thread_ = std::thread([this] { Loop(); });
}

bool WatchFollower::WaitOpen(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (mu_.AwaitWithTimeout(absl::Condition(&first_open_), timeout)) return true;
  late_ = true;
  if (ctx_ != nullptr) ctx_->TryCancel();
  return false;
}

void WatchFollower::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    if (ctx_ != nullptr) ctx_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

int WatchFollower::streams() {
  absl::MutexLock lock(&mu_);
  return streams_;
}

void WatchFollower::Loop() {
  for (int attempt = 0; attempt < 100000; ++attempt) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(deadline_));
    WatchRequest req;
    req.set_job(job_);
    req.set_batch(true);
    // Only digest, provider and state are read (ArchiveState::RaiseAll), and a batch's leaves may
    // come as one event. (brief as well: a poller older than grouped events still sends brief
    // ones.)
    req.set_brief(true);
    req.set_grouped(true);
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      ctx_ = &ctx;
      ++streams_;
      // Only a stream open before the run submitted anything may skip the snapshot.
      req.set_include_current(attempt > 0 || late_);
    }
    auto reader = clients_->poller().Watch(&ctx, req);
    // The poller sends its headers once the stream is subscribed: from then on no event of the job
    // is missed. (A call that failed returns here too; the next stream then takes a snapshot.)
    reader->WaitForInitialMetadata();
    bool abandoned = false;
    if (attempt == 0) {
      absl::MutexLock lock(&mu_);
      first_open_ = true;
      // Opened after the run started submitting: events may have been missed.
      abandoned = late_ && !req.include_current();
    }
    WatchResponse ev;
    while (!abandoned && reader->Read(&ev)) {
      state_->RaiseAll(ev);
      Interrupter::Get().Wake();
    }
    if (abandoned) ctx.TryCancel();
    grpc::Status st = reader->Finish();
    absl::MutexLock lock(&mu_);
    ctx_ = nullptr;
    if (stop_ || absl::Now() >= deadline_) return;
    if (abandoned) continue;  // reopen at once, with a snapshot
    if (!st.ok()) {
      ANCHORD_LOG(Debug) << "Watch ended: " << st.error_message();
    }
    // The periodic reconciliation keeps the counts right meanwhile; retry the stream calmly.
    mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Seconds(1));
  }
}

absl::Status Reconcile(Clients& clients, ArchiveState& state, bool only_known_before) {
  return ForEachProof(clients, state.NotDone(only_known_before), OnInterrupt::kStop,
                      [&](const Proof& p) { state.Raise(p.digest(), p.state(), p.provider()); });
}

absl::Time NextReconcile(absl::Time started, absl::Time ended, absl::Duration period) {
  return std::max(started + period, ended + 20 * (ended - started));
}

}  // namespace anchord::anchorctl
