#include "services/submitter/handoff.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/thread_name.h"
#include "libs/providers/provider.h"
#include "libs/rpc/messages.h"
#include "services/submitter/handoff_window.h"

namespace anchord::submitter {
namespace {

// ItemStatus.reason is UPPER_SNAKE_CASE, at most 63 characters.
std::string ReasonOf(const std::string& code) {
  std::string out;
  for (char c : code) {
    if (out.size() >= 63) break;
    if (c >= 'a' && c <= 'z')
      out.push_back(static_cast<char>(c - 'a' + 'A'));
    else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
      out.push_back(c);
    else
      out.push_back('_');
  }
  return out.empty() ? "PROVIDER_ERROR" : out;
}

}  // namespace

anchord::v1::Proof BuildProof(const Submission& row, const std::vector<FileRef>& files) {
  anchord::v1::Proof p;
  p.set_digest(row.digest.raw());
  p.set_provider(row.provider);
  p.set_proof_id(row.record.proof_id);
  if (row.state == SubState::kFailed) {
    p.set_state(anchord::v1::DIGEST_STATE_FAILED);
    auto* f = p.mutable_failure();
    f->set_code(row.error_canonical != 0 ? row.error_canonical
                                         : static_cast<int>(absl::StatusCode::kFailedPrecondition));
    f->set_message(
        row.error_request_id.empty()
            ? row.error_message
            : absl::StrCat(row.error_message, " (provider request id ", row.error_request_id, ")"));
    f->set_reason(ReasonOf(row.error_code));
    p.set_provider_request_id(row.error_request_id);
  } else {
    auto rs = static_cast<providers::RecordState>(row.record.record_state);
    p.set_state(rs == providers::RecordState::kConfirmed ? anchord::v1::DIGEST_STATE_CONFIRMED
                : rs == providers::RecordState::kFailed  ? anchord::v1::DIGEST_STATE_FAILED
                                                         : anchord::v1::DIGEST_STATE_PENDING);
    p.set_provider_request_id(row.request_id);
  }
  p.set_certificate_url(row.record.certificate_url);
  p.set_verify_url(row.record.verify_url);
  p.set_bitcoin_block_height(row.record.block_height);
  p.set_bitcoin_tx(row.record.bitcoin_tx);
  if (row.record.provider_created_at != absl::InfinitePast()) {
    rpc::SetTimestamp(row.record.provider_created_at, p.mutable_submitted_at());
  } else if (row.state == SubState::kSubmitted && row.updated_at != absl::InfinitePast()) {
    rpc::SetTimestamp(row.updated_at, p.mutable_submitted_at());
  }
  if (row.record.confirmed_at != absl::InfinitePast()) {
    rpc::SetTimestamp(row.record.confirmed_at, p.mutable_confirmed_at());
  }
  if (row.updated_at != absl::InfinitePast())
    rpc::SetTimestamp(row.updated_at, p.mutable_updated_at());
  if (row.mode == RowMode::kLeaf && !row.merkle_root.empty()) p.set_merkle_root(row.merkle_root);
  if (row.mode == RowMode::kRoot) p.set_merkle_leaf_count(row.leaf_count);
  for (const FileRef& f : files) rpc::SetFileMetadata(f, p.add_files());
  return p;
}

Handoff::Handoff(SubmitterStore* store, std::shared_ptr<grpc::Channel> channel,
                 SubmitterMetrics* metrics, HandoffOptions options)
    : store_(store),
      stub_(anchord::v1::PollerService::NewStub(channel)),
      metrics_(metrics),
      options_(options) {
  // Exported at 0 from the start, so a dashboard's rate() has a series before the first wait.
  if (metrics_) intake_yield_ = &metrics_->intake_yield.Add({});
}

Handoff::~Handoff() { Stop(); }

void Handoff::Start() {
  thread_ = StartNamedThread("handoff", [this] { Loop(); });
}

void Handoff::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (active_ != nullptr) active_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void Handoff::Wake() {
  absl::MutexLock lock(&mu_);
  ++wake_seq_;
}

uint64_t Handoff::WakeSeq() {
  absl::MutexLock lock(&mu_);
  return wake_seq_;
}

bool Handoff::BehindLocked() const { return absl::Now() - behind_at_ < options_.behind_for; }

bool Handoff::Behind() {
  absl::MutexLock lock(&mu_);
  return BehindLocked();
}

void Handoff::NoteRead(size_t waiting, bool answered) {
  // A read returns at most one window (batch) of rows: a larger threshold means a full window.
  const size_t threshold = static_cast<size_t>(std::min(options_.behind_rows, options_.batch));
  const bool behind = answered && options_.behind_rows > 0 && waiting >= threshold;
  absl::MutexLock lock(&mu_);
  behind_at_ = behind ? absl::Now() : absl::InfinitePast();
}

void Handoff::WaitWhileBehind() {
  const absl::Time start = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    if (!BehindLocked()) return;
    // A condition on the clock is not looked at again as time passes, only when mu_ is released;
    // the timeout bounds the wait either way.
    auto caught_up = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || !BehindLocked();
    };
    mu_.AwaitWithTimeout(absl::Condition(&caught_up), options_.behind_yield);
  }
  if (intake_yield_ != nullptr) {
    intake_yield_->Increment(absl::ToDoubleSeconds(absl::Now() - start));
  }
}

