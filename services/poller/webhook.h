// The poller's webhook: providers that notify a callback URL (SimpleProof's callback_url) POST to
// http://<webhook address>/callbacks/<provider>. A callback is a hint, not the truth: its body is
// parsed by the provider's adapter, and a digest that is a PENDING proof of that provider is
// checked through the provider's API at once (PollEngine::Hint). An unknown provider, a malformed
// body or a digest nobody submitted changes nothing and is answered 4xx with the reason.
//
// The endpoint is plain HTTP on the address given (loopback or a cluster-internal address behind
// the operator's ingress, which terminates TLS); it reads at most 64 KiB per request.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "libs/providers/provider.h"
#include "services/poller/poll_engine.h"

namespace httplib {
class Server;
}

namespace anchord::poller {

class Webhook {
 public:
  // Binds `address` (host:port; port 0 picks one) and serves in a background thread. Nothing is
  // owned; all must outlive the webhook.
  static absl::StatusOr<std::unique_ptr<Webhook>> Start(
      const std::string& address, std::map<std::string, providers::Provider*> providers,
      PollEngine* engine, PollerMetrics* metrics);
  ~Webhook();
  int port() const { return port_; }
  void Stop();

 private:
  Webhook() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace anchord::poller
