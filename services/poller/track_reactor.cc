#include "services/poller/track_reactor.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/validate.h"
#include "libs/rpc/status.h"
#include "libs/rpc/unary.h"
#include "services/poller/convert.h"
#include "services/poller/poll_engine.h"
#include "services/poller/poller_service.h"

namespace anchord::poller {

namespace v1 = anchord::v1;
using anchord::v1::DigestState;

namespace {

// A hand-off is a peer's report, never a verdict the poller takes on trust: a compromised or buggy
// peer must not be able to say CONFIRMED for something no provider anchored, nor end a proof the
// poller is following. So CONFIRMED is stored as PENDING (the poll engine's lookup at the provider
// confirms it, usually in the next round), and FAILED is stored only for a (digest, provider) the
// poller holds no proof for: it records the submitter's failure to anchor, and never replaces
// or downgrades a proof. Returns false when the hand-off is to be acknowledged without storing.
absl::StatusOr<bool> ApplyHandoffPolicy(PollerStore* store, TrackInput* in) {
  ProofRow& p = in->proof;
  if (p.state == v1::DIGEST_STATE_CONFIRMED) {
    p.state = v1::DIGEST_STATE_PENDING;
    p.block_height = 0;
    p.bitcoin_tx.clear();
    p.confirmed_at = absl::InfinitePast();
    return true;
  }
  if (p.state == v1::DIGEST_STATE_FAILED) {
    auto existing = store->Get(p.digest, p.provider);
    if (!existing.ok()) return existing.status();
    if (existing->has_value()) {
      ANCHORD_LOG(Warning) << "hand-off: FAILED for " << p.digest.hex() << " with "
                           << QuoteCallerText(p.provider)
                           << " ignored: the poller holds its proof ("
                           << v1::DigestState_Name(static_cast<DigestState>((*existing)->state))
                           << ")";
      return false;
    }
  }
  return true;
}

// While requests keep arriving (a peer streaming a window of hand-offs), Process waits briefly
// for more before storing them, so that one commit holds more: each commit rewrites every
// random-key index page it touches, so the disk written per proof falls as commits grow
// (bench/RESULTS.md, "the poller's Track path"). It stops at a pause of kGatherQuiet, after
// kGatherMax, or as soon as no read is outstanding (the in-flight limit reached, the stream
// ending or draining), so a lone hand-off waits kGatherQuiet at most.
constexpr absl::Duration kGatherQuiet = absl::Milliseconds(2);
constexpr absl::Duration kGatherMax = absl::Milliseconds(50);

// The per-item answer to a request whose store access failed (the detail is logged, not sent).
v1::ItemStatus StoreUnavailableItem(const absl::Status& st) {
  ANCHORD_LOG(Error) << "poller store: " << st;
  return rpc::ToItemStatus(absl::UnavailableError("poller store unavailable; retry"),
                           "STORE_UNAVAILABLE", absl::Seconds(1));
}

// How each RPC's request becomes store inputs, and what it weighs against track_max_in_flight.
const v1::TrackRequest& TrackOf(const v1::TrackRequest& req) { return req; }
const v1::TrackRequest& TrackOf(const v1::TrackBatchRequest& req) { return req.track(); }

int Cost(const v1::TrackRequest&) { return 1; }
int Cost(const v1::TrackBatchRequest& req) { return 1 + req.leaves_size(); }

// Appends the request's inputs to *out; on error, nothing.
absl::Status AppendInputs(BatchTreeCache*, const v1::TrackRequest& req,
                          std::vector<TrackInput>* out) {
  auto in = ValidateTrackRequest(req);
  if (!in.ok()) return in.status();
  out->push_back(*std::move(in));
  return absl::OkStatus();
}
absl::Status AppendInputs(BatchTreeCache* trees, const v1::TrackBatchRequest& req,
                          std::vector<TrackInput>* out) {
  return AppendTrackBatchInputs(req, trees, out);
}

}  // namespace

template <typename Request>
TrackReactor<Request>::TrackReactor(PollerServiceImpl* service) : service_(service) {
  // Registered before anything can finish the stream, so OnDone always finds it registered.
  service_->AddTrack(this);
  absl::MutexLock lock(&mu_);
  if (finished_) return;  // drained at once: the poller is shutting down
  reading_ = true;
  this->StartRead(&read_buf_);
}

template <typename Request>
void TrackReactor<Request>::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  MaybeFinishLocked();
}

template <typename Request>
void TrackReactor<Request>::OnReadDone(bool ok) {
  absl::MutexLock lock(&mu_);
  reading_ = false;
  if (!ok) {
    reads_done_ = true;
    MaybeFinishLocked();
    return;
  }
  if (finished_) return;  // read after a drain finished the stream: never answered, so resent
  in_flight_ += Cost(read_buf_);
  inbox_cost_ += Cost(read_buf_);
  inbox_.push_back(std::move(read_buf_));
  read_buf_.Clear();
  ScheduleLocked();
  MaybeReadLocked();
}

