#include "services/hasher/hasher_service.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <vector>
#include <thread>

#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/common/validate.h"
#include "libs/digest/hash_file.h"
#include "libs/digest/mime.h"
#include "libs/digest/reason.h"
#include "libs/digest/sha256.h"
#include "libs/rpc/status.h"

namespace anchord::hasher {
namespace {

namespace v1 = anchord::v1;
using Shared = HasherServiceImpl::Shared;

constexpr int64_t kMaxChunkBytes = 4 * 1024 * 1024;
constexpr int kListPageRows = 256;
constexpr int64_t kBatchBytes = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Outbox: the bounded path from the workers to the caller's stream.
//
// Every file of a call is "admitted" before work starts on it and holds its slot until its
// result was written to the caller (OnWriteDone). At most `window` slots exist, so the results
// waiting to be written, the files being hashed and the digests unacknowledged by the submitter
// are all bounded by --max-inflight: a slow submitter or a slow caller pauses the walk/reads.
// One write in flight; the next one starts from OnWriteDone.
template <typename Resp>
class Outbox {
 public:
  // With `hold_back_last`, the newest result is not written until another one follows or
  // ReleaseHeld() is called, so the caller's last message is written after the walk completed
  // and carries walk_complete=true and the final files_total. The held result does not count
  // against the window (else a window of 1 would deadlock the walk).
  Outbox(int window, bool hold_back_last)
      : window_(window < 1 ? 1 : window), hold_back_(hold_back_last) {}

  // Called under the lock with the response about to be written (to stamp progress fields),
  // then the write itself.
  std::function<void(Resp*)> stamp;
  std::function<void(Resp*)> start_write;
  // Called (without the lock) after a slot was released.
  std::function<void()> on_room;

  // Blocks until a slot is free. False when the call was cancelled.
  bool Admit() {
    std::unique_lock<std::recursive_mutex> lock(mu_);
    cv_.wait(lock, [&] { return cancelled_ || outstanding_ - Held() < window_; });
    if (cancelled_) return false;
    ++outstanding_;
    return true;
  }
  // Takes a slot without waiting (the caller checked HasRoom before reading the next message).
  void ForceAdmit() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    ++outstanding_;
  }
  bool HasRoom() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return outstanding_ < window_;
  }
  // Gives up a slot without a result (work dropped after cancellation).
  void Drop() {
    {
      std::lock_guard<std::recursive_mutex> lock(mu_);
      --outstanding_;
    }
    cv_.notify_all();
  }
  // Queues the result of an admitted file.
  void Push(Resp r) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (cancelled_) {
      --outstanding_;
      cv_.notify_all();
      return;
    }
    queue_.push_back(std::move(r));
    if (!writing_ && CanWriteFront()) {
      writing_ = true;
      WriteFront();
    }
    cv_.notify_all();  // a newly held result frees a slot for the walk
  }
  // Ends hold-back mode and writes what was held.
  void ReleaseHeld() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    hold_back_ = false;
    if (!writing_ && !queue_.empty() && !cancelled_) {
      writing_ = true;
      WriteFront();
    }
  }
  void OnWriteDone(bool ok) {
    {
      std::lock_guard<std::recursive_mutex> lock(mu_);
      if (!queue_.empty()) {
        queue_.pop_front();
        --outstanding_;
      }
      if (!ok) {
        // The caller is gone: nothing more can be written.
        cancelled_ = true;
        outstanding_ -= static_cast<int>(queue_.size());
        queue_.clear();
      }
      if (!queue_.empty() && !cancelled_ && CanWriteFront()) {
        WriteFront();
      } else {
        writing_ = false;
      }
    }
    cv_.notify_all();
    if (on_room) on_room();
  }
  void Cancel() {
    {
      std::lock_guard<std::recursive_mutex> lock(mu_);
      cancelled_ = true;
      // Keep the response being written (its buffer is in use until OnWriteDone).
      size_t keep = writing_ ? 1 : 0;
      while (queue_.size() > keep) {
        queue_.pop_back();
        --outstanding_;
      }
    }
    cv_.notify_all();
  }
  bool cancelled() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return cancelled_;
  }
  int outstanding() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return outstanding_;
  }
  void TaskStarted() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    ++tasks_;
  }
  void TaskDone() {
    {
      std::lock_guard<std::recursive_mutex> lock(mu_);
      --tasks_;
    }
    cv_.notify_all();
  }
  // Wakes Wait()ers after an outside flag changed.
  void Notify() {
    { std::lock_guard<std::recursive_mutex> lock(mu_); }
    cv_.notify_all();
  }
  // Waits until every admitted file was written and no task runs, or until cancelled and quiet
  // (no task runs and no write is in flight). `extra` must also hold. True when not cancelled.
  bool WaitFinished(const std::function<bool()>& extra) {
    std::unique_lock<std::recursive_mutex> lock(mu_);
    cv_.wait(lock, [&] {
      if (cancelled_) return tasks_ == 0 && !writing_;
      return outstanding_ == 0 && tasks_ == 0 && extra();
    });
    return !cancelled_;
  }
  // Waits until no task runs (or cancelled).
  void WaitTasks(const std::function<bool()>& extra) {
    std::unique_lock<std::recursive_mutex> lock(mu_);
    cv_.wait(lock, [&] { return cancelled_ || (tasks_ == 0 && extra()); });
  }
  std::recursive_mutex& mu() { return mu_; }

 private:
  // 1 when the newest result is held back (queued, not being written).
  int Held() const {
    if (!hold_back_ || queue_.empty()) return 0;
    return writing_ && queue_.size() == 1 ? 0 : 1;
  }
  bool CanWriteFront() const { return !hold_back_ || queue_.size() >= 2; }
  void WriteFront() {
    if (stamp) stamp(&queue_.front());
    start_write(&queue_.front());
  }
  const int window_;
  std::recursive_mutex mu_;
  std::condition_variable_any cv_;
  std::deque<Resp> queue_;  // deque: push_back keeps the address of the front being written
  int outstanding_ = 0;
  int tasks_ = 0;
  bool writing_ = false;
  bool cancelled_ = false;
  bool hold_back_;
};

