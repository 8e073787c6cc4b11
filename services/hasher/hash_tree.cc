// HashTree: walks a directory under the root on the call's coordinator thread, hashes the files in
// batches on the hash pool, forwards each digest to the submitter and writes a file's result once
// the submitter acknowledged it (or at once for a dry run, an unchanged file or an error).
#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/common/validate.h"
#include "libs/digest/hash_file.h"
#include "libs/digest/mime.h"
#include "libs/digest/reason.h"
#include "libs/rpc/ack_table.h"
#include "libs/rpc/outbox.h"
#include "libs/rpc/status.h"
#include "services/hasher/call_common.h"
#include "services/hasher/hasher_service.h"

namespace anchord::hasher {
namespace {

namespace v1 = anchord::v1;
using internal::ItemStatusOf;
using Shared = HasherServiceImpl::Shared;

// A hashing batch ends at kBatchBytes, or after a file of kLargeFileBytes or more: small files
// share a batch (one store transaction for up to 256 of them), a large one ends its batch so that
// the next large file goes to the other worker.
constexpr int64_t kBatchBytes = 4 << 20;
constexpr int64_t kLargeFileBytes = 1 << 20;
// Marks written by the thread reading acks once this many wait (normally the hashing batches
// take them first, see HashTreeBatch; this bounds them once hashing is done).
constexpr size_t kMarkBatch = 512;

// Acknowledged files whose QUEUED mark is not yet written. Written in batches: with the next
// hashing batch's transaction, or once kMarkBatch wait, and always before the call finishes, so a
// later call or ListFiles sees them. A mark lost to a crash only means the file is sent again next
// time (the submitter is idempotent on the digest).
class PendingMarks {
 public:
  void Add(QueuedMark mark) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    marks_.push_back(std::move(mark));
  }
  // The marks to write now: all of them, or (with `only_if_full`) none until kMarkBatch wait.
  std::vector<QueuedMark> Take(bool only_if_full) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<QueuedMark> marks;
    if (only_if_full && marks_.size() < kMarkBatch) return marks;
    marks.swap(marks_);
    return marks;
  }

 private:
  absl::Mutex mu_;
  std::vector<QueuedMark> marks_ ABSL_GUARDED_BY(mu_);
};

struct TreeCall {
  // A file sent to the submitter and not yet acknowledged.
  struct Item {
    std::string path;
    Digest digest;
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

  Shared* const shared;
  const v1::HashTreeRequest request;
  const std::string job;
  const std::string dir;
  rpc::Outbox<v1::HashTreeResponse> out;
  std::atomic<bool> cancelled{false};
  std::atomic<int64_t> files_total{0};
  std::atomic<bool> walk_complete{false};
  std::unique_ptr<SubmitSession> session;  // null for a dry run; set before any thread starts
  rpc::AckTable<Item> sent{"f"};
  PendingMarks marks;
};

void FlushMarks(TreeCall* c, bool only_if_full) {
  std::vector<QueuedMark> marks = c->marks.Take(only_if_full);
  if (marks.empty()) return;
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
  std::optional<TreeCall::Item> item = c->sent.Take(ack.request_id());
  if (!item) return;
  v1::HashTreeResponse r;
  r.set_path(item->path);
  r.set_digest(item->digest.raw());
  r.set_size_bytes(item->size_bytes);
  if (ack.status().code() == 0) {
    c->marks.Add(QueuedMark{c->job, item->path, item->digest, ack.duplicate_of()});
    FlushMarks(c, /*only_if_full=*/true);
  }
  internal::SetAckOutcome(ack, &r);
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
    TreeError(c, e.rel_path, e.size_bytes, e.mtime_ns,
              digest::WithReason(st, digest::ReasonOf(d.status())));
    return;
  }
  hashed->push_back(HashedRecord{e.rel_path, d->size_bytes, d->mtime_ns, d->digest});
}

