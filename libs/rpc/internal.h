// Internal RPCs: the calls only a peer service may make (the submitter's hand-off to the poller,
// the poller's re-anchor request to the submitter). They carry state or instructions between
// services, so a caller of the public API must never reach them.
//
// Each service that has internal RPCs runs two gRPC servers over the same state:
//  - the public port (--listen): public RPCs behind the public authentication; every internal RPC
//    is refused with PERMISSION_DENIED;
//  - the internal port (--internal-listen, its bound port written to --internal-port-file): only
//    the internal RPCs, each call admitted only with the internal token (--internal-token-file,
//    sent as metadata "x-anchord-internal-token") when one is configured; with --tls-ca the
//    transport demands the peer's client certificate too. Public RPCs there are refused with
//    PERMISSION_DENIED.
// Without an internal token and without mutual TLS the internal port may listen on loopback only
// (any local process is then a peer); a non-loopback --internal-listen is refused at startup.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/rpc/security.h"

namespace CLI {
class App;
}

namespace anchord::rpc {

inline constexpr char kInternalTokenHeader[] = "x-anchord-internal-token";

struct InternalEndpoint {
  std::string listen_address;  // server: where the internal port listens; empty: none
  std::string port_file;       // server: the bound internal port is written here
  std::string token_file;      // server: token callers must present; client: token to send
};

// --internal-listen (ANCHORD_INTERNAL_LISTEN, default 127.0.0.1:0), --internal-port-file
// (ANCHORD_INTERNAL_PORT_FILE), --internal-token-file (ANCHORD_INTERNAL_TOKEN_FILE).
void AddInternalFlags(CLI::App& app, InternalEndpoint* endpoint);

// Which port an instance of a service implementation serves, and the check each method runs first.
class RpcGate {
 public:
  // The gate of the public port: public methods pass, internal ones are refused.
  static RpcGate Public();
  // The gate of the internal port. `token` empty: no token is demanded (the transport restricts
  // callers: loopback only, or mutual TLS). The token is registered as a secret.
  static RpcGate Internal(std::string token);
  // Reads the token from `token_file` (empty: none). FAILED_PRECONDITION naming the flag when the
  // file cannot be read or is empty.
  static absl::StatusOr<RpcGate> InternalFromFile(const std::string& token_file);

  bool internal() const { return internal_; }
  // OK, or PERMISSION_DENIED on the internal port (`method` as "PollerService.GetProof").
  grpc::Status AdmitPublic(const grpc::ServerContextBase& ctx, absl::string_view method) const;
  // OK on the internal port with the right token (else UNAUTHENTICATED); PERMISSION_DENIED on the
  // public port.
  grpc::Status AdmitInternal(const grpc::ServerContextBase& ctx, absl::string_view method) const;

 private:
  bool internal_ = false;
  std::string token_;
};

// Credentials of the internal port: TLS as configured in `security` (mutual TLS required when
// --tls-ca is set), never the public bearer token. INVALID_ARGUMENT when the port could admit
// strangers: TLS without a client CA and without an internal token, or a non-loopback
// `listen_address` with neither a token nor mutual TLS.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeInternalServerCredentials(
    const TransportSecurity& security, const InternalEndpoint& endpoint);

// A channel to a peer's internal port: TLS and client certificate as in `security` (not its
// public token), and the internal token from `token_file` (if any) on every call.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeInternalChannel(
    const std::string& target, const TransportSecurity& security, const std::string& token_file);

// Reactors that end a call at once with `status` (a refused call).
template <class Req, class Resp>
class RefusedBidiReactor final : public grpc::ServerBidiReactor<Req, Resp> {
 public:
  explicit RefusedBidiReactor(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

template <class Resp>
class RefusedWriteReactor final : public grpc::ServerWriteReactor<Resp> {
 public:
  explicit RefusedWriteReactor(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

inline grpc::ServerUnaryReactor* RefuseUnary(grpc::CallbackServerContext* ctx,
                                             grpc::Status status) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(std::move(status));
  return r;
}

}  // namespace anchord::rpc