absl::Status Annotate(const absl::Status& st, absl::string_view reason) {
  return digest::WithReason(st, reason);
}

v1::ItemStatus ItemStatusOf(const absl::Status& st, absl::string_view fallback_reason) {
  std::string reason = digest::ReasonOf(st);
  if (reason.empty()) reason = std::string(fallback_reason);
  return rpc::ToItemStatus(st, reason);
}

std::string Basename(absl::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path : path.substr(slash + 1));
}

void SetTimestampNs(google::protobuf::Timestamp* ts, int64_t ns) {
  ts->set_seconds(ns / 1000000000LL);
  ts->set_nanos(static_cast<int32_t>(ns % 1000000000LL));
}

int64_t TimestampNs(const google::protobuf::Timestamp& ts) {
  return ts.seconds() * 1000000000LL + ts.nanos();
}

// Reserves one of the kMaxActiveCalls call slots; false when all are taken. A reserved slot
// must be handed to StartCoordinator.
bool ReserveCall(Shared* s) {
  std::lock_guard<std::mutex> lock(s->mu);
  if (s->active_calls >= kMaxActiveCalls) return false;
  ++s->active_calls;
  return true;
}

// Starts the coordinator thread of a reserved call: it runs `body`, then frees the slot.
void StartCoordinator(Shared* s, std::function<void()> cancel, std::function<void()> body) {
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    id = s->next_call_id++;
    s->cancel_fns[id] = std::move(cancel);
  }
  std::thread([s, id, body = std::move(body)]() mutable {
    body();
    body = nullptr;  // drop the call's state before the service may be destroyed
    std::lock_guard<std::mutex> lock(s->mu);
    s->cancel_fns.erase(id);
    --s->active_calls;
    s->cv.notify_all();
  }).detach();
}

template <typename Resp>
class ErrorWriteReactor final : public grpc::ServerWriteReactor<Resp> {
 public:
  explicit ErrorWriteReactor(const absl::Status& st) { this->Finish(rpc::ToGrpcStatus(st)); }
  void OnDone() override { delete this; }
};

template <typename Req, typename Resp>
class ErrorBidiReactor final : public grpc::ServerBidiReactor<Req, Resp> {
 public:
  explicit ErrorBidiReactor(const absl::Status& st) { this->Finish(rpc::ToGrpcStatus(st)); }
  void OnDone() override { delete this; }
};

absl::Status TooManyCalls() {
  return absl::ResourceExhaustedError(absl::StrCat(
      "too many concurrent HashTree/HashFiles calls (limit ", kMaxActiveCalls, "); retry later"));
}

// ---------------------------------------------------------------------------------------------
// HashTree

struct TreeCall {
  struct Item {
    std::string path;
    std::string digest;
    int64_t size_bytes;
  };

  TreeCall(Shared* s, const v1::HashTreeRequest& r, std::string dir_in)
      : shared(s),
        request(r),
        job(JobOrDefault(r.job())),
        dir(std::move(dir_in)),
        out(s->options.max_inflight, /*hold_back_last=*/true) {}

  void Cancel() {
    cancelled = true;
    out.Cancel();
    if (session) session->Cancel();
  }

  Shared* shared;
  v1::HashTreeRequest request;
  std::string job;
  std::string dir;
  Outbox<v1::HashTreeResponse> out;
  std::atomic<bool> cancelled{false};
  std::atomic<int64_t> files_total{0};
  std::atomic<bool> walk_complete{false};
  std::unique_ptr<SubmitSession> session;  // null for a dry run; set before any thread starts
  std::mutex items_mu;
  std::map<std::string, Item> items;  // by request_id, sent and not yet acknowledged
  uint64_t next_item = 0;
  // Acknowledged files whose QUEUED mark is not yet written (under items_mu). Written in batches
  // (one commit per kMarkBatch acks instead of one per file) and always before the call
  // finishes, so a later call or ListFiles sees them. A mark lost to a crash only means the
  // file is sent again next time (the submitter is idempotent on the digest).
  std::vector<QueuedMark> marks;
};