// The Submit request forwarding one recorded file (its result is pushed when the ack arrives).
v1::SubmitRequest ForwardRequest(const std::shared_ptr<TreeCall>& c, const HashedRecord& h) {
  v1::SubmitRequest req;
  req.set_request_id(c->sent.Add(TreeCall::Item{h.path, h.digest, h.size_bytes}));
  req.set_digest(h.digest.raw());
  v1::FileMetadata* md = req.mutable_metadata();
  md->set_filename(internal::Basename(h.path));
  md->set_size_bytes(h.size_bytes);
  md->set_mime_type(digest::GuessMimeType(h.path));
  md->set_source_path(h.path);
  md->set_job(c->job);
  internal::SetTimestampNs(md->mutable_modified_at(), h.mtime_ns);
  for (const auto& p : c->request.providers()) req.add_providers(p);
  req.set_anchor_mode(c->request.anchor_mode());
  req.set_fallback_provider(c->request.fallback_provider());
  return req;
}

// The result of a file unchanged since the submitter acknowledged it, when `row` says so: only a
// digest the hasher read from this file itself may stand in for reading it again (a row recorded
// from uploaded bytes, HashFiles naming this path, carries whatever the caller sent, with a size
// and mtime anyone can copy).
std::optional<v1::HashTreeResponse> UnchangedResult(const digest::WalkEntry& e,
                                                    const std::optional<FileRow>* row) {
  if (row == nullptr || !row->has_value()) return std::nullopt;
  const FileRow& f = **row;
  if (f.state != FileState::kQueued || !f.read_by_hasher || f.size_bytes != e.size_bytes ||
      f.mtime_ns != e.mtime_ns || !f.digest.has_value()) {
    return std::nullopt;
  }
  v1::HashTreeResponse r;
  r.set_path(e.rel_path);
  r.set_digest(f.digest->raw());
  r.set_size_bytes(e.size_bytes);
  r.set_state(v1::DIGEST_STATE_QUEUED);
  r.set_unchanged(true);
  r.set_duplicate_of(f.duplicate_of);
  *r.mutable_status() = rpc::ToItemStatus(absl::OkStatus());
  return r;
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
    if (std::optional<v1::HashTreeResponse> r = UnchangedResult(e, row)) {
      s->metrics->files_unchanged.Increment();
      c->out.Push(std::move(*r));
      continue;
    }
    HashTreeFile(c, e, &hashed);
  }
  if (hashed.empty()) return;
  const bool dry_run = c->request.dry_run();
  std::vector<std::string> dups;
  // The QUEUED marks of files acknowledged since the last batch ride in this batch's transaction:
  // one commit for both instead of a second transaction on the thread reading the acks.
  std::vector<QueuedMark> marks = c->marks.Take(/*only_if_full=*/false);
  absl::Status st = s->store->RecordHashedBatch(c->job, hashed, dry_run ? &dups : nullptr, marks);
  if (!st.ok() && !marks.empty()) {
    // Only our bookkeeping of acknowledged files failed with them; they are sent again next time.
    ANCHORD_LOG(Error) << "store: " << st;
  }
  if (!st.ok()) {
    for (const HashedRecord& h : hashed) {
      TreeError(c, h.path, h.size_bytes, h.mtime_ns,
                digest::WithReason(absl::InternalError(absl::StrCat("store: ", st.message())),
                                   "STORE_ERROR"));
    }
    return;
  }
  s->metrics->files_hashed.Increment(static_cast<double>(hashed.size()));
  if (!dry_run) {
    std::vector<v1::SubmitRequest> requests;
    requests.reserve(hashed.size());
    for (const HashedRecord& h : hashed) requests.push_back(ForwardRequest(c, h));
    c->session->Send(std::move(requests));
    return;
  }
  for (size_t i = 0; i < hashed.size(); ++i) {
    HashedRecord& h = hashed[i];
    v1::HashTreeResponse r;
    r.set_path(std::move(h.path));
    r.set_digest(h.digest.raw());
    r.set_size_bytes(h.size_bytes);
    r.set_state(v1::DIGEST_STATE_HASHED);
    if (i < dups.size()) r.set_duplicate_of(dups[i]);
    *r.mutable_status() = rpc::ToItemStatus(absl::OkStatus());
    c->out.Push(std::move(r));
  }
}