bool Handoff::WaitFor(absl::Duration d, uint64_t seen) {
  absl::MutexLock lock(&mu_);
  auto woken = [this, seen]()
                   ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || wake_seq_ != seen; };
  mu_.AwaitWithTimeout(absl::Condition(&woken), d);
  return stopping_;
}

void Handoff::Loop() {
  int failures = 0;
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(options_.track_deadline));
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      active_ = &ctx;
    }
    const bool batch_form = options_.track_batch && absl::Now() >= track_batch_after_;
    StreamEnd end = RunStream(&ctx, batch_form);
    {
      absl::MutexLock lock(&mu_);
      active_ = nullptr;
    }
    if (end == StreamEnd::kUnimplemented && batch_form) {
      // An older poller: nothing was stored or marked, so the same rows go at once over Track.
      ANCHORD_LOG(Warning) << "hand-off: the poller does not serve TrackBatch; handing off over "
                              "Track, TrackBatch is tried again in "
                           << options_.track_batch_retry;
      track_batch_after_ = absl::Now() + options_.track_batch_retry;
      continue;
    }
    if (end == StreamEnd::kProgressed)
      failures = 0;
    else
      ++failures;
    absl::Duration wait = BackoffDelay(options_.reconnect, failures);
    if (WaitFor(wait, WakeSeq())) return;
  }
}

namespace {

// The requests of one stream sent and not yet acknowledged, shared by the thread that writes
// them and the thread that reads the acknowledgements.
class AckWindow {
 public:
  explicit AckWindow(SubmitterMetrics* metrics) : metrics_(metrics) {}

  // Call before the write: the acknowledgement may come at once. `rows` ({id, change seq}) are
  // what the request's acknowledgement marks handed off (a batch-form request carries many).
  void Sent(const HandoffRequest& r) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    unacked_rows_ += r.rows.size();
    unacked_[r.request.track().request_id()] = Request{r.rows, r.leaf_group};
  }