template <typename Request>
void TrackReactor<Request>::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  in_flight_ -= write_cost_;
  write_cost_ = 0;
  if (this->SendDeferredFinishLocked()) return;
  if (!ok) {
    // The client is gone; stop here (the stored proofs stay stored).
    this->FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
    return;
  }
  MaybeWriteLocked();
  MaybeReadLocked();
  MaybeFinishLocked();
}

template <typename Request>
void TrackReactor<Request>::OnCancel() {
  absl::MutexLock lock(&mu_);
  this->FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
}

template <typename Request>
void TrackReactor<Request>::OnDone() {
  service_->RemoveTrack(this);
  this->Unref();
}

template <typename Request>
void TrackReactor<Request>::MaybeReadLocked() {
  // One read in flight; at most track_max_in_flight proofs between read and acknowledgement (one
  // request more when the last one read was large).
  if (reading_ || reads_done_ || finished_ || draining_) return;
  if (in_flight_ >= service_->options_.track_max_in_flight) return;
  reading_ = true;
  this->StartRead(&read_buf_);
}

template <typename Request>
void TrackReactor<Request>::MaybeWriteLocked() {
  if (writing_ || finished_ || outbox_.empty()) return;
  writing_ = true;
  write_buf_ = std::move(outbox_.front().first);
  write_cost_ = outbox_.front().second;
  outbox_.pop_front();
  this->StartWrite(&write_buf_);
}

template <typename Request>
void TrackReactor<Request>::MaybeFinishLocked() {
  if (in_flight_ != 0 || writing_ || task_scheduled_) return;
  if (reads_done_) {
    this->FinishLocked(grpc::Status::OK);
  } else if (draining_) {
    // A read may still be outstanding: gRPC completes it (not ok) once the status is sent.
    this->FinishLocked(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "poller shutting down; reconnect"));
  }
}

template <typename Request>
void TrackReactor<Request>::ScheduleLocked() {
  if (task_scheduled_ || inbox_.empty() || finished_) return;
  task_scheduled_ = true;
  this->RefLocked();
  if (!service_->pool_->Post([this] { Process(); })) {
    task_scheduled_ = false;
    --refs_;  // OnDone has not run yet (Finish was not called), so refs_ stays > 0
    this->FinishLocked(rpc::ToGrpcStatus(rpc::Overloaded("poller")));
  }
}

template <typename Request>
void TrackReactor<Request>::ScheduleNextLocked() {
  task_scheduled_ = false;
  ScheduleLocked();
}

template <typename Request>
void TrackReactor<Request>::Process() {
  std::vector<Request> batch;
  {
    absl::MutexLock lock(&mu_);
    const int most = service_->options_.track_max_per_commit;
    const absl::Time give_up = absl::Now() + kGatherMax;
    while (reading_ && !finished_ && !draining_ && inbox_cost_ < most) {
      const size_t seen = inbox_.size();
      auto more = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return inbox_.size() > seen || finished_ || draining_;
      };
      const absl::Time until = std::min(absl::Now() + kGatherQuiet, give_up);
      if (!mu_.AwaitWithDeadline(absl::Condition(&more), until) || absl::Now() >= give_up) break;
    }
    // Up to `most` proofs in this commit (a larger request alone); the rest is the next task's.
    int taken = 0;
    while (!inbox_.empty()) {
      const int cost = Cost(inbox_.front());
      if (!batch.empty() && taken + cost > most) break;
      taken += cost;
      inbox_cost_ -= cost;
      batch.push_back(std::move(inbox_.front()));
      inbox_.pop_front();
    }
  }
  Prepared prepared = Prepare(batch);
  {
    absl::MutexLock lock(&mu_);
    if (storing_) {
      // The previous batch is still being stored: this one waits for its turn without holding a
      // worker, and keeps this task's reference and place (task_scheduled_) until it is stored.
      parked_ = std::move(prepared);
      return;
    }
    storing_ = true;
    ScheduleNextLocked();
  }
  StoreInTurn(std::move(prepared));
}

template <typename Request>
void TrackReactor<Request>::StoreInTurn(Prepared prepared) {
  for (;;) {
    std::vector<TrackOutcome> outcomes;
    absl::Time now;
    Store(&prepared, &outcomes, &now);
    // Taken before the turn is handed on: the next batch, stored meanwhile, publishes after this
    // one. A caller never holds an acknowledgement whose event is not queued.
    publish_mu_.Lock();
    std::shared_ptr<Prepared> next;
    {
      absl::MutexLock lock(&mu_);
      if (parked_.has_value()) {
        next = std::make_shared<Prepared>(std::move(*parked_));
        parked_.reset();
      } else {
        storing_ = false;
      }
    }
    auto start_next = [this, next] {
      {
        absl::MutexLock lock(&mu_);
        ScheduleNextLocked();
      }
      StoreInTurn(std::move(*next));
    };
    // The parked batch is stored on a worker of its own, beside this one's events; if the pool
    // takes no more work, here after them.
    const bool posted = next != nullptr && service_->pool_->Post(start_next);
    PublishOutcomes(&outcomes, now);
    {
      absl::MutexLock lock(&mu_);
      for (auto& a : prepared.answers) outbox_.push_back(std::move(a));
      if (finished_) {
        // Cancelled meanwhile: nothing more will be written, release the counts.
        for (const Answer& a : outbox_) in_flight_ -= a.second;
        outbox_.clear();
      }
      MaybeWriteLocked();
      MaybeReadLocked();
      MaybeFinishLocked();
    }
    publish_mu_.Unlock();
    // The parked batch holds a reference of its own, so `this` outlives this one's.
    this->Unref();
    if (next == nullptr || posted) return;
    prepared = std::move(*next);
    absl::MutexLock lock(&mu_);
    ScheduleNextLocked();
  }
}

