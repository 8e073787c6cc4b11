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
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "anchord/v1/poller.pb.h"
#include "libs/digest/digest.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

// Events are created by EventBus::Deliver and shared, read-only, between the watchers' queues.
using EventPtr = std::shared_ptr<const anchord::v1::WatchResponse>;

// Sets *out to the event `ev` holds: its contents taken when `ev` is its last reference (a watcher
// alone in wanting it), else a copy. Only for events from EventBus::Deliver.
void TakeEvent(EventPtr ev, anchord::v1::WatchResponse* out);

struct WatchFilter {
  std::string job;               // empty: any
  std::optional<Digest> digest;  // nullopt: any

  bool Matches(const anchord::v1::Proof& proof) const;
  bool Matches(const ProofRow& row) const;
};

// What a subscriber reads of each event. kBrief (WatchRequest.brief): the type, the time, and of
// the proof only digest, provider, state and stalled (BriefEvent in convert.h). kGrouped
// (WatchRequest.grouped): the same, and the events of one EventBus::PublishAll call that share
// type, provider, state and stalled come as one event with their digests (GroupEvent).
enum class EventForm { kWhole, kBrief, kGrouped };

// One event of a row, for EventBus::PublishAll. The row outlives the call.
struct RowEvent {
  anchord::v1::ProofEventType type;
  const ProofRow* row;
};

class EventBus;

class Subscription {
 public:
  // Takes the next queued event; nullptr when none.
  EventPtr Pop() ABSL_LOCKS_EXCLUDED(mu_);
  // Takes queued events, oldest first, appending them to `out`: at least one when any is queued,
  // then more while fewer than `max_events` were taken and their serialized size is below
  // `max_bytes`. Returns true when more remain queued (the caller can write again at once).
  bool PopSome(size_t max_events, size_t max_bytes, std::vector<EventPtr>* out)
      ABSL_LOCKS_EXCLUDED(mu_);
  // True once the queue overflowed; nothing is queued afterwards.
  bool overflowed() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class EventBus;
  Subscription(WatchFilter filter, EventForm form, size_t capacity, std::function<void()> notify)
      : filter_(std::move(filter)), form_(form), capacity_(capacity), notify_(std::move(notify)) {}

  // Queues `ev`, or marks the subscription overflowed (dropping its queue) when it is full. False
  // when it had overflowed already: nothing changed, so there is nothing to notify.
  bool Offer(const EventPtr& ev) ABSL_LOCKS_EXCLUDED(mu_);
  // Marks the subscription overflowed and drops its queue; false when it was already.
  bool Overflow() ABSL_LOCKS_EXCLUDED(mu_);

  const WatchFilter filter_;
  // An event of a row (EventBus::Publish with a ProofRow) reaches a kBrief subscriber in its brief
  // form; an event published whole (Publish, Deliver) reaches it whole, and the reader takes what
  // it reads of it.
  const EventForm form_;
  const size_t capacity_;
  // Called (without any lock of this subscription held) after an event was queued or the queue
  // overflowed. Must not block and must not call EventBus::Unsubscribe.
  const std::function<void()> notify_;
  absl::Mutex mu_;
  std::deque<EventPtr> queue_ ABSL_GUARDED_BY(mu_);
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
};

class EventBus {
 public:
  using SubscriptionPtr = std::shared_ptr<Subscription>;

  SubscriptionPtr Subscribe(WatchFilter filter, size_t capacity, std::function<void()> notify,
                            EventForm form = EventForm::kWhole) ABSL_LOCKS_EXCLUDED(mu_);
  // After it returns, `notify` of the subscription is not running and is never called again.
  void Unsubscribe(const SubscriptionPtr& sub) ABSL_LOCKS_EXCLUDED(mu_);
  // Queues the event for every matching subscriber, and hands it to the relay (if any). Thread-
  // safe, never blocks on a watcher.
  void Publish(anchord::v1::WatchResponse event) ABSL_LOCKS_EXCLUDED(mu_);
  // The same for an event of `row` (type, time, the row as MakeEvent makes it a proof), built
  // only in the forms its subscribers read: a Merkle batch's hand-off publishes one per leaf, and
  // a brief watcher (`anchorctl archive --wait`) reads a few fields of a proof whose whole form
  // (its files, the root's record) is several times larger to build, queue and free. Nothing is
  // built when no subscriber matches and there is no relay; with a relay the whole event is built
  // and goes the way of Publish.
  void Publish(anchord::v1::ProofEventType type, const ProofRow& row, absl::Time now)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The same, taking the row's strings into the whole event instead of copying them.
  void Publish(anchord::v1::ProofEventType type, ProofRow&& row, absl::Time now)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The events of one store transaction (a Track call's outcomes, a root's leaves), in the order
  // they happened, all at `now`. kWhole and kBrief subscribers get them one by one, as from
  // Publish; a kGrouped subscriber gets them grouped (EventForm), at most kMaxGroupDigests to an
  // event. One proof's events keep their order: an event joins its kind's latest group only when
  // every earlier event of its proof is in an earlier group; otherwise it starts a new group.
  void PublishAll(const std::vector<RowEvent>& events, absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  // 32 bytes each: a grouped event of 8,192 digests is 256 KiB, well under the 1 MiB a Watch
  // response carries (WatchReactor::kMaxBatchBytes).
  static constexpr size_t kMaxGroupDigests = 8192;

  // Replicas: the relay carries every event published here to the other replicas' buses (see
  // pg_event_relay.h). Must not block. Set before the bus is used.
  using Relay = std::function<void(const anchord::v1::WatchResponse&)>;
  void SetRelay(Relay relay) ABSL_LOCKS_EXCLUDED(mu_);
  // Queues an event that another replica published (not relayed again).
  void Deliver(anchord::v1::WatchResponse event) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends every current subscription as if it had overflowed: events may have been missed (the
  // relay lost its connection), so each Watch ends with RESOURCE_EXHAUSTED and the client
  // re-reads the current state, as after an overflow.
  void DropAll() ABSL_LOCKS_EXCLUDED(mu_);
  size_t watchers() ABSL_LOCKS_EXCLUDED(mu_);
  // False while nothing would receive a published event (no subscriber, no relay): a publisher
  // may then skip building it. A subscriber that arrives just after is no worse off than one
  // arriving just after the publication (it reads the current state once subscribed).
  bool listened() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  template <typename Row>
  void PublishRow(anchord::v1::ProofEventType type, Row&& row, absl::Time now)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Held while subscribers are notified, so Unsubscribe waits for a notify in progress. Order:
  // EventBus::mu_, then a Subscription's mu_ (never the other way round).
  absl::Mutex mu_;
  std::vector<SubscriptionPtr> subs_ ABSL_GUARDED_BY(mu_);
  Relay relay_ ABSL_GUARDED_BY(mu_);
};

}  // namespace anchord::poller