class TreeReactor final
    : public internal::OutboxReactor<grpc::ServerWriteReactor<v1::HashTreeResponse>, TreeCall,
                                     v1::HashTreeResponse> {
 public:
  explicit TreeReactor(std::shared_ptr<TreeCall> call) : OutboxReactor(std::move(call)) {
    TreeCall* c = call_.get();
    c->out.stamp = [c](v1::HashTreeResponse* r) {
      r->set_files_total(c->files_total.load());
      r->set_walk_complete(c->walk_complete.load());
    };
  }
};

// The coordinator thread: the walk, then waiting for every result to be written.
void RunTree(const std::shared_ptr<TreeCall>& c, TreeReactor* reactor) {
  Shared* s = c->shared;
  // Files per hash-pool task: window / (2 * workers) (a quarter of it with 2 workers), capped at
  // 256, so that several batches are in flight (every worker busy while the caller drains results)
  // and a batch waiting for its slots holds at most half the window: the other half is released
  // as the results of earlier batches are written. (256 instead of 64: an A/B of 20,000 small
  // files measured fewer, larger store transactions 1.29x faster, bench/RESULTS.md.)
  const size_t batch_size = static_cast<size_t>(
      std::clamp(s->options.max_inflight / (2 * std::max(1, s->options.workers)), 1, 256));
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
        // Large files go out in small batches (ending a batch past 1 MiB) so that the workers
        // hash them in parallel; batching only pays for small files.
        if (batch.size() >= batch_size || batch_bytes >= kBatchBytes ||
            batch.back().size_bytes >= kLargeFileBytes) {
          batch_bytes = 0;
          return flush();
        }
        return true;
      },
      &c->cancelled);
  if (!c->cancelled) flush();  // the last partial batch
  c->walk_complete = true;
  c->out.ReleaseHeld();
  bool completed = c->out.WaitFinished();
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
  reactor->Complete(rpc::ToGrpcStatus(final_status));
}

}  // namespace

grpc::ServerWriteReactor<v1::HashTreeResponse>* HasherServiceImpl::HashTree(
    grpc::CallbackServerContext* ctx, const v1::HashTreeRequest* request) {
  using ErrorReactor = internal::ErrorReactor<grpc::ServerWriteReactor<v1::HashTreeResponse>>;
  Shared* s = shared_.get();
  absl::Status st = ValidateJob(request->job(), "job");
  absl::StatusOr<std::string> dir = digest::NormalizeRelativePath(request->path(), "path");
  if (st.ok() && !dir.ok()) st = dir.status();
  if (st.ok()) {
    st = internal::ValidateAnchoring(request->providers(), request->anchor_mode(),
                                     request->fallback_provider());
  }
  if (st.ok() && !request->dry_run() && !s->options.submitter) {
    st = absl::FailedPreconditionError(
        "no submitter configured (start the hasher with "
        "--submitter, or use dry_run)");
  }
  if (!st.ok()) return new ErrorReactor(st);
  if (!s->calls.Reserve()) return new ErrorReactor(internal::TooManyCalls(kMaxActiveCalls));

  auto call = std::make_shared<TreeCall>(s, *request, *dir);
  if (!request->dry_run()) {
    TreeCall* raw = call.get();
    call->session = std::make_unique<SubmitSession>(
        s->options.submitter, s->options.submit, s->metrics,
        [raw](const v1::SubmitResponse& ack) { OnTreeAck(raw, ack); });
  }
  auto* reactor = new TreeReactor(call);
  std::weak_ptr<TreeCall> weak = call;
  s->calls.Start(
      [weak] {
        if (auto c = weak.lock()) c->Cancel();
      },
      [call, reactor] { RunTree(call, reactor); });
  return reactor;
}

}  // namespace anchord::hasher
