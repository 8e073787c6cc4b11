#include "services/submitter/service.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "libs/common/log.h"
#include "libs/common/status_macros.h"
#include "libs/common/thread_name.h"
#include "libs/common/validate.h"
#include "libs/rpc/internal.h"
#include "libs/rpc/reactor_lifetime.h"
#include "libs/rpc/status.h"
#include "libs/rpc/unary.h"
#include "services/submitter/methods.h"

namespace anchord::submitter {

using anchord::v1::SubmitRequest;
using anchord::v1::SubmitResponse;

absl::Status ValidateSubmit(const SubmitRequest& req, const ServiceOptions& options, NewItem* out) {
  ANCHORD_RETURN_IF_ERROR(ValidateRequestId(req.request_id(), "request_id"));
  ANCHORD_ASSIGN_OR_RETURN(out->digest, Digest::FromBytes(req.digest(), "digest"));
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

absl::Status ValidateBatchForm(const SubmitRequest& req) {
  if (req.items_size() > kMaxSubmitItems) {
    return absl::InvalidArgumentError(
        absl::StrCat("items: at most ", kMaxSubmitItems, " per message, got ", req.items_size()));
  }
  // The batch's own id is optional: echoed in its response, so a caller with several batches
  // outstanding can tell which one a refusal of the whole message answers.
  if (!req.request_id().empty()) {
    ANCHORD_RETURN_IF_ERROR(ValidateRequestId(req.request_id(), "request_id"));
  }
  // A message cannot be both forms: which digest would its single-form fields be?
  const char* set = !req.digest().empty()              ? "digest"
                    : req.has_metadata()               ? "metadata"
                    : req.providers_size() > 0         ? "providers"
                    : req.anchor_mode() != 0           ? "anchor_mode"
                    : !req.fallback_provider().empty() ? "fallback_provider"
                                                       : nullptr;
  if (set != nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(set, ": must be empty when items is set (the batch form)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSubmitItem(const SubmitRequest& item, int index, const ServiceOptions& options,
                                NewItem* out) {
  absl::Status st = item.items_size() > 0
                        ? absl::InvalidArgumentError("items: an item cannot hold items")
                        : ValidateSubmit(item, options, out);
  if (st.ok()) return st;
  return absl::Status(st.code(), absl::StrCat("items[", index, "].", st.message()));
}

// ---------------------------------------------------------------------------------------------
// The Submit stream. Every entry point (the reactions, an item's answer from the intake thread,
// the core's Drain and Resume) changes the state under mu_ and then calls StepLocked, which starts
// the next read / write / finish the state allows. References (rpc::ReactorLifetime): gRPC's,
// one per item on the intake, and one while the reactor is in the core's paused set.
class SubmitReactor final
    : public rpc::ReactorLifetime<grpc::ServerBidiReactor<SubmitRequest, SubmitResponse>> {
 public:
  explicit SubmitReactor(SubmitterCore* core) : core_(core) {
    // Registered before the first read, so OnDone always finds it registered.
    const bool draining = core_->RegisterLive(this);
    absl::MutexLock lock(&mu_);
    if (draining) draining_ = true;
    StepLocked();
  }

  // Called by the core on shutdown: no more reads; every item already read is stored and
  // answered, then the stream ends with UNAVAILABLE and the caller resends what it did not get an
  // answer for to the next submitter.
  void Drain() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    StepLocked();
  }

  // Called by the core's monitor once the backlog fell under the high-water mark, with the
  // reference the paused set held (released here).
  void Resume() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      paused_ = false;
      StepLocked();
    }
    Unref();
  }

  // Called by the core when it stops: the paused set's reference goes, without a resume.
  void ReleasePaused() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      paused_ = false;
    }
    Unref();
  }

  // grpc::ServerBidiReactor
  void OnReadDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    reading_ = false;
    // A read that completes after a drain finished the stream is never answered: the caller
    // still holds the item and resends it.
    if (!ok || finished_) {
      reads_done_ = true;
      StepLocked();
      return;
    }
    if (req_.items_size() > 0) {
      ReadBatchLocked();
      StepLocked();
      return;
    }
    NewItem item;
    absl::Status st = ValidateSubmit(req_, core_->options(), &item);
    if (!st.ok()) {
      CountInvalid(1);
      SubmitResponse resp;
      resp.set_request_id(EchoId(req_.request_id()));
      resp.set_digest(req_.digest());
      *resp.mutable_status() = rpc::ToItemStatus(st, "INVALID_ARGUMENT");
      PushLocked(std::move(resp), 1);
      StepLocked();
      return;
    }
    SubmitterCore::IntakeItem in;
    in.item = std::move(item);
    in.request_id = req_.request_id();
    in.done = [this](SubmitResponse r) { Deliver(std::move(r), 1); };
    // inflight_ is raised before the item leaves, so the stream cannot finish under it, and the
    // item is enqueued before the next read starts, so items are stored in stream order (the
    // first file of a digest stays the original even within one stream).
    ++inflight_;
    RefLocked();  // released by Deliver
    core_->Enqueue(std::move(in));
    StepLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    queued_items_ -= queue_.front().items;
    queue_.pop_front();
    if (!ok) cancelled_ = true;  // the stream is broken; nothing more can be written
    StepLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    StepLocked();
  }

  void OnDone() override {
    if (core_->UnregisterPaused(this)) Unref();  // the paused set's reference
    core_->UnregisterLive(this);
    Unref();
  }

 private:
  // A response waiting to be written, and how many items it answers (for the window).
  struct Answer {
    SubmitResponse response;
    int items;
  };

  // The answer to a batch-form request, filled in by its items' answers on the intake thread.
  struct BatchAnswer {
    SubmitResponse response;
    std::atomic<int> remaining{0};
  };

  // A batch-form request (req_.items): every valid item goes to the intake in one piece, and the
  // one response goes out once the last of them is answered. An invalid item is answered in place
  // and stores nothing; a message breaking the form is refused whole.
  void ReadBatchLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int n = req_.items_size();
    if (absl::Status st = ValidateBatchForm(req_); !st.ok()) {
      CountInvalid(1);
      SubmitResponse resp;
      resp.set_request_id(EchoId(req_.request_id()));
      *resp.mutable_status() = rpc::ToItemStatus(st, "INVALID_ARGUMENT");
      PushLocked(std::move(resp), 1);
      return;
    }
    auto answer = std::make_shared<BatchAnswer>();
    answer->response.set_request_id(req_.request_id());
    answer->response.mutable_items()->Reserve(n);
    std::vector<SubmitterCore::IntakeItem> in;
    in.reserve(n);
    int invalid = 0;
    for (int i = 0; i < n; ++i) {
      const SubmitRequest& r = req_.items(i);
      SubmitResponse* slot = answer->response.add_items();
      NewItem item;
      absl::Status st = ValidateSubmitItem(r, i, core_->options(), &item);
      if (!st.ok()) {
        ++invalid;
        slot->set_request_id(EchoId(r.request_id()));
        slot->set_digest(r.digest());
        *slot->mutable_status() = rpc::ToItemStatus(st, "INVALID_ARGUMENT");
        continue;
      }
      SubmitterCore::IntakeItem x;
      x.item = std::move(item);
      x.request_id = r.request_id();
      // Each item's answer goes to its own slot (only the intake thread writes them, one at a
      // time); the last one sends the whole response.
      x.done = [this, answer, slot](SubmitResponse resp) {
        *slot = std::move(resp);
        if (answer->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          const int items = answer->response.items_size();
          Deliver(std::move(answer->response), items);
        }
      };
      in.push_back(std::move(x));
    }
    if (invalid > 0) CountInvalid(invalid);
    if (in.empty()) {
      PushLocked(std::move(answer->response), n);
      return;
    }
    answer->remaining.store(static_cast<int>(in.size()), std::memory_order_release);
    // As for one item: counted in flight and referenced before the items leave, enqueued before
    // the next read. The invalid items' slots count as in flight until the response goes.
    inflight_ += n;
    RefLocked();  // released by Deliver
    core_->EnqueueMany(std::move(in));
  }

  void CountInvalid(int n) {
    if (core_->metrics()) core_->metrics()->intake.Add({{"result", "invalid"}}).Increment(n);
  }

  void PushLocked(SubmitResponse r, int items) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queued_items_ += items;
    queue_.push_back(Answer{std::move(r), items});
  }

  // Intake thread: the answer to one request this stream enqueued (`items` digests).
  void Deliver(SubmitResponse r, int items) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      inflight_ -= items;
      if (!cancelled_) PushLocked(std::move(r), items);
      StepLocked();
    }
    Unref();
  }

  void StepLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    if (!writing_ && !queue_.empty() && !cancelled_) {
      writing_ = true;
      // With more answers queued behind this one, let gRPC coalesce them into fewer frames and
      // system calls; the last one of a run is written without the hint, which flushes. The deque
      // keeps the element's address stable on push_back; it is popped in OnWriteDone.
      StartWrite(&queue_.front().response,
                 queue_.size() > 1 ? grpc::WriteOptions().set_buffer_hint() : grpc::WriteOptions());
    }
    if (!reading_ && !reads_done_ && !cancelled_ && !draining_) {
      int outstanding = inflight_ + queued_items_;
      if (outstanding < core_->options().max_outstanding_per_stream) {
        if (core_->AboveHighWater()) {
          PauseLocked();
        } else {
          reading_ = true;
          StartRead(&req_);
        }
      }  // else: OnWriteDone steps again once answers drain
    }
    // A drain does not wait for the outstanding read: gRPC completes it (not ok) once the status
    // is sent.
    if ((((reads_done_ || cancelled_) && !reading_) || draining_) && inflight_ == 0 && !writing_ &&
        (queue_.empty() || cancelled_)) {
      FinishLocked(cancelled_    ? grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")
                   : reads_done_ ? grpc::Status::OK
                                 : grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                "submitter shutting down; reconnect"));
    }
  }

  void PauseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (paused_) return;  // already waiting for the monitor
    paused_ = true;
    RefLocked();  // held by the paused set
    core_->RegisterPaused(this);
  }

  SubmitterCore* const core_;
  SubmitRequest req_;  // written by the read in flight, read in OnReadDone
  std::deque<Answer> queue_ ABSL_GUARDED_BY(mu_);
  int queued_items_ ABSL_GUARDED_BY(mu_) = 0;  // the items queue_ answers
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  int inflight_ ABSL_GUARDED_BY(mu_) = 0;
};

