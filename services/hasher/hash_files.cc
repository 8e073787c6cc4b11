// HashFiles: the caller streams files as chunks; each chunk is hashed on the hash pool (one chunk
// task at a time per call: the next read starts after the previous chunk was processed), each
// complete file's digest is forwarded to the submitter, and a file's result is written once the
// submitter acknowledged it (or at once for a dry run or an error). Reading pauses while the
// window of files is full, so a slow submitter stalls the caller's writes.
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/common/validate.h"
#include "libs/digest/sha256.h"
#include "libs/rpc/ack_table.h"
#include "libs/rpc/outbox.h"
#include "libs/rpc/status.h"
#include "services/hasher/call_common.h"
#include "services/hasher/hasher_service.h"

namespace anchord::hasher {
namespace {

namespace v1 = anchord::v1;
using Shared = HasherServiceImpl::Shared;

constexpr int64_t kMaxChunkBytes = 4 * 1024 * 1024;

// The call's Submit stream, opened on the first forwarded file. Once cancelled, no stream is
// opened any more (a file finishing after the cancellation is dropped).
class LazySession {
 public:
  // The session, created with `make` on first use; null once Cancel() was called.
  SubmitSession* GetOrCreate(const std::function<std::unique_ptr<SubmitSession>()>& make)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return nullptr;
    if (!session_) session_ = make();
    return session_.get();
  }
  // The session if one was opened (null otherwise).
  SubmitSession* Get() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return session_.get();
  }
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (session_) session_->Cancel();
  }

 private:
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<SubmitSession> session_ ABSL_GUARDED_BY(mu_);
};

struct FilesCall {
  // A file sent to the submitter and not yet acknowledged.
  struct Item {
    std::string file_id;
    Digest digest;
    int64_t size_bytes;
    std::string job;
    std::string source_path;
  };

  explicit FilesCall(Shared* s) : shared(s), out(s->options.max_inflight, false) {}

  void Cancel() {
    cancelled = true;
    out.Cancel();
    session.Cancel();
  }

  Shared* const shared;
  rpc::Outbox<v1::HashFilesResponse> out;
  std::atomic<bool> cancelled{false};
  std::atomic<bool> input_done{false};
  LazySession session;
  rpc::AckTable<Item> sent{"h"};

  // The file being received. Only the chunk tasks touch it, and they run one at a time (the
  // next read starts after the previous chunk was processed).
  bool in_file = false;
  std::string file_id;
  v1::FileMetadata metadata;
  bool dry_run = false;
  std::vector<std::string> providers;
  v1::AnchorMode anchor_mode = v1::ANCHOR_MODE_UNSPECIFIED;
  std::string fallback_provider;
  absl::Status file_error;
  digest::Sha256 sha;
  int64_t received = 0;
};

void FilesResult(FilesCall* c, const std::string& file_id, int64_t size, const absl::Status& st,
                 absl::string_view reason) {
  c->shared->metrics->files_error.Increment();
  v1::HashFilesResponse r;
  r.set_file_id(EchoId(file_id));
  r.set_size_bytes(size);
  *r.mutable_status() = internal::ItemStatusOf(st, reason);
  c->out.Push(std::move(r));
}

void OnFilesAck(FilesCall* c, const v1::SubmitResponse& ack) {
  std::optional<FilesCall::Item> item = c->sent.Take(ack.request_id());
  if (!item) return;
  v1::HashFilesResponse r;
  r.set_file_id(item->file_id);
  r.set_digest(item->digest.raw());
  r.set_size_bytes(item->size_bytes);
  if (ack.status().code() == 0 && !item->source_path.empty()) {
    absl::Status st = c->shared->store->MarkQueued(item->job, item->source_path, item->digest,
                                                   ack.duplicate_of());
    if (!st.ok()) {
      ANCHORD_LOG(Error) << "store: " << st;
    }
  }
  internal::SetAckOutcome(ack, &r);
  c->out.Push(std::move(r));
}