  // Reader thread: applies one acknowledgement.
  void Ack(const anchord::v1::TrackResponse& resp) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto it = unacked_.find(resp.request_id());
    if (it == unacked_.end()) return;  // an ack of an earlier, broken stream: ignore
    const auto& st = resp.status();
    const std::vector<std::pair<int64_t, int64_t>>& rows = it->second.rows;
    bool mark = st.code() == 0;
    if (!mark && st.code() == static_cast<int>(absl::StatusCode::kInvalidArgument) &&
        it->second.leaf_group) {
      // One bad field (the root's evidence, say) refuses the whole request; leaf by leaf, the
      // leaves may well be accepted, as they were before the batch form: not marked, they go
      // again one by one.
      ANCHORD_LOG(Error) << "hand-off: poller rejected the batch-form request of root "
                         << HexEncode(resp.digest()) << ": " << st.message()
                         << "; its rows go one by one";
      for (const auto& [id, seq] : rows) one_by_one_.push_back(id);
    } else if (!mark && st.code() == static_cast<int>(absl::StatusCode::kInvalidArgument)) {
      // The poller will never accept this proof; resending cannot help, so it is logged and
      // counted, not retried forever.
      ANCHORD_LOG(Error) << "hand-off: poller rejected " << HexEncode(resp.digest()) << ": "
                         << st.message();
      mark = true;
      if (metrics_) {
        metrics_->handoffs.Add({{"result", "rejected"}})
            .Increment(static_cast<double>(rows.size()));
      }
    } else if (!mark) {
      ANCHORD_LOG(Warning) << "hand-off: poller answered code " << st.code() << " for "
                           << HexEncode(resp.digest()) << ": " << st.message() << "; will resend";
      retry_later_ = true;
    } else if (metrics_) {
      metrics_->handoffs.Add({{"result", "ok"}}).Increment(static_cast<double>(rows.size()));
    }
    if (mark) {
      acked_.insert(acked_.end(), rows.begin(), rows.end());
      answered_ = true;
    }
    unacked_rows_ -= rows.size();
    unacked_.erase(it);
  }

  // Reader thread: the stream has no more acknowledgements.
  void ReaderDone() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    reader_done_ = true;
  }

  // Whether the poller ended the stream (an idle writer notices it here, not at its next write).
  bool reader_done() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return reader_done_;
  }

  // Waits until every proof sent is acknowledged and every acknowledgement marked (or the reader
  // stopped). False when the stream must be reopened: a proof went unacknowledged, or the poller
  // asked for one to be resent (the reconnect backoff comes before sending it again).
  bool WaitAcked() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return (unacked_.empty() || reader_done_) && acked_.empty() && !marking_;
    };
    mu_.Await(absl::Condition(&settled));
    return unacked_.empty() && !retry_later_;
  }

  // Waits until at most `rows` rows are sent and unacknowledged (the poller answers a stream in
  // order, so the windows sent before the last one are then answered) or the reader stopped.
  // False as WaitAcked.
  bool WaitAtMost(size_t rows) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto settled = [this, rows]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return unacked_rows_ <= rows || reader_done_;
    };
    mu_.Await(absl::Condition(&settled));
    return unacked_rows_ <= rows && !retry_later_;
  }

  // The marker thread: waits for rows acknowledged since its last call ({row id, change seq}) to
  // mark handed off; empty once the window is closed and nothing is left to mark. Until Marked,
  // the writer waiting in WaitAcked counts them as not yet settled.
  std::vector<std::pair<int64_t, int64_t>> NextToMark() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    marking_ = false;
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !acked_.empty() || closed_; };
    mu_.Await(absl::Condition(&ready));
    std::vector<std::pair<int64_t, int64_t>> rows;
    rows.swap(acked_);
    marking_ = !rows.empty();
    return rows;
  }

  // The marker thread: `rows` were marked handed off (or the mark failed: they are pending still,
  // and read again like any other row once the writer takes them out of its rows in flight).
  void Marked(const std::vector<std::pair<int64_t, int64_t>>& rows) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, seq] : rows) marked_.push_back(id);
  }

  // The writer: the ids of rows marked since its last call, no longer in flight.
  std::vector<int64_t> TakeMarked() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<int64_t> ids;
    ids.swap(marked_);
    return ids;
  }

  // Whether the poller acknowledged rows on this stream (the stream progressed), whether or not
  // the marker has marked them yet.
  bool answered() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return answered_;
  }

  // No more acknowledgements will come: the marker marks what is left and stops.
  void Close() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }

  // The ids of rows whose batch-form request was refused, to be sent one by one from now on.
  std::vector<int64_t> TakeOneByOne() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<int64_t> ids;
    ids.swap(one_by_one_);
    return ids;
  }

 private:
  struct Request {
    std::vector<std::pair<int64_t, int64_t>> rows;
    bool leaf_group = false;
  };

  SubmitterMetrics* const metrics_;
  absl::Mutex mu_;
  std::map<std::string, Request> unacked_ ABSL_GUARDED_BY(mu_);
  size_t unacked_rows_ ABSL_GUARDED_BY(mu_) = 0;  // rows of the requests in unacked_
  std::vector<int64_t> one_by_one_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int64_t, int64_t>> acked_ ABSL_GUARDED_BY(mu_);  // to be marked
  bool marking_ ABSL_GUARDED_BY(mu_) = false;         // the marker holds rows it is marking
  std::vector<int64_t> marked_ ABSL_GUARDED_BY(mu_);  // marked, not yet taken by the writer
  bool answered_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool reader_done_ ABSL_GUARDED_BY(mu_) = false;
  bool retry_later_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