SubmitterCore::SubmitterCore(SubmitterStore* store, Engine* engine, SubmitterMetrics* metrics,
                             ServiceOptions options)
    : store_(store), engine_(engine), metrics_(metrics), options_(std::move(options)) {
  absl::StatusOr<int64_t> n = store_->CountBacklog();
  if (n.ok()) backlog_ = *n;
  threads_.push_back(StartNamedThread("intake", [this] { IntakeLoop(); }));
  threads_.push_back(StartNamedThread("monitor", [this] { MonitorLoop(); }));
}

SubmitterCore::~SubmitterCore() { Stop(); }

void SubmitterCore::Stop() {
  // The pool first: its tasks may still hand an item to the intake (Reanchor) and wait for it.
  pool_.Stop();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  // The monitor resumes no stream any more: the set's references go (normally the set is empty
  // by now, since the server shut down first and every stream's OnDone left it).
  std::set<SubmitReactor*> paused;
  {
    absl::MutexLock lock(&paused_mu_);
    paused.swap(paused_);
  }
  for (SubmitReactor* r : paused) r->ReleasePaused();
}

void SubmitterCore::Enqueue(IntakeItem item) {
  // The intake thread takes everything queued when it wakes, and the mutex wakes it only when its
  // condition (something queued) turns true: one wake-up per group commit, not one per item.
  absl::MutexLock lock(&mu_);
  intake_.push_back(std::move(item));
}

