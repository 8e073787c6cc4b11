#include "services/poller/poller_service.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"
#include "libs/common/validate.h"
#include "libs/rpc/internal.h"
#include "libs/rpc/status.h"
#include "libs/rpc/unary.h"
#include "services/poller/leaf_proof.h"
#include "services/poller/lookups.h"
#include "services/poller/track_reactor.h"
#include "services/poller/watch_reactor.h"

namespace anchord::poller {

namespace v1 = anchord::v1;

namespace {

constexpr size_t kChunkBytes = 64 * 1024;

}  // namespace

// ---------------------------------------------------------------------------------------------
// DownloadProof: the blob is loaded on the worker pool, then written in 64 KiB chunks.
class DownloadReactor final : public grpc::ServerWriteReactor<v1::DownloadProofResponse> {
 public:
  DownloadReactor(PollerServiceImpl* service, const v1::DownloadProofRequest& req) {
    absl::StatusOr<Digest> parsed = Digest::FromBytes(req.digest(), "digest");
    if (!parsed.ok()) {
      Finish(rpc::ToGrpcStatus(parsed.status()));
      return;
    }
    Digest digest = *parsed;
    std::string provider = req.provider();
    // Finish is only ever called from the task or from OnWriteDone, so the reactor outlives the
    // task (OnDone cannot run before Finish).
    if (!service->pool_->Post(
            [this, service, digest, provider] { Load(service, digest, provider); })) {
      Finish(rpc::ToGrpcStatus(rpc::Overloaded("poller")));
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
  void Load(PollerServiceImpl* service, const Digest& digest, const std::string& provider) {
    auto file = service->LoadProofFile(digest, provider);
    if (!file.ok()) return Finish(rpc::ToGrpcStatus(file.status()));
    blob_ = *std::move(file);
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
// DownloadProofs: proofs are loaded on the worker pool a group at a time (at most kGroupProofs
// or about kGroupBytes, whichever comes first), the group's messages written, then the next
// group loaded: the call holds one group in memory however many proofs it asks for.
class DownloadManyReactor final : public grpc::ServerWriteReactor<v1::DownloadProofsResponse> {
 public:
  static constexpr int kMaxProofs = 1000;

  DownloadManyReactor(PollerServiceImpl* service, const v1::DownloadProofsRequest& req)
      : service_(service) {
    if (req.proofs_size() < 1 || req.proofs_size() > kMaxProofs) {
      Finish(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("proofs: ", req.proofs_size(), " asked, 1 to ", kMaxProofs, " allowed")));
      return;
    }
    asked_.reserve(static_cast<size_t>(req.proofs_size()));
    for (const v1::DownloadProofRequest& p : req.proofs()) asked_.push_back(p);
    LoadNextGroup();
  }

  // grpc::ServerWriteReactor
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
      return;
    }
    ++written_;
    WriteNext();
  }
  void OnDone() override { delete this; }

 private:
  static constexpr int kGroupProofs = 64;
  static constexpr size_t kGroupBytes = 1 << 20;

  // Finish is only ever called from the task or from OnWriteDone, so the reactor outlives the
  // task (OnDone cannot run before Finish).
  void LoadNextGroup() {
    if (next_ >= asked_.size()) return Finish(grpc::Status::OK);
    if (!service_->pool_->Post([this] { LoadGroup(); })) {
      Finish(rpc::ToGrpcStatus(rpc::Overloaded("poller")));
    }
  }

  void LoadGroup() {
    messages_.clear();
    written_ = 0;
    size_t bytes = 0;
    for (int n = 0; n < kGroupProofs && next_ < asked_.size() && bytes < kGroupBytes;
         ++n, ++next_) {
      const int index = static_cast<int>(next_);
      const v1::DownloadProofRequest& p = asked_[next_];
      absl::StatusOr<Digest> digest =
          Digest::FromBytes(p.digest(), absl::StrCat("proofs[", index, "].digest"));
      absl::StatusOr<std::string> file = digest.ok()
                                             ? service_->LoadProofFile(*digest, p.provider())
                                             : absl::StatusOr<std::string>(digest.status());
      if (absl::IsUnavailable(file.status())) return Finish(rpc::ToGrpcStatus(file.status()));
      if (!file.ok()) {
        v1::DownloadProofsResponse& m = messages_.emplace_back();
        m.set_index(index);
        *m.mutable_status() = rpc::ToItemStatus(file.status());
        continue;
      }
      const std::string& blob = *file;
      bytes += blob.size();
      for (size_t offset = 0; offset < blob.size(); offset += kChunkBytes) {
        v1::DownloadProofsResponse& m = messages_.emplace_back();
        m.set_index(index);
        m.set_data(blob.substr(offset, kChunkBytes));
        m.set_total_size_bytes(static_cast<int64_t>(blob.size()));
      }
    }
    WriteNext();
  }

  void WriteNext() {
    if (written_ < messages_.size()) return StartWrite(&messages_[written_]);
    LoadNextGroup();
  }

  PollerServiceImpl* const service_;
  std::vector<v1::DownloadProofRequest> asked_;
  size_t next_ = 0;  // the first proof not loaded yet
  // The loaded group's messages; [0, written_) are written. Owned by whichever of the task and
  // OnWriteDone runs, never both at once (a write starts only after the load, and the next load
  // only after the last write is done).
  std::vector<v1::DownloadProofsResponse> messages_;
  size_t written_ = 0;
};

// ---------------------------------------------------------------------------------------------

PollerServiceImpl::PollerServiceImpl(PollerStore* store, EventBus* bus, PollerMetrics* metrics,
                                     Clock* clock, WorkerPool* pool, PollerServiceOptions options)
    : store_(store), bus_(bus), metrics_(metrics), clock_(clock), pool_(pool), options_(options) {
  options_.track_max_in_flight = std::max(1, options_.track_max_in_flight);
  options_.track_max_per_commit = std::max(1, options_.track_max_per_commit);
  options_.snapshot_page = std::max(1, options_.snapshot_page);
}

PollerServiceImpl::~PollerServiceImpl() = default;

void PollerServiceImpl::AddWatcher(WatchReactor* w) {
  bool ending;
  {
    absl::MutexLock lock(&watchers_mu_);
    watchers_.insert(w);
    ending = ending_;
  }
  // A watch that arrives after EndWatches is ended at once (the caller holds no reactor lock).
  if (ending) w->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"));
}

void PollerServiceImpl::RemoveWatcher(WatchReactor* w) {
  absl::MutexLock lock(&watchers_mu_);
  watchers_.erase(w);
}

void PollerServiceImpl::EndWatches() {
  {
    absl::MutexLock lock(&watchers_mu_);
    ending_ = true;
    // Safe: a watcher removes itself under watchers_mu_ in OnDone, before it can be deleted.
    for (WatchReactor* w : watchers_) {
      w->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"));
    }
  }
  absl::MutexLock lock(&tracks_mu_);
  tracks_ending_ = true;
  // Same rule: a Track stream removes itself under tracks_mu_ in OnDone.
  for (HandoffStream* t : tracks_) t->Drain();
}

void PollerServiceImpl::AddTrack(HandoffStream* t) {
  bool ending;
  {
    absl::MutexLock lock(&tracks_mu_);
    tracks_.insert(t);
    ending = tracks_ending_;
  }
  if (ending) t->Drain();
}

void PollerServiceImpl::RemoveTrack(HandoffStream* t) {
  absl::MutexLock lock(&tracks_mu_);
  tracks_.erase(t);
}

grpc::ServerBidiReactor<v1::TrackRequest, v1::TrackResponse>* PollerServiceImpl::Track(
    grpc::CallbackServerContext* ctx) {
  if (grpc::Status st = options_.gate.AdmitInternal(*ctx, "PollerService.Track"); !st.ok()) {
    return new rpc::RefusedBidiReactor<v1::TrackRequest, v1::TrackResponse>(st);
  }
  return new TrackReactor<v1::TrackRequest>(this);
}

grpc::ServerBidiReactor<v1::TrackBatchRequest, v1::TrackResponse>* PollerServiceImpl::TrackBatch(
    grpc::CallbackServerContext* ctx) {
  if (grpc::Status st = options_.gate.AdmitInternal(*ctx, "PollerService.TrackBatch"); !st.ok()) {
    return new rpc::RefusedBidiReactor<v1::TrackBatchRequest, v1::TrackResponse>(st);
  }
  return new TrackReactor<v1::TrackBatchRequest>(this);
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

grpc::ServerWriteReactor<v1::DownloadProofsResponse>* PollerServiceImpl::DownloadProofs(
    grpc::CallbackServerContext* ctx, const v1::DownloadProofsRequest* request) {
  if (grpc::Status st = options_.gate.AdmitPublic(*ctx, "PollerService.DownloadProofs"); !st.ok()) {
    return new rpc::RefusedWriteReactor<v1::DownloadProofsResponse>(st);
  }
  return new DownloadManyReactor(this, *request);
}

absl::StatusOr<std::string> PollerServiceImpl::LoadProofFile(const Digest& digest,
                                                             const std::string& provider) {
  auto proof = store_->Get(digest, provider);
  if (!proof.ok()) return rpc::StoreUnavailable("poller", proof.status());
  if (!proof->has_value()) {
    // The provider is the caller's text: quoted, at most kMaxQuotedIdBytes of it, as GetProof.
    return absl::NotFoundError(absl::StrCat("digest: no proof of ", digest.hex(),
                                            provider.empty() ? "" : " with provider ",
                                            QuoteCallerText(provider)));
  }
  // Merkle batch leaves get their joined proof (see leaf_proof.h).
  auto ots = LoadProofOts(store_, digest, provider, options_.providers_without_ots);
  if (!ots.ok()) return rpc::StoreUnavailable("poller", ots.status());
  if (!ots->has_value() || (*ots)->empty()) {
    return absl::FailedPreconditionError("no .ots stored yet");
  }
  return **std::move(ots);
}

grpc::ServerUnaryReactor* PollerServiceImpl::GetProof(grpc::CallbackServerContext* ctx,
                                                      const v1::GetProofRequest* request,
                                                      v1::GetProofResponse* response) {
  if (grpc::Status st = options_.gate.AdmitPublic(*ctx, "PollerService.GetProof"); !st.ok()) {
    return rpc::RefuseUnary(ctx, st);
  }
  return rpc::RunUnary(ctx, pool_, "poller", response,
                       [this, request] { return poller::GetProof(*store_, *request); });
}

grpc::ServerUnaryReactor* PollerServiceImpl::ListProofs(grpc::CallbackServerContext* ctx,
                                                        const v1::ListProofsRequest* request,
                                                        v1::ListProofsResponse* response) {
  if (grpc::Status st = options_.gate.AdmitPublic(*ctx, "PollerService.ListProofs"); !st.ok()) {
    return rpc::RefuseUnary(ctx, st);
  }
  return rpc::RunUnary(ctx, pool_, "poller", response,
                       [this, request] { return poller::ListProofs(*store_, *request); });
}

// ---------------------------------------------------------------------------------------------

grpc::ServerUnaryReactor* StatusServiceImpl::Locate(grpc::CallbackServerContext* ctx,
                                                    const v1::LocateRequest* request,
                                                    v1::LocateResponse* response) {
  return rpc::RunUnary(ctx, pool_, "poller", response,
                       [this, request] { return poller::Locate(*store_, *request); });
}

grpc::ServerUnaryReactor* StatusServiceImpl::SummarizeJob(grpc::CallbackServerContext* ctx,
                                                          const v1::SummarizeJobRequest* request,
                                                          v1::SummarizeJobResponse* response) {
  return rpc::RunUnary(ctx, pool_, "poller", response,
                       [this, request] { return poller::SummarizeJob(*store_, *request); });
}

}  // namespace anchord::poller
