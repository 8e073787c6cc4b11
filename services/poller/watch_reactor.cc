#include "services/poller/watch_reactor.h"

#include <memory>
#include <utility>

#include "libs/common/validate.h"
#include "libs/rpc/messages.h"
#include "libs/rpc/status.h"
#include "libs/rpc/unary.h"
#include "services/poller/convert.h"
#include "services/poller/poller_service.h"

namespace anchord::poller {

namespace v1 = anchord::v1;

namespace {

// `ev` as a brief watcher gets it (WatchRequest.brief): its type and time, and of its proof only
// digest, provider, state and stalled.
void Brief(const v1::WatchResponse& ev, v1::WatchResponse* out) {
  out->set_type(ev.type());
  if (ev.has_event_time()) *out->mutable_event_time() = ev.event_time();
  if (!ev.digests().empty()) out->set_digests(ev.digests());  // a grouped event (GroupEvent)
  if (!ev.has_proof()) return;
  v1::Proof* p = out->mutable_proof();
  p->set_digest(ev.proof().digest());
  p->set_provider(ev.proof().provider());
  p->set_state(ev.proof().state());
  p->set_stalled(ev.proof().stalled());
}

}  // namespace

WatchReactor::WatchReactor(PollerServiceImpl* service, const v1::WatchRequest& req)
    : service_(service) {
  absl::Status st = absl::OkStatus();
  std::optional<Digest> digest;
  if (!req.digest().empty()) {
    absl::StatusOr<Digest> d = Digest::FromBytes(req.digest(), "digest");
    if (d.ok()) digest = *d;
    st = d.status();
  }
  if (st.ok()) st = ValidateJob(req.job(), "job");
  if (!st.ok()) {
    absl::MutexLock lock(&mu_);
    FinishLocked(rpc::ToGrpcStatus(st));
    return;
  }
  filter_.job = req.job();
  filter_.digest = digest;
  batch_ = req.batch();
  brief_ = req.brief() || req.grouped();
  // Lock order is bus -> reactor (Publish notifies under the bus lock) and service watchers ->
  // reactor (EndWatches), so Subscribe and AddWatcher run without mu_ held.
  auto sub = service_->bus_->Subscribe(
      filter_, service_->options_.watch_queue_capacity, [this] { OnEvent(); },
      req.grouped() ? EventForm::kGrouped
      : brief_      ? EventForm::kBrief
                    : EventForm::kWhole);
  registered_ = true;  // before AddWatcher: EndWatches may finish us, and OnDone reads it
  if (service_->metrics_) service_->metrics_->watchers.Increment();
  service_->AddWatcher(this);
  absl::MutexLock lock(&mu_);
  snapshot_phase_ = req.include_current();
  sub_ = std::move(sub);
  // Headers now, so a client sees the stream open before the first event.
  if (!finished_) StartSendInitialMetadata();
  if (snapshot_phase_) {
    LoadPageLocked();
  } else {
    NextWriteLocked();  // events published since Subscribe
  }
}

void WatchReactor::End(grpc::Status st) {
  absl::MutexLock lock(&mu_);
  FinishLocked(std::move(st));
}

void WatchReactor::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  current_.reset();
  if (SendDeferredFinishLocked()) return;
  if (!ok) {
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
    return;
  }
  NextWriteLocked();
}

void WatchReactor::OnCancel() {
  absl::MutexLock lock(&mu_);
  FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
}

void WatchReactor::OnDone() {
  if (registered_) {
    EventBus::SubscriptionPtr sub;
    {
      absl::MutexLock lock(&mu_);
      sub = sub_;
    }
    // After Unsubscribe returns no notify runs or will run, so `this` is safe to release.
    service_->bus_->Unsubscribe(sub);
    service_->RemoveWatcher(this);
    if (service_->metrics_) service_->metrics_->watchers.Decrement();
  }
  Unref();
}

void WatchReactor::OnEvent() {
  absl::MutexLock lock(&mu_);
  if (!sub_) return;  // the constructor has not finished; it writes what is queued
  NextWriteLocked();
}

void WatchReactor::LoadPageLocked() {
  if (loading_ || finished_) return;
  loading_ = true;
  RefLocked();
  if (!service_->pool_->Post([this] { LoadPage(); })) {
    loading_ = false;
    --refs_;
    FinishLocked(rpc::ToGrpcStatus(rpc::Overloaded("poller")));
  }
}

