#include "services/poller/poller_service.h"

#include <algorithm>
#include <deque>

#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/validate.h"
#include "libs/rpc/internal.h"
#include "libs/rpc/reactor_lifetime.h"
#include "libs/rpc/status.h"
#include "services/poller/convert.h"
#include "services/poller/leaf_proof.h"
#include "services/poller/poll_engine.h"

namespace anchord::poller {

using anchord::v1::DigestState;
namespace v1 = anchord::v1;

namespace {

constexpr size_t kChunkBytes = 64 * 1024;
constexpr int kMaxPageSize = 1000;
constexpr int kDefaultPageSize = 100;
constexpr int kMaxDigestFilter = 1000;

grpc::Status Busy() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "poller overloaded; retry later");
}

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
      ANCHORD_LOG(Warning) << "hand-off: FAILED for " << HexEncode(p.digest) << " with "
                           << QuoteCallerText(p.provider)
                           << " ignored: the poller holds its proof ("
                           << v1::DigestState_Name(static_cast<DigestState>((*existing)->state))
                           << ")";
      return false;
    }
  }
  return true;
}

grpc::Status StoreError(const absl::Status& st) {
  ANCHORD_LOG(Error) << "poller store: " << st;
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "poller store unavailable; retry later");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Track: bidi; requests are batched per stream and stored on the worker pool, one transaction per
// batch; each response is written after the commit that made its proof durable.
class TrackReactor final
    : public rpc::ReactorLifetime<grpc::ServerBidiReactor<v1::TrackRequest, v1::TrackResponse>> {
 public:
  explicit TrackReactor(PollerServiceImpl* service) : service_(service) {
    // Registered before anything can finish the stream, so OnDone always finds it registered.
    service_->AddTrack(this);
    absl::MutexLock lock(&mu_);
    if (finished_) return;  // drained at once: the poller is shutting down
    reading_ = true;
    StartRead(&read_buf_);
  }

  // Called by the service on shutdown: reads nothing more, answers what was read once it is
  // stored, then ends the stream with UNAVAILABLE so the sender reconnects (to a restarted
  // poller) and resends whatever it did not get an answer for.
  void Drain() {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    MaybeFinishLocked();
  }

  // grpc::ServerBidiReactor
  void OnReadDone(bool ok) override {
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

  void OnWriteDone(bool ok) override {
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

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    service_->RemoveTrack(this);
    Unref();
  }

 private:
  void MaybeReadLocked() {
    // One read in flight; at most track_max_in_flight requests between read and acknowledgement.
    if (reading_ || reads_done_ || finished_ || draining_) return;
    if (in_flight_ >= service_->options_.track_max_in_flight) return;
    reading_ = true;
    StartRead(&read_buf_);
  }

  void MaybeWriteLocked() {
    if (writing_ || finished_ || outbox_.empty()) return;
    writing_ = true;
    write_buf_ = std::move(outbox_.front());
    outbox_.pop_front();
    StartWrite(&write_buf_);
  }

  void MaybeFinishLocked() {
    if (in_flight_ != 0 || writing_ || task_scheduled_) return;
    if (reads_done_) {
      FinishLocked(grpc::Status::OK);
    } else if (draining_) {
      // A read may still be outstanding: gRPC completes it (not ok) once the status is sent.
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "poller shutting down; reconnect"));
    }
  }

  void ScheduleLocked() {
    if (task_scheduled_ || inbox_.empty() || finished_) return;
    task_scheduled_ = true;
    ++refs_;
    if (!service_->pool_->Post([this] { Process(); })) {
      task_scheduled_ = false;
      --refs_;  // OnDone has not run yet (Finish was not called), so refs_ stays > 0
      FinishLocked(Busy());
    }
  }

  // Worker thread.
  void Process() {
    std::vector<v1::TrackRequest> batch;
    {
      absl::MutexLock lock(&mu_);
      for (auto& r : inbox_) batch.push_back(std::move(r));
      inbox_.clear();
    }
    std::vector<v1::TrackResponse> responses(batch.size());
    std::vector<TrackInput> inputs;
    std::vector<size_t> input_index;
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
        ANCHORD_LOG(Error) << "poller store: " << store_it.status();
        *responses[i].mutable_status() =
            rpc::ToItemStatus(absl::UnavailableError("poller store unavailable; retry"),
                              "STORE_UNAVAILABLE", absl::Seconds(1));
        continue;
      }
      if (!*store_it) {
        *responses[i].mutable_status() = rpc::ToItemStatus(absl::OkStatus());
        continue;
      }
      inputs.push_back(std::move(*in));
      input_index.push_back(i);
    }
    if (!inputs.empty()) {
      absl::Time now = service_->clock_->Now();
      auto outcomes = service_->store_->Track(inputs, now);
      if (!outcomes.ok()) {
        ANCHORD_LOG(Error) << "poller store: " << outcomes.status();
        for (size_t i : input_index) {
          *responses[i].mutable_status() =
              rpc::ToItemStatus(absl::UnavailableError("poller store unavailable; retry"),
                                "STORE_UNAVAILABLE", absl::Seconds(1));
        }
      } else {
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
      }
    }
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

  PollerServiceImpl* service_;
  v1::TrackRequest read_buf_;
  v1::TrackResponse write_buf_;
  std::deque<v1::TrackRequest> inbox_;
  std::deque<v1::TrackResponse> outbox_;
  int in_flight_ = 0;
  bool reading_ = false;
  bool reads_done_ = false;
  bool task_scheduled_ = false;
  bool draining_ = false;
};

