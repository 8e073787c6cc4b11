#include "services/hasher/submit_session.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/common/thread_name.h"

namespace anchord::hasher {

namespace v1 = anchord::v1;

namespace {
// Requests written per burst at most (about 200 bytes each).
constexpr size_t kMaxBurst = 1024;
}  // namespace

SubmitSession::SubmitSession(std::shared_ptr<grpc::Channel> channel, SubmitSessionOptions options,
                             HasherMetrics* metrics, AckFn on_ack)
    : stub_(v1::SubmitterService::NewStub(channel)),
      options_(options),
      metrics_(metrics),
      on_ack_(std::move(on_ack)) {
  thread_ = StartNamedThread("submit", [this] { Run(); });
}

SubmitSession::~SubmitSession() { Stop(); }

void SubmitSession::QueueLocked(RequestPtr shared) {
  send_queue_.push_back(shared);
  // The key is read before `shared` is moved (the request it names lives on in the entry).
  const std::string& id = shared->request_id();
  pending_.insert_or_assign(id, Pending{next_seq_++, std::move(shared)});
}

void SubmitSession::Send(v1::SubmitRequest request) {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    QueueLocked(std::make_shared<const v1::SubmitRequest>(std::move(request)));
  }
  if (metrics_) metrics_->inflight.Increment();
}

void SubmitSession::Send(std::vector<RequestPtr> requests) {
  if (requests.empty()) return;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    for (RequestPtr& r : requests) QueueLocked(std::move(r));
  }
  if (metrics_) metrics_->inflight.Increment(static_cast<double>(requests.size()));
}

void SubmitSession::Cancel() {
  absl::MutexLock lock(&mu_);
  stop_ = true;
  if (ctx_ != nullptr) ctx_->TryCancel();
}

void SubmitSession::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    // With items still unacknowledged there is nothing to wait for: cancel at once.
    if (!pending_.empty() && ctx_ != nullptr) ctx_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
  absl::MutexLock lock(&mu_);
  if (metrics_ && !pending_.empty())
    metrics_->inflight.Decrement(static_cast<double>(pending_.size()));
  pending_.clear();
  send_queue_.clear();
}

size_t SubmitSession::unacked() {
  absl::MutexLock lock(&mu_);
  return pending_.size();
}

int SubmitSession::reconnects() {
  absl::MutexLock lock(&mu_);
  return reconnects_;
}

void SubmitSession::HandleResponse(v1::SubmitResponse& response) {
  std::vector<RequestPtr> refused;
  {
    absl::MutexLock lock(&mu_);
    auto b = batches_.find(response.request_id());
    if (b != batches_.end()) {
      if (response.items_size() == 0) refused = std::move(b->second);
      batches_.erase(b);
    }
  }
  std::vector<v1::SubmitResponse*> answers;
  if (response.items_size() > 0) {
    answers.reserve(static_cast<size_t>(response.items_size()));
    for (v1::SubmitResponse& item : *response.mutable_items()) answers.push_back(&item);
    HandleItems(answers);
    return;
  }
  if (refused.empty()) {
    answers.push_back(&response);
    HandleItems(answers);
    return;
  }
  // The submitter refused the whole message: each of its items gets that answer.
  std::vector<v1::SubmitResponse> items(refused.size());
  answers.reserve(refused.size());
  for (size_t i = 0; i < refused.size(); ++i) {
    items[i].set_request_id(refused[i]->request_id());
    *items[i].mutable_status() = response.status();
    answers.push_back(&items[i]);
  }
  HandleItems(answers);
}

void SubmitSession::HandleItems(std::vector<v1::SubmitResponse*>& answers) {
  size_t kept = 0;
  {
    absl::MutexLock lock(&mu_);
    for (v1::SubmitResponse* a : answers) {
      auto it = pending_.find(a->request_id());
      // Unknown ids: a duplicate ack of an item resent after a reconnect, or garbage. Ignored.
      if (it == pending_.end()) continue;
      pending_.erase(it);
      answers[kept++] = a;
    }
  }
  answers.resize(kept);
  if (answers.empty()) return;
  if (metrics_) metrics_->inflight.Decrement(static_cast<double>(answers.size()));
  on_ack_(answers);
}

