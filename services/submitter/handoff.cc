#include "services/submitter/handoff.h"

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
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
  p.set_digest(row.digest);
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
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (active_ != nullptr) active_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Handoff::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++wake_seq_;
  }
  cv_.notify_all();
}

bool Handoff::WaitFor(absl::Duration d) {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t seen = wake_seq_;
  cv_.wait_for(lock, absl::ToChronoMilliseconds(d), [&] { return stopping_ || wake_seq_ != seen; });
  return stopping_;
}

void Handoff::Loop() {
  int failures = 0;
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(options_.track_deadline));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      active_ = &ctx;
    }
    bool progressed = RunStream(&ctx);
    {
      std::lock_guard<std::mutex> lock(mu_);
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

bool Handoff::RunStream(grpc::ClientContext* ctx) {
  auto stream = stub_->Track(ctx);
  // Acknowledgements are read on their own thread while this one writes, so a window of any size
  // never stalls on HTTP/2 flow control, and the rows of a whole window are marked handed off in
  // one transaction (one commit per window, not one per proof).
  struct Sent {
    int64_t id;
    int64_t seq;
  };
  std::mutex amu;
  std::condition_variable acv;
  std::map<std::string, Sent> unacked;             // guarded by amu
  std::vector<std::pair<int64_t, int64_t>> acked;  // guarded by amu: {id, seq} to mark
  bool reader_done = false;                        // guarded by amu
  bool retry_later = false;                        // guarded by amu
  std::thread reader([&] {
    anchord::v1::TrackResponse resp;
    while (stream->Read(&resp)) {
      std::lock_guard<std::mutex> lock(amu);
      auto it = unacked.find(resp.request_id());
      if (it == unacked.end()) continue;  // an ack of an earlier, broken stream: ignore
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
        retry_later = true;
      } else if (metrics_) {
        metrics_->handoffs.Add({{"result", "ok"}}).Increment();
      }
      if (mark) acked.emplace_back(it->second.id, it->second.seq);
      unacked.erase(it);
      if (unacked.empty()) acv.notify_all();
    }
    std::lock_guard<std::mutex> lock(amu);
    reader_done = true;
    acv.notify_all();
  });

  bool progressed = false;
  auto mark_acked = [&] {
    std::vector<std::pair<int64_t, int64_t>> rows;
    {
      std::lock_guard<std::mutex> lock(amu);
      rows.swap(acked);
    }
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
      std::lock_guard<std::mutex> lock(mu_);
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
    anchord::v1::TrackRequest req;
    for (const Submission& row : *rows) {
      absl::StatusOr<std::vector<FileRef>> files = store_->Refs(row.digest);
      if (!files.ok()) {
        ANCHORD_LOG(Error) << "hand-off: " << files.status();
        continue;
      }
      req.Clear();
      std::string id = absl::StrCat("s", row.id, "-", row.change_seq);
      req.set_request_id(id);
      *req.mutable_proof() = BuildProof(row, *files);
      req.set_evidence(row.record.evidence);
      if (row.mode == RowMode::kLeaf) req.set_merkle_path(row.merkle_path);
      req.set_fallback_provider(row.fallback_provider);
      {
        std::lock_guard<std::mutex> lock(amu);  // before the write: the ack may come at once
        unacked[id] = Sent{row.id, row.change_seq};
      }
      if (!stream->Write(req)) {
        broken = true;
        break;
      }
    }
    {
      std::unique_lock<std::mutex> lock(amu);
      acv.wait(lock, [&] { return unacked.empty() || reader_done; });
      if (!unacked.empty()) broken = true;
      // Back off before sending the refused ones again.
      if (retry_later) broken = true;
    }
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