// Ends the current file: validates the byte count, then returns the result (dry run) or forwards
// the digest. The file's slot was taken when its first chunk arrived.
void FinishFile(FilesCall* c) {
  Shared* s = c->shared;
  c->in_file = false;
  const Digest digest = c->sha.Finish();
  if (!c->file_error.ok()) {
    FilesResult(c, c->file_id, c->received, c->file_error, "INVALID_FIELD");
    return;
  }
  if (c->received != c->metadata.size_bytes()) {
    FilesResult(c, c->file_id, c->received,
                absl::InvalidArgumentError(absl::StrCat("metadata.size_bytes: announced ",
                                                        c->metadata.size_bytes(),
                                                        " bytes but received ", c->received)),
                c->received == 0 ? "EMPTY_FILE" : "SIZE_MISMATCH");
    return;
  }
  s->metrics->files_hashed.Increment();
  std::string job(JobOrDefault(c->metadata.job()));
  const std::string& source_path = c->metadata.source_path();
  // Only files that name their source path are recorded: the store is keyed by path.
  if (!source_path.empty()) {
    absl::Status st = s->store->RecordUploaded(
        job, source_path, c->received, internal::TimestampNs(c->metadata.modified_at()), digest);
    if (!st.ok()) {
      ANCHORD_LOG(Error) << "store: " << st;
    }
  }
  if (c->dry_run) {
    v1::HashFilesResponse r;
    r.set_file_id(c->file_id);
    r.set_digest(digest.raw());
    r.set_size_bytes(c->received);
    r.set_state(v1::DIGEST_STATE_HASHED);
    *r.mutable_status() = rpc::ToItemStatus(absl::OkStatus());
    c->out.Push(std::move(r));
    return;
  }
  if (!s->options.submitter) {
    FilesResult(c, c->file_id, c->received,
                absl::FailedPreconditionError("no submitter configured (use dry_run)"),
                "NO_SUBMITTER");
    return;
  }
  SubmitSession* session = c->session.GetOrCreate([c, s] {
    return std::make_unique<SubmitSession>(s->options.submitter, s->options.submit, s->metrics,
                                           [c](std::vector<v1::SubmitResponse*>& acks) {
                                             for (const v1::SubmitResponse* ack : acks)
                                               OnFilesAck(c, *ack);
                                           });
  });
  if (session == nullptr) {  // cancelled
    c->out.Drop();
    return;
  }
  v1::SubmitRequest req;
  req.set_request_id(
      c->sent.Add(FilesCall::Item{c->file_id, digest, c->received, job, source_path}));
  req.set_digest(digest.raw());
  *req.mutable_metadata() = c->metadata;
  req.mutable_metadata()->set_job(job);
  for (const std::string& p : c->providers) req.add_providers(p);
  req.set_anchor_mode(c->anchor_mode);
  req.set_fallback_provider(c->fallback_provider);
  session->Send(std::move(req));
}

void StartFile(FilesCall* c, const v1::HashFilesRequest& req) {
  c->out.ForceAdmit();
  c->in_file = true;
  c->file_id = req.file_id();
  c->metadata = req.metadata();
  c->dry_run = req.dry_run();
  c->providers.assign(req.providers().begin(), req.providers().end());
  c->anchor_mode = req.anchor_mode();
  c->fallback_provider = req.fallback_provider();
  c->sha.Reset();
  c->received = 0;
  const v1::FileMetadata& m = c->metadata;
  absl::Status st = ValidateRequestId(c->file_id, "file_id");
  if (st.ok()) {
    st = internal::ValidateAnchoring(req.providers(), c->anchor_mode, c->fallback_provider);
  }
  if (st.ok() && !req.has_metadata()) {
    st = absl::InvalidArgumentError("metadata: required in the first chunk of a file");
  }
  if (st.ok()) st = ValidateFilename(m.filename(), "metadata.filename");
  if (st.ok()) st = ValidateSize(m.size_bytes(), "metadata.size_bytes");
  if (st.ok()) st = ValidateMimeType(m.mime_type(), "metadata.mime_type");
  if (st.ok()) st = ValidateSourcePath(m.source_path(), "metadata.source_path");
  if (st.ok()) st = ValidateJob(m.job(), "metadata.job");
  c->file_error = st;
}
void ProcessChunk(FilesCall* c, const v1::HashFilesRequest& req) {
  if (c->cancelled) return;
  if (c->in_file && req.file_id() != c->file_id) {
    // A new file_id before the previous file's last chunk: the previous file is incomplete.
    // Its result takes its own slot; the new file takes one more, so a misbehaving caller can
    // exceed the window by one file at most.
    c->file_error =
        absl::InvalidArgumentError(absl::StrCat("last: file_id \"", QuoteCallerText(c->file_id),
                                                "\" ended without a chunk with last=true"));
    FinishFile(c);
  }
  if (!c->in_file) StartFile(c, req);
  if (static_cast<int64_t>(req.data().size()) > kMaxChunkBytes && c->file_error.ok()) {
    c->file_error = absl::InvalidArgumentError("data: at most 4 MiB per message");
  }
  if (c->file_error.ok()) {
    c->sha.Update(req.data());
    c->received += static_cast<int64_t>(req.data().size());
    c->shared->metrics->bytes.Increment(static_cast<double>(req.data().size()));
    if (c->received > c->metadata.size_bytes()) {
      c->file_error = absl::InvalidArgumentError(absl::StrCat(
          "metadata.size_bytes: announced ", c->metadata.size_bytes(), " bytes but received more"));
    }
  } else {
    c->received += static_cast<int64_t>(req.data().size());
  }
  if (req.last()) FinishFile(c);
}