void WatchReactor::LoadPage() {
  ListFilter f;
  f.job = filter_.job;
  if (filter_.digest.has_value()) f.digests.push_back(*filter_.digest);
  int64_t after;
  {
    absl::MutexLock lock(&mu_);
    after = snapshot_after_;
  }
  const int page = service_->options_.snapshot_page;
  auto rows = service_->store_->List(f, after, page);
  absl::Time now = service_->clock_->Now();
  {
    absl::MutexLock lock(&mu_);
    loading_ = false;
    if (!rows.ok()) {
      FinishLocked(rpc::ToGrpcStatus(rpc::StoreUnavailable("poller", rows.status())));
    } else {
      for (const ProofRow& r : *rows) {
        if (brief_) {
          snapshot_.push_back(BriefEvent(v1::PROOF_EVENT_TYPE_SNAPSHOT, r, now));
        } else {
          snapshot_.push_back(MakeEvent(v1::PROOF_EVENT_TYPE_SNAPSHOT, r, now));
        }
      }
      if (!rows->empty()) snapshot_after_ = rows->back().seq;
      if (static_cast<int>(rows->size()) < page) snapshot_loaded_ = true;
      NextWriteLocked();
    }
  }
  Unref();
}

void WatchReactor::NextWriteLocked() {
  if (finished_) return;
  if (sub_->overflowed()) {
    // With a write in flight the status goes out after it.
    FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              "watcher fell behind; reconnect with include_current"));
    return;
  }
  if (writing_) return;
  bool more = false;
  if (snapshot_phase_) {
    if (!snapshot_.empty()) {
      more = NextSnapshotLocked();
    } else if (!snapshot_loaded_) {
      LoadPageLocked();
      return;
    } else {
      auto done = std::make_shared<v1::WatchResponse>();
      done->set_type(v1::PROOF_EVENT_TYPE_SNAPSHOT_DONE);
      rpc::SetTimestamp(service_->clock_->Now(), done->mutable_event_time());
      current_ = std::move(done);
      snapshot_phase_ = false;
    }
  } else {
    more = NextLiveLocked();
    if (!current_) return;
  }
  writing_ = true;
  grpc::WriteOptions options;
  if (more) options.set_buffer_hint();
  StartWrite(current_.get(), options);
}

bool WatchReactor::NextSnapshotLocked() {
  if (!batch_) {
    current_ = std::make_shared<const v1::WatchResponse>(std::move(snapshot_.front()));
    snapshot_.pop_front();
  } else {
    auto msg = std::make_shared<v1::WatchResponse>();
    size_t bytes = 0;
    for (size_t i = 0; i < kMaxBatchEvents && bytes < kMaxBatchBytes && !snapshot_.empty(); ++i) {
      bytes += snapshot_.front().ByteSizeLong();
      *msg->add_events() = std::move(snapshot_.front());
      snapshot_.pop_front();
    }
    current_ = std::move(msg);
  }
  // SNAPSHOT_DONE follows at once when the last page is in.
  return !snapshot_.empty() || snapshot_loaded_;
}

bool WatchReactor::NextLiveLocked() {
  popped_.clear();
  const bool more = sub_->PopSome(batch_ ? kMaxBatchEvents : 1, kMaxBatchBytes, &popped_);
  if (popped_.empty()) {
    current_.reset();
  } else if (brief_) {
    // The queued events may be shared with other watchers: each is read, never taken.
    auto msg = std::make_shared<v1::WatchResponse>();
    if (popped_.size() == 1) {
      Brief(*popped_.front(), msg.get());
    } else {
      msg->mutable_events()->Reserve(static_cast<int>(popped_.size()));
      for (const EventPtr& ev : popped_) Brief(*ev, msg->add_events());
    }
    current_ = std::move(msg);
  } else if (popped_.size() == 1) {
    current_ = std::move(popped_.front());
  } else {
    // The queued events may be shared with other watchers: the batch takes those no other
    // holds, and copies the rest.
    auto msg = std::make_shared<v1::WatchResponse>();
    msg->mutable_events()->Reserve(static_cast<int>(popped_.size()));
    for (EventPtr& ev : popped_) TakeEvent(std::move(ev), msg->add_events());
    current_ = std::move(msg);
  }
  popped_.clear();
  return more;
}

}  // namespace anchord::poller