Handoff::StreamEnd Handoff::RunStream(grpc::ClientContext* ctx, bool batch_form) {
  // Both methods answer with TrackResponse; a Track stream is sent each request's `track`.
  std::unique_ptr<grpc::ClientReaderWriter<anchord::v1::TrackRequest, anchord::v1::TrackResponse>>
      track;
  std::unique_ptr<
      grpc::ClientReaderWriter<anchord::v1::TrackBatchRequest, anchord::v1::TrackResponse>>
      batch;
  if (batch_form)
    batch = stub_->TrackBatch(ctx);
  else
    track = stub_->Track(ctx);
  // Acknowledgements are read on their own thread while this one writes, so a window of any size
  // never stalls on HTTP/2 flow control, and the rows of a whole window are marked handed off in
  // one transaction (one commit per window, not one per proof).
  AckWindow window(metrics_);
  std::thread reader = StartNamedThread("handoff-acks", [&] {
    anchord::v1::TrackResponse resp;
    while (batch_form ? batch->Read(&resp) : track->Read(&resp)) window.Ack(resp);
    window.ReaderDone();
  });

  // Acknowledged rows are marked handed off on a thread of their own, so the writer reads and
  // sends the next window meanwhile: on one connection, a mark's commit waits its turn behind the
  // intake's and the batcher's, and the poller had nothing to store while the writer waited for
  // it (bench/RESULTS.md, issue 11 session 27). One commit holds every acknowledgement that
  // arrived while the previous one ran.
  std::thread marker = StartNamedThread("handoff-mark", [&] {
    for (;;) {
      std::vector<std::pair<int64_t, int64_t>> rows = window.NextToMark();
      if (rows.empty()) return;
      if (options_.before_mark) options_.before_mark();
      if (absl::Status ms = store_->MarkHandedOffBatch(rows); !ms.ok()) {
        ANCHORD_LOG(Error) << "hand-off: " << ms;  // resent later: the poller is idempotent
      }
      window.Marked(rows);
    }
  });

  // The ids of the rows sent and not yet taken back from the window (marked, or to go one by
  // one): a row stays pending in the store until the marker marks it, so it stays in flight until
  // then too, and no read sends it again. Only this thread (the writer) reads or changes it.
  RowIds in_flight;
  auto take_settled = [&] {
    for (int64_t id : window.TakeOneByOne()) {
      in_flight.erase(id);
      one_by_one_.insert(id);
    }
    for (int64_t id : window.TakeMarked()) in_flight.erase(id);
  };
  auto write = [&](const HandoffRequest& r) {
    for (const auto& [id, seq] : r.rows) in_flight.insert(in_flight.end(), id);
    window.Sent(r);
    return batch_form ? batch->Write(r.request) : track->Write(r.request.track());
  };
  HandoffWindowOptions window_options;
  window_options.batch_form = batch_form;
  window_options.max_leaves_per_request = options_.max_leaves_per_request;
  window_options.max_request_bytes = options_.max_request_bytes;
  window_options.one_by_one = &one_by_one_;
  bool broken = false;
  const auto deadline = ctx->deadline();
  while (!broken) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    // Reopen a stream close to its deadline rather than have a batch cut off by it.
    if (std::chrono::system_clock::now() + std::chrono::seconds(5) > deadline) break;
    if (window.reader_done()) break;  // the poller ended the stream (or refused the method)
    // Two windows at a time: the next one is read and sent while the poller stores the previous
    // one; one window at a time left each side idle while the other committed (bench/RESULTS.md,
    // session 7). The rows still in flight are pending too (not yet marked): they are left out,
    // not sent twice.
    const uint64_t seen = WakeSeq();  // before the read: a Wake after it is not lost
    absl::StatusOr<std::vector<Submission>> rows =
        batch_form ? store_->PendingHandoffForBatchForm(options_.batch, in_flight)
                   : store_->PendingHandoffExcept(options_.batch, in_flight);
    if (!rows.ok()) {
      ANCHORD_LOG(Error) << "hand-off: " << rows.status();
      NoteRead(0, false);
      if (WaitFor(options_.idle_poll, seen)) break;
      continue;
    }
    NoteRead(rows->size(), window.answered());
    if (options_.on_read) options_.on_read(rows->size());
    if (rows->empty()) {
      if (!in_flight.empty()) {
        // Nothing new: settle the window in flight before looking again.
        if (!window.WaitAcked()) broken = true;
        take_settled();
        continue;
      }
      if (options_.on_nothing_to_send) options_.on_nothing_to_send();
      if (WaitFor(options_.idle_poll, seen)) break;
      continue;
    }
    absl::StatusOr<std::vector<std::vector<FileRef>>> files = store_->RefsOfRows(*rows);
    if (!files.ok()) {
      ANCHORD_LOG(Error) << "hand-off: " << files.status();
      if (WaitFor(options_.idle_poll, seen)) break;
      continue;
    }
    if (!SendHandoffWindow(store_, *rows, *files, window_options, write)) broken = true;
    if (!window.WaitAtMost(rows->size())) broken = true;
    take_settled();
  }
  // A stream the poller ended keeps its status (UNIMPLEMENTED from an older poller): cancel only
  // one still open.
  NoteRead(0, false);  // a broken stream holds no intake back
  if (!window.reader_done()) ctx->TryCancel();
  reader.join();
  window.Close();  // the marker marks the acknowledgements that arrived while the stream ended
  marker.join();
  grpc::Status st = batch_form ? batch->Finish() : track->Finish();
  if (st.error_code() == grpc::StatusCode::UNIMPLEMENTED) return StreamEnd::kUnimplemented;
  if (!st.ok() && st.error_code() != grpc::StatusCode::CANCELLED) {
    ANCHORD_LOG(Warning) << "hand-off stream to the poller ended: " << st.error_message();
  }
  return window.answered() ? StreamEnd::kProgressed : StreamEnd::kNoProgress;
}

}  // namespace anchord::submitter
