// The in-process event bus between the poller's writers (Track, the poll engine) and its Watch
// streams.
//
// Every watcher has its own bounded queue. Publishing never blocks and never grows memory without
// bound: when a watcher's queue is full the subscription is marked overflowed and its queue is
// dropped; the Watch stream then ends with RESOURCE_EXHAUSTED so the client reconnects with
// include_current and gets a fresh snapshot instead of silently missing events.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "anchord/v1/poller.pb.h"

namespace anchord::poller {

using EventPtr = std::shared_ptr<const anchord::v1::WatchResponse>;

struct WatchFilter {
  std::string job;     // empty: any
  std::string digest;  // empty: any

  bool Matches(const anchord::v1::Proof& proof) const;
};

class EventBus;

class Subscription {
 public:
  // Takes the next queued event; nullptr when none.
  EventPtr Pop();
  // True once the queue overflowed; nothing is queued afterwards.
  bool overflowed();

 private:
  friend class EventBus;
  Subscription(WatchFilter filter, size_t capacity, std::function<void()> notify)
      : filter_(std::move(filter)), capacity_(capacity), notify_(std::move(notify)) {}

  const WatchFilter filter_;
  const size_t capacity_;
  // Called (without any lock of this subscription held) after an event was queued or the queue
  // overflowed. Must not block and must not call EventBus::Unsubscribe.
  const std::function<void()> notify_;
  std::mutex mu_;
  std::deque<EventPtr> queue_;
  bool overflowed_ = false;
};

class EventBus {
 public:
  using SubscriptionPtr = std::shared_ptr<Subscription>;

  SubscriptionPtr Subscribe(WatchFilter filter, size_t capacity, std::function<void()> notify);
  // After it returns, `notify` of the subscription is not running and is never called again.
  void Unsubscribe(const SubscriptionPtr& sub);
  // Queues the event for every matching subscriber, and hands it to the relay (if any). Thread-
  // safe, never blocks on a watcher.
  void Publish(anchord::v1::WatchResponse event);

  // Replicas: the relay carries every event published here to the other replicas' buses (see
  // pg_event_relay.h). Must not block. Set before the bus is used.
  using Relay = std::function<void(const anchord::v1::WatchResponse&)>;
  void SetRelay(Relay relay);
  // Queues an event that another replica published (not relayed again).
  void Deliver(anchord::v1::WatchResponse event);
  // Ends every current subscription as if it had overflowed: events may have been missed (the
  // relay lost its connection), so each Watch ends with RESOURCE_EXHAUSTED and the client
  // re-reads the current state, as after an overflow.
  void DropAll();
  size_t watchers();

 private:
  std::mutex mu_;
  std::vector<SubscriptionPtr> subs_;
  Relay relay_;
};

}  // namespace anchord::poller
