#include "libs/rpc/security.h"

#include <grpcpp/security/auth_metadata_processor.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/rpc/server.h"

namespace anchord::rpc {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": cannot read ", path));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Accepts a call that presented a verified client certificate (mTLS) or the configured token.
class TokenAuthProcessor final : public grpc::AuthMetadataProcessor {
 public:
  explicit TokenAuthProcessor(std::string token) : expected_(absl::StrCat("Bearer ", token)) {}
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed, OutputMetadata* response) override {
    if (context != nullptr && context->IsPeerAuthenticated()) return grpc::Status::OK;
    auto it = auth_metadata.find("authorization");
    if (it != auth_metadata.end() &&
        absl::string_view(it->second.data(), it->second.size()) == expected_) {
      consumed->insert({"authorization", std::string(it->second.data(), it->second.size())});
      return grpc::Status::OK;
    }
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "authentication required: present a client certificate or "
                        "'authorization: Bearer <token>'");
  }

 private:
  std::string expected_;
};

class BearerToken final : public grpc::MetadataCredentialsPlugin {
 public:
  explicit BearerToken(std::string token) : value_(absl::StrCat("Bearer ", token)) {}
  grpc::Status GetMetadata(grpc::string_ref, grpc::string_ref, const grpc::AuthContext&,
                           std::multimap<grpc::string, grpc::string>* metadata) override {
    metadata->insert({"authorization", value_});
    return grpc::Status::OK;
  }

 private:
  std::string value_;
};

}  // namespace

void AddTransportFlags(CLI::App& app, TransportSecurity* s) {
  app.add_option("--tls-cert", s->cert_file, "PEM certificate chain (enables TLS)")
      ->envname("ANCHORD_TLS_CERT");
  app.add_option("--tls-key", s->key_file, "PEM private key for --tls-cert")
      ->envname("ANCHORD_TLS_KEY");
  app.add_option("--tls-ca", s->ca_file,
                 "PEM CA bundle: verifies servers, and clients (mutual TLS) on the server side")
      ->envname("ANCHORD_TLS_CA");
  app.add_option("--auth-token-file", s->token_file,
                 "file holding the bearer token callers must present (and peers send)")
      ->envname("ANCHORD_AUTH_TOKEN_FILE");
  app.add_option("--tls-server-name", s->server_name, "TLS name expected of peers (override)")
      ->envname("ANCHORD_TLS_SERVER_NAME");
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TransportSecurity& s) {
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (!s.cert_file.empty() || !s.key_file.empty()) {
    if (s.cert_file.empty() || s.key_file.empty()) {
      return absl::InvalidArgumentError("--tls-cert and --tls-key must be given together");
    }
    auto cert = ReadFile(s.cert_file, "--tls-cert");
    if (!cert.ok()) return cert.status();
    auto key = ReadFile(s.key_file, "--tls-key");
    if (!key.ok()) return key.status();
    grpc::SslServerCredentialsOptions opts(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    if (!s.ca_file.empty()) {
      auto ca = ReadFile(s.ca_file, "--tls-ca");
      if (!ca.ok()) return ca.status();
      opts.pem_root_certs = *ca;
      // With a bearer token as the alternative, a client certificate is verified when presented
      // but not demanded; without one, mutual TLS is mandatory.
      opts.client_certificate_request =
          s.token_file.empty() ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                               : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    opts.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(opts);
  } else {
    if (!s.ca_file.empty()) {
      return absl::InvalidArgumentError("--tls-ca on a server needs --tls-cert and --tls-key");
    }
    // gRPC sends call credentials (the bearer token) only over a secure or local transport, so a
    // token without TLS uses local TCP credentials: accepted from loopback peers only.
    creds = s.token_file.empty() ? grpc::InsecureServerCredentials()
                                 : grpc::experimental::LocalServerCredentials(LOCAL_TCP);
  }
  if (!s.token_file.empty()) {
    auto token = ReadFile(s.token_file, "--auth-token-file");
    if (!token.ok()) return token.status();
    std::string t(absl::StripAsciiWhitespace(*token));
    if (t.empty()) return absl::FailedPreconditionError("--auth-token-file: file is empty");
    RegisterSecret(t);
    creds->SetAuthMetadataProcessor(std::make_shared<TokenAuthProcessor>(t));
  }
  return creds;
}

grpc::ChannelArguments PeerChannelArguments() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetMaxReceiveMessageSize(16 * 1024 * 1024);
  // A ClusterIP Service would pin every long-lived stream to the pod its connection landed on.
  // With a headless Service (dns:///name:port resolves to every ready pod) or an ipv4:a,b list,
  // round_robin keeps a connection to every address and gives each new call the next one, so
  // streams reopened by their deadline, and new callers, spread over the replicas. The default
  // pick_first would send everything to the first address. Applies when the resolver supplies no
  // service config of its own (DNS TXT records are not consulted: the default in gRPC 1.51).
  args.SetServiceConfigJSON(R"({"loadBalancingConfig":[{"round_robin":{}}]})");
  return args;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TransportSecurity& s, grpc::ChannelArguments* args) {
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (s.tls_enabled()) {
    grpc::SslCredentialsOptions opts;
    if (!s.ca_file.empty()) {
      auto ca = ReadFile(s.ca_file, "--tls-ca");
      if (!ca.ok()) return ca.status();
      opts.pem_root_certs = *ca;
    }
    if (!s.cert_file.empty()) {
      auto cert = ReadFile(s.cert_file, "--tls-cert");
      if (!cert.ok()) return cert.status();
      auto key = ReadFile(s.key_file, "--tls-key");
      if (!key.ok()) return key.status();
      opts.pem_cert_chain = *cert;
      opts.pem_private_key = *key;
    }
    if (!s.server_name.empty()) args->SetSslTargetNameOverride(s.server_name);
    creds = grpc::SslCredentials(opts);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  if (!s.token_file.empty()) {
    auto token = ReadFile(s.token_file, "--auth-token-file");
    if (!token.ok()) return token.status();
    std::string t(absl::StripAsciiWhitespace(*token));
    RegisterSecret(t);
    auto call_creds = grpc::MetadataCredentialsFromPlugin(std::make_unique<BearerToken>(t));
    if (s.tls_enabled()) {
      creds = grpc::CompositeChannelCredentials(creds, call_creds);
    } else {
      // gRPC refuses to send call credentials over plaintext; a token without TLS is only
      // meaningful on loopback, where it still guards against other local users.
      creds = grpc::experimental::LocalCredentials(LOCAL_TCP);
      creds = grpc::CompositeChannelCredentials(creds, call_creds);
    }
  }
  return creds;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeSecureChannel(const std::string& target,
                                                                 const TransportSecurity& s) {
  grpc::ChannelArguments args = PeerChannelArguments();
  auto creds = MakeChannelCredentials(s, &args);
  if (!creds.ok()) return creds.status();
  return grpc::CreateCustomChannel(target, *creds, args);
}

}  // namespace anchord::rpc
