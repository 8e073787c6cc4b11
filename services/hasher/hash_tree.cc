// HashTree: walks a directory under the root on the call's coordinator thread, hashes the files in
// batches on the hash pool, forwards each digest to the submitter, and reports a forwarded file's
// result once the submitter acknowledged it, recording its row in larger groups behind (a dry run
// records a batch before reporting it; an unchanged file or an error is reported at once).
#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "libs/common/log.h"
#include "libs/common/validate.h"
#include "libs/digest/hash_file.h"
#include "libs/digest/mime.h"
#include "libs/digest/reason.h"
#include "libs/rpc/ack_table.h"
#include "libs/rpc/outbox.h"
#include "libs/rpc/status.h"
#include "services/hasher/call_common.h"
#include "services/hasher/group_writer.h"
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
// With batch_results, one message carries at most this many results, and stops growing past
// kPackBytes (an estimate from the paths), well under gRPC's default 4 MiB receive limit.
constexpr int kPackResults = 1024;
constexpr size_t kPackBytes = 1 << 20;
// The rows of answered files are committed when this many are waiting, or this long after the
// first of them arrived (and at the end of the call). Each row puts a random key into the digest
// index, and a commit of c rows into an index of P pages rewrites about min(c, P) of its pages:
// commits of 256 rows (a commit per hashing batch's answers) rewrote about a page per row, while
// commits of tens of thousands share most pages (an A/B in bench/results/s6-hasher.md: 16,384
// rows or 2 s wrote 0.7 KiB per file, 65,536 or 5 s 0.4 KiB). Bounded so that the rows waiting
// stay a fixed cost whatever the size of the tree (about 12 MB more peak RSS than commits of 256).
constexpr size_t kRecordRows = 32768;
constexpr absl::Duration kRecordDelay = absl::Seconds(4);
struct TreeCall {
  // A file sent to the submitter and not yet acknowledged.
  struct Item {
    std::string path;
    Digest digest;
    int64_t size_bytes;
    int64_t mtime_ns;
  };
  // A file the submitter answered for, waiting for the recorder.
  struct Acked {
    Item item;
    v1::SubmitResponse ack;
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
  rpc::AckTable<Item> sent{"f"};
  // False when the job had no row when the call started: no file can be skipped as unchanged, so
  // the per-batch lookups are left out (a row another call writes meanwhile only means a file is
  // read and sent again, which the submitter takes idempotently).
  bool lookups = true;
  // Set before any thread starts; the writers are declared after what their threads touch, so
  // they are joined before those are destroyed. A dry run records hashed files (dry_recorder).
  // A forwarding call reports the files the submitter answered for (reporter, fed by the session)
  // and records them (recorder, fed by the reporter).
  std::unique_ptr<GroupWriter<HashedRecord>> dry_recorder;
  std::unique_ptr<GroupWriter<ForwardedRecord>> recorder;
  std::unique_ptr<GroupWriter<Acked>> reporter;
  std::unique_ptr<SubmitSession> session;
};

// Hands results (one admitted file each) to the outbox: one message per result, or with
// batch_results as few messages as the packing limits allow. Empties `results`.
void Emit(TreeCall* c, std::vector<v1::HashTreeResponse>& results) {
  if (!c->request.batch_results()) {
    for (v1::HashTreeResponse& r : results) c->out.Push(std::move(r));
    results.clear();
    return;
  }
  size_t i = 0;
  while (i < results.size()) {
    v1::HashTreeResponse packed;
    size_t bytes = 0;
    int n = 0;
    for (; i < results.size() && n < kPackResults && bytes < kPackBytes; ++i, ++n) {
      bytes += results[i].path().size() + results[i].duplicate_of().size() + 96;
      *packed.add_results() = std::move(results[i]);
    }
    c->out.Push(std::move(packed), n);
  }
  results.clear();
}

void TreeError(TreeCall* c, const std::string& path, int64_t size, int64_t mtime_ns,
               const absl::Status& st) {
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
  std::vector<v1::HashTreeResponse> one;
  one.push_back(std::move(r));
  Emit(c, one);
}

// On the session's reader thread: hands the answered files to the reporter (the reader goes
// straight back to reading acknowledgements), one lock of each table for the whole message.
void OnTreeAcks(TreeCall* c, std::vector<v1::SubmitResponse*>& acks) {
  std::vector<absl::string_view> ids;
  ids.reserve(acks.size());
  for (const v1::SubmitResponse* a : acks) ids.push_back(a->request_id());
  std::vector<TreeCall::Acked> acked;
  acked.reserve(acks.size());
  c->sent.TakeAll(ids, [&](size_t k, TreeCall::Item item) {
    acked.push_back(TreeCall::Acked{std::move(item), std::move(*acks[k])});
  });
  if (!acked.empty()) c->reporter->AddAll(std::move(acked));
}

// The reporter's write: the results of every file answered since the last write, then their rows
// to the recorder. A result does not wait for the row: what it reports is that the submitter
// holds the digest durably (it acknowledges after its commit). The row is only the hasher's cache
// (it lets the next run skip the unchanged file), and one lost to a crash before its commit means
// the file is read and sent again next run (the submitter is idempotent on the digest). The call
// ends only after every row is written (RunTree), so the rows are there once the caller saw the
// end of the stream.
void ReportAcked(TreeCall* c, std::vector<TreeCall::Acked>& acked) {
  std::vector<ForwardedRecord> rows;
  rows.reserve(acked.size());
  std::vector<v1::HashTreeResponse> results;
  results.reserve(acked.size());
  for (TreeCall::Acked& a : acked) {
    v1::HashTreeResponse& r = results.emplace_back();
    r.set_path(a.item.path);
    r.set_digest(a.item.digest.raw());
    r.set_size_bytes(a.item.size_bytes);
    internal::SetAckOutcome(a.ack, &r);
    rows.push_back(ForwardedRecord{std::move(a.item.path), a.item.size_bytes, a.item.mtime_ns,
                                   a.item.digest, a.ack.status().code() == 0,
                                   std::move(*a.ack.mutable_duplicate_of())});
  }
  Emit(c, results);
  c->recorder->AddAll(std::move(rows));
}

// The recorder's write: the rows of every file reported since the last write, in one transaction.
// The row is written once, with what the acknowledgement said (QUEUED, or HASHED when the
// submitter refused the file), instead of HASHED before sending and QUEUED after.
void RecordForwardedRows(TreeCall* c, std::vector<ForwardedRecord>& rows) {
  absl::Status st = c->shared->store->RecordForwarded(c->job, rows);
  if (!st.ok()) {
    // The submitter holds these files durably, which is what the results reported; only the
    // hasher's cache of them failed: the next run reads and sends them again.
    ANCHORD_LOG(Error) << "store: " << st;
  }
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
  // Opened relative to the directory the walk still holds (when it does), and read on the walk's
  // stat of the file instead of another one.
  digest::FileRef file;
  file.path = e.real_path;
  if (e.dir) {
    file.dir_fd = e.dir->fd();
    file.name = e.name;
  }
  file.expected = digest::ExpectedStat{e.size_bytes, e.mtime_ns, e.ctime_ns, e.inode, e.device};
  absl::StatusOr<digest::FileDigest> d = digest::HashFile(file, opt, &bytes);
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
    TreeError(c.get(), e.rel_path, e.size_bytes, e.mtime_ns,
              digest::WithReason(st, digest::ReasonOf(d.status())));
    return;
  }
  hashed->push_back(HashedRecord{e.rel_path, d->size_bytes, d->mtime_ns, d->digest});
}