void SubmitterCore::EnqueueMany(std::vector<IntakeItem> items) {
  absl::MutexLock lock(&mu_);
  for (IntakeItem& item : items) intake_.push_back(std::move(item));
}

SubmitResponse SubmitterCore::SubmitAndWait(NewItem item, std::string request_id) {
  struct Answer {
    absl::Notification done;
    SubmitResponse response;
  };
  auto answer = std::make_shared<Answer>();
  IntakeItem in;
  in.item = std::move(item);
  in.request_id = std::move(request_id);
  in.done = [answer](SubmitResponse r) {
    answer->response = std::move(r);
    answer->done.Notify();
  };
  Enqueue(std::move(in));
  answer->done.WaitForNotification();
  return std::move(answer->response);
}

void SubmitterCore::RegisterPaused(SubmitReactor* r) {
  absl::MutexLock lock(&paused_mu_);
  paused_.insert(r);
}

bool SubmitterCore::UnregisterPaused(SubmitReactor* r) {
  absl::MutexLock lock(&paused_mu_);
  return paused_.erase(r) > 0;
}

bool SubmitterCore::RegisterLive(SubmitReactor* r) {
  absl::MutexLock lock(&live_mu_);
  live_.insert(r);
  return draining_;
}

void SubmitterCore::UnregisterLive(SubmitReactor* r) {
  absl::MutexLock lock(&live_mu_);
  live_.erase(r);
}

void SubmitterCore::DrainStreams() {
  absl::MutexLock lock(&live_mu_);
  draining_ = true;
  // Safe: a reactor leaves live_ under live_mu_ in OnDone, before it can be deleted.
  for (SubmitReactor* r : live_) r->Drain();
}

