// Carries proof events between poller replicas that share a PostgreSQL database, so that Watch on
// any replica streams the events of proofs another replica tracks or polls.
//
// Mechanism: LISTEN/NOTIFY on channel "anchord_poller_events" (chosen over an events table: no
// table to grow and prune, no polling, and PostgreSQL delivers notifications in commit order).
// Every event published on the local bus is sent with pg_notify from a background thread (the
// bus never blocks on the database); a listener thread with its own connection delivers the
// other replicas' events to the local bus. The payload is the serialized WatchResponse (base64)
// when it fits in a notification; a larger event (a proof with many files) is sent as a reference
// (type, provider, digest) and the receiver reads the proof from the shared store.
//
// Notifications are not stored: while the listener is disconnected (database restart) events can
// be missed, so after reconnecting it ends every local Watch as an overflow does (the client
// reconnects with include_current and gets the current state).
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/clock.h"
#include "libs/ledger/pg_db.h"
#include "services/poller/event_bus.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

class PgEventRelay {
 public:
  // Nothing is owned but the database handle; `bus`, `store` and `clock` must outlive the relay.
  PgEventRelay(std::shared_ptr<ledger::PgDb> db, EventBus* bus, PollerStore* store,
               Clock* clock = Clock::Real());
  // Stops both threads and detaches from the bus.
  ~PgEventRelay();

  // Installs the relay on the bus and starts the threads. The listener is subscribed when this
  // returns (or is retrying to connect).
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Notifications received from other replicas and delivered (for tests and metrics).
  int64_t delivered() const { return delivered_; }

 private:
  void Enqueue(const anchord::v1::WatchResponse& event) ABSL_LOCKS_EXCLUDED(mu_);
  void SendLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void ListenLoop() ABSL_LOCKS_EXCLUDED(mu_);
  bool Stopping() ABSL_LOCKS_EXCLUDED(mu_);
  void SetListening(bool listening) ABSL_LOCKS_EXCLUDED(mu_);
  bool Listen(ledger::PgConn* conn);
  void Handle(const std::string& payload);

  std::shared_ptr<ledger::PgDb> db_;
  EventBus* bus_;
  PollerStore* store_;
  Clock* clock_;
  const std::string origin_;
  absl::Mutex mu_;
  absl::CondVar cv_;  // signalled on stop_, a new outbox_ entry and a change of listening_
  std::deque<std::string> outbox_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool listening_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int64_t> delivered_{0};
  std::thread sender_;
  std::thread listener_;
};

}  // namespace anchord::poller