constexpr size_t kMarkBatch = 64;

void FlushMarks(TreeCall* c, bool only_if_full) {
  std::vector<QueuedMark> marks;
  {
    std::lock_guard<std::mutex> lock(c->items_mu);
    if (c->marks.empty() || (only_if_full && c->marks.size() < kMarkBatch)) return;
    marks.swap(c->marks);
  }
  absl::Status st = c->shared->store->MarkQueuedBatch(marks);
  if (!st.ok()) {
    // The submitter has them; only our bookkeeping failed. The next run re-sends (idempotent).
    ANCHORD_LOG(Error) << "store: " << st;
  }
}

void TreeError(const std::shared_ptr<TreeCall>& c, const std::string& path, int64_t size,
               int64_t mtime_ns, const absl::Status& st) {
  Shared* s = c->shared;
  v1::ItemStatus item = ItemStatusOf(st, "FILE_UNREADABLE");
  absl::Status rec = s->store->RecordError(c->job, path, size, mtime_ns, item.code(), item.reason(),
                                           item.message());
  if (!rec.ok()) {
    ANCHORD_LOG(Error) << "store: " << rec;
  }
  s->metrics->files_error.Increment();
  v1::HashTreeResponse r;
  r.set_path(path);
  r.set_size_bytes(size);
  *r.mutable_status() = std::move(item);
  c->out.Push(std::move(r));
}

void OnTreeAck(TreeCall* c, const v1::SubmitResponse& ack) {
  TreeCall::Item item;
  {
    std::lock_guard<std::mutex> lock(c->items_mu);
    auto it = c->items.find(ack.request_id());
    if (it == c->items.end()) return;
    item = std::move(it->second);
    c->items.erase(it);
  }
  v1::HashTreeResponse r;
  r.set_path(item.path);
  r.set_digest(item.digest);
  r.set_size_bytes(item.size_bytes);
  if (ack.status().code() == 0) {
    {
      std::lock_guard<std::mutex> lock(c->items_mu);
      c->marks.push_back(QueuedMark{c->job, item.path, item.digest, ack.duplicate_of()});
    }
    FlushMarks(c, /*only_if_full=*/true);
    r.set_state(ack.state() >= v1::DIGEST_STATE_QUEUED ? ack.state() : v1::DIGEST_STATE_QUEUED);
    r.set_duplicate_of(ack.duplicate_of());
    *r.mutable_status() = rpc::ToItemStatus(absl::OkStatus());
  } else {
    // The submitter refused the item (e.g. INVALID_ARGUMENT): report it in the file's result.
    r.set_state(v1::DIGEST_STATE_HASHED);
    *r.mutable_status() = ack.status();
    if (r.status().reason().empty()) r.mutable_status()->set_reason("SUBMIT_REJECTED");
  }
  c->out.Push(std::move(r));
}

// Hashes one file; on success appends it to `hashed` (recorded and forwarded by the caller once
// the whole batch is hashed), otherwise reports its error at once.
void HashTreeFile(const std::shared_ptr<TreeCall>& c, const digest::WalkEntry& e,
                  std::vector<HashedRecord>* hashed) {
  Shared* s = c->shared;
  digest::HashFileOptions opt;
  opt.buffer_bytes = s->options.hash_buffer_bytes;
  opt.cancelled = &c->cancelled;
  std::atomic<int64_t> bytes{0};
  absl::StatusOr<digest::FileDigest> d = digest::HashFile(e.real_path, opt, &bytes);
  s->metrics->bytes.Increment(static_cast<double>(bytes.load()));
  if (!d.ok()) {
    if (c->cancelled) {
      c->out.Drop();
      return;
    }
    // Messages name the path relative to the root, never the resolved location.
    absl::Status st(d.status().code(),
                    absl::StrCat(e.rel_path, ": ",
                                 digest::ReasonOf(d.status()) == digest::kFileChangedWhileHashing
                                     ? "changed while it was hashed"
                                     : d.status().message()));
    TreeError(c, e.rel_path, e.size_bytes, e.mtime_ns, Annotate(st, digest::ReasonOf(d.status())));
    return;
  }
  hashed->push_back(HashedRecord{e.rel_path, d->size_bytes, d->mtime_ns, d->digest.raw()});
}

// Forwards one recorded file to the submitter (its result is pushed when the ack arrives).
void ForwardTreeFile(const std::shared_ptr<TreeCall>& c, const HashedRecord& h) {
  v1::SubmitRequest req;
  {
    std::lock_guard<std::mutex> lock(c->items_mu);
    req.set_request_id(absl::StrCat("f", c->next_item++));
    c->items[req.request_id()] = TreeCall::Item{h.path, h.digest, h.size_bytes};
  }
  req.set_digest(h.digest);
  v1::FileMetadata* md = req.mutable_metadata();
  md->set_filename(Basename(h.path));
  md->set_size_bytes(h.size_bytes);
  md->set_mime_type(digest::GuessMimeType(h.path));
  md->set_source_path(h.path);
  md->set_job(c->job);
  SetTimestampNs(md->mutable_modified_at(), h.mtime_ns);
  for (const auto& p : c->request.providers()) req.add_providers(p);
  req.set_anchor_mode(c->request.anchor_mode());
  req.set_fallback_provider(c->request.fallback_provider());
  c->session->Send(std::move(req));
}

