// TLS, mutual TLS and bearer tokens on a real server over loopback, with certificates made by the
// openssl CLI for this test run.
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include <grpcpp/impl/codegen/client_unary_call.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "libs/rpc/internal.h"
#include "libs/rpc/security.h"
#include "libs/rpc/server.h"
#include "prometheus/registry.h"

namespace anchord::rpc {
namespace {

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(absl::StrCat(::testing::TempDir(), "/anchord-tls-", getpid()));
    std::string d = *dir_;
    std::string script =
        absl::StrCat("set -e; mkdir -p ", d, "; cd ", d, ";",
                     "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
                     "-subj /CN=anchord-test-ca 2>/dev/null;",
                     // server cert for 127.0.0.1 / localhost
                     "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > san.ext;",
                     "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
                     "-subj /CN=localhost 2>/dev/null;",
                     "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                     "-out server.pem -days 2 -extfile san.ext 2>/dev/null;",
                     "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
                     "-subj /CN=anchord-client 2>/dev/null;",
                     "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                     "-out client.pem -days 2 2>/dev/null;",
                     "printf 'tok-abcdef-123456' > token; printf 'wrong-token-999' > badtoken");
    ASSERT_EQ(std::system(script.c_str()), 0) << "openssl CLI failed";
  }
  static std::string F(const char* name) { return absl::StrCat(*dir_, "/", name); }

  std::unique_ptr<ServerRunner> Start(const TransportSecurity& sec) {
    ServerOptions opts;
    opts.service_name = "tls-test";
    opts.listen_address = "127.0.0.1:0";
    opts.security = sec;
    auto runner = ServerRunner::Start(opts, {}, std::make_shared<prometheus::Registry>());
    EXPECT_TRUE(runner.ok()) << runner.status();
    return runner.ok() ? std::move(*runner) : nullptr;
  }

  static grpc::Status Check(const std::shared_ptr<grpc::Channel>& ch) {
    auto stub = grpc::health::v1::Health::NewStub(ch);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    return stub->Check(&ctx, req, &resp);
  }

  static std::string* dir_;
};
std::string* SecurityTest::dir_ = nullptr;

