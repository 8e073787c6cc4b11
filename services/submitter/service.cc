#include "services/submitter/service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/validate.h"
#include "libs/rpc/internal.h"
#include "libs/rpc/status.h"
#include "services/submitter/handoff.h"
#include "libs/common/status_macros.h"

namespace anchord::submitter {

using anchord::v1::DigestState;
using anchord::v1::SubmitRequest;
using anchord::v1::SubmitResponse;

namespace {

DigestState ToDigestState(SubState s) {
  switch (s) {
    case SubState::kQueued:
    case SubState::kSubmitting:
      return anchord::v1::DIGEST_STATE_QUEUED;
    case SubState::kSubmitted:
      return anchord::v1::DIGEST_STATE_SUBMITTED;
    case SubState::kFailed:
      return anchord::v1::DIGEST_STATE_FAILED;
  }
  return anchord::v1::DIGEST_STATE_UNSPECIFIED;
}

}  // namespace

absl::Status ValidateSubmit(const SubmitRequest& req, const ServiceOptions& options, NewItem* out) {
  ANCHORD_RETURN_IF_ERROR(ValidateRequestId(req.request_id(), "request_id"));
  ANCHORD_RETURN_IF_ERROR(ValidateDigest(req.digest(), "digest"));
  const auto& m = req.metadata();
  ANCHORD_RETURN_IF_ERROR(ValidateFilename(m.filename(), "metadata.filename"));
  ANCHORD_RETURN_IF_ERROR(ValidateSize(m.size_bytes(), "metadata.size_bytes"));
  ANCHORD_RETURN_IF_ERROR(ValidateJob(m.job(), "metadata.job"));
  ANCHORD_RETURN_IF_ERROR(ValidateMimeType(m.mime_type(), "metadata.mime_type"));
  ANCHORD_RETURN_IF_ERROR(ValidateSourcePath(m.source_path(), "metadata.source_path"));
  std::vector<std::string> providers;
  for (int i = 0; i < req.providers_size(); ++i) {
    const std::string& p = req.providers(i);
    if (std::find(options.providers.begin(), options.providers.end(), p) ==
        options.providers.end()) {
      // Names are echoed only when short and printable; anything else is described, not echoed.
      bool printable = p.size() <= 64 && std::all_of(p.begin(), p.end(),
                                                     [](char c) { return c >= 0x20 && c < 0x7f; });
      return absl::InvalidArgumentError(absl::StrCat(
          "providers[", i, "]: unknown provider ", printable ? absl::StrCat("\"", p, "\"") : "name",
          "; configured: ", absl::StrJoin(options.providers, ", ")));
    }
    if (std::find(providers.begin(), providers.end(), p) == providers.end()) providers.push_back(p);
  }
  if (providers.empty()) {
    if (options.default_provider.empty()) {
      return absl::InvalidArgumentError("providers: no provider given and none configured");
    }
    providers.push_back(options.default_provider);
  }
  out->digest = req.digest();
  out->file.job = std::string(JobOrDefault(m.job()));
  out->file.source_path = m.source_path();
  out->file.filename = m.filename();
  out->file.size_bytes = m.size_bytes();
  out->file.mime_type = m.mime_type();
  out->providers = std::move(providers);
  switch (req.anchor_mode()) {
    case anchord::v1::ANCHOR_MODE_UNSPECIFIED:
    case anchord::v1::ANCHOR_MODE_PER_FILE:
      out->merkle = false;
      break;
    case anchord::v1::ANCHOR_MODE_MERKLE_BATCH:
      out->merkle = true;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("anchor_mode: unknown value ", static_cast<int>(req.anchor_mode())));
  }
  if (!req.fallback_provider().empty()) {
    const std::string& f = req.fallback_provider();
    if (std::find(options.providers.begin(), options.providers.end(), f) ==
        options.providers.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("fallback_provider: unknown provider; configured: ",
                       absl::StrJoin(options.providers, ", ")));
    }
    if (std::find(out->providers.begin(), out->providers.end(), f) != out->providers.end()) {
      return absl::InvalidArgumentError(
          "fallback_provider: already one of the providers the digest is anchored with");
    }
    out->fallback_provider = f;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// The Submit stream. All state is guarded by mu_; every entry point goes through Kick(), which
// applies a change, decides the next read / write / finish under the lock and starts them outside
// it. active_kicks_ keeps the reactor alive until every Kick has returned, even when OnDone runs
// concurrently on another thread.
class SubmitReactor final : public grpc::ServerBidiReactor<SubmitRequest, SubmitResponse> {
 public:
  explicit SubmitReactor(SubmitterCore* core) : core_(core) {
    // Registered before the first read, so OnDone always finds it registered.
    const bool draining = core_->RegisterLive(this);
    Kick([&] { draining_ = draining; });
  }