// One task of the hash pool: a batch of admitted walk entries (each holds an outbox slot).
//
// Why batches: with one task per file, small files spent most of their time in hand-offs (a pool
// wake-up, a store lookup, a commit and a duplicate query per file, each taking the store lock).
// A batch costs one wake-up, one lookup pass and one transaction for all its files. The order
// per file is unchanged: the HASHED row is committed before the digest is forwarded.
void HashTreeBatch(const std::shared_ptr<TreeCall>& c, std::vector<digest::WalkEntry>& batch) {
  Shared* s = c->shared;
  if (c->cancelled) {
    for (size_t i = 0; i < batch.size(); ++i) c->out.Drop();
    return;
  }
  // Unchanged since the submitter acknowledged it: not read again.
  std::vector<std::string> paths;
  paths.reserve(batch.size());
  for (const auto& e : batch) paths.push_back(e.rel_path);
  auto rows = s->store->GetMany(c->job, paths);
  std::vector<HashedRecord> hashed;
  hashed.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const digest::WalkEntry& e = batch[i];
    if (c->cancelled) {
      c->out.Drop();
      continue;
    }
    const std::optional<FileRow>* row = rows.ok() && i < rows->size() ? &(*rows)[i] : nullptr;
    // Only a digest the hasher read from this file itself may stand in for reading it again: a
    // row recorded from uploaded bytes (HashFiles naming this path) carries whatever the caller
    // sent, with a size and mtime anyone can copy.
    if (row != nullptr && row->has_value() && (*row)->state == FileState::kQueued &&
        (*row)->read_by_hasher && (*row)->size_bytes == e.size_bytes &&
        (*row)->mtime_ns == e.mtime_ns && (*row)->digest.size() == kDigestBytes) {
      s->metrics->files_unchanged.Increment();
      v1::HashTreeResponse r;
      r.set_path(e.rel_path);
      r.set_digest((*row)->digest);
      r.set_size_bytes(e.size_bytes);
      r.set_state(v1::DIGEST_STATE_QUEUED);
      r.set_unchanged(true);
      r.set_duplicate_of((*row)->duplicate_of);
      *r.mutable_status() = rpc::ToItemStatus(absl::OkStatus());
      c->out.Push(std::move(r));
      continue;
    }
    HashTreeFile(c, e, &hashed);
  }
  if (hashed.empty()) return;
  const bool dry_run = c->request.dry_run();
  std::vector<std::string> dups;
  absl::Status st = s->store->RecordHashedBatch(c->job, hashed, dry_run ? &dups : nullptr);
  if (!st.ok()) {
    for (const HashedRecord& h : hashed) {
      TreeError(
          c, h.path, h.size_bytes, h.mtime_ns,
          Annotate(absl::InternalError(absl::StrCat("store: ", st.message())), "STORE_ERROR"));
    }
    return;
  }
  s->metrics->files_hashed.Increment(static_cast<double>(hashed.size()));
  for (size_t i = 0; i < hashed.size(); ++i) {
    HashedRecord& h = hashed[i];
    if (!dry_run) {
      ForwardTreeFile(c, h);
      continue;
    }
    v1::HashTreeResponse r;
    r.set_path(std::move(h.path));
    r.set_digest(std::move(h.digest));
    r.set_size_bytes(h.size_bytes);
    r.set_state(v1::DIGEST_STATE_HASHED);
    if (i < dups.size()) r.set_duplicate_of(dups[i]);
    *r.mutable_status() = rpc::ToItemStatus(absl::OkStatus());
    c->out.Push(std::move(r));
  }
}

