// One SubmitterService.Submit stream per hashing call, kept alive across submitter restarts.
//
// Several items queued together go out as one message in the batch form (SubmitRequest.items),
// answered by one SubmitResponse with an answer per item: far fewer messages per digest on both
// sides. Each item is still acknowledged (and resent) on its own.
//
// Items handed to Send() stay "unacknowledged" until the submitter's SubmitResponse for their
// request_id arrives. When the stream breaks (submitter killed, network, deadline reached) the
// session reopens it with jittered backoff and resends every unacknowledged item, so the hand-off
// is at-least-once; the submitter is idempotent on the digest, which makes it exactly-once in
// effect. The session does not bound the number of unacknowledged items: its caller does (the
// hasher admits at most --max-inflight files per call).
//
// Threads: the session uses the sync client API from two threads of its own (a writer that also
// manages reconnection, and a reader per stream), so no gRPC reactor ever blocks on it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "anchord/v1/submitter.grpc.pb.h"
#include "libs/common/backoff.h"
#include "services/hasher/hasher_metrics.h"

namespace anchord::hasher {

struct SubmitSessionOptions {
  // Deadline of each Submit stream; when it expires the stream is reopened at once.
  absl::Duration stream_deadline = absl::Hours(1);
  BackoffPolicy backoff{absl::Milliseconds(200), absl::Seconds(10), 2.0};
  // How long Stop() waits for the submitter to close a drained stream before cancelling it.
  absl::Duration close_timeout = absl::Seconds(2);
};

class SubmitSession {
 public:
  // Called from the session's reader thread with the responses to request_ids not answered
  // before (each request_id once, with the first response that carries it), in the order they
  // arrived: all the answers of one batch-form message in one call, so that the callee takes
  // its locks once per message rather than once per item. The callee may move from them. May
  // block briefly (it writes to the store).
  using AckFn = std::function<void(std::vector<anchord::v1::SubmitResponse*>& acks)>;

  SubmitSession(std::shared_ptr<grpc::Channel> channel, SubmitSessionOptions options,
                HasherMetrics* metrics, AckFn on_ack);
  // Stop()s.
  ~SubmitSession();

  // Queues `request` for sending; never blocks. request_id must be unique within the session.
  void Send(anchord::v1::SubmitRequest request);
  // Send for several requests, queued together (one lock and one wake-up of the writer), built
  // where the session keeps them (no copy or move of the messages); they must not be changed
  // afterwards.
  using RequestPtr = std::shared_ptr<const anchord::v1::SubmitRequest>;
  void Send(std::vector<RequestPtr> requests);
  // Non-blocking: cancels the stream and stops reconnecting. Safe to call from a reactor.
  void Cancel();
  // Closes the stream (half-close when every item was acknowledged, cancel otherwise) and joins
  // the session's threads. Blocks for at most about close_timeout.
  void Stop();

  size_t unacked();
  int reconnects();

 private:
  void Run();
  void HandleResponse(anchord::v1::SubmitResponse& response);
  // Hands the answers among `answers` that are still pending to on_ack_ (one lock for all).
  void HandleItems(std::vector<anchord::v1::SubmitResponse*>& answers);

  std::unique_ptr<anchord::v1::SubmitterService::Stub> stub_;
  SubmitSessionOptions options_;
  HasherMetrics* metrics_;
  AckFn on_ack_;

  absl::Mutex mu_;
  // A RequestPtr is shared with the writer while it writes it (no copy of the message per write).
  struct Pending {
    uint64_t seq;  // send order: a new stream resends in this order
    RequestPtr request;
  };
  void QueueLocked(RequestPtr request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // By request_id. A hash map: an item is added, found and erased once each (no per-item tree
  // node and ordered string compares); the order, needed only to resend, is in `seq`.
  absl::flat_hash_map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);
  // Requests still to write on the current stream (skipped when answered meanwhile).
  std::deque<RequestPtr> send_queue_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  // The items of each batch-form message on the current stream not yet answered, by the
  // message's request_id: a refusal of a whole message answers each of its items.
  std::map<std::string, std::vector<RequestPtr>> batches_ ABSL_GUARDED_BY(mu_);
  uint64_t next_batch_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool stream_broken_ ABSL_GUARDED_BY(mu_) = false;
  int reconnects_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;  // the current stream's, for Cancel()
  std::thread thread_;
};

}  // namespace anchord::hasher