void SubmitterCore::IntakeLoop() {
  for (;;) {
    std::vector<IntakeItem> batch;
    if (options_.before_group) {
      // Only when something is queued (or the core stops): an idle intake waits for items, not
      // for the hand-off.
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &SubmitterCore::IntakeReadyLocked));
      }
      options_.before_group();
    }
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &SubmitterCore::IntakeReadyLocked));
      // On stop the queue is still drained: every accepted item gets its answer.
      if (intake_.empty()) return;
      // Reserved: an item is large, and growing the vector would move every item taken so far.
      batch.reserve(std::min(intake_.size(), static_cast<size_t>(std::max(options_.max_batch, 1))));
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
    int64_t added = 0, stored = 0, duplicates = 0, leaves = 0;
    std::vector<SubmitResponse> answers(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      SubmitResponse& resp = answers[i];
      resp.set_request_id(std::move(batch[i].request_id));
      resp.set_digest(items[i].digest.raw());
      if (!results.ok()) {
        *resp.mutable_status() = rpc::ToItemStatus(
            absl::UnavailableError(absl::StrCat("store: ", results.status().message())),
            "STORE_UNAVAILABLE", absl::Seconds(1));
      } else {
        const InsertResult& r = (*results)[i];
        resp.set_state(ToDigestState(r.state));
        resp.set_duplicate_of(r.duplicate_of);
        *resp.mutable_status() = rpc::ToItemStatus(absl::OkStatus());
        if (!r.known_before) {
          added += static_cast<int64_t>(items[i].providers.size());
          if (items[i].merkle) leaves += static_cast<int64_t>(items[i].providers.size());
        }
        ++(r.known_before ? duplicates : stored);
      }
    }
    // Counted once per commit (a labelled counter's lookup takes a lock and a map search), and
    // before any answer leaves, so a caller holding an answer sees it counted.
    if (metrics_) {
      if (!results.ok()) {
        metrics_->intake.Add({{"result", "error"}}).Increment(static_cast<double>(batch.size()));
      }
      if (stored > 0) metrics_->intake.Add({{"result", "stored"}}).Increment(stored);
      if (duplicates > 0) metrics_->intake.Add({{"result", "duplicate"}}).Increment(duplicates);
    }
    if (!results.ok()) {
      ANCHORD_LOG(Error) << "intake: " << results.status();
    }
    for (size_t i = 0; i < batch.size(); ++i) batch[i].done(std::move(answers[i]));
    backlog_ += added;
    if (on_stored_) on_stored_(leaves);
  }
}

void SubmitterCore::MonitorLoop() {
  absl::Duration wait = options_.backlog_refresh;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), wait)) return;
    }
    // The count costs what the backlog holds (on PostgreSQL 20-30 ms of the server's CPU for a
    // backlog of 100,000, every 200 ms 1.2-2.0 of its 12-16 CPU s in a Merkle run, issue 11
    // session 32): the next one waits at least 20 times as long as this one took, so counting
    // never takes more than about 5% of a core. Between counts the intake adds what it stores.
    const absl::Time started = absl::Now();
    absl::StatusOr<int64_t> n = store_->CountBacklog();
    wait = std::max(options_.backlog_refresh, 20 * (absl::Now() - started));
    if (n.ok()) backlog_ = *n;
    if (AboveHighWater()) continue;
    // Resumed outside paused_mu_: a resumed reactor may pause (and register) again. The set's
    // references keep the reactors taken out of it alive until their Resume.
    std::set<SubmitReactor*> resume;
    {
      absl::MutexLock lock(&paused_mu_);
      resume.swap(paused_);
    }
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
  return rpc::RunUnary(ctx, core_->pool(), "submitter", resp,
                       [this, req] { return submitter::Reanchor(*core_, *req); });
}

grpc::ServerUnaryReactor* SubmitterServiceImpl::ResumeQueue(
    grpc::CallbackServerContext* ctx, const anchord::v1::ResumeQueueRequest* req,
    anchord::v1::ResumeQueueResponse* resp) {
  if (grpc::Status st = gate_.AdmitPublic(*ctx, "SubmitterService.ResumeQueue"); !st.ok()) {
    return rpc::RefuseUnary(ctx, st);
  }
  return rpc::RunUnary(ctx, core_->pool(), "submitter", resp, [this, req] {
    return submitter::ResumeQueue(*core_->store(), core_->engine(), core_->options().providers,
                                  *req);
  });
}

grpc::ServerUnaryReactor* StatusServiceImpl::Locate(grpc::CallbackServerContext* ctx,
                                                    const anchord::v1::LocateRequest* req,
                                                    anchord::v1::LocateResponse* resp) {
  return rpc::RunUnary(ctx, core_->pool(), "submitter", resp,
                       [this, req] { return LocateDigest(*core_->store(), *req, absl::Now()); });
}

grpc::ServerUnaryReactor* StatusServiceImpl::SummarizeJob(
    grpc::CallbackServerContext* ctx, const anchord::v1::SummarizeJobRequest* req,
    anchord::v1::SummarizeJobResponse* resp) {
  return rpc::RunUnary(ctx, core_->pool(), "submitter", resp,
                       [this, req] { return submitter::SummarizeJob(*core_->store(), *req); });
}

}  // namespace anchord::submitter