void RunTree(const std::shared_ptr<TreeCall>& c,
             grpc::ServerWriteReactor<v1::HashTreeResponse>* reactor) {
  Shared* s = c->shared;
  // Files per hash-pool task: window / (2 * workers) (a quarter of it with 2 workers), capped at
  // 64, so that several batches are in flight (every worker busy while the caller drains results)
  // and a batch waiting for its slots holds at most half the window: the other half is released
  // as the results of earlier batches are written.
  const size_t batch_size = static_cast<size_t>(
      std::clamp(s->options.max_inflight / (2 * std::max(1, s->options.workers)), 1, 64));
  // Walk entries collected but not yet admitted. They are admitted together just before the
  // batch is posted: admitting them one by one as they were found would, with a full window,
  // post a batch per freed slot (batches of one, the per-file hand-offs again) or wait on slots
  // held by the batch itself.
  std::vector<digest::WalkEntry> batch;
  batch.reserve(batch_size);
  int64_t batch_bytes = 0;
  // Admits `batch` and hands it to the pool; false when the call was cancelled meanwhile.
  auto flush = [&]() -> bool {
    std::vector<digest::WalkEntry> admitted;
    admitted.reserve(batch.size());
    bool ok = true;
    for (digest::WalkEntry& e : batch) {
      if (!c->out.Admit()) {
        ok = false;
        break;
      }
      ++c->files_total;
      if (!e.status.ok()) {
        TreeError(c, e.rel_path, e.size_bytes, e.mtime_ns, e.status);
        continue;
      }
      admitted.push_back(std::move(e));
    }
    batch.clear();
    if (admitted.empty()) return ok;
    // Posted even when cancelled: the task drops the slots the entries hold.
    c->out.TaskStarted();
    s->hash_pool->Post([c, b = std::move(admitted)]() mutable {
      HashTreeBatch(c, b);
      c->out.TaskDone();
    });
    return ok;
  };
  absl::Status walk = s->walker.Walk(
      c->dir,
      [&](digest::WalkEntry&& e) {
        batch_bytes += e.size_bytes > 0 ? e.size_bytes : 0;
        batch.push_back(std::move(e));
        // Large files go out in small batches (alone past 1 MiB) so that the workers hash them
        // in parallel; batching only pays for small files.
        if (batch.size() >= batch_size || batch_bytes >= kBatchBytes) {
          batch_bytes = 0;
          return flush();
        }
        return true;
      },
      &c->cancelled);
  if (!c->cancelled) flush();  // the last partial batch
  c->walk_complete = true;
  c->out.ReleaseHeld();
  bool completed = c->out.WaitFinished([] { return true; });
  absl::Status final_status = absl::OkStatus();
  if (!completed || c->cancelled) {
    final_status = absl::CancelledError("HashTree cancelled");
  } else if (!walk.ok()) {
    final_status = walk;
  }
  if (c->session) {
    if (!completed) c->session->Cancel();
    c->session->Stop();
  }
  FlushMarks(c.get(), /*only_if_full=*/false);  // no ack arrives after Stop()
  reactor->Finish(rpc::ToGrpcStatus(final_status));
}

class TreeReactor final : public grpc::ServerWriteReactor<v1::HashTreeResponse> {
 public:
  explicit TreeReactor(std::shared_ptr<TreeCall> call) : call_(std::move(call)) {
    TreeCall* c = call_.get();
    c->out.stamp = [c](v1::HashTreeResponse* r) {
      r->set_files_total(c->files_total.load());
      r->set_walk_complete(c->walk_complete.load());
    };
    c->out.start_write = [this](v1::HashTreeResponse* r) { StartWrite(r); };
  }
  // grpc::ServerWriteReactor
  void OnWriteDone(bool ok) override { call_->out.OnWriteDone(ok); }
  void OnCancel() override { call_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<TreeCall> call_;
};

// ---------------------------------------------------------------------------------------------
// HashFiles

class FilesReactor;

struct FilesCall {
  struct Item {
    std::string file_id;
    std::string digest;
    int64_t size_bytes;
    std::string job;
    std::string source_path;
  };

  explicit FilesCall(Shared* s) : shared(s), out(s->options.max_inflight, false) {}

  void Cancel() {
    cancelled = true;
    out.Cancel();
    std::lock_guard<std::mutex> lock(mu);
    if (session) session->Cancel();
  }

  Shared* shared;
  Outbox<v1::HashFilesResponse> out;
  std::atomic<bool> cancelled{false};
  std::atomic<bool> input_done{false};
  FilesReactor* reactor = nullptr;

  // Read state, under mu.
  std::mutex mu;
  bool read_paused = false;
  std::unique_ptr<SubmitSession> session;  // created on the first forwarded file

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

