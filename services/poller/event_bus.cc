#include "services/poller/event_bus.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "services/poller/convert.h"

namespace anchord::poller {

bool WatchFilter::Matches(const anchord::v1::Proof& proof) const {
  if (digest.has_value() && proof.digest() != digest->bytes()) return false;
  if (job.empty()) return true;
  for (const auto& f : proof.files()) {
    if (f.job() == job) return true;
  }
  return false;
}

bool WatchFilter::Matches(const ProofRow& row) const {
  if (digest.has_value() && row.digest != *digest) return false;
  if (job.empty()) return true;
  for (const FileRow& f : row.files) {
    if (f.job == job) return true;
  }
  return false;
}

EventPtr Subscription::Pop() {
  absl::MutexLock lock(&mu_);
  if (queue_.empty()) return nullptr;
  EventPtr ev = std::move(queue_.front());
  queue_.pop_front();
  return ev;
}

bool Subscription::PopSome(size_t max_events, size_t max_bytes, std::vector<EventPtr>* out) {
  absl::MutexLock lock(&mu_);
  size_t bytes = 0;
  for (size_t i = 0; i < max_events && bytes < max_bytes && !queue_.empty(); ++i) {
    bytes += queue_.front()->ByteSizeLong();
    out->push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  return !queue_.empty();
}

void TakeEvent(EventPtr ev, anchord::v1::WatchResponse* out) {
  // use_count() is exact when it is 1 and `ev` is one of the references: no other holder is left
  // to make another.
  if (ev.use_count() == 1) {
    out->Swap(const_cast<anchord::v1::WatchResponse*>(ev.get()));
  } else {
    *out = *ev;
  }
}

bool Subscription::overflowed() {
  absl::MutexLock lock(&mu_);
  return overflowed_;
}

bool Subscription::Offer(const EventPtr& ev) {
  absl::MutexLock lock(&mu_);
  if (overflowed_) return false;
  if (queue_.size() >= capacity_) {
    overflowed_ = true;
    queue_.clear();
  } else {
    queue_.push_back(ev);
  }
  return true;
}

bool Subscription::Overflow() {
  absl::MutexLock lock(&mu_);
  if (overflowed_) return false;
  overflowed_ = true;
  queue_.clear();
  return true;
}

EventBus::SubscriptionPtr EventBus::Subscribe(WatchFilter filter, size_t capacity,
                                              std::function<void()> notify, EventForm form) {
  SubscriptionPtr sub(
      new Subscription(std::move(filter), form, std::max<size_t>(1, capacity), std::move(notify)));
  absl::MutexLock lock(&mu_);
  subs_.push_back(sub);
  return sub;
}

void EventBus::Unsubscribe(const SubscriptionPtr& sub) {
  // Publish holds mu_ while it notifies, so taking mu_ here waits for a notify in progress.
  absl::MutexLock lock(&mu_);
  subs_.erase(std::remove(subs_.begin(), subs_.end(), sub), subs_.end());
}

void EventBus::SetRelay(Relay relay) {
  absl::MutexLock lock(&mu_);
  relay_ = std::move(relay);
}

void EventBus::Publish(anchord::v1::WatchResponse event) {
  Relay relay;
  {
    absl::MutexLock lock(&mu_);
    relay = relay_;
  }
  if (relay) relay(event);
  Deliver(std::move(event));
}

void EventBus::Publish(anchord::v1::ProofEventType type, const ProofRow& row, absl::Time now) {
  PublishRow(type, row, now);
}

void EventBus::Publish(anchord::v1::ProofEventType type, ProofRow&& row, absl::Time now) {
  PublishRow(type, std::move(row), now);
}

template <typename Row>
void EventBus::PublishRow(anchord::v1::ProofEventType type, Row&& row, absl::Time now) {
  bool relayed;
  {
    absl::MutexLock lock(&mu_);
    relayed = relay_ != nullptr;
  }
  // The relay carries whole events (the other replicas' watchers read what they read of them).
  if (relayed) {
    Publish(MakeEvent(type, std::forward<Row>(row), now));
    return;
  }
  absl::MutexLock lock(&mu_);
  // Matched before anything is built: the whole event may take the row's strings and files.
  absl::InlinedVector<Subscription*, 4> to;
  bool whole = false, brief = false;
  for (const SubscriptionPtr& sub : subs_) {
    if (!sub->filter_.Matches(row)) continue;
    to.push_back(sub.get());
    (sub->form_ == EventForm::kBrief ? brief : whole) = true;
  }
  if (to.empty()) return;
  EventPtr brief_event, whole_event;
  if (brief) brief_event = std::make_shared<anchord::v1::WatchResponse>(BriefEvent(type, row, now));
  if (whole) {
    whole_event =
        std::make_shared<anchord::v1::WatchResponse>(MakeEvent(type, std::forward<Row>(row), now));
  }
  for (Subscription* sub : to) {
    const EventPtr& ev = sub->form_ == EventForm::kBrief ? brief_event : whole_event;
    if (sub->Offer(ev) && sub->notify_) sub->notify_();
  }
}

void EventBus::DropAll() {
  absl::MutexLock lock(&mu_);
  for (const SubscriptionPtr& sub : subs_) {
    if (sub->Overflow() && sub->notify_) sub->notify_();
  }
}

void EventBus::Deliver(anchord::v1::WatchResponse event) {
  // Not a const object, only shared as one: the last holder may take its contents (TakeEvent).
  EventPtr ev = std::make_shared<anchord::v1::WatchResponse>(std::move(event));
  absl::MutexLock lock(&mu_);
  for (const SubscriptionPtr& sub : subs_) {
    if (!sub->filter_.Matches(ev->proof())) continue;
    if (sub->Offer(ev) && sub->notify_) sub->notify_();
  }
}

bool EventBus::listened() {
  absl::MutexLock lock(&mu_);
  return !subs_.empty() || relay_ != nullptr;
}

size_t EventBus::watchers() {
  absl::MutexLock lock(&mu_);
  return subs_.size();
}

}  // namespace anchord::poller