void SubmitSession::Run() {
  int attempt = 0;
  bool first = true;
  for (;;) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::milliseconds(absl::ToInt64Milliseconds(options_.stream_deadline)));
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      if (!first) {
        ++reconnects_;
        if (metrics_) metrics_->reconnects.Increment();
      }
      first = false;
      ctx_ = ctx.get();
      stream_broken_ = false;
      // Everything not yet acknowledged goes out again on the new stream, oldest first.
      send_queue_.clear();
      batches_.clear();
      std::vector<const Pending*> order;
      order.reserve(pending_.size());
      for (const auto& [id, p] : pending_) order.push_back(&p);
      std::sort(order.begin(), order.end(),
                [](const Pending* a, const Pending* b) { return a->seq < b->seq; });
      for (const Pending* p : order) send_queue_.push_back(p->request);
    }
    auto stream = stub_->Submit(ctx.get());
    std::atomic<bool> progressed{false};
    std::thread reader = StartNamedThread("submit-acks", [&] {
      v1::SubmitResponse response;
      while (stream->Read(&response)) {
        progressed = true;
        HandleResponse(response);
      }
      absl::MutexLock lock(&mu_);
      stream_broken_ = true;
    });

    bool half_closed = false;
    bool write_failed = false;
    std::vector<std::shared_ptr<const v1::SubmitRequest>> burst;
    v1::SubmitRequest batch;
    while (!write_failed) {
      bool stopping = false;
      bool drained = false;
      burst.clear();
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](SubmitSession* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
              return s->stop_ || s->stream_broken_ || !s->send_queue_.empty();
            },
            this));
        if (stream_broken_) break;
        if (stop_) {
          stopping = true;
          drained = pending_.empty();
        } else {
          // Everything queued goes out as one burst (bounded, so the lock is not held long).
          while (!send_queue_.empty() && burst.size() < kMaxBurst) {
            RequestPtr r = std::move(send_queue_.front());
            send_queue_.pop_front();
            if (!pending_.contains(r->request_id())) continue;  // acknowledged meanwhile
            burst.push_back(std::move(r));
          }
          if (burst.size() > 1) {
            batch.Clear();
            batch.set_request_id(absl::StrCat("batch-", next_batch_++));
            batches_[batch.request_id()] = burst;
          }
        }
      }
      if (stopping) {
        if (drained) {
          // Drained: close our side and let the submitter finish the stream normally.
          stream->WritesDone();
          half_closed = true;
        }
        break;
      }
      // A burst of several items is one message in the batch form (at most kMaxBurst items,
      // under the submitter's limit of 4,096). Blocks while the submitter does not read (its
      // queue is full): that is the backpressure.
      if (burst.size() == 1) {
        write_failed = !stream->Write(*burst[0]);
      } else if (burst.size() > 1) {
        // The requests are lent to the message instead of copied into it, and taken back after
        // the write: they stay pending_'s (kept alive by `burst`), to be sent again after a
        // reconnect. Only this thread reads them while they are lent.
        auto* items = batch.mutable_items();
        items->Reserve(static_cast<int>(burst.size()));
        for (const auto& r : burst) {
          items->UnsafeArenaAddAllocated(const_cast<v1::SubmitRequest*>(r.get()));
        }
        write_failed = !stream->Write(batch);
        items->UnsafeArenaExtractSubrange(0, items->size(), nullptr);
      }
    }
    {
      absl::MutexLock lock(&mu_);
      // After a half-close, give the submitter time to finish the stream normally; after a failed
      // write the call is already over and the reader is about to see its real status. Cancel
      // only if that does not happen in time.
      if (half_closed || write_failed) {
        mu_.AwaitWithTimeout(absl::Condition(&stream_broken_), options_.close_timeout);
      }
      if (!stream_broken_) ctx->TryCancel();
    }
    reader.join();
    grpc::Status status = stream->Finish();
    {
      absl::MutexLock lock(&mu_);
      ctx_ = nullptr;
      if (stop_) return;
    }
    absl::Duration delay;
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED || progressed) {
      // The stream lived its full deadline or made progress: reopen right away.
      attempt = 0;
      delay = absl::ZeroDuration();
    } else {
      delay = BackoffDelay(options_.backoff, attempt++);
    }
    ANCHORD_LOG(Warning) << "submit stream ended (" << status.error_code() << ": "
                         << status.error_message() << "); reopening in " << delay;
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stop_), delay);
    if (stop_) return;
  }
}

}  // namespace anchord::hasher