template <typename Request>
typename TrackReactor<Request>::Prepared TrackReactor<Request>::Prepare(
    const std::vector<Request>& batch) {
  Prepared p;
  p.answers.resize(batch.size());
  p.ends.reserve(batch.size());
  // A request's cost is the number of inputs it expands to at most: no TrackInput (a large
  // struct) is moved by the vector's growth.
  size_t most = 0;
  for (const Request& r : batch) most += static_cast<size_t>(Cost(r));
  p.inputs.reserve(most);
  for (size_t i = 0; i < batch.size(); ++i) {
    v1::TrackResponse& resp = p.answers[i].first;
    p.answers[i].second = Cost(batch[i]);
    resp.set_request_id(EchoId(TrackOf(batch[i]).request_id()));
    resp.set_digest(TrackOf(batch[i]).proof().digest());
    absl::Status expanded = AppendInputs(&service_->batch_trees_, batch[i], &p.inputs);
    *resp.mutable_status() = expanded.ok() ? rpc::ToItemStatus(absl::OkStatus())
                                           : rpc::ToItemStatus(expanded, "INVALID_FIELD");
    p.ends.push_back(p.inputs.size());
  }
  if (service_->options_.on_prepared) service_->options_.on_prepared();
  return p;
}

template <typename Request>
void TrackReactor<Request>::Store(Prepared* prepared, std::vector<TrackOutcome>* stored,
                                  absl::Time* now) {
  // The policy over each request's inputs where they are; those it drops are closed up. A
  // request whose policy fails is answered as a whole and none of its inputs is stored.
  std::vector<TrackInput>& inputs = prepared->inputs;
  std::vector<bool> stores(prepared->answers.size(), false);
  size_t kept = 0;
  for (size_t i = 0; i < prepared->answers.size(); ++i) {
    const size_t first = i == 0 ? 0 : prepared->ends[i - 1];
    const size_t first_kept = kept;
    absl::Status policy;
    for (size_t k = first; k < prepared->ends[i]; ++k) {
      auto store_it = ApplyHandoffPolicy(service_->store_, &inputs[k]);
      if (!store_it.ok()) {
        policy = store_it.status();
        break;
      }
      if (!*store_it) continue;
      if (kept != k) inputs[kept] = std::move(inputs[k]);
      ++kept;
    }
    if (!policy.ok()) {
      kept = first_kept;
      *prepared->answers[i].first.mutable_status() = StoreUnavailableItem(policy);
      continue;
    }
    stores[i] = kept > first_kept;
  }
  inputs.resize(kept);
  if (inputs.empty()) return;
  if (service_->options_.before_store) service_->options_.before_store(inputs.size());
  *now = service_->clock_->Now();
  auto outcomes = service_->store_->Track(inputs, *now);
  if (!outcomes.ok()) {
    v1::ItemStatus unavailable = StoreUnavailableItem(outcomes.status());
    for (size_t i = 0; i < prepared->answers.size(); ++i) {
      if (stores[i]) *prepared->answers[i].first.mutable_status() = unavailable;
    }
    return;
  }
  *stored = *std::move(outcomes);
}

template <typename Request>
void TrackReactor<Request>::PublishOutcomes(std::vector<TrackOutcome>* outcomes, absl::Time now) {
  // One call for the whole transaction: a grouped watcher gets a batch's leaves as one event.
  std::vector<RowEvent> events;
  events.reserve(outcomes->size());
  for (const TrackOutcome& o : *outcomes) {
    v1::ProofEventType type = v1::PROOF_EVENT_TYPE_UNSPECIFIED;
    if (o.inserted || o.state_changed) {
      type = o.proof.state == v1::DIGEST_STATE_CONFIRMED ? v1::PROOF_EVENT_TYPE_CONFIRMED
             : o.proof.state == v1::DIGEST_STATE_FAILED  ? v1::PROOF_EVENT_TYPE_FAILED
                                                         : v1::PROOF_EVENT_TYPE_TRACKED;
    }
    if (type != v1::PROOF_EVENT_TYPE_UNSPECIFIED) events.push_back({type, &o.proof});
    AppendLeafEvents(o.leaves_changed, /*were_confirmed=*/false, &events);
  }
  PublishEvents(*service_->bus_, service_->metrics_, events, now);
}

template class TrackReactor<v1::TrackRequest>;
template class TrackReactor<v1::TrackBatchRequest>;

}  // namespace anchord::poller