  // Called by the core on shutdown: no more reads; every item already read is stored and
  // answered, then the stream ends with UNAVAILABLE and the caller resends what it did not get an
  // answer for to the next submitter.
  void Drain() {
    Kick([this] { draining_ = true; });
  }

  // grpc::ServerBidiReactor
  void OnReadDone(bool ok) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      // A read that completes after a drain finished the stream is never answered: the caller
      // still holds the item and resends it.
      if (finished_) ok = false;
    }
    if (!ok) {
      Kick([this] {
        reading_ = false;
        reads_done_ = true;
      });
      return;
    }
    NewItem item;
    absl::Status st = ValidateSubmit(req_, core_->options(), &item);
    if (!st.ok()) {
      if (core_->metrics()) core_->metrics()->intake.Add({{"result", "invalid"}}).Increment();
      SubmitResponse resp;
      resp.set_request_id(EchoId(req_.request_id()));
      resp.set_digest(req_.digest());
      *resp.mutable_status() = rpc::ToItemStatus(st, "INVALID_ARGUMENT");
      Kick([&] {
        reading_ = false;
        queue_.push_back(std::move(resp));
      });
      return;
    }
    SubmitterCore::IntakeItem in;
    in.item = std::move(item);
    in.request_id = req_.request_id();
    in.done = [this](SubmitResponse r) { Deliver(std::move(r)); };
    // inflight_ is raised before the item leaves, so the stream cannot finish under it, and the
    // item is enqueued before the next read starts, so items are stored in stream order (the
    // first file of a digest stays the original even within one stream).
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++inflight_;
    }
    core_->Enqueue(std::move(in));
    Kick([this] { reading_ = false; });
  }

  void OnWriteDone(bool ok) override {
    Kick([&] {
      writing_ = false;
      queue_.pop_front();
      if (!ok) cancelled_ = true;  // the stream is broken; nothing more can be written
    });
  }

  void OnCancel() override {
    Kick([this] { cancelled_ = true; });
  }

  void OnDone() override {
    core_->Unregister(this);
    core_->UnregisterLive(this);
    bool del;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      del = active_kicks_ == 0;
    }
    if (del) delete this;
  }

  // Called by the core when the backlog fell under the high-water mark.
  void Resume() {
    Kick([] {});
  }

 private:
  void Deliver(SubmitResponse r) {
    Kick([&] {
      --inflight_;
      if (!cancelled_) queue_.push_back(std::move(r));
    });
  }

  template <typename Fn>
  void Kick(Fn&& mutate) {
    bool do_read = false, do_write = false, do_finish = false, pause = false, buffer_hint = false;
    const SubmitResponse* to_write = nullptr;
    grpc::Status finish_status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++active_kicks_;
      mutate();
      if (!finished_) {
        if (!writing_ && !queue_.empty() && !cancelled_) {
          writing_ = true;
          to_write = &queue_.front();  // deque keeps element addresses stable on push_back
          do_write = true;
          buffer_hint = queue_.size() > 1;
        }
        if (!reading_ && !reads_done_ && !cancelled_ && !draining_) {
          int outstanding = inflight_ + static_cast<int>(queue_.size());
          if (outstanding < core_->options().max_outstanding_per_stream) {
            if (core_->AboveHighWater()) {
              pause = true;
            } else {
              reading_ = true;
              do_read = true;
            }
          }  // else: OnWriteDone kicks again once answers drain
        }
        // A drain does not wait for the outstanding read: gRPC completes it (not ok) once the
        // status is sent.
        if ((((reads_done_ || cancelled_) && !reading_) || draining_) && inflight_ == 0 &&
            !writing_ && (queue_.empty() || cancelled_)) {
          finished_ = true;
          do_finish = true;
          finish_status = cancelled_    ? grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")
                          : reads_done_ ? grpc::Status::OK
                                        : grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                       "submitter shutting down; reconnect");
        }
      }
    }
    if (pause) core_->RegisterPaused(this);
    // With more answers queued behind this one, let gRPC coalesce them into fewer frames and
    // system calls; the last one of a run is written without the hint, which flushes.
    if (do_write)
      StartWrite(to_write,
                 buffer_hint ? grpc::WriteOptions().set_buffer_hint() : grpc::WriteOptions());
    if (do_read) StartRead(&req_);
    if (do_finish) Finish(finish_status);
    bool del;
    {
      std::lock_guard<std::mutex> lock(mu_);
      --active_kicks_;
      del = done_ && active_kicks_ == 0;
    }
    if (del) delete this;
  }

  SubmitterCore* core_;
  std::mutex mu_;
  SubmitRequest req_;
  std::deque<SubmitResponse> queue_;
  bool reading_ = false;
  bool reads_done_ = false;
  bool writing_ = false;
  bool cancelled_ = false;
  bool draining_ = false;
  bool finished_ = false;
  bool done_ = false;
  int inflight_ = 0;
  int active_kicks_ = 0;
};

