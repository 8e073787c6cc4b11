#include "services/submitter/pg_leases.h"

#include <utility>

#include "libs/common/log.h"
#include "services/submitter/store_rows.h"

namespace anchord::submitter {

using ledger::PgConn;
using ledger::PgParams;

PgLeases::PgLeases(std::shared_ptr<ledger::PgDb> db, absl::Duration term, absl::Duration heartbeat,
                   Clock* clock)
    : db_(std::move(db)), term_(term), heartbeat_(heartbeat), clock_(clock) {
  if (term_ > absl::ZeroDuration()) thread_ = std::thread([this] { HeartbeatLoop(); });
}

PgLeases::~PgLeases() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void PgLeases::Hold(const std::vector<int64_t>& ids, const std::string& tag) {
  absl::MutexLock lock(&mu_);
  for (int64_t id : ids) held_[id] = tag;
}

std::string PgLeases::Forget(int64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = held_.find(id);
  if (it == held_.end()) return std::string();
  std::string tag = std::move(it->second);
  held_.erase(it);
  return tag;
}

void PgLeases::ForgetAll() {
  absl::MutexLock lock(&mu_);
  held_.clear();
}

// Ends with the object (or the process: then the leases run out within term_ and other replicas
// take the rows). Each pass waits at most heartbeat_, and the destructor's stop_ ends the wait.
void PgLeases::HeartbeatLoop() {
  for (;;) {
    std::map<std::string, std::vector<int64_t>> by_tag;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stop_), heartbeat_);
      if (stop_) return;
      for (const auto& [id, tag] : held_) by_tag[tag].push_back(id);
    }
    if (by_tag.empty()) continue;
    // The database round trips run unlocked, so claims and releases do not wait for them.
    const int64_t until = ToMs(clock_->Now() + term_);
    // Not a structured binding: the clang of the thread-safety check cannot capture one.
    for (const auto& held : by_tag) {
      const std::string& tag = held.first;
      const std::vector<int64_t>& ids = held.second;
      // One attempt per beat: a beat that fails (database down) is followed by the next.
      absl::Status st = db_->Run([&](PgConn& c) {
        return c
            .Exec(
                "UPDATE submissions SET lease_until = GREATEST(lease_until, $3) WHERE "
                "id = ANY($1::bigint[]) AND lease_owner = $2 AND lease_until <> 0",
                PgParams().AddIntArray(ids).AddBytes(tag).Add(until))
            .status();
      });
      if (!st.ok()) {
        ANCHORD_LOG(Warning) << "submitter store: lease heartbeat: " << st;
      }
    }
  }
}

}  // namespace anchord::submitter
