#include "libs/rpc/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/support/server_interceptor.h>
#include <prometheus/histogram.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <climits>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <set>
#include <system_error>
#include <thread>

#include <google/protobuf/descriptor.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_split.h"
#include "libs/common/atomic_file.h"
#include "libs/common/log.h"
#include "libs/common/status_macros.h"

namespace anchord::rpc {
namespace {}  // namespace

// Calls that have not sent their status yet, for the drain (see ServerRunner::Shutdown).
class ActiveCalls {
 public:
  void Add(int64_t n) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    count_ += n;
  }
  // Waits until no call is open, at most `timeout`.
  void AwaitNone(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &ActiveCalls::None), timeout);
  }

 private:
  bool None() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return count_ <= 0; }

  absl::Mutex mu_;
  int64_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

namespace {

// Records anchord_rpc_duration_seconds{service,method,code} for every RPC: start at the arrival of
// the initial metadata, end when the status is sent. Also counts the calls still open.
class LatencyInterceptor final : public grpc::experimental::Interceptor {
 public:
  LatencyInterceptor(grpc::experimental::ServerRpcInfo* info,
                     prometheus::Family<prometheus::Histogram>* family, std::string service,
                     const std::set<std::string>* known, ActiveCalls* active)
      : info_(info),
        family_(family),
        service_(std::move(service)),
        known_(known),
        active_(active),
        start_(std::chrono::steady_clock::now()) {
    active_->Add(1);
  }
  // A call destroyed without a status (never started by the application) stops counting too.
  ~LatencyInterceptor() override {
    if (!status_sent_) active_->Add(-1);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) &&
        !status_sent_) {
      status_sent_ = true;
      active_->Add(-1);
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status st = methods->GetSendStatus();
      double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      // Only methods this server implements become label values: a caller inventing method names
      // (any length, any bytes) would otherwise add series without bound.
      std::string method = "unknown";
      if (info_->method() != nullptr && known_->count(info_->method()) > 0) {
        // "/anchord.v1.HasherService/HashTree" -> "HasherService/HashTree"
        method = info_->method();
        auto dot = method.rfind('.');
        if (dot != std::string::npos) method = method.substr(dot + 1);
      }
      family_
          ->Add({{"service", service_},
                 {"method", method},
                 {"code", std::to_string(static_cast<int>(st.error_code()))}},
                prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5,
                                                        30, 120, 600})
          .Observe(secs);
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* info_;
  prometheus::Family<prometheus::Histogram>* family_;
  std::string service_;
  const std::set<std::string>* known_;
  ActiveCalls* active_;
  bool status_sent_ = false;
  std::chrono::steady_clock::time_point start_;
};

class LatencyInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  LatencyInterceptorFactory(prometheus::Family<prometheus::Histogram>* family, std::string service,
                            std::set<std::string> known, ActiveCalls* active)
      : family_(family), service_(std::move(service)), known_(std::move(known)), active_(active) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new LatencyInterceptor(info, family_, service_, &known_, active_);
  }

 private:
  prometheus::Family<prometheus::Histogram>* family_;
  std::string service_;
  std::set<std::string> known_;  // "/package.Service/Method" of every method served
  ActiveCalls* active_;          // shared by the public and the internal server
};

