#include "services/poller/event_bus.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
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
    (sub->form_ == EventForm::kWhole ? whole : brief) = true;
  }
  if (to.empty()) return;
  EventPtr brief_event, whole_event;
  if (brief) brief_event = std::make_shared<anchord::v1::WatchResponse>(BriefEvent(type, row, now));
  if (whole) {
    whole_event =
        std::make_shared<anchord::v1::WatchResponse>(MakeEvent(type, std::forward<Row>(row), now));
  }
  for (Subscription* sub : to) {
    const EventPtr& ev = sub->form_ == EventForm::kWhole ? whole_event : brief_event;
    if (sub->Offer(ev) && sub->notify_) sub->notify_();
  }
}

namespace {

// What the events of a group share.
struct GroupKey {
  int type;
  absl::string_view provider;
  int state;
  bool stalled;

  bool operator==(const GroupKey& o) const {
    return type == o.type && provider == o.provider && state == o.state && stalled == o.stalled;
  }
  template <typename H>
  friend H AbslHashValue(H h, const GroupKey& k) {
    return H::combine(std::move(h), k.type, k.provider, k.state, k.stalled);
  }
};

// Group indexes of `events` (EventBus::PublishAll); *first gets an event of each group.
std::vector<uint32_t> GroupsOf(const std::vector<RowEvent>& events, std::vector<size_t>* first) {
  std::vector<uint32_t> group_of(events.size());
  absl::flat_hash_map<GroupKey, uint32_t> latest;            // a kind's latest group
  absl::flat_hash_map<absl::string_view, uint32_t> last_of;  // a proof's latest group
  for (size_t i = 0; i < events.size(); ++i) {
    const ProofRow& r = *events[i].row;
    const uint32_t next = static_cast<uint32_t>(first->size());
    auto [kind, new_kind] =
        latest.try_emplace(GroupKey{events[i].type, r.provider, r.state, r.stalled}, next);
    auto [proof, new_proof] = last_of.try_emplace(r.digest.bytes(), next);
    // An earlier event of this proof in this kind's latest group or after it: a group after both.
    if (!new_kind && !new_proof && proof->second >= kind->second) kind->second = next;
    if (kind->second == next) first->push_back(i);
    group_of[i] = proof->second = kind->second;
  }
  return group_of;
}

}  // namespace

void EventBus::PublishAll(const std::vector<RowEvent>& events, absl::Time now) {
  if (events.empty()) return;
  bool relayed;
  {
    absl::MutexLock lock(&mu_);
    relayed = relay_ != nullptr;
  }
  if (relayed) {  // whole events, one by one, as the relay carries them
    for (const RowEvent& e : events) PublishRow(e.type, *e.row, now);
    return;
  }
  absl::MutexLock lock(&mu_);
  bool grouped = false;
  for (const SubscriptionPtr& sub : subs_) grouped |= sub->form_ == EventForm::kGrouped;
  std::vector<size_t> first;
  std::vector<uint32_t> group_of;
  if (grouped) group_of = GroupsOf(events, &first);
  // Built on first need, each shared by the subscribers of its form.
  std::vector<EventPtr> brief, whole;
  for (const SubscriptionPtr& sub : subs_) {
    bool offered = false;
    auto offer = [&](EventPtr ev) { offered = sub->Offer(ev) || offered; };
    if (sub->form_ == EventForm::kGrouped) {
      std::vector<std::string> digests(first.size());
      for (size_t i = 0; i < events.size(); ++i) {
        if (sub->filter_.Matches(*events[i].row)) {
          absl::StrAppend(&digests[group_of[i]], events[i].row->digest.bytes());
        }
      }
      constexpr size_t kMaxBytes = kMaxGroupDigests * Digest::kSize;
      for (size_t g = 0; g < first.size(); ++g) {
        const RowEvent& shared = events[first[g]];
        const std::string& all = digests[g];
        if (all.size() == Digest::kSize) {  // one proof: its brief event
          offer(std::make_shared<anchord::v1::WatchResponse>(
              BriefEvent(shared.type, *shared.row, now)));
          continue;
        }
        for (size_t at = 0; at < all.size(); at += kMaxBytes) {
          offer(std::make_shared<anchord::v1::WatchResponse>(
              GroupEvent(shared.type, *shared.row, all.substr(at, kMaxBytes), now)));
        }
      }
    } else {
      std::vector<EventPtr>& built = sub->form_ == EventForm::kBrief ? brief : whole;
      built.resize(events.size());
      for (size_t i = 0; i < events.size(); ++i) {
        const RowEvent& e = events[i];
        if (!sub->filter_.Matches(*e.row)) continue;
        if (!built[i]) {
          built[i] = std::make_shared<anchord::v1::WatchResponse>(
              sub->form_ == EventForm::kBrief ? BriefEvent(e.type, *e.row, now)
                                              : MakeEvent(e.type, *e.row, now));
        }
        offer(built[i]);
      }
    }
    if (offered && sub->notify_) sub->notify_();
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
