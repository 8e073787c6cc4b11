#include "services/submitter/handoff.h"

#include <chrono>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/providers/provider.h"
#include "libs/rpc/messages.h"

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
      options_(options) {}

Handoff::~Handoff() { Stop(); }

void Handoff::Start() {
  thread_ = std::thread([this] { Loop(); });
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

bool Handoff::WaitFor(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  const uint64_t seen = wake_seq_;
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
    bool progressed = RunStream(&ctx);
    {
      absl::MutexLock lock(&mu_);
      active_ = nullptr;
    }
    if (progressed)
      failures = 0;
    else
      ++failures;
    absl::Duration wait = BackoffDelay(options_.reconnect, failures);
    if (WaitFor(wait)) return;
  }
}

namespace {

// The proofs of one Track stream sent and not yet acknowledged, shared by the thread that writes
// them and the thread that reads the acknowledgements.
class AckWindow {
 public:
  explicit AckWindow(SubmitterMetrics* metrics) : metrics_(metrics) {}

  // Call before the write: the acknowledgement may come at once.
  void Sent(std::string request_id, int64_t row_id, int64_t seq) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    unacked_[std::move(request_id)] = RowVersion{row_id, seq};
  }

  // Reader thread: applies one acknowledgement.
  void Ack(const anchord::v1::TrackResponse& resp) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto it = unacked_.find(resp.request_id());
    if (it == unacked_.end()) return;  // an ack of an earlier, broken stream: ignore
    const auto& st = resp.status();
    bool mark = st.code() == 0;
    if (!mark && st.code() == static_cast<int>(absl::StatusCode::kInvalidArgument)) {
      // The poller will never accept this proof; resending cannot help, so it is logged and
      // counted, not retried forever.
      ANCHORD_LOG(Error) << "hand-off: poller rejected " << HexEncode(resp.digest()) << ": "
                         << st.message();
      mark = true;
      if (metrics_) metrics_->handoffs.Add({{"result", "rejected"}}).Increment();
    } else if (!mark) {
      ANCHORD_LOG(Warning) << "hand-off: poller answered code " << st.code() << " for "
                           << HexEncode(resp.digest()) << ": " << st.message() << "; will resend";
      retry_later_ = true;
    } else if (metrics_) {
      metrics_->handoffs.Add({{"result", "ok"}}).Increment();
    }
    if (mark) acked_.emplace_back(it->second.id, it->second.seq);
    unacked_.erase(it);
  }

  // Reader thread: the stream has no more acknowledgements.
  void ReaderDone() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    reader_done_ = true;
  }

  // Waits until every proof sent is acknowledged or the reader stopped. False when the stream
  // must be reopened: a proof went unacknowledged, or the poller asked for one to be resent (the
  // reconnect backoff comes before sending it again).
  bool WaitAcked() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return unacked_.empty() || reader_done_;
    };
    mu_.Await(absl::Condition(&settled));
    return unacked_.empty() && !retry_later_;
  }

  // The {row id, change seq} of the rows acknowledged since the last call, to mark handed off.
  std::vector<std::pair<int64_t, int64_t>> TakeAcked() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<std::pair<int64_t, int64_t>> rows;
    rows.swap(acked_);
    return rows;
  }

 private:
  struct RowVersion {
    int64_t id;
    int64_t seq;
  };

  SubmitterMetrics* const metrics_;
  absl::Mutex mu_;
  std::map<std::string, RowVersion> unacked_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int64_t, int64_t>> acked_ ABSL_GUARDED_BY(mu_);
  bool reader_done_ ABSL_GUARDED_BY(mu_) = false;
  bool retry_later_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

bool Handoff::RunStream(grpc::ClientContext* ctx) {
  auto stream = stub_->Track(ctx);
  // Acknowledgements are read on their own thread while this one writes, so a window of any size
  // never stalls on HTTP/2 flow control, and the rows of a whole window are marked handed off in
  // one transaction (one commit per window, not one per proof).
  AckWindow window(metrics_);
  std::thread reader([&] {
    anchord::v1::TrackResponse resp;
    while (stream->Read(&resp)) window.Ack(resp);
    window.ReaderDone();
  });

  bool progressed = false;
  auto mark_acked = [&] {
    std::vector<std::pair<int64_t, int64_t>> rows = window.TakeAcked();
    if (rows.empty()) return;
    absl::Status ms = store_->MarkHandedOffBatch(rows);
    if (!ms.ok()) {
      ANCHORD_LOG(Error) << "hand-off: " << ms;  // resent later: the poller is idempotent
    }
    progressed = true;
  };
  bool broken = false;
  const auto deadline = ctx->deadline();
  while (!broken) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    // Reopen a stream close to its deadline rather than have a batch cut off by it.
    if (std::chrono::system_clock::now() + std::chrono::seconds(5) > deadline) break;
    absl::StatusOr<std::vector<Submission>> rows = store_->PendingHandoff(options_.batch);
    if (!rows.ok()) {
      ANCHORD_LOG(Error) << "hand-off: " << rows.status();
      if (WaitFor(options_.idle_poll)) break;
      continue;
    }
    if (rows->empty()) {
      if (WaitFor(options_.idle_poll)) break;
      continue;
    }
    absl::StatusOr<std::vector<std::vector<FileRef>>> files = store_->RefsOfRows(*rows);
    if (!files.ok()) {
      ANCHORD_LOG(Error) << "hand-off: " << files.status();
      if (WaitFor(options_.idle_poll)) break;
      continue;
    }
    anchord::v1::TrackRequest req;
    for (size_t i = 0; i < rows->size(); ++i) {
      const Submission& row = (*rows)[i];
      req.Clear();
      std::string id = absl::StrCat("s", row.id, "-", row.change_seq);
      req.set_request_id(id);
      *req.mutable_proof() = BuildProof(row, (*files)[i]);
      req.set_evidence(row.record.evidence);
      if (row.mode == RowMode::kLeaf) req.set_merkle_path(row.merkle_path);
      req.set_fallback_provider(row.fallback_provider);
      window.Sent(id, row.id, row.change_seq);
      if (!stream->Write(req)) {
        broken = true;
        break;
      }
    }
    if (!window.WaitAcked()) broken = true;
    mark_acked();
  }
  ctx->TryCancel();
  reader.join();
  mark_acked();  // acknowledgements that arrived while the stream was ending
  grpc::Status st = stream->Finish();
  if (!st.ok() && st.error_code() != grpc::StatusCode::CANCELLED) {
    ANCHORD_LOG(Warning) << "hand-off stream to the poller ended: " << st.error_message();
  }
  return progressed;
}

}  // namespace anchord::submitter
