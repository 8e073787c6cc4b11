#include "libs/rpc/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/support/server_interceptor.h>
#include <prometheus/histogram.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/common/log.h"

namespace anchord::rpc {
namespace {

// Records anchord_rpc_duration_seconds{service,method,code} for every RPC: start at the arrival of
// the initial metadata, end when the status is sent.
class LatencyInterceptor final : public grpc::experimental::Interceptor {
 public:
  LatencyInterceptor(grpc::experimental::ServerRpcInfo* info,
                     prometheus::Family<prometheus::Histogram>* family, std::string service)
      : info_(info), family_(family), service_(std::move(service)),
        start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status st = methods->GetSendStatus();
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      std::string method = info_->method() ? info_->method() : "unknown";
      // "/anchord.v1.HasherService/HashTree" -> "HasherService/HashTree"
      auto dot = method.rfind('.');
      if (dot != std::string::npos) method = method.substr(dot + 1);
      family_
          ->Add({{"service", service_}, {"method", method},
                 {"code", std::to_string(static_cast<int>(st.error_code()))}},
                prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1,
                                                         5, 30, 120, 600})
          .Observe(secs);
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* info_;
  prometheus::Family<prometheus::Histogram>* family_;
  std::string service_;
  std::chrono::steady_clock::time_point start_;
};

class LatencyInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  LatencyInterceptorFactory(prometheus::Family<prometheus::Histogram>* family, std::string service)
      : family_(family), service_(std::move(service)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new LatencyInterceptor(info, family_, service_);
  }

 private:
  prometheus::Family<prometheus::Histogram>* family_;
  std::string service_;
};

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, const std::string& content) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
    out << content;
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ServerRunner>> ServerRunner::Start(
    const ServerOptions& options, const std::vector<grpc::Service*>& services,
    std::shared_ptr<prometheus::Registry> registry) {
  std::unique_ptr<ServerRunner> runner(new ServerRunner());
  runner->options_ = options;
  runner->registry_ = registry;

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  auto creds = MakeServerCredentials(options.security);
  if (!creds.ok()) return creds.status();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, *creds, &runner->port_);
  for (grpc::Service* s : services) builder.RegisterService(s);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  if (options.max_connection_age != absl::InfiniteDuration()) {
    // GOAWAY after the age; the grace stays unlimited, so a stream in progress is never cut by
    // this (it ends at its own deadline, and the caller reopens it on another replica).
    builder.AddChannelArgument(
        GRPC_ARG_MAX_CONNECTION_AGE_MS,
        static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(options.max_connection_age),
                                           INT32_MAX)));
  }

  auto& latency = prometheus::BuildHistogram()
                      .Name("anchord_rpc_duration_seconds")
                      .Help("Duration of served gRPC calls, by method and status code.")
                      .Register(*registry);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<LatencyInterceptorFactory>(&latency, options.service_name));
  builder.experimental().SetInterceptorCreators(std::move(creators));

  runner->server_ = builder.BuildAndStart();
  if (runner->server_ == nullptr || runner->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen_address, " (address in use or invalid)"));
  }
  auto* health = runner->server_->GetHealthCheckService();
  for (const auto& name : options.health_service_names) health->SetServingStatus(name, true);
  health->SetServingStatus("", true);

  if (!options.metrics_address.empty()) {
    try {
      runner->exposer_ = std::make_unique<prometheus::Exposer>(options.metrics_address);
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ",
                                                 options.metrics_address, ": ", e.what()));
    }
    runner->exposer_->RegisterCollectable(registry);
  }
  if (!options.port_file.empty()) {
    absl::Status st = WriteFileAtomically(options.port_file, std::to_string(runner->port_));
    if (!st.ok()) return st;
  }
  if (!options.metrics_port_file.empty() && runner->exposer_) {
    absl::Status st =
        WriteFileAtomically(options.metrics_port_file, std::to_string(runner->metrics_port()));
    if (!st.ok()) return st;
  }
  ANCHORD_LOG(Info) << options.service_name << " listening on port " << runner->port_
                    << (runner->exposer_ ? absl::StrCat(", metrics on port ",
                                                        runner->metrics_port())
                                         : std::string());
  return runner;
}

int ServerRunner::metrics_port() const {
  if (!exposer_) return 0;
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void ServerRunner::SetServing(bool serving) {
  std::lock_guard<std::mutex> lock(health_mu_);
  if (shut_down_) return;
  auto* health = server_->GetHealthCheckService();
  for (const auto& name : options_.health_service_names) health->SetServingStatus(name, serving);
  health->SetServingStatus("", serving);
}

void ServerRunner::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(health_mu_);
    if (shut_down_) return;
    shut_down_ = true;
    server_->GetHealthCheckService()->Shutdown();
  }
  server_->Shutdown(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(absl::ToInt64Milliseconds(options_.shutdown_grace)));
  server_->Wait();
}

ServerRunner::~ServerRunner() { Shutdown(); }

void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A peer closing a socket mid-write must be an error return, not process death.
  signal(SIGPIPE, SIG_IGN);
}

int WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
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

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   PeerChannelArguments());
}

void AddConnectionFlags(CLI::App& app, ServerOptions* options) {
  app.add_option_function<double>(
         "--max-connection-age-seconds",
         [options](double seconds) {
           options->max_connection_age =
               seconds > 0 ? absl::Seconds(seconds) : absl::InfiniteDuration();
         },
         "close each client connection gracefully after this long (GOAWAY; calls in progress "
         "finish), so clients re-resolve DNS and spread over new replicas; 0 = never")
      ->envname("ANCHORD_MAX_CONNECTION_AGE_SECONDS")
      ->check(CLI::Range(0.0, 30.0 * 86400));
}

}  // namespace anchord::rpc