// The Submit request forwarding one recorded file (its result is pushed when the ack arrives).
// Built where the session keeps it (no move of the message into place: a message's move is a
// swap of every field, a few percent of the hash pool's CPU in a Merkle run).
SubmitSession::RequestPtr ForwardRequest(const std::shared_ptr<TreeCall>& c,
                                         const HashedRecord& h) {
  auto shared = std::make_shared<v1::SubmitRequest>();
  v1::SubmitRequest& req = *shared;
  req.set_request_id(c->sent.Add(TreeCall::Item{h.path, h.digest, h.size_bytes, h.mtime_ns}));
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
  return shared;
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
// A batch costs one wake-up, one lookup pass and (dry run) one transaction for all its files.
// Forwarded files are not written here: their row is written once, when the submitter answered
// (RecordAcked).
void HashTreeBatch(const std::shared_ptr<TreeCall>& c, std::vector<digest::WalkEntry>& batch) {
  Shared* s = c->shared;
  if (c->cancelled) {
    for (size_t i = 0; i < batch.size(); ++i) c->out.Drop();
    return;
  }
  absl::StatusOr<std::vector<std::optional<FileRow>>> rows =
      std::vector<std::optional<FileRow>>(batch.size());
  if (c->lookups) {
    std::vector<std::string> paths;
    paths.reserve(batch.size());
    for (const auto& e : batch) paths.push_back(e.rel_path);
    rows = s->store->GetMany(c->job, paths);
  }
  std::vector<HashedRecord> hashed;
  hashed.reserve(batch.size());
  std::vector<v1::HashTreeResponse> unchanged;
  for (size_t i = 0; i < batch.size(); ++i) {
    const digest::WalkEntry& e = batch[i];
    if (c->cancelled) {
      c->out.Drop();
      continue;
    }
    const std::optional<FileRow>* row = rows.ok() && i < rows->size() ? &(*rows)[i] : nullptr;
    if (std::optional<v1::HashTreeResponse> r = UnchangedResult(e, row)) {
      s->metrics->files_unchanged.Increment();
      unchanged.push_back(std::move(*r));
      continue;
    }
    HashTreeFile(c, e, &hashed);
  }
  Emit(c.get(), unchanged);
  if (hashed.empty()) return;
  if (!c->request.dry_run()) {
    s->metrics->files_hashed.Increment(static_cast<double>(hashed.size()));
    std::vector<SubmitSession::RequestPtr> requests;
    requests.reserve(hashed.size());
    for (const HashedRecord& h : hashed) requests.push_back(ForwardRequest(c, h));
    c->session->Send(std::move(requests));
    return;
  }
  // Recorded (and reported) by the call's writer, together with whatever other batches finished
  // meanwhile: this worker goes on hashing instead of waiting for the commit.
  c->dry_recorder->AddAll(std::move(hashed));
}

// The dry run's write: every file hashed since the last write, in one transaction, then their
// results (a result with a digest is reported only once its row is committed).
void RecordDry(TreeCall* c, std::vector<HashedRecord>& hashed) {
  Shared* s = c->shared;
  std::vector<std::string> dups;
  absl::Status st = s->store->RecordHashedBatch(c->job, hashed, &dups);
  if (!st.ok()) {
    for (const HashedRecord& h : hashed) {
      TreeError(c, h.path, h.size_bytes, h.mtime_ns,
                digest::WithReason(absl::InternalError(absl::StrCat("store: ", st.message())),
                                   "STORE_ERROR"));
    }
    return;
  }
  s->metrics->files_hashed.Increment(static_cast<double>(hashed.size()));
  std::vector<v1::HashTreeResponse> results;
  results.reserve(hashed.size());
  for (size_t i = 0; i < hashed.size(); ++i) {
    HashedRecord& h = hashed[i];
    v1::HashTreeResponse& r = results.emplace_back();
    r.set_path(std::move(h.path));
    r.set_digest(h.digest.raw());
    r.set_size_bytes(h.size_bytes);
    r.set_state(v1::DIGEST_STATE_HASHED);
    if (i < dups.size()) r.set_duplicate_of(dups[i]);
    *r.mutable_status() = rpc::ToItemStatus(absl::OkStatus());
  }
  Emit(c, results);
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
  // Before any batch is posted (they read it).
  absl::StatusOr<bool> has_rows = s->store->JobHasRows(c->job);
  c->lookups = !has_rows.ok() || *has_rows;
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
        TreeError(c.get(), e.rel_path, e.size_bytes, e.mtime_ns, e.status);
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
  // No ack arrives after Stop(); what was answered is reported (unless cancelled it already was:
  // WaitFinished waits for every result) and recorded before the call completes.
  if (c->reporter) c->reporter->Finish();
  if (c->recorder) c->recorder->Finish();
  if (c->dry_recorder) c->dry_recorder->Finish();
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
  TreeCall* raw = call.get();
  if (request->dry_run()) {
    call->dry_recorder = std::make_unique<GroupWriter<HashedRecord>>(
        [raw](std::vector<HashedRecord>& hashed) { RecordDry(raw, hashed); },
        GroupWriter<HashedRecord>::Options{1, absl::ZeroDuration(), "record"});
  } else {
    call->recorder = std::make_unique<GroupWriter<ForwardedRecord>>(
        [raw](std::vector<ForwardedRecord>& rows) { RecordForwardedRows(raw, rows); },
        GroupWriter<ForwardedRecord>::Options{kRecordRows, kRecordDelay, "record"});
    call->reporter = std::make_unique<GroupWriter<TreeCall::Acked>>(
        [raw](std::vector<TreeCall::Acked>& acked) { ReportAcked(raw, acked); },
        GroupWriter<TreeCall::Acked>::Options{1, absl::ZeroDuration(), "report"});
    call->session = std::make_unique<SubmitSession>(
        s->options.submitter, s->options.submit, s->metrics,
        [raw](std::vector<v1::SubmitResponse*>& acks) { OnTreeAcks(raw, acks); });
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
