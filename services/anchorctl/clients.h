// Connections to a stack, the per-call deadline, and Ctrl-C handling that cancels the calls in
// flight so that a long `archive` or `watch` stops promptly and cleanly.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "anchord/v1/common.grpc.pb.h"
#include "anchord/v1/hasher.grpc.pb.h"
#include "anchord/v1/poller.grpc.pb.h"
#include "anchord/v1/submitter.grpc.pb.h"
#include "libs/rpc/security.h"

namespace anchord::anchorctl {

// Process-wide interruption (SIGINT/SIGTERM): sets a flag, wakes sleepers and cancels every
// registered ClientContext. Thread-safe.
class Interrupter {
 public:
  static Interrupter& Get();
  bool interrupted() const { return interrupted_.load(); }
  void Trigger() ABSL_LOCKS_EXCLUDED(mu_);
  // Sleeps up to `d`; returns true at once when interrupted (or `wake` is set by Wake()).
  bool SleepFor(absl::Duration d) ABSL_LOCKS_EXCLUDED(mu_);
  // Wakes SleepFor callers early without interrupting (new data to show).
  void Wake() ABSL_LOCKS_EXCLUDED(mu_);
  void Register(grpc::ClientContext* ctx) ABSL_LOCKS_EXCLUDED(mu_);
  void Unregister(grpc::ClientContext* ctx) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  bool InterruptedOrWoken() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return interrupted_.load() || woken_;
  }
  // Atomic besides the mutex: interrupted() is read without it on every loop turn.
  std::atomic<bool> interrupted_{false};
  absl::Mutex mu_;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  std::set<grpc::ClientContext*> contexts_ ABSL_GUARDED_BY(mu_);
};

// Registers a context for cancellation on Ctrl-C for its lifetime.
class ScopedCancel {
 public:
  explicit ScopedCancel(grpc::ClientContext* ctx) : ctx_(ctx) { Interrupter::Get().Register(ctx); }
  ~ScopedCancel() { Interrupter::Get().Unregister(ctx_); }

 private:
  grpc::ClientContext* ctx_;
};

// Starts a thread that waits (sigwait) for SIGINT/SIGTERM and triggers the Interrupter. The
// signals must already be blocked (rpc::BlockTerminationSignals) in every thread.
void StartSignalThread();

struct Endpoints {
  std::string hasher;
  std::string submitter;
  std::string poller;
  std::string root;    // the hasher's root, when known (from stack.json or --hasher-root)
  std::string source;  // where the addresses came from, for messages
};

// Transport security of every Clients made afterwards (the global --tls-* flags). Set once in
// main before any command runs; default: plaintext.
void SetTransportSecurity(const rpc::TransportSecurity& security);
const rpc::TransportSecurity& GetTransportSecurity();

// Channels and stubs to the three services. Channels connect lazily; Check() probes one.
class Clients {
 public:
  Clients(Endpoints endpoints, absl::Duration deadline);

  const Endpoints& endpoints() const { return endpoints_; }
  absl::Duration deadline() const { return deadline_; }
  // Sets the deadline of a unary call.
  void SetDeadline(grpc::ClientContext* ctx) const;

  // Unavailable with a clear message naming the service and address when it cannot be reached
  // within the deadline, or when no address is configured for it.
  absl::Status Check(const std::string& service);

  anchord::v1::HasherService::Stub& hasher() { return *hasher_; }
  anchord::v1::PollerService::Stub& poller() { return *poller_; }
  anchord::v1::StatusService::Stub& status(const std::string& service);

  // "hasher at 127.0.0.1:1234"
  std::string Describe(const std::string& service) const;
  // An RPC error as an absl::Status whose message names the service and address.
  absl::Status RpcError(const std::string& service, const std::string& method,
                        const grpc::Status& status) const;

 private:
  std::string Address(const std::string& service) const;
  Endpoints endpoints_;
  absl::Duration deadline_;
  // A channel that could not be built (unreadable certificate, key or token file): Check() and
  // every call report it instead of silently falling back to plaintext.
  absl::Status channel_error_;
  std::shared_ptr<grpc::Channel> hasher_channel_, submitter_channel_, poller_channel_;
  std::unique_ptr<anchord::v1::HasherService::Stub> hasher_;
  std::unique_ptr<anchord::v1::PollerService::Stub> poller_;
  std::unique_ptr<anchord::v1::StatusService::Stub> hasher_status_, submitter_status_,
      poller_status_;
};

}  // namespace anchord::anchorctl