// ---------------------------------------------------------------------------------------------

SubmitterCore::SubmitterCore(SubmitterStore* store, Engine* engine, SubmitterMetrics* metrics,
                             ServiceOptions options)
    : store_(store), engine_(engine), metrics_(metrics), options_(std::move(options)) {
  absl::StatusOr<int64_t> n = store_->CountBacklog();
  if (n.ok()) backlog_ = *n;
  threads_.emplace_back([this] { IntakeLoop(); });
  threads_.emplace_back([this] { MonitorLoop(); });
  for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { PoolLoop(); });
}

SubmitterCore::~SubmitterCore() { Stop(); }

void SubmitterCore::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  intake_cv_.notify_all();
  work_cv_.notify_all();
  monitor_cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void SubmitterCore::Enqueue(IntakeItem item) {
  bool was_empty;
  {
    std::lock_guard<std::mutex> lock(mu_);
    was_empty = intake_.empty();
    intake_.push_back(std::move(item));
  }
  // The intake thread takes everything queued when it wakes, so only the first item of a run
  // needs to wake it: one futex call per group commit instead of several per item.
  if (was_empty) intake_cv_.notify_one();
}

void SubmitterCore::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    work_.push_back(std::move(fn));
  }
  work_cv_.notify_one();
}

void SubmitterCore::RegisterPaused(SubmitReactor* r) {
  std::lock_guard<std::recursive_mutex> lock(paused_mu_);
  paused_.insert(r);
}

void SubmitterCore::Unregister(SubmitReactor* r) {
  std::lock_guard<std::recursive_mutex> lock(paused_mu_);
  paused_.erase(r);
}

bool SubmitterCore::RegisterLive(SubmitReactor* r) {
  std::lock_guard<std::mutex> lock(live_mu_);
  live_.insert(r);
  return draining_;
}

void SubmitterCore::UnregisterLive(SubmitReactor* r) {
  std::lock_guard<std::mutex> lock(live_mu_);
  live_.erase(r);
}

void SubmitterCore::DrainStreams() {
  std::lock_guard<std::mutex> lock(live_mu_);
  draining_ = true;
  // Safe: a reactor leaves live_ under live_mu_ in OnDone, before it can be deleted.
  for (SubmitReactor* r : live_) r->Drain();
}

void SubmitterCore::IntakeLoop() {
  for (;;) {
    std::vector<IntakeItem> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      intake_cv_.wait(lock, [&] { return stopping_ || !intake_.empty(); });
      // On stop the queue is still drained: every accepted item gets its answer.
      if (intake_.empty()) return;
      while (!intake_.empty() && static_cast<int>(batch.size()) < options_.max_batch) {
        batch.push_back(std::move(intake_.front()));
        intake_.pop_front();
      }
    }
    std::vector<NewItem> items;
    items.reserve(batch.size());
    for (auto& b : batch) items.push_back(std::move(b.item));
    // One transaction for the whole batch: one fsync for many items.
    absl::StatusOr<std::vector<InsertResult>> results = store_->InsertBatch(items, absl::Now());
    int64_t added = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      SubmitResponse resp;
      resp.set_request_id(batch[i].request_id);
      resp.set_digest(items[i].digest);
      if (!results.ok()) {
        *resp.mutable_status() = rpc::ToItemStatus(
            absl::UnavailableError(absl::StrCat("store: ", results.status().message())),
            "STORE_UNAVAILABLE", absl::Seconds(1));
        if (metrics_) metrics_->intake.Add({{"result", "error"}}).Increment();
      } else {
        const InsertResult& r = (*results)[i];
        resp.set_state(ToDigestState(r.state));
        resp.set_duplicate_of(r.duplicate_of);
        *resp.mutable_status() = rpc::ToItemStatus(absl::OkStatus());
        if (!r.known_before) added += static_cast<int64_t>(items[i].providers.size());
        if (metrics_) {
          metrics_->intake.Add({{"result", r.known_before ? "duplicate" : "stored"}}).Increment();
        }
      }
      batch[i].done(std::move(resp));
    }
    if (!results.ok()) {
      ANCHORD_LOG(Error) << "intake: " << results.status();
    }
    backlog_ += added;
    if (on_stored_) on_stored_();
  }
}

