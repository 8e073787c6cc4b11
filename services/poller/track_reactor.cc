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

}  // namespace

TrackReactor::TrackReactor(PollerServiceImpl* service) : service_(service) {
  // Registered before anything can finish the stream, so OnDone always finds it registered.
  service_->AddTrack(this);
  absl::MutexLock lock(&mu_);
  if (finished_) return;  // drained at once: the poller is shutting down
  reading_ = true;
  StartRead(&read_buf_);
}

void TrackReactor::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  MaybeFinishLocked();
}

void TrackReactor::OnReadDone(bool ok) {
  absl::MutexLock lock(&mu_);
  reading_ = false;
  if (!ok) {
    reads_done_ = true;
    MaybeFinishLocked();
    return;
  }
  if (finished_) return;  // read after a drain finished the stream: never answered, so resent
  ++in_flight_;
  inbox_.push_back(std::move(read_buf_));
  read_buf_.Clear();
  ScheduleLocked();
  MaybeReadLocked();
}

void TrackReactor::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  --in_flight_;
  if (SendDeferredFinishLocked()) return;
  if (!ok) {
    // The client is gone; stop here (the stored proofs stay stored).
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
    return;
  }
  MaybeWriteLocked();
  MaybeReadLocked();
  MaybeFinishLocked();
}

void TrackReactor::OnCancel() {
  absl::MutexLock lock(&mu_);
  FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
}

void TrackReactor::OnDone() {
  service_->RemoveTrack(this);
  Unref();
}

void TrackReactor::MaybeReadLocked() {
  // One read in flight; at most track_max_in_flight requests between read and acknowledgement.
  if (reading_ || reads_done_ || finished_ || draining_) return;
  if (in_flight_ >= service_->options_.track_max_in_flight) return;
  reading_ = true;
  StartRead(&read_buf_);
}

void TrackReactor::MaybeWriteLocked() {
  if (writing_ || finished_ || outbox_.empty()) return;
  writing_ = true;
  write_buf_ = std::move(outbox_.front());
  outbox_.pop_front();
  StartWrite(&write_buf_);
}

void TrackReactor::MaybeFinishLocked() {
  if (in_flight_ != 0 || writing_ || task_scheduled_) return;
  if (reads_done_) {
    FinishLocked(grpc::Status::OK);
  } else if (draining_) {
    // A read may still be outstanding: gRPC completes it (not ok) once the status is sent.
    FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "poller shutting down; reconnect"));
  }
}

void TrackReactor::ScheduleLocked() {
  if (task_scheduled_ || inbox_.empty() || finished_) return;
  task_scheduled_ = true;
  RefLocked();
  if (!service_->pool_->Post([this] { Process(); })) {
    task_scheduled_ = false;
    --refs_;  // OnDone has not run yet (Finish was not called), so refs_ stays > 0
    FinishLocked(rpc::ToGrpcStatus(rpc::Overloaded("poller")));
  }
}

void TrackReactor::Process() {
  std::vector<v1::TrackRequest> batch;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time give_up = absl::Now() + kGatherMax;
    while (reading_ && !finished_ && !draining_) {
      const size_t seen = inbox_.size();
      auto more = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return inbox_.size() > seen || finished_ || draining_;
      };
      const absl::Time until = std::min(absl::Now() + kGatherQuiet, give_up);
      if (!mu_.AwaitWithDeadline(absl::Condition(&more), until) || absl::Now() >= give_up) break;
    }
    batch.reserve(inbox_.size());
    for (auto& r : inbox_) batch.push_back(std::move(r));
    inbox_.clear();
  }
  std::vector<v1::TrackResponse> responses = StoreBatch(batch);
  {
    absl::MutexLock lock(&mu_);
    for (auto& r : responses) outbox_.push_back(std::move(r));
    task_scheduled_ = false;
    if (finished_) {
      // Cancelled meanwhile: nothing more will be written, release the counts.
      in_flight_ -= static_cast<int>(outbox_.size());
      outbox_.clear();
    }
    ScheduleLocked();
    MaybeWriteLocked();
    MaybeReadLocked();
    MaybeFinishLocked();
  }
  Unref();
}

std::vector<v1::TrackResponse> TrackReactor::StoreBatch(
    const std::vector<v1::TrackRequest>& batch) {
  std::vector<v1::TrackResponse> responses(batch.size());
  std::vector<TrackInput> inputs;
  std::vector<size_t> input_index;
  inputs.reserve(batch.size());
  input_index.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    responses[i].set_request_id(EchoId(batch[i].request_id()));
    responses[i].set_digest(batch[i].proof().digest());
    auto in = ValidateTrackRequest(batch[i]);
    if (!in.ok()) {
      *responses[i].mutable_status() = rpc::ToItemStatus(in.status(), "INVALID_FIELD");
      continue;
    }
    auto store_it = ApplyHandoffPolicy(service_->store_, &*in);
    if (!store_it.ok()) {
      *responses[i].mutable_status() = StoreUnavailableItem(store_it.status());
      continue;
    }
    if (!*store_it) {
      *responses[i].mutable_status() = rpc::ToItemStatus(absl::OkStatus());
      continue;
    }
    inputs.push_back(std::move(*in));
    input_index.push_back(i);
  }
  if (inputs.empty()) return responses;
  absl::Time now = service_->clock_->Now();
  auto outcomes = service_->store_->Track(inputs, now);
  if (!outcomes.ok()) {
    v1::ItemStatus unavailable = StoreUnavailableItem(outcomes.status());
    for (size_t i : input_index) *responses[i].mutable_status() = unavailable;
    return responses;
  }
  for (size_t k = 0; k < outcomes->size(); ++k) {
    const TrackOutcome& o = (*outcomes)[k];
    *responses[input_index[k]].mutable_status() = rpc::ToItemStatus(absl::OkStatus());
    v1::ProofEventType type = v1::PROOF_EVENT_TYPE_UNSPECIFIED;
    if (o.inserted || o.state_changed) {
      type = o.proof.state == v1::DIGEST_STATE_CONFIRMED ? v1::PROOF_EVENT_TYPE_CONFIRMED
             : o.proof.state == v1::DIGEST_STATE_FAILED  ? v1::PROOF_EVENT_TYPE_FAILED
                                                         : v1::PROOF_EVENT_TYPE_TRACKED;
    }
    if (type != v1::PROOF_EVENT_TYPE_UNSPECIFIED) {
      PublishEvent(*service_->bus_, service_->metrics_, type, o.proof, now);
    }
    PublishLeafEvents(*service_->bus_, service_->metrics_, o.leaves_changed, now);
  }
  return responses;
}

}  // namespace anchord::poller
