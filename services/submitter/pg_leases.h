// The leases a submitter replica holds on claimed rows of a shared PostgreSQL database.
//
// A claim writes lease_owner = tag and lease_until into the row; PgLeases remembers which rows
// this process holds under which tag and, from its own thread, pushes their lease_until to
// now + term every `heartbeat`, so a row stays this replica's while it works on it and falls
// free within `term` after the process dies. Forgetting a row (it was settled or released) stops
// its renewal. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/common/clock.h"
#include "libs/ledger/pg_db.h"

namespace anchord::submitter {

class PgLeases {
 public:
  // Starts the heartbeat thread when `term` > 0 (with term 0 nothing is renewed: the caller's
  // lease_until stands). `clock` gives the renewal times and must outlive this object.
  PgLeases(std::shared_ptr<ledger::PgDb> db, absl::Duration term, absl::Duration heartbeat,
           Clock* clock);
  // Stops and joins the heartbeat; the leases then run out on their own.
  ~PgLeases();
  PgLeases(const PgLeases&) = delete;
  PgLeases& operator=(const PgLeases&) = delete;

  // Records that this process now holds `ids` under `tag`.
  void Hold(const std::vector<int64_t>& ids, const std::string& tag) ABSL_LOCKS_EXCLUDED(mu_);
  // Stops renewing `id`; returns the tag it was held under, "" when it was not held.
  std::string Forget(int64_t id) ABSL_LOCKS_EXCLUDED(mu_);
  // Stops renewing every row.
  void ForgetAll() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void HeartbeatLoop() ABSL_LOCKS_EXCLUDED(mu_);

  const std::shared_ptr<ledger::PgDb> db_;
  const absl::Duration term_;
  const absl::Duration heartbeat_;
  Clock* const clock_;
  absl::Mutex mu_;
  std::map<int64_t, std::string> held_ ABSL_GUARDED_BY(mu_);  // claimed row -> lease owner tag
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace anchord::submitter
