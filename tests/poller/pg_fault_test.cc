// Fault behaviour of the poller on PostgreSQL: the database restarts under two replicas. Hand-offs
// stored while it is down complete once it is back, nothing stored is lost, and the event relay
// reconnects: the watchers that may have missed events are ended (they re-read the current
// state), and events flow between the replicas again.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <thread>

#include "libs/ledger/pg_db.h"
#include "services/poller/event_bus.h"
#include "services/poller/pg_event_relay.h"
#include "services/poller/pg_poller_store.h"
#include "services/poller/poll_engine.h"
#include "tests/poller/test_util.h"
#include "tests/support/pg_server.h"
#include "tests/testing/wait.h"

namespace anchord::poller {
namespace {

using testing::Digest;
using testing::Pending;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

// Polls `cond` every 100 ms for at most `limit`.
bool WaitFor(const std::function<bool()>& cond, absl::Duration limit) {
  return ::anchord::testing::WaitUntil(cond, limit, absl::Milliseconds(100));
}

TEST(PgPollerFaultTest, DatabaseRestartUnderTwoReplicas) {
  auto server = ::anchord::testing::PgServer::Start();  // private: this test stops it
  ASSERT_TRUE(server.ok()) << server.status();
  std::shared_ptr<ledger::PgDb> dbs[2];
  std::unique_ptr<PollerStore> stores[2];
  for (int i = 0; i < 2; ++i) {
    auto db = ledger::PgDb::Open((*server)->Url());
    ASSERT_TRUE(db.ok()) << db.status();
    dbs[i] = std::shared_ptr<ledger::PgDb>(std::move(*db));
    auto s = OpenPgPollerStore(dbs[i]);
    ASSERT_TRUE(s.ok()) << s.status();
    stores[i] = std::move(*s);
  }
  EventBus bus_a, bus_b;
  PgEventRelay relay_a(dbs[0], &bus_a, stores[0].get());
  PgEventRelay relay_b(dbs[1], &bus_b, stores[1].get());
  relay_a.Start();
  relay_b.Start();
  auto before = bus_b.Subscribe(WatchFilter{}, 100, [] {});

  ASSERT_TRUE(stores[0]->Track({Pending(Digest(1), "id-1")}, kT0).ok());
  ASSERT_TRUE((*server)->Stop().ok());
  // A hand-off arriving while the database is down is stored once it is back (and only then
  // acknowledged by the service, which waits for this call). The server comes back once the
  // call is under way.
  std::atomic<bool> calling{false}, returned{false}, returned_while_down{true};
  std::thread restarter([&] {
    EXPECT_TRUE(WaitFor([&] { return calling.load(); }, absl::Seconds(10)));
    returned_while_down = returned.load();
    EXPECT_TRUE((*server)->StartAgain().ok());
  });
  calling = true;
  auto tracked = stores[1]->Track({Pending(Digest(2), "id-2")}, kT0);
  returned = true;
  restarter.join();
  EXPECT_FALSE(returned_while_down) << "Track returned while the database was down";
  ASSERT_TRUE(tracked.ok()) << tracked.status();

  // The watcher that was connected through the outage is ended (it may have missed events).
  EXPECT_TRUE(WaitFor([&] { return before->overflowed(); }, absl::Seconds(30)))
      << "a watcher that may have missed events was not ended";
  bus_b.Unsubscribe(before);
  // Relaying works again: a new watcher on b sees an event published on a.
  auto after = bus_b.Subscribe(WatchFilter{}, 100, [] {});
  EventPtr got;
  ASSERT_TRUE(WaitFor(
      [&] {
        // Re-published until it arrives: a's listener/sender may still be reconnecting.
        PublishEvent(bus_a, nullptr, anchord::v1::PROOF_EVENT_TYPE_TRACKED, tracked->front().proof,
                     kT0);
        got = after->Pop();
        return got != nullptr;
      },
      absl::Seconds(30)));
  EXPECT_EQ(got->proof().digest(), testing::DigestBytes(2));
  bus_b.Unsubscribe(after);

  // Nothing stored was lost, whichever replica stored it.
  for (int n : {1, 2}) {
    auto row = stores[0]->Get(Digest(n), "fake");
    ASSERT_TRUE(row.ok()) << row.status();
    ASSERT_TRUE(row->has_value()) << n;
    EXPECT_EQ((*row)->files.size(), 1u);
  }
}

}  // namespace
}  // namespace anchord::poller