// ---------------------------------------------------------------------------------------------
// Watch: subscribe first (so no event is lost between snapshot and live), then the snapshot in
// pages from the worker pool, SNAPSHOT_DONE, then live events from the bounded subscription.
class WatchReactor final
    : public rpc::ReactorLifetime<grpc::ServerWriteReactor<v1::WatchResponse>> {
 public:
  WatchReactor(PollerServiceImpl* service, const v1::WatchRequest& req) : service_(service) {
    absl::Status st = absl::OkStatus();
    if (!req.digest().empty()) st = ValidateDigest(req.digest(), "digest");
    if (st.ok()) st = ValidateJob(req.job(), "job");
    if (!st.ok()) {
      absl::MutexLock lock(&mu_);
      FinishLocked(rpc::ToGrpcStatus(st));
      return;
    }
    filter_.job = req.job();
    filter_.digest = req.digest();
    snapshot_phase_ = req.include_current();
    // Lock order is bus -> reactor (Publish notifies under the bus lock) and service watchers ->
    // reactor (EndWatches), so Subscribe and AddWatcher run without mu_ held.
    auto sub = service_->bus_->Subscribe(filter_, service_->options_.watch_queue_capacity,
                                         [this] { OnEvent(); });
    registered_ = true;  // before AddWatcher: EndWatches may finish us, and OnDone reads it
    if (service_->metrics_) service_->metrics_->watchers.Increment();
    service_->AddWatcher(this);
    absl::MutexLock lock(&mu_);
    sub_ = std::move(sub);
    // Headers now, so a client sees the stream open before the first event.
    if (!finished_) StartSendInitialMetadata();
    if (snapshot_phase_) {
      LoadPageLocked();
    } else {
      NextWriteLocked();  // events published since Subscribe
    }
  }

  // Called by the service on shutdown.
  void End(grpc::Status st) {
    absl::MutexLock lock(&mu_);
    FinishLocked(std::move(st));
  }

  // grpc::ServerWriteReactor
  void OnSendInitialMetadataDone(bool ok) override {}
  void OnWriteDone(bool ok) override {
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
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }
  void OnDone() override {
    if (registered_) {
      // After Unsubscribe returns no notify runs or will run, so `this` is safe to release.
      service_->bus_->Unsubscribe(sub_);
      service_->RemoveWatcher(this);
      if (service_->metrics_) service_->metrics_->watchers.Decrement();
    }
    Unref();
  }

 private:
  // Bus thread.
  void OnEvent() {
    absl::MutexLock lock(&mu_);
    if (!sub_) return;  // the constructor has not finished; it writes what is queued
    NextWriteLocked();
  }

  void LoadPageLocked() {
    if (loading_ || finished_) return;
    loading_ = true;
    ++refs_;
    if (!service_->pool_->Post([this] { LoadPage(); })) {
      loading_ = false;
      --refs_;
      FinishLocked(Busy());
    }
  }

  // Worker thread.
  void LoadPage() {
    ListFilter f;
    f.job = filter_.job;
    if (!filter_.digest.empty()) f.digests.push_back(filter_.digest);
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
        FinishLocked(StoreError(rows.status()));
      } else {
        for (const ProofRow& r : *rows) {
          snapshot_.push_back(MakeEvent(v1::PROOF_EVENT_TYPE_SNAPSHOT, r, now));
        }
        if (!rows->empty()) snapshot_after_ = rows->back().seq;
        if (static_cast<int>(rows->size()) < page) snapshot_loaded_ = true;
        NextWriteLocked();
      }
    }
    Unref();
  }

  void NextWriteLocked() {
    if (finished_) return;
    if (sub_->overflowed()) {
      // With a write in flight the status goes out after it.
      FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                "watcher fell behind; reconnect with include_current"));
      return;
    }
    if (writing_) return;
    if (snapshot_phase_) {
      if (!snapshot_.empty()) {
        current_ = std::make_shared<const v1::WatchResponse>(std::move(snapshot_.front()));
        snapshot_.pop_front();
      } else if (!snapshot_loaded_) {
        LoadPageLocked();
        return;
      } else {
        auto done = std::make_shared<v1::WatchResponse>();
        done->set_type(v1::PROOF_EVENT_TYPE_SNAPSHOT_DONE);
        SetTimestamp(service_->clock_->Now(), done->mutable_event_time());
        current_ = std::move(done);
        snapshot_phase_ = false;
      }
    } else {
      current_ = sub_->Pop();
      if (!current_) return;
    }
    writing_ = true;
    StartWrite(current_.get());
  }

  PollerServiceImpl* service_;
  WatchFilter filter_;
  EventBus::SubscriptionPtr sub_;
  bool registered_ = false;
  bool snapshot_phase_ = false;
  bool snapshot_loaded_ = false;
  bool loading_ = false;
  int64_t snapshot_after_ = 0;
  std::deque<v1::WatchResponse> snapshot_;
  EventPtr current_;
};