void SubmitterCore::PoolLoop() {
  for (;;) {
    std::function<void()> fn;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !work_.empty(); });
      if (work_.empty()) return;
      fn = std::move(work_.front());
      work_.pop_front();
    }
    fn();
  }
}

void SubmitterCore::MonitorLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (monitor_cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.backlog_refresh),
                               [&] { return stopping_; })) {
        return;
      }
    }
    absl::StatusOr<int64_t> n = store_->CountBacklog();
    if (n.ok()) backlog_ = *n;
    if (AboveHighWater()) continue;
    // paused_mu_ is recursive: a resumed reactor may register itself again from Kick.
    std::lock_guard<std::recursive_mutex> lock(paused_mu_);
    std::set<SubmitReactor*> resume;
    resume.swap(paused_);
    for (SubmitReactor* r : resume) r->Resume();
  }
}

// ---------------------------------------------------------------------------------------------

grpc::ServerBidiReactor<SubmitRequest, SubmitResponse>* SubmitterServiceImpl::Submit(
    grpc::CallbackServerContext* ctx) {
  if (grpc::Status st = gate_.AdmitPublic(*ctx, "SubmitterService.Submit"); !st.ok()) {
    return new rpc::RefusedBidiReactor<SubmitRequest, SubmitResponse>(st);
  }
  return new SubmitReactor(core_);
}

grpc::ServerUnaryReactor* SubmitterServiceImpl::Reanchor(grpc::CallbackServerContext* ctx,
                                                         const anchord::v1::ReanchorRequest* req,
                                                         anchord::v1::ReanchorResponse* resp) {
  if (grpc::Status st = gate_.AdmitInternal(*ctx, "SubmitterService.Reanchor"); !st.ok()) {
    return rpc::RefuseUnary(ctx, st);
  }
  auto* reactor = ctx->DefaultReactor();
  if (req->provider().empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "provider: required"));
    return reactor;
  }
  // The same validation and the same durable intake as one Submit item.
  SubmitRequest as_submit;
  as_submit.set_request_id("reanchor");
  as_submit.set_digest(req->digest());
  *as_submit.mutable_metadata() = req->metadata();
  as_submit.add_providers(req->provider());
  NewItem item;
  absl::Status st = ValidateSubmit(as_submit, core_->options(), &item);
  if (!st.ok()) {
    reactor->Finish(rpc::ToGrpcStatus(st));
    return reactor;
  }
  ANCHORD_LOG(Info) << "re-anchoring " << HexEncode(req->digest()) << " with " << req->provider()
                    << " (stalled with " << QuoteCallerText(req->stalled_provider()) << ")";
  SubmitterCore::IntakeItem in;
  in.item = std::move(item);
  in.request_id = as_submit.request_id();
  in.done = [reactor, resp](SubmitResponse r) {
    if (r.status().code() != 0) {
      reactor->Finish(
          grpc::Status(static_cast<grpc::StatusCode>(r.status().code()), r.status().message()));
      return;
    }
    resp->set_state(r.state());
    reactor->Finish(grpc::Status::OK);
  };
  core_->Enqueue(std::move(in));
  return reactor;
}