  std::mutex items_mu;
  std::map<std::string, Item> items;
  uint64_t next_item = 0;
};

void FilesResult(FilesCall* c, const std::string& file_id, int64_t size, const absl::Status& st,
                 absl::string_view reason) {
  c->shared->metrics->files_error.Increment();
  v1::HashFilesResponse r;
  r.set_file_id(EchoId(file_id));
  r.set_size_bytes(size);
  *r.mutable_status() = ItemStatusOf(st, reason);
  c->out.Push(std::move(r));
}

void OnFilesAck(FilesCall* c, const v1::SubmitResponse& ack) {
  FilesCall::Item item;
  {
    std::lock_guard<std::mutex> lock(c->items_mu);
    auto it = c->items.find(ack.request_id());
    if (it == c->items.end()) return;
    item = std::move(it->second);
    c->items.erase(it);
  }
  v1::HashFilesResponse r;
  r.set_file_id(item.file_id);
  r.set_digest(item.digest);
  r.set_size_bytes(item.size_bytes);
  if (ack.status().code() == 0) {
    if (!item.source_path.empty()) {
      absl::Status st =
          c->shared->store->MarkQueued(item.job, item.source_path, item.digest, ack.duplicate_of());
      if (!st.ok()) {
        ANCHORD_LOG(Error) << "store: " << st;
      }
    }
    r.set_state(ack.state() >= v1::DIGEST_STATE_QUEUED ? ack.state() : v1::DIGEST_STATE_QUEUED);
    r.set_duplicate_of(ack.duplicate_of());
    *r.mutable_status() = rpc::ToItemStatus(absl::OkStatus());
  } else {
    r.set_state(v1::DIGEST_STATE_HASHED);
    *r.mutable_status() = ack.status();
    if (r.status().reason().empty()) r.mutable_status()->set_reason("SUBMIT_REJECTED");
  }
  c->out.Push(std::move(r));
}

// Ends the current file: validates the byte count, then returns the result (dry run) or forwards
// the digest. The file's slot was taken when its first chunk arrived.
void FinishFile(FilesCall* c) {
  Shared* s = c->shared;
  c->in_file = false;
  std::string digest = c->sha.Finish().raw();
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
    absl::Status st = s->store->RecordUploaded(job, source_path, c->received,
                                               TimestampNs(c->metadata.modified_at()), digest);
    if (!st.ok()) {
      ANCHORD_LOG(Error) << "store: " << st;
    }
  }
  if (c->dry_run) {
    v1::HashFilesResponse r;
    r.set_file_id(c->file_id);
    r.set_digest(digest);
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
  v1::SubmitRequest req;
  {
    std::lock_guard<std::mutex> lock(c->items_mu);
    req.set_request_id(absl::StrCat("h", c->next_item++));
    c->items[req.request_id()] = FilesCall::Item{c->file_id, digest, c->received, job, source_path};
  }
  req.set_digest(digest);
  *req.mutable_metadata() = c->metadata;
  req.mutable_metadata()->set_job(job);
  for (const std::string& p : c->providers) req.add_providers(p);
  req.set_anchor_mode(c->anchor_mode);
  req.set_fallback_provider(c->fallback_provider);
  SubmitSession* session;
  {
    std::lock_guard<std::mutex> lock(c->mu);
    if (c->cancelled) {
      c->out.Drop();
      return;
    }
    if (!c->session) {
      c->session = std::make_unique<SubmitSession>(
          s->options.submitter, s->options.submit, s->metrics,
          [c](const v1::SubmitResponse& ack) { OnFilesAck(c, ack); });
    }
    session = c->session.get();
  }
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
  for (const std::string& p : c->providers) {
    if (st.ok() && (p.empty() || p.size() > 64)) {
      st = absl::InvalidArgumentError("providers: each name must be 1 to 64 bytes");
    }
  }
  if (st.ok() && !v1::AnchorMode_IsValid(c->anchor_mode)) {
    st = absl::InvalidArgumentError(
        absl::StrCat("anchor_mode: unknown value ", static_cast<int>(c->anchor_mode)));
  }
  if (st.ok() && c->fallback_provider.size() > 64) {
    st = absl::InvalidArgumentError("fallback_provider: at most 64 bytes");
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

class FilesReactor final
    : public grpc::ServerBidiReactor<v1::HashFilesRequest, v1::HashFilesResponse> {
 public:
  explicit FilesReactor(std::shared_ptr<FilesCall> call) : call_(std::move(call)) {
    FilesCall* c = call_.get();
    c->reactor = this;
    c->out.start_write = [this](v1::HashFilesResponse* r) { StartWrite(r); };
    c->out.on_room = [this] { ResumeIfPaused(); };
  }
  void Begin() { StartRead(&buf_); }

  // Called after a chunk was processed: reads the next one when a file slot is free, else
  // pauses until OnWriteDone frees one (the caller's writes then stall: backpressure).
  void ReadNext() {
    FilesCall* c = call_.get();
    std::lock_guard<std::mutex> lock(c->mu);
    if (c->cancelled || c->input_done) return;
    // The chunks of the file being received need no new slot (it took one at its first chunk);
    // only starting another file does.
    if (c->in_file || c->out.HasRoom()) {
      buf_.Clear();
      StartRead(&buf_);
    } else {
      c->read_paused = true;
    }
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
    c->out.TaskStarted();
    std::shared_ptr<FilesCall> call = call_;
    c->shared->hash_pool->Post([call, chunk, this] {
      ProcessChunk(call.get(), *chunk);
      // Before TaskDone: once the tasks are done the coordinator may Finish and this reactor
      // may be deleted.
      ReadNext();
      call->out.TaskDone();
    });
  }
  void OnWriteDone(bool ok) override { call_->out.OnWriteDone(ok); }
  void OnCancel() override { call_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  void ResumeIfPaused() {
    FilesCall* c = call_.get();
    std::lock_guard<std::mutex> lock(c->mu);
    if (!c->read_paused || c->cancelled || c->input_done || !c->out.HasRoom()) return;
    c->read_paused = false;
    buf_.Clear();
    StartRead(&buf_);
  }

  std::shared_ptr<FilesCall> call_;
  v1::HashFilesRequest buf_;
};

void RunFiles(const std::shared_ptr<FilesCall>& c, FilesReactor* reactor) {
  // Until the caller half-closed and the last chunk was processed (or cancelled).
  c->out.WaitTasks([&] { return c->input_done.load(); });
  if (!c->cancelled && c->in_file) {
    c->file_error = absl::InvalidArgumentError(
        absl::StrCat("last: the stream ended before the last chunk of file_id \"",
                     QuoteCallerText(c->file_id), "\""));
    FinishFile(c.get());
  }
  bool completed = c->out.WaitFinished([] { return true; });
  SubmitSession* session;
  {
    std::lock_guard<std::mutex> lock(c->mu);
    session = c->session.get();
  }
  if (session) {
    if (!completed) session->Cancel();
    session->Stop();
  }
  reactor->Finish(completed && !c->cancelled
                      ? grpc::Status::OK
                      : grpc::Status(grpc::StatusCode::CANCELLED, "HashFiles cancelled"));
}

// ---------------------------------------------------------------------------------------------
// ListFiles: pages of rows fetched on the query pool, written one at a time. Exactly one of
// {a page fetch, a write} is outstanding at any time, so Finish is called exactly once.

v1::ListFilesResponse ToListResponse(const FileRow& row) {
  v1::ListFilesResponse r;
  r.set_path(row.path);
  r.set_digest(row.digest);
  r.set_size_bytes(row.size_bytes);
  if (row.state == FileState::kQueued) {
    r.set_state(v1::DIGEST_STATE_QUEUED);
  } else if (row.state == FileState::kHashed) {
    r.set_state(v1::DIGEST_STATE_HASHED);
  }
  r.set_duplicate_of(row.duplicate_of);
  if (row.state == FileState::kError) {
    r.mutable_status()->set_code(row.error_code);
    r.mutable_status()->set_reason(row.error_reason);
    r.mutable_status()->set_message(row.error_message);
  }
  return r;
}

class ListReactor final : public grpc::ServerWriteReactor<v1::ListFilesResponse> {
 public:
  ListReactor(Shared* s, std::string job) : shared_(s), job_(std::move(job)) { Fetch(); }

  // grpc::ServerWriteReactor
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "ListFiles cancelled"));
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Fetch() {
    shared_->query_pool->Post([this] {
      auto page = shared_->store->ListPage(job_, last_path_, kListPageRows);
      if (!page.ok()) {
        Finish(rpc::ToGrpcStatus(page.status()));
        return;
      }
      last_page_ = static_cast<int>(page->size()) < kListPageRows;
      rows_ = std::move(*page);
      pos_ = 0;
      Next();
    });
  }
  void Next() {
    if (pos_ < rows_.size()) {
      last_path_ = rows_[pos_].path;
      current_ = ToListResponse(rows_[pos_++]);
      StartWrite(&current_);
    } else if (last_page_) {
      Finish(grpc::Status::OK);
    } else {
      Fetch();
    }
  }

  Shared* shared_;
  std::string job_;
  std::string last_path_;
  std::vector<FileRow> rows_;
  size_t pos_ = 0;
  bool last_page_ = false;
  v1::ListFilesResponse current_;
};

}  // namespace

// -----------------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<HasherServiceImpl>> HasherServiceImpl::Create(
    HasherOptions options, HasherStore* store, HasherMetrics* metrics) {
  auto walker = digest::TreeWalker::Create(options.root);
  if (!walker.ok()) return walker.status();
  if (options.max_inflight < 1) {
    return absl::InvalidArgumentError("max_inflight: must be at least 1");
  }
  auto shared = std::make_unique<Shared>(std::move(options), std::move(*walker), store, metrics);
  shared->hash_pool = std::make_unique<WorkerPool>(shared->options.workers);
  shared->query_pool = std::make_unique<WorkerPool>(1);
  return std::unique_ptr<HasherServiceImpl>(new HasherServiceImpl(std::move(shared)));
}