// ---------------------------------------------------------------------------------------------
// DownloadProof: the blob is loaded on the worker pool, then written in 64 KiB chunks.
class DownloadReactor final : public grpc::ServerWriteReactor<v1::DownloadProofResponse> {
 public:
  DownloadReactor(PollerServiceImpl* service, const v1::DownloadProofRequest& req) {
    absl::Status st = ValidateDigest(req.digest(), "digest");
    if (!st.ok()) {
      Finish(rpc::ToGrpcStatus(st));
      return;
    }
    std::string digest = req.digest(), provider = req.provider();
    // Finish is only ever called from the task or from OnWriteDone, so the reactor outlives the
    // task (OnDone cannot run before Finish).
    if (!service->pool_->Post(
            [this, service, digest, provider] { Load(service, digest, provider); })) {
      Finish(Busy());
    }
  }

  // grpc::ServerWriteReactor
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
      return;
    }
    NextChunk();
  }
  void OnDone() override { delete this; }

 private:
  void Load(PollerServiceImpl* service, const std::string& digest, const std::string& provider) {
    auto proof = service->store_->Get(digest, provider);
    if (!proof.ok()) return Finish(StoreError(proof.status()));
    if (!proof->has_value()) {
      return Finish(
          grpc::Status(grpc::StatusCode::NOT_FOUND,
                       absl::StrCat("digest: no proof of ", HexEncode(digest),
                                    provider.empty() ? "" : " with provider ", provider)));
    }
    // Merkle batch leaves get their joined proof (see leaf_proof.h).
    auto ots =
        LoadProofOts(service->store_, digest, provider, service->options_.providers_without_ots);
    if (!ots.ok()) return Finish(StoreError(ots.status()));
    if (!ots->has_value() || (*ots)->empty()) {
      return Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no .ots stored yet"));
    }
    blob_ = std::move(**ots);
    NextChunk();
  }

  void NextChunk() {
    if (offset_ >= blob_.size()) return Finish(grpc::Status::OK);
    msg_.set_data(blob_.substr(offset_, kChunkBytes));
    msg_.set_total_size_bytes(static_cast<int64_t>(blob_.size()));
    offset_ += kChunkBytes;
    StartWrite(&msg_);
  }

  std::string blob_;
  size_t offset_ = 0;
  v1::DownloadProofResponse msg_;
};

// ---------------------------------------------------------------------------------------------

PollerServiceImpl::PollerServiceImpl(PollerStore* store, EventBus* bus, PollerMetrics* metrics,
                                     Clock* clock, WorkerPool* pool, PollerServiceOptions options)
    : store_(store), bus_(bus), metrics_(metrics), clock_(clock), pool_(pool), options_(options) {
  options_.track_max_in_flight = std::max(1, options_.track_max_in_flight);
  options_.snapshot_page = std::max(1, options_.snapshot_page);
}

PollerServiceImpl::~PollerServiceImpl() = default;

void PollerServiceImpl::AddWatcher(WatchReactor* w) {
  bool ending;
  {
    std::lock_guard<std::mutex> lock(watchers_mu_);
    watchers_.insert(w);
    ending = ending_;
  }
  // A watch that arrives after EndWatches is ended at once (the caller holds no reactor lock).
  if (ending) w->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"));
}

