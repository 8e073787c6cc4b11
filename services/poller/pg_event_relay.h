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
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

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
  void Start();
  // Notifications received from other replicas and delivered (for tests and metrics).
  int64_t delivered() const { return delivered_; }

 private:
  void Enqueue(const anchord::v1::WatchResponse& event);
  void SendLoop();
  void ListenLoop();
  bool Listen(ledger::PgConn* conn);
  void Handle(const std::string& payload);

  std::shared_ptr<ledger::PgDb> db_;
  EventBus* bus_;
  PollerStore* store_;
  Clock* clock_;
  const std::string origin_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> outbox_;  // guarded by mu_
  bool stop_ = false;               // guarded by mu_
  bool listening_ = false;          // guarded by mu_
  std::atomic<int64_t> delivered_{0};
  std::thread sender_;
  std::thread listener_;
};

}  // namespace anchord::poller