HasherServiceImpl::~HasherServiceImpl() {
  std::unique_lock<std::mutex> lock(shared_->mu);
  for (auto& [id, cancel] : shared_->cancel_fns) cancel();
  shared_->cv.wait(lock, [&] { return shared_->active_calls == 0; });
  lock.unlock();
  // The pools join their threads (running what is queued) before the store may go away.
  shared_->hash_pool.reset();
  shared_->query_pool.reset();
}

grpc::ServerWriteReactor<v1::HashTreeResponse>* HasherServiceImpl::HashTree(
    grpc::CallbackServerContext* ctx, const v1::HashTreeRequest* request) {
  Shared* s = shared_.get();
  absl::Status st = ValidateJob(request->job(), "job");
  absl::StatusOr<std::string> dir = digest::NormalizeRelativePath(request->path(), "path");
  if (st.ok() && !dir.ok()) st = dir.status();
  if (st.ok()) {
    for (const auto& p : request->providers()) {
      if (p.empty() || p.size() > 64) {
        st = absl::InvalidArgumentError("providers: each name must be 1 to 64 bytes");
        break;
      }
    }
    if (st.ok() && !v1::AnchorMode_IsValid(request->anchor_mode())) {
      st = absl::InvalidArgumentError(
          absl::StrCat("anchor_mode: unknown value ", static_cast<int>(request->anchor_mode())));
    }
    if (st.ok() && request->fallback_provider().size() > 64) {
      st = absl::InvalidArgumentError("fallback_provider: at most 64 bytes");
    }
  }
  if (st.ok() && !request->dry_run() && !s->options.submitter) {
    st = absl::FailedPreconditionError(
        "no submitter configured (start the hasher with "
        "--submitter, or use dry_run)");
  }
  if (!st.ok()) return new ErrorWriteReactor<v1::HashTreeResponse>(st);
  if (!ReserveCall(s)) return new ErrorWriteReactor<v1::HashTreeResponse>(TooManyCalls());

  auto call = std::make_shared<TreeCall>(s, *request, *dir);
  if (!request->dry_run()) {
    TreeCall* raw = call.get();
    call->session = std::make_unique<SubmitSession>(
        s->options.submitter, s->options.submit, s->metrics,
        [raw](const v1::SubmitResponse& ack) { OnTreeAck(raw, ack); });
  }
  auto* reactor = new TreeReactor(call);
  std::weak_ptr<TreeCall> weak = call;
  StartCoordinator(
      s,
      [weak] {
        if (auto c = weak.lock()) c->Cancel();
      },
      [call, reactor] { RunTree(call, reactor); });
  return reactor;
}

