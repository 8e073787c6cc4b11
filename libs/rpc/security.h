// Transport security for every gRPC port and every peer channel.
//
//  - TLS when a certificate and key are configured; mutual TLS when a client CA is configured too
//    (the services present their own certificates to each other).
//  - Callers outside the cluster authenticate with mTLS or a bearer token: with a token file set,
//    a call that neither presented a verified client certificate nor carries
//    "authorization: Bearer <token>" is refused with UNAUTHENTICATED.
//  - Plaintext on loopback when nothing is configured (the embedded single-machine default).
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace CLI {
class App;
}

namespace anchord::rpc {

struct TransportSecurity {
  std::string cert_file;    // PEM certificate chain of this process (server and client side)
  std::string key_file;     // PEM private key
  std::string ca_file;      // PEM CA bundle: verifies peers (server: client certs -> mTLS)
  std::string token_file;   // server: accepted bearer token; client: token to send
  std::string server_name;  // client: override of the TLS name checked (tests, IP targets)
  bool tls_enabled() const { return !cert_file.empty() || !ca_file.empty(); }
};

// Adds --tls-cert, --tls-key, --tls-ca, --auth-token-file, --tls-server-name (env ANCHORD_TLS_CERT,
// ANCHORD_TLS_KEY, ANCHORD_TLS_CA, ANCHORD_AUTH_TOKEN_FILE, ANCHORD_TLS_SERVER_NAME).
void AddTransportFlags(CLI::App& app, TransportSecurity* security);

// Server credentials for `security` (insecure when TLS is off). FAILED_PRECONDITION naming the
// file when a configured file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TransportSecurity& security);

// The keepalive and size settings of every channel to a peer service.
grpc::ChannelArguments PeerChannelArguments();
// Channel credentials for `security` (TLS, client certificate, bearer token as configured); may
// set the TLS name override on `args`.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TransportSecurity& security, grpc::ChannelArguments* args);

// A channel to `target` using `security` (TLS, client certificate, bearer token as configured),
// with PeerChannelArguments() (keepalive, round_robin over every address the target resolves to).
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeSecureChannel(const std::string& target,
                                                                 const TransportSecurity& security);

}  // namespace anchord::rpc
