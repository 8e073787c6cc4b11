#include "libs/rpc/internal.h"

#include <grpcpp/support/client_interceptor.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/common/log.h"

namespace anchord::rpc {
namespace {

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::FailedPreconditionError(absl::StrCat("--internal-token-file: cannot read ", path));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string t(absl::StripAsciiWhitespace(ss.str()));
  if (t.empty()) return absl::FailedPreconditionError("--internal-token-file: file is empty");
  return t;
}

// Compares without an early exit, so the time taken tells nothing about how much of a guess
// was right.
bool SameSecret(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i]);
  }
  return diff == 0;
}

bool IsLoopbackAddress(absl::string_view address) {
  return absl::StartsWith(address, "127.") || absl::StartsWith(address, "localhost:") ||
         absl::StartsWith(address, "[::1]:") || absl::StartsWith(address, "unix:");
}

// Adds the internal token to every call of a channel.
class TokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(const std::string* token) : token_(token) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({kInternalTokenHeader, *token_});
    }
    methods->Proceed();
  }

 private:
  const std::string* token_;
};

class TokenInterceptorFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(std::string token) : token_(std::move(token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new TokenInterceptor(&token_);
  }

 private:
  std::string token_;
};

}  // namespace

void AddInternalFlags(CLI::App& app, InternalEndpoint* e) {
  app.add_option("--internal-listen", e->listen_address,
                 "host:port of the internal port (peer services only; port 0 picks one)")
      ->envname("ANCHORD_INTERNAL_LISTEN")
      ->capture_default_str();
  app.add_option("--internal-port-file", e->port_file, "write the bound internal port here")
      ->envname("ANCHORD_INTERNAL_PORT_FILE");
  app.add_option("--internal-token-file", e->token_file,
                 "file holding the token peer services present on internal ports (and send)")
      ->envname("ANCHORD_INTERNAL_TOKEN_FILE");
}

RpcGate RpcGate::Public() { return RpcGate(); }

RpcGate RpcGate::Internal(std::string token) {
  RpcGate g;
  g.internal_ = true;
  g.token_ = std::move(token);
  if (!g.token_.empty()) RegisterSecret(g.token_);
  return g;
}

absl::StatusOr<RpcGate> RpcGate::InternalFromFile(const std::string& token_file) {
  if (token_file.empty()) return Internal("");
  auto token = ReadToken(token_file);
  if (!token.ok()) return token.status();
  return Internal(*token);
}

grpc::Status RpcGate::AdmitPublic(const grpc::ServerContextBase&, absl::string_view method) const {
  if (!internal_) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                      absl::StrCat(method,
                                   " is public: call it on the service's public port "
                                   "(--listen), not the internal one"));
}

grpc::Status RpcGate::AdmitInternal(const grpc::ServerContextBase& ctx,
                                    absl::string_view method) const {
  if (!internal_) {
    return grpc::Status(
        grpc::StatusCode::PERMISSION_DENIED,
        absl::StrCat(method,
                     " is internal: served only to peer services on the internal port "
                     "(--internal-listen)"));
  }
  if (token_.empty()) return grpc::Status::OK;
  const auto& md = ctx.client_metadata();
  auto it = md.find(kInternalTokenHeader);
  if (it != md.end() &&
      SameSecret(absl::string_view(it->second.data(), it->second.size()), token_)) {
    return grpc::Status::OK;
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      absl::StrCat(method,
                                   ": the internal token (--internal-token-file) is "
                                   "missing or wrong"));
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeInternalServerCredentials(
    const TransportSecurity& s, const InternalEndpoint& endpoint) {
  const bool mtls = !s.cert_file.empty() && !s.ca_file.empty();
  if (endpoint.token_file.empty() && !mtls) {
    if (!s.cert_file.empty()) {
      return absl::InvalidArgumentError(
          "--internal-token-file: required with TLS unless --tls-ca is set (the internal port "
          "would admit any TLS client)");
    }
    if (!IsLoopbackAddress(endpoint.listen_address)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--internal-listen: ", endpoint.listen_address,
          " is not a loopback address; set --internal-token-file or mutual TLS (--tls-ca) so "
          "that only peer services are admitted"));
    }
  }
  TransportSecurity internal = s;
  // The public bearer token admits outside callers; it has no place on the internal port. With a
  // client CA the peer's certificate is demanded (MakeServerCredentials: no token, mTLS required).
  internal.token_file.clear();
  return MakeServerCredentials(internal);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeInternalChannel(const std::string& target,
                                                                   const TransportSecurity& s,
                                                                   const std::string& token_file) {
  TransportSecurity peer = s;
  peer.token_file.clear();
  grpc::ChannelArguments args = PeerChannelArguments();
  auto creds = MakeChannelCredentials(peer, &args);
  if (!creds.ok()) return creds.status();
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  if (!token_file.empty()) {
    auto token = ReadToken(token_file);
    if (!token.ok()) return token.status();
    RegisterSecret(*token);
    factories.push_back(std::make_unique<TokenInterceptorFactory>(*token));
  }
  return grpc::experimental::CreateCustomChannelWithInterceptors(target, *creds, args,
                                                                 std::move(factories));
}

}  // namespace anchord::rpc
