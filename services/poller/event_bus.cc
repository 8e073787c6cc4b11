#include "services/poller/event_bus.h"

#include <algorithm>

namespace anchord::poller {

bool WatchFilter::Matches(const anchord::v1::Proof& proof) const {
  if (!digest.empty() && proof.digest() != digest) return false;
  if (job.empty()) return true;
  for (const auto& f : proof.files()) {
    if (f.job() == job) return true;
  }
  return false;
}

EventPtr Subscription::Pop() {
  std::lock_guard<std::mutex> lock(mu_);
  if (queue_.empty()) return nullptr;
  EventPtr ev = std::move(queue_.front());
  queue_.pop_front();
  return ev;
}

bool Subscription::overflowed() {
  std::lock_guard<std::mutex> lock(mu_);
  return overflowed_;
}

EventBus::SubscriptionPtr EventBus::Subscribe(WatchFilter filter, size_t capacity,
                                              std::function<void()> notify) {
  SubscriptionPtr sub(
      new Subscription(std::move(filter), std::max<size_t>(1, capacity), std::move(notify)));
  std::lock_guard<std::mutex> lock(mu_);
  subs_.push_back(sub);
  return sub;
}

void EventBus::Unsubscribe(const SubscriptionPtr& sub) {
  // Publish holds mu_ while it notifies, so taking mu_ here waits for a notify in progress.
  std::lock_guard<std::mutex> lock(mu_);
  subs_.erase(std::remove(subs_.begin(), subs_.end(), sub), subs_.end());
}

void EventBus::SetRelay(Relay relay) {
  std::lock_guard<std::mutex> lock(mu_);
  relay_ = std::move(relay);
}

void EventBus::Publish(anchord::v1::WatchResponse event) {
  Relay relay;
  {
    std::lock_guard<std::mutex> lock(mu_);
    relay = relay_;
  }
  if (relay) relay(event);
  Deliver(std::move(event));
}

void EventBus::DropAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (const SubscriptionPtr& sub : subs_) {
    {
      std::lock_guard<std::mutex> qlock(sub->mu_);
      if (sub->overflowed_) continue;
      sub->overflowed_ = true;
      sub->queue_.clear();
    }
    if (sub->notify_) sub->notify_();
  }
}

void EventBus::Deliver(anchord::v1::WatchResponse event) {
  auto ev = std::make_shared<const anchord::v1::WatchResponse>(std::move(event));
  std::lock_guard<std::mutex> lock(mu_);
  for (const SubscriptionPtr& sub : subs_) {
    if (!sub->filter_.Matches(ev->proof())) continue;
    {
      std::lock_guard<std::mutex> qlock(sub->mu_);
      if (sub->overflowed_) continue;
      if (sub->queue_.size() >= sub->capacity_) {
        sub->overflowed_ = true;
        sub->queue_.clear();
      } else {
        sub->queue_.push_back(ev);
      }
    }
    if (sub->notify_) sub->notify_();
  }
}

size_t EventBus::watchers() {
  std::lock_guard<std::mutex> lock(mu_);
  return subs_.size();
}

}  // namespace anchord::poller