// Full method paths of the named services (from the generated descriptors), plus the health and
// reflection services every server carries.
std::set<std::string> KnownMethods(const std::vector<std::string>& service_names) {
  std::set<std::string> out;
  std::vector<std::string> names = service_names;
  names.insert(names.end(), {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                             "grpc.reflection.v1.ServerReflection"});
  for (const std::string& name : names) {
    const google::protobuf::ServiceDescriptor* sd =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
    if (sd == nullptr) continue;
    for (int i = 0; i < sd->method_count(); ++i) {
      out.insert(absl::StrCat("/", name, "/", sd->method(i)->name()));
    }
  }
  // The health and reflection descriptors may live outside the generated pool.
  out.insert({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
              "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
              "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"});
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServerRunner>> ServerRunner::Start(
    const ServerOptions& options, const std::vector<grpc::Service*>& services,
    std::shared_ptr<prometheus::Registry> registry,
    const std::vector<grpc::Service*>& internal_services) {
  std::unique_ptr<ServerRunner> runner(new ServerRunner());
  runner->options_ = options;
  runner->registry_ = registry;

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  auto creds = MakeServerCredentials(options.security);
  if (!creds.ok()) return creds.status();
  auto& latency = prometheus::BuildHistogram()
                      .Name("anchord_rpc_duration_seconds")
                      .Help("Duration of served gRPC calls, by method and status code.")
                      .Register(*registry);
  // One count for both servers: the drain waits for the internal port's streams (Track) too.
  runner->active_ = std::make_unique<ActiveCalls>();
  auto configure = [&](grpc::ServerBuilder& builder) {
    builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
    // gRPC listens with SO_REUSEPORT unless told not to: a second process started on a port
    // already served (another service given the same port, a replica not yet gone) would then
    // share it silently, the kernel handing each of them part of the connections. Off, it fails
    // at start naming the address (a hasher and a submitter once shared a port in a test run).
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
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
          static_cast<int>(
              std::min<int64_t>(absl::ToInt64Milliseconds(options.max_connection_age), INT32_MAX)));
    }
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(std::make_unique<LatencyInterceptorFactory>(
        &latency, options.service_name, KnownMethods(options.health_service_names),
        runner->active_.get()));
    builder.experimental().SetInterceptorCreators(std::move(creators));
  };

  // The internal server first: its port file must exist before the public one appears, which is
  // what a supervisor waits for.
  if (!internal_services.empty() && !options.internal.listen_address.empty()) {
    auto internal_creds = MakeInternalServerCredentials(options.security, options.internal);
    if (!internal_creds.ok()) return internal_creds.status();
    grpc::ServerBuilder builder;
    builder.AddListeningPort(options.internal.listen_address, *internal_creds,
                             &runner->internal_port_);
    for (grpc::Service* s : internal_services) builder.RegisterService(s);
    configure(builder);
    runner->internal_server_ = builder.BuildAndStart();
    if (runner->internal_server_ == nullptr || runner->internal_port_ == 0) {
      return absl::UnavailableError(absl::StrCat("--internal-listen: cannot listen on ",
                                                 options.internal.listen_address,
                                                 " (address in use or invalid)"));
    }
    runner->internal_server_->GetHealthCheckService()->SetServingStatus("", true);
    if (!options.internal.port_file.empty()) {
      absl::Status st =
          WriteFileAtomically(options.internal.port_file, std::to_string(runner->internal_port_));
      if (!st.ok()) return st;
    }
  }

  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, *creds, &runner->port_);
  for (grpc::Service* s : services) builder.RegisterService(s);
  configure(builder);
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
      return absl::UnavailableError(
          absl::StrCat("metrics: cannot listen on ", options.metrics_address, ": ", e.what()));
    }
    runner->exposer_->RegisterCollectable(registry);
  }
  // The gRPC port file is the readiness signal callers wait for (anchorctl's local stack reads
  // every other file once it appears), so it is written last.
  if (!options.metrics_port_file.empty() && runner->exposer_) {
    absl::Status st =
        WriteFileAtomically(options.metrics_port_file, std::to_string(runner->metrics_port()));
    if (!st.ok()) return st;
  }
  if (!options.port_file.empty()) {
    absl::Status st = WriteFileAtomically(options.port_file, std::to_string(runner->port_));
    if (!st.ok()) return st;
  }
  ANCHORD_LOG(Info) << options.service_name << " listening on port " << runner->port_
                    << (runner->internal_server_
                            ? absl::StrCat(", internal port ", runner->internal_port_)
                            : std::string())
                    << (runner->exposer_
                            ? absl::StrCat(", metrics on port ", runner->metrics_port())
                            : std::string());
  return runner;
}

int ServerRunner::metrics_port() const {
  if (!exposer_) return 0;
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void ServerRunner::SetServing(bool serving) {
  absl::MutexLock lock(&health_mu_);
  if (shut_down_) return;
  auto* health = server_->GetHealthCheckService();
  for (const auto& name : options_.health_service_names) health->SetServingStatus(name, serving);
  health->SetServingStatus("", serving);
  if (internal_server_) {
    internal_server_->GetHealthCheckService()->SetServingStatus("", serving);
  }
}

void ServerRunner::Shutdown() {
  {
    absl::MutexLock lock(&health_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (server_) server_->GetHealthCheckService()->Shutdown();
  if (internal_server_) internal_server_->GetHealthCheckService()->Shutdown();
  // Waits for the open calls on both ports (each service has already told its long-lived streams
  // to end once their items in flight are answered), up to the grace period, then shuts the servers
  // down with an immediate deadline. gRPC's own Shutdown(grace) was measured to wait seconds even
  // with no call open (gRPC 1.51), which every `archive --local` paid at exit.
  if (active_) active_->AwaitNone(options_.shutdown_grace);  // null when Start failed early
  // The public server first (callers stop arriving), then the internal one.
  const auto now = std::chrono::system_clock::now();
  if (server_) {
    server_->Shutdown(now);
    server_->Wait();
  }
  if (internal_server_) {
    internal_server_->Shutdown(now);
    internal_server_->Wait();
  }
}

ServerRunner::~ServerRunner() {
  Shutdown();
  if (!exposer_) return;
  // The metrics server (civetweb) notices its stop only when its accept loop's poll returns, which
  // without traffic is after a 2-second quantum: every service's exit waited for it. A connection
  // to the metrics port makes the poll return at once; repeated until the exposer is gone, since a
  // connection accepted just before the stop flag was set does not count.
  const int port = metrics_port();
  std::atomic<bool> gone{false};
  std::thread waker([port, &gone] {
    for (int i = 0; i < 200 && !gone.load(); ++i) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      if (fd >= 0) {
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<uint16_t>(port));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        (void)connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
        close(fd);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  exposer_.reset();
  gone = true;
  waker.join();
}

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