void PollerServiceImpl::RemoveWatcher(WatchReactor* w) {
  std::lock_guard<std::mutex> lock(watchers_mu_);
  watchers_.erase(w);
}

void PollerServiceImpl::EndWatches() {
  {
    std::lock_guard<std::mutex> lock(watchers_mu_);
    ending_ = true;
    // Safe: a watcher removes itself under watchers_mu_ in OnDone, before it can be deleted.
    for (WatchReactor* w : watchers_) {
      w->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"));
    }
  }
  std::lock_guard<std::mutex> lock(tracks_mu_);
  tracks_ending_ = true;
  // Same rule: a Track stream removes itself under tracks_mu_ in OnDone.
  for (TrackReactor* t : tracks_) t->Drain();
}

void PollerServiceImpl::AddTrack(TrackReactor* t) {
  bool ending;
  {
    std::lock_guard<std::mutex> lock(tracks_mu_);
    tracks_.insert(t);
    ending = tracks_ending_;
  }
  if (ending) t->Drain();
}

void PollerServiceImpl::RemoveTrack(TrackReactor* t) {
  std::lock_guard<std::mutex> lock(tracks_mu_);
  tracks_.erase(t);
}

grpc::ServerBidiReactor<v1::TrackRequest, v1::TrackResponse>* PollerServiceImpl::Track(
    grpc::CallbackServerContext* ctx) {
  if (grpc::Status st = options_.gate.AdmitInternal(*ctx, "PollerService.Track"); !st.ok()) {
    return new rpc::RefusedBidiReactor<v1::TrackRequest, v1::TrackResponse>(st);
  }
  return new TrackReactor(this);
}

grpc::ServerWriteReactor<v1::WatchResponse>* PollerServiceImpl::Watch(
    grpc::CallbackServerContext* ctx, const v1::WatchRequest* request) {
  if (grpc::Status st = options_.gate.AdmitPublic(*ctx, "PollerService.Watch"); !st.ok()) {
    return new rpc::RefusedWriteReactor<v1::WatchResponse>(st);
  }
  return new WatchReactor(this, *request);
}

grpc::ServerWriteReactor<v1::DownloadProofResponse>* PollerServiceImpl::DownloadProof(
    grpc::CallbackServerContext* ctx, const v1::DownloadProofRequest* request) {
  if (grpc::Status st = options_.gate.AdmitPublic(*ctx, "PollerService.DownloadProof"); !st.ok()) {
    return new rpc::RefusedWriteReactor<v1::DownloadProofResponse>(st);
  }
  return new DownloadReactor(this, *request);
}