TEST_F(SecurityTest, TlsServerRefusesPlaintextAndAcceptsVerifiedTls) {
  TransportSecurity server{F("server.pem"), F("server.key"), "", "", ""};
  auto runner = Start(server);
  ASSERT_NE(runner, nullptr);
  std::string target = absl::StrCat("127.0.0.1:", runner->port());

  EXPECT_FALSE(Check(MakeChannel(target)).ok()) << "plaintext must not reach a TLS port";

  TransportSecurity client;
  client.ca_file = F("ca.pem");
  auto ch = MakeSecureChannel(target, client);
  ASSERT_TRUE(ch.ok());
  grpc::Status st = Check(*ch);
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(SecurityTest, MutualTlsRequiresAClientCertificate) {
  TransportSecurity server{F("server.pem"), F("server.key"), F("ca.pem"), "", ""};
  auto runner = Start(server);
  ASSERT_NE(runner, nullptr);
  std::string target = absl::StrCat("127.0.0.1:", runner->port());

  TransportSecurity anon;
  anon.ca_file = F("ca.pem");
  EXPECT_FALSE(Check(*MakeSecureChannel(target, anon)).ok());

  TransportSecurity with_cert{F("client.pem"), F("client.key"), F("ca.pem"), "", ""};
  grpc::Status st = Check(*MakeSecureChannel(target, with_cert));
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(SecurityTest, BearerTokenOrClientCertificate) {
  TransportSecurity server{F("server.pem"), F("server.key"), F("ca.pem"), F("token"), ""};
  auto runner = Start(server);
  ASSERT_NE(runner, nullptr);
  std::string target = absl::StrCat("127.0.0.1:", runner->port());

  TransportSecurity anon;
  anon.ca_file = F("ca.pem");
  grpc::Status st = Check(*MakeSecureChannel(target, anon));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();

  TransportSecurity wrong = anon;
  wrong.token_file = F("badtoken");
  EXPECT_EQ(Check(*MakeSecureChannel(target, wrong)).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  TransportSecurity token = anon;
  token.token_file = F("token");
  st = Check(*MakeSecureChannel(target, token));
  EXPECT_TRUE(st.ok()) << st.error_message();

  TransportSecurity cert{F("client.pem"), F("client.key"), F("ca.pem"), "", ""};
  st = Check(*MakeSecureChannel(target, cert));
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(SecurityTest, MisconfigurationIsAClearError) {
  TransportSecurity half;
  half.cert_file = F("server.pem");
  auto creds = MakeServerCredentials(half);
  ASSERT_FALSE(creds.ok());
  EXPECT_NE(creds.status().message().find("--tls-key"), absl::string_view::npos);
  TransportSecurity missing{F("nope.pem"), F("server.key"), "", "", ""};
  creds = MakeServerCredentials(missing);
  ASSERT_FALSE(creds.ok());
  EXPECT_NE(creds.status().message().find("nope.pem"), absl::string_view::npos);
}

// A port already served is refused at start, naming the address, instead of being shared with
// the process that serves it (gRPC's default SO_REUSEPORT let two services of a test cluster
// listen on one port, each getting part of the connections).
TEST(ServerRunnerTest, APortAlreadyServedIsRefusedNotShared) {
  ServerOptions first;
  first.service_name = "first";
  first.listen_address = "127.0.0.1:0";
  auto a = ServerRunner::Start(first, {}, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(a.ok()) << a.status();
  ServerOptions second = first;
  second.service_name = "second";
  second.listen_address = absl::StrCat("127.0.0.1:", (*a)->port());
  auto b = ServerRunner::Start(second, {}, std::make_shared<prometheus::Registry>());
  ASSERT_FALSE(b.ok()) << "a second server was started on port " << (*a)->port();
  EXPECT_NE(b.status().message().find(second.listen_address), absl::string_view::npos)
      << b.status();
}

// Callers can name any method; only the methods the server implements become label values. Before
// the fix every invented name (5,000 characters here) added its own series.
TEST(RpcMetricsTest, UnknownMethodsShareOneSeries) {
  auto registry = std::make_shared<prometheus::Registry>();
  ServerOptions opts;
  opts.service_name = "metrics-test";
  opts.health_service_names = {"grpc.health.v1.Health"};
  auto runner = ServerRunner::Start(opts, {}, registry);
  ASSERT_TRUE(runner.ok()) << runner.status();
  auto ch = MakeChannel(absl::StrCat("127.0.0.1:", (*runner)->port()));
  for (int i = 0; i < 3; ++i) {
    const std::string name = absl::StrCat("/anchord.v1.PollerService/", std::string(5000, 'a' + i));
    grpc::internal::RpcMethod method(name.c_str(), grpc::internal::RpcMethod::NORMAL_RPC);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status st = grpc::internal::BlockingUnaryCall(ch.get(), method, &ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  {
    auto stub = grpc::health::v1::Health::NewStub(ch);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    EXPECT_TRUE(stub->Check(&ctx, req, &resp).ok());
  }
  (*runner)->Shutdown();  // every PRE_SEND_STATUS has run
  std::set<std::string> methods;
  for (const auto& family : registry->Collect()) {
    if (family.name != "anchord_rpc_duration_seconds") continue;
    for (const auto& m : family.metric) {
      for (const auto& l : m.label) {
        if (l.name == "method") methods.insert(l.value);
      }
    }
  }
  EXPECT_EQ(methods, (std::set<std::string>{"Health/Check", "unknown"}));
}

// The internal port's credentials refuse configurations that would admit strangers.
TEST_F(SecurityTest, InternalPortNeedsATokenOrMutualTlsOffLoopback) {
  InternalEndpoint open_wide{"0.0.0.0:0", "", ""};
  auto creds = MakeInternalServerCredentials(TransportSecurity{}, open_wide);
  ASSERT_FALSE(creds.ok());
  EXPECT_NE(creds.status().message().find("--internal-listen"), absl::string_view::npos);
  TransportSecurity tls_only{F("server.pem"), F("server.key"), "", "", ""};
  creds = MakeInternalServerCredentials(tls_only, InternalEndpoint{"127.0.0.1:0", "", ""});
  ASSERT_FALSE(creds.ok());
  EXPECT_NE(creds.status().message().find("--internal-token-file"), absl::string_view::npos);
  EXPECT_TRUE(
      MakeInternalServerCredentials(TransportSecurity{}, InternalEndpoint{"127.0.0.1:0", "", ""})
          .ok());
  EXPECT_TRUE(MakeInternalServerCredentials(TransportSecurity{},
                                            InternalEndpoint{"0.0.0.0:0", "", F("token")})
                  .ok());
  TransportSecurity mtls{F("server.pem"), F("server.key"), F("ca.pem"), "", ""};
  EXPECT_TRUE(MakeInternalServerCredentials(mtls, InternalEndpoint{"0.0.0.0:0", "", ""}).ok());
}

}  // namespace
}  // namespace anchord::rpc
