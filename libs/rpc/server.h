// Everything a service's main() does around its gRPC services: listening (port 0 allowed), health
// checking and reflection, message-size and stream limits, keepalive, the Prometheus exposer, an
// RPC latency histogram for every method, and a graceful drain on SIGTERM.
#pragma once

#include <grpcpp/grpcpp.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/rpc/internal.h"
#include "libs/rpc/security.h"

namespace anchord::rpc {

struct ServerOptions {
  // Name used in logs and in the metrics' `service` label: "hasher", "submitter", "poller".
  std::string service_name;
  // host:port to listen on; port 0 picks a free port (see port()).
  std::string listen_address = "127.0.0.1:0";
  // When set, the bound gRPC port is written here (atomically) once the server listens.
  std::string port_file;
  // host:port for /metrics; empty disables the exposer. Port 0 picks a free port.
  std::string metrics_address;
  // When set, the bound metrics port is written here.
  std::string metrics_port_file;
  int max_receive_message_bytes = 8 * 1024 * 1024;
  int max_concurrent_streams = 256;
  // Time given to in-flight RPCs to finish on shutdown before they are cancelled.
  absl::Duration shutdown_grace = absl::Seconds(10);
  // Fully qualified service names reported SERVING by the health service. Their methods (from the
  // generated descriptors) are also the only values of the RPC metric's `method` label; any other
  // method a caller names is counted as method="unknown".
  std::vector<std::string> health_service_names;
  // TLS / mutual TLS / bearer token for the gRPC port; plaintext when empty.
  TransportSecurity security;
  // A client connection older than this is sent GOAWAY (calls in progress finish; new calls go
  // over a new connection, for which the client resolves the name again). Infinite: never.
  absl::Duration max_connection_age = absl::InfiniteDuration();
  // The internal port (libs/rpc/internal.h): opened when listen_address is set and internal
  // services are given to Start. Same TLS settings, never the public token.
  InternalEndpoint internal;
};

// Adds --max-connection-age-seconds (env ANCHORD_MAX_CONNECTION_AGE_SECONDS) to `app`, setting
// options->max_connection_age.
void AddConnectionFlags(CLI::App& app, ServerOptions* options);

class ServerRunner {
 public:
  // Builds and starts the server with `services` (not owned; must outlive the runner) and metrics
  // from `registry` (the runner adds its own RPC metrics to it). With `internal_services` and
  // options.internal.listen_address, a second server on the internal port serves only those
  // (instances whose RpcGate is Internal), with the health service.
  static absl::StatusOr<std::unique_ptr<ServerRunner>> Start(
      const ServerOptions& options, const std::vector<grpc::Service*>& services,
      std::shared_ptr<prometheus::Registry> registry,
      const std::vector<grpc::Service*>& internal_services = {});
  ~ServerRunner();

  int port() const { return port_; }
  int internal_port() const { return internal_port_; }  // 0 without an internal port
  int metrics_port() const;
  grpc::Server* server() { return server_.get(); }

  // Reports every health_service_names entry (and the server as a whole) SERVING or NOT_SERVING,
  // e.g. while the service's database is unreachable. Ignored after Shutdown(). Thread-safe.
  void SetServing(bool serving) ABSL_LOCKS_EXCLUDED(health_mu_);
  // Marks every service NOT_SERVING, waits (up to the grace period) until no call is open on either
  // port, then stops the public and the internal server, cancelling what is still open. Streams
  // that never end by themselves must be ended by their service first (their drains), or they hold
  // the shutdown for the whole grace.
  // Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(health_mu_);

 private:
  ServerRunner() = default;
  ServerOptions options_;
  // Kept alive here: the RPC latency interceptor records into a family owned by the registry.
  std::shared_ptr<prometheus::Registry> registry_;
  int port_ = 0;
  int internal_port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> internal_server_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::unique_ptr<class ActiveCalls> active_;
  absl::Mutex health_mu_;
  // Set once by Shutdown; SetServing holds health_mu_ across its calls into the health service, so
  // it never runs into a health service that Shutdown has shut down.
  bool shut_down_ ABSL_GUARDED_BY(health_mu_) = false;
};

// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts later. Call first
// thing in main(), before any thread exists.
void BlockTerminationSignals();
// Waits until SIGTERM or SIGINT arrives; returns the signal number.
int WaitForTerminationSignal();

// A plaintext channel to a peer service with PeerChannelArguments().
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target);

}  // namespace anchord::rpc