grpc::ServerBidiReactor<v1::HashFilesRequest, v1::HashFilesResponse>* HasherServiceImpl::HashFiles(
    grpc::CallbackServerContext* ctx) {
  Shared* s = shared_.get();
  if (!ReserveCall(s)) {
    return new ErrorBidiReactor<v1::HashFilesRequest, v1::HashFilesResponse>(TooManyCalls());
  }
  auto call = std::make_shared<FilesCall>(s);
  auto* reactor = new FilesReactor(call);
  std::weak_ptr<FilesCall> weak = call;
  StartCoordinator(
      s,
      [weak] {
        if (auto c = weak.lock()) c->Cancel();
      },
      [call, reactor] { RunFiles(call, reactor); });
  reactor->Begin();
  return reactor;
}

grpc::ServerWriteReactor<v1::ListFilesResponse>* HasherServiceImpl::ListFiles(
    grpc::CallbackServerContext* ctx, const v1::ListFilesRequest* request) {
  absl::Status st = ValidateJob(request->job(), "job");
  if (!st.ok()) return new ErrorWriteReactor<v1::ListFilesResponse>(st);
  return new ListReactor(shared_.get(), std::string(JobOrDefault(request->job())));
}

// -----------------------------------------------------------------------------------------------
// StatusService

grpc::ServerUnaryReactor* HasherStatusServiceImpl::Locate(grpc::CallbackServerContext* ctx,
                                                          const v1::LocateRequest* request,
                                                          v1::LocateResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status st = ValidateDigest(request->digest(), "digest");
  if (!st.ok()) {
    reactor->Finish(rpc::ToGrpcStatus(st));
    return reactor;
  }
  HasherServiceImpl::Shared* s = shared_;
  s->query_pool->Post([s, request, response, reactor] {
    auto rows = s->store->FindByDigest(request->digest());
    if (!rows.ok()) {
      reactor->Finish(rpc::ToGrpcStatus(rows.status()));
      return;
    }
    if (rows->empty()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "digest: unknown to the hasher"));
      return;
    }
    response->set_service("hasher");
    v1::DigestState state = v1::DIGEST_STATE_HASHED;
    for (const FileRow& row : *rows) {
      if (row.state == FileState::kQueued) state = v1::DIGEST_STATE_QUEUED;
      v1::FileMetadata* md = response->add_files();
      md->set_filename(Basename(row.path));
      md->set_size_bytes(row.size_bytes);
      md->set_mime_type(digest::GuessMimeType(row.path));
      md->set_source_path(row.path);
      md->set_job(row.job);
      SetTimestampNs(md->mutable_modified_at(), row.mtime_ns);
    }
    response->set_state(state);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* HasherStatusServiceImpl::SummarizeJob(
    grpc::CallbackServerContext* ctx, const v1::SummarizeJobRequest* request,
    v1::SummarizeJobResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status st = ValidateJob(request->job(), "job");
  if (!st.ok()) {
    reactor->Finish(rpc::ToGrpcStatus(st));
    return reactor;
  }
  HasherServiceImpl::Shared* s = shared_;
  s->query_pool->Post([s, request, response, reactor] {
    auto sum = s->store->Summarize(request->job());
    if (!sum.ok()) {
      reactor->Finish(rpc::ToGrpcStatus(sum.status()));
      return;
    }
    response->set_service("hasher");
    for (const auto& [k, v] : sum->digests_by_state) (*response->mutable_digests_by_state())[k] = v;
    response->set_files(sum->files);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

}  // namespace anchord::hasher