grpc::ServerUnaryReactor* SubmitterServiceImpl::ResumeQueue(
    grpc::CallbackServerContext* ctx, const anchord::v1::ResumeQueueRequest* req,
    anchord::v1::ResumeQueueResponse* resp) {
  if (grpc::Status st = gate_.AdmitPublic(*ctx, "SubmitterService.ResumeQueue"); !st.ok()) {
    return rpc::RefuseUnary(ctx, st);
  }
  auto* reactor = ctx->DefaultReactor();
  const auto& known = core_->options().providers;
  if (!req->provider().empty() &&
      std::find(known.begin(), known.end(), req->provider()) == known.end()) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                     "provider: unknown provider; configured: " + absl::StrJoin(known, ", ")));
    return reactor;
  }
  std::string provider = req->provider();
  core_->Post([this, reactor, resp, provider] {
    absl::StatusOr<std::vector<std::string>> resumed =
        core_->engine() ? core_->engine()->Resume(provider) : core_->store()->Resume(provider);
    if (!resumed.ok()) {
      reactor->Finish(rpc::ToGrpcStatus(resumed.status()));
      return;
    }
    for (const auto& p : *resumed) resp->add_resumed(p);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* StatusServiceImpl::Locate(grpc::CallbackServerContext* ctx,
                                                    const anchord::v1::LocateRequest* req,
                                                    anchord::v1::LocateResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  absl::Status valid = ValidateDigest(req->digest(), "digest");
  if (!valid.ok()) {
    reactor->Finish(rpc::ToGrpcStatus(valid));
    return reactor;
  }
  std::string digest = req->digest();
  core_->Post([this, reactor, resp, digest] {
    absl::StatusOr<std::vector<Submission>> rows = core_->store()->GetByDigest(digest);
    absl::StatusOr<std::vector<FileRef>> refs =
        rows.ok() ? core_->store()->Refs(digest)
                  : absl::StatusOr<std::vector<FileRef>>(rows.status());
    absl::StatusOr<std::vector<PauseInfo>> pauses =
        refs.ok() ? core_->store()->ListPauses()
                  : absl::StatusOr<std::vector<PauseInfo>>(refs.status());
    if (!pauses.ok()) {
      reactor->Finish(rpc::ToGrpcStatus(pauses.status()));
      return;
    }
    if (rows->empty()) {
      reactor->Finish(
          grpc::Status(grpc::StatusCode::NOT_FOUND,
                       "digest " + HexEncode(digest) + " is not known to the submitter"));
      return;
    }
    resp->set_service("submitter");
    SubState least = SubState::kFailed;
    const Submission* failed = nullptr;
    const PauseInfo* paused = nullptr;
    for (const Submission& row : *rows) {
      least = std::min(least, row.state);
      auto* p = resp->add_proofs();
      *p = BuildProof(row, *refs);
      if (row.state != SubState::kSubmitted)
        p->set_state(ToDigestState(row.state));
      else if (p->state() == anchord::v1::DIGEST_STATE_PENDING)
        p->set_state(anchord::v1::DIGEST_STATE_SUBMITTED);
      if (row.state == SubState::kFailed && failed == nullptr) failed = &row;
      if (row.state == SubState::kQueued || row.state == SubState::kSubmitting) {
        for (const auto& pi : *pauses) {
          if (pi.provider == row.provider) paused = &pi;
        }
      }
    }
    resp->set_state(ToDigestState(least));
    for (const auto& f : *refs) {
      auto* m = resp->add_files();
      m->set_filename(f.filename);
      m->set_size_bytes(f.size_bytes);
      m->set_mime_type(f.mime_type);
      m->set_source_path(f.source_path);
      m->set_job(f.job);
    }
    if (paused != nullptr) {
      absl::Duration until = paused->probe_at - absl::Now();
      *resp->mutable_status() = rpc::ToItemStatus(
          absl::ResourceExhaustedError(
              absl::StrCat("queue of provider ", paused->provider, " is paused: ", paused->reason)),
          "QUEUE_PAUSED", until);
    } else if (failed != nullptr) {
      for (const auto& p : resp->proofs()) {
        if (p.provider() == failed->provider) *resp->mutable_status() = p.failure();
      }
    }
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* StatusServiceImpl::SummarizeJob(
    grpc::CallbackServerContext* ctx, const anchord::v1::SummarizeJobRequest* req,
    anchord::v1::SummarizeJobResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  absl::Status valid = ValidateJob(req->job(), "job");
  if (!valid.ok()) {
    reactor->Finish(rpc::ToGrpcStatus(valid));
    return reactor;
  }
  std::string job = req->job();
  core_->Post([this, reactor, resp, job] {
    absl::StatusOr<std::map<SubState, int64_t>> counts = core_->store()->SummarizeJob(job);
    if (!counts.ok()) {
      reactor->Finish(rpc::ToGrpcStatus(counts.status()));
      return;
    }
    absl::StatusOr<std::vector<PauseInfo>> pauses = core_->store()->ListPauses();
    if (!pauses.ok()) {
      reactor->Finish(rpc::ToGrpcStatus(pauses.status()));
      return;
    }
    resp->set_service("submitter");
    int64_t total = 0;
    auto* map = resp->mutable_digests_by_state();
    for (const auto& [state, n] : *counts) {
      (*map)[anchord::v1::DigestState_Name(ToDigestState(state))] += n;
      total += n;
    }
    resp->set_files(total);
    if (!pauses->empty()) {
      resp->set_paused(true);
      std::vector<std::string> reasons;
      for (const auto& p : *pauses) reasons.push_back(absl::StrCat(p.provider, ": ", p.reason));
      resp->set_paused_reason(absl::StrJoin(reasons, "; "));
    }
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

}  // namespace anchord::submitter