class FilesReactor final : public internal::OutboxReactor<
                               grpc::ServerBidiReactor<v1::HashFilesRequest, v1::HashFilesResponse>,
                               FilesCall, v1::HashFilesResponse> {
 public:
  explicit FilesReactor(std::shared_ptr<FilesCall> call) : OutboxReactor(std::move(call)) {
    call_->out.on_room = [this] { ResumeIfPaused(); };
  }
  void Begin() {
    absl::MutexLock lock(&mu_);
    StartRead(&buf_);
  }

  // grpc::ServerBidiReactor
  void OnReadDone(bool ok) override {
    FilesCall* c = call_.get();
    if (!ok) {
      c->input_done = true;
      c->out.Notify();
      return;
    }
    auto chunk = std::make_shared<v1::HashFilesRequest>(std::move(buf_));
    {
      absl::MutexLock lock(&mu_);
      RefLocked();  // the chunk task's, released when it is done
    }
    c->out.TaskStarted();
    std::shared_ptr<FilesCall> call = call_;
    bool posted = c->shared->hash_pool->Post([call, chunk, this] {
      ProcessChunk(call.get(), *chunk);
      ReadNext();
      call->out.TaskDone();
      Unref();
    });
    if (!posted) {  // the service is shutting down: end the call
      call->Cancel();
      call->out.TaskDone();
      Unref();
    }
  }

 private:
  // Called after a chunk was processed: reads the next one when a file slot is free, else
  // pauses until OnWriteDone frees one (the caller's writes then stall: backpressure).
  void ReadNext() ABSL_LOCKS_EXCLUDED(mu_) {
    FilesCall* c = call_.get();
    absl::MutexLock lock(&mu_);
    if (c->cancelled || c->input_done || finished_) return;
    // The chunks of the file being received need no new slot (it took one at its first chunk);
    // only starting another file does.
    if (c->in_file || c->out.HasRoom()) {
      buf_.Clear();
      StartRead(&buf_);
    } else {
      read_paused_ = true;
    }
  }

  void ResumeIfPaused() ABSL_LOCKS_EXCLUDED(mu_) {
    FilesCall* c = call_.get();
    absl::MutexLock lock(&mu_);
    if (!read_paused_ || c->cancelled || c->input_done || finished_ || !c->out.HasRoom()) return;
    read_paused_ = false;
    buf_.Clear();
    StartRead(&buf_);
  }

  // The read buffer. Not under mu_: one read is in flight at a time, and only the thread that
  // starts a read (with mu_ held) or completes it (OnReadDone) touches the buffer.
  v1::HashFilesRequest buf_;
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
};

// The coordinator thread: waits for the end of the input, then for every result to be written.
void RunFiles(const std::shared_ptr<FilesCall>& c, FilesReactor* reactor) {
  // Until the caller half-closed and the last chunk was processed (or cancelled).
  c->out.WaitTasks([&] { return c->input_done.load(); });
  if (!c->cancelled && c->in_file) {
    c->file_error = absl::InvalidArgumentError(
        absl::StrCat("last: the stream ended before the last chunk of file_id \"",
                     QuoteCallerText(c->file_id), "\""));
    FinishFile(c.get());
  }
  bool completed = c->out.WaitFinished();
  if (SubmitSession* session = c->session.Get()) {
    if (!completed) session->Cancel();
    session->Stop();
  }
  reactor->Complete(completed && !c->cancelled
                        ? grpc::Status::OK
                        : grpc::Status(grpc::StatusCode::CANCELLED, "HashFiles cancelled"));
}

}  // namespace

grpc::ServerBidiReactor<v1::HashFilesRequest, v1::HashFilesResponse>* HasherServiceImpl::HashFiles(
    grpc::CallbackServerContext* ctx) {
  Shared* s = shared_.get();
  if (!s->calls.Reserve()) {
    return new internal::ErrorReactor<
        grpc::ServerBidiReactor<v1::HashFilesRequest, v1::HashFilesResponse>>(
        internal::TooManyCalls(kMaxActiveCalls));
  }
  auto call = std::make_shared<FilesCall>(s);
  auto* reactor = new FilesReactor(call);
  std::weak_ptr<FilesCall> weak = call;
  s->calls.Start(
      [weak] {
        if (auto c = weak.lock()) c->Cancel();
      },
      [call, reactor] { RunFiles(call, reactor); });
  reactor->Begin();
  return reactor;
}

}  // namespace anchord::hasher
