#include "services/anchorctl/clients.h"

#include <pthread.h>
#include <signal.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "libs/rpc/server.h"
#include "libs/rpc/status.h"

namespace anchord::anchorctl {

Interrupter& Interrupter::Get() {
  static Interrupter* instance = new Interrupter();  // never destroyed: used by a detached thread
  return *instance;
}

void Interrupter::Trigger() {
  absl::MutexLock lock(&mu_);
  interrupted_.store(true);
  for (auto* ctx : contexts_) ctx->TryCancel();
}

bool Interrupter::SleepFor(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(this, &Interrupter::InterruptedOrWoken), d);
  woken_ = false;
  return interrupted_.load();
}

void Interrupter::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

void Interrupter::Register(grpc::ClientContext* ctx) {
  absl::MutexLock lock(&mu_);
  contexts_.insert(ctx);
  if (interrupted_.load()) ctx->TryCancel();
}

void Interrupter::Unregister(grpc::ClientContext* ctx) {
  absl::MutexLock lock(&mu_);
  contexts_.erase(ctx);
}

void StartSignalThread() {
  std::thread([] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    while (true) {
      int sig = 0;
      if (sigwait(&set, &sig) == 0) Interrupter::Get().Trigger();
    }
  }).detach();
}

namespace {
rpc::TransportSecurity& TransportSecuritySetting() {
  static rpc::TransportSecurity* security = new rpc::TransportSecurity();  // never destroyed
  return *security;
}
}  // namespace

void SetTransportSecurity(const rpc::TransportSecurity& security) {
  TransportSecuritySetting() = security;
}

const rpc::TransportSecurity& GetTransportSecurity() { return TransportSecuritySetting(); }

Clients::Clients(Endpoints endpoints, absl::Duration deadline)
    : endpoints_(std::move(endpoints)), deadline_(deadline) {
  // Channels to an empty address are never used: Check() refuses first. A placeholder keeps the
  // stubs valid so no code path can dereference null.
  const rpc::TransportSecurity& security = GetTransportSecurity();
  auto make = [&](const std::string& addr) -> std::shared_ptr<grpc::Channel> {
    const std::string target = addr.empty() ? std::string("127.0.0.1:1") : addr;
    if (!security.tls_enabled() && security.token_file.empty()) return rpc::MakeChannel(target);
    auto channel = rpc::MakeSecureChannel(target, security);
    if (channel.ok()) return *channel;
    if (channel_error_.ok()) channel_error_ = channel.status();
    // Placeholder that is never used for a call: Check() returns channel_error_ first.
    return rpc::MakeChannel(target);
  };
  hasher_channel_ = make(endpoints_.hasher);
  submitter_channel_ = make(endpoints_.submitter);
  poller_channel_ = make(endpoints_.poller);
  hasher_ = anchord::v1::HasherService::NewStub(hasher_channel_);
  poller_ = anchord::v1::PollerService::NewStub(poller_channel_);
  hasher_status_ = anchord::v1::StatusService::NewStub(hasher_channel_);
  submitter_status_ = anchord::v1::StatusService::NewStub(submitter_channel_);
  poller_status_ = anchord::v1::StatusService::NewStub(poller_channel_);
}

void Clients::SetDeadline(grpc::ClientContext* ctx) const {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + deadline_));
}

std::string Clients::Address(const std::string& service) const {
  if (service == "hasher") return endpoints_.hasher;
  if (service == "submitter") return endpoints_.submitter;
  return endpoints_.poller;
}

std::string Clients::Describe(const std::string& service) const {
  return absl::StrCat(service, " at ", Address(service));
}

anchord::v1::StatusService::Stub& Clients::status(const std::string& service) {
  if (service == "hasher") return *hasher_status_;
  if (service == "submitter") return *submitter_status_;
  return *poller_status_;
}

absl::Status Clients::Check(const std::string& service) {
  const std::string addr = Address(service);
  if (addr.empty()) {
    return absl::UnavailableError(absl::StrCat("no address for the ", service, ": pass --", service,
                                               " (or ANCHORD_",
                                               service == "hasher"      ? "HASHER"
                                               : service == "submitter" ? "SUBMITTER"
                                                                        : "POLLER",
                                               "_ADDR), or start a stack with `anchorctl local`"));
  }
  if (!channel_error_.ok()) {
    return absl::Status(channel_error_.code(),
                        absl::StrCat("cannot connect to the ", service, " at ", addr, ": ",
                                     channel_error_.message()));
  }
  auto channel = service == "hasher"      ? hasher_channel_
                 : service == "submitter" ? submitter_channel_
                                          : poller_channel_;
  if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + deadline_))) {
    // A failed TLS handshake looks like an unreachable peer from here; name the likely causes.
    const rpc::TransportSecurity& security = GetTransportSecurity();
    const std::string hint =
        security.tls_enabled()
            ? "is the stack running, does it speak TLS, and does its certificate verify against "
              "--tls-ca (and does it accept --tls-cert)?"
            : "is the stack running (and does it expect TLS: see --tls-ca)?";
    return absl::UnavailableError(absl::StrCat("cannot reach the ", service, " at ", addr,
                                               " (from ", endpoints_.source, "); ", hint));
  }
  return absl::OkStatus();
}

absl::Status Clients::RpcError(const std::string& service, const std::string& method,
                               const grpc::Status& status) const {
  absl::Status s = rpc::FromGrpcStatus(status);
  // "ListProofs: lost the poller at ADDR: ..." when the connection went away, "ListProofs on the
  // poller at ADDR: ..." when the service answered with an error.
  std::string where = status.error_code() == grpc::StatusCode::UNAVAILABLE
                          ? absl::StrCat(": lost the ", Describe(service))
                          : absl::StrCat(" on the ", Describe(service));
  return absl::Status(s.code(), absl::StrCat(method, where, ": ", s.message()));
}

}  // namespace anchord::anchorctl