grpc::ServerUnaryReactor* PollerServiceImpl::GetProof(grpc::CallbackServerContext* ctx,
                                                      const v1::GetProofRequest* request,
                                                      v1::GetProofResponse* response) {
  if (grpc::Status st = options_.gate.AdmitPublic(*ctx, "PollerService.GetProof"); !st.ok()) {
    return rpc::RefuseUnary(ctx, st);
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status st = ValidateDigest(request->digest(), "digest");
  if (!st.ok()) {
    reactor->Finish(rpc::ToGrpcStatus(st));
    return reactor;
  }
  bool posted = pool_->Post([this, reactor, request, response] {
    auto row = store_->Get(request->digest(), request->provider());
    if (!row.ok()) return reactor->Finish(StoreError(row.status()));
    if (!row->has_value()) {
      return reactor->Finish(
          grpc::Status(grpc::StatusCode::NOT_FOUND,
                       absl::StrCat("digest: no proof of ", HexEncode(request->digest()),
                                    request->provider().empty() ? "" : " with provider ",
                                    QuoteCallerText(request->provider()))));
    }
    *response->mutable_proof() = ToProto(**row);
    reactor->Finish(grpc::Status::OK);
  });
  if (!posted) reactor->Finish(Busy());
  return reactor;
}

grpc::ServerUnaryReactor* PollerServiceImpl::ListProofs(grpc::CallbackServerContext* ctx,
                                                        const v1::ListProofsRequest* request,
                                                        v1::ListProofsResponse* response) {
  if (grpc::Status st = options_.gate.AdmitPublic(*ctx, "PollerService.ListProofs"); !st.ok()) {
    return rpc::RefuseUnary(ctx, st);
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto invalid = [&](const std::string& msg) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg));
    return reactor;
  };
  if (request->page_size() < 0 || request->page_size() > kMaxPageSize) {
    return invalid(
        absl::StrCat("page_size: must be 0 to ", kMaxPageSize, ", got ", request->page_size()));
  }
  if (request->digests_size() > kMaxDigestFilter) {
    return invalid(
        absl::StrCat("digests: at most ", kMaxDigestFilter, ", got ", request->digests_size()));
  }
  if (absl::Status st = ValidateJob(request->job(), "job"); !st.ok()) {
    return invalid(std::string(st.message()));
  }
  ListFilter filter;
  filter.job = request->job();
  int state = request->state();
  if (state != v1::DIGEST_STATE_UNSPECIFIED && !v1::DigestState_IsValid(state)) {
    return invalid(absl::StrCat("state: unknown value ", state));
  }
  filter.state = static_cast<DigestState>(state);
  for (int i = 0; i < request->digests_size(); ++i) {
    absl::Status st = ValidateDigest(request->digests(i), absl::StrCat("digests[", i, "]"));
    if (!st.ok()) return invalid(std::string(st.message()));
    filter.digests.push_back(request->digests(i));
  }
  int64_t after = 0;
  if (!request->page_token().empty()) {
    auto decoded = DecodePageToken(request->page_token());
    if (!decoded.ok()) return invalid(std::string(decoded.status().message()));
    after = *decoded;
  }
  int page_size = request->page_size() == 0 ? kDefaultPageSize : request->page_size();
  bool posted =
      pool_->Post([this, reactor, response, filter = std::move(filter), after, page_size] {
        // One extra row tells whether another page exists.
        auto rows = store_->List(filter, after, page_size + 1);
        if (!rows.ok()) return reactor->Finish(StoreError(rows.status()));
        bool more = static_cast<int>(rows->size()) > page_size;
        if (more) rows->resize(page_size);
        for (const ProofRow& r : *rows) *response->add_proofs() = ToProto(r);
        if (more) response->set_next_page_token(EncodePageToken(rows->back().seq));
        reactor->Finish(grpc::Status::OK);
      });
  if (!posted) reactor->Finish(Busy());
  return reactor;
}

// ---------------------------------------------------------------------------------------------

grpc::ServerUnaryReactor* StatusServiceImpl::Locate(grpc::CallbackServerContext* ctx,
                                                    const v1::LocateRequest* request,
                                                    v1::LocateResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status st = ValidateDigest(request->digest(), "digest");
  if (!st.ok()) {
    reactor->Finish(rpc::ToGrpcStatus(st));
    return reactor;
  }
  bool posted = pool_->Post([this, reactor, request, response] {
    auto rows = store_->GetAll(request->digest());
    if (!rows.ok()) return reactor->Finish(StoreError(rows.status()));
    if (rows->empty()) {
      return reactor->Finish(grpc::Status(
          grpc::StatusCode::NOT_FOUND,
          absl::StrCat("digest: the poller knows nothing of ", HexEncode(request->digest()))));
    }
    response->set_service("poller");
    int best = 0;
    for (const ProofRow& r : *rows) {
      *response->add_proofs() = ToProto(r);
      best = std::max(best, static_cast<int>(r.state));
    }
    response->set_state(static_cast<DigestState>(best));
    for (const auto& f : response->proofs(0).files()) *response->add_files() = f;
    if (best == v1::DIGEST_STATE_FAILED) {
      for (const auto& p : response->proofs()) {
        if (p.state() == v1::DIGEST_STATE_FAILED) {
          *response->mutable_status() = p.failure();
          break;
        }
      }
    }
    reactor->Finish(grpc::Status::OK);
  });
  if (!posted) reactor->Finish(Busy());
  return reactor;
}

grpc::ServerUnaryReactor* StatusServiceImpl::SummarizeJob(grpc::CallbackServerContext* ctx,
                                                          const v1::SummarizeJobRequest* request,
                                                          v1::SummarizeJobResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (absl::Status st = ValidateJob(request->job(), "job"); !st.ok()) {
    reactor->Finish(rpc::ToGrpcStatus(st));
    return reactor;
  }
  bool posted = pool_->Post([this, reactor, request, response] {
    auto summary = store_->Summarize(request->job());
    if (!summary.ok()) return reactor->Finish(StoreError(summary.status()));
    response->set_service("poller");
    for (const auto& [state, n] : summary->digests_by_state) {
      (*response->mutable_digests_by_state())[v1::DigestState_Name(state)] = n;
    }
    response->set_files(summary->digests);
    reactor->Finish(grpc::Status::OK);
  });
  if (!posted) reactor->Finish(Busy());
  return reactor;
}

}  // namespace anchord::poller
