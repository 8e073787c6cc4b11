#include "services/poller/webhook.h"

#include <httplib.h>

#include <chrono>
#include <thread>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/common/validate.h"

namespace anchord::poller {
namespace {

constexpr size_t kMaxBody = 64 * 1024;

void Answer(httplib::Response& res, int status, const std::string& msg) {
  res.status = status;
  // The same envelope SimpleProof documents for callback answers.
  nlohmann::json j;
  j["ok"] = status / 100 == 2;
  j["msg"] = msg;
  res.set_content(j.dump(), "application/json");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Webhook>> Webhook::Start(
    const std::string& address, std::map<std::string, providers::Provider*> providers,
    PollEngine* engine, PollerMetrics* metrics) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--webhook-listen: expected host:port, got \"", address, "\""));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  std::unique_ptr<Webhook> w(new Webhook());
  w->server_ = std::make_unique<httplib::Server>();
  w->server_->set_payload_max_length(kMaxBody);
  w->server_->Post(
      R"(/callbacks/([a-z0-9_-]{1,32}))",
      [providers, engine, metrics](const httplib::Request& req, httplib::Response& res) {
        const std::string name = req.matches[1];
        auto it = providers.find(name);
        // The provider label is one of the configured names: a caller inventing names must not
        // create metric series.
        const std::string label = it == providers.end() ? std::string("unknown") : name;
        auto count = [&](const char* result) {
          if (metrics) metrics->CountLookup(label, absl::StrCat("callback_", result));
        };
        if (it == providers.end()) {
          count("unknown_provider");
          return Answer(
              res, 404,
              absl::StrCat("no provider named \"", QuoteCallerText(name), "\" is configured"));
        }
        absl::StatusOr<Digest> digest = it->second->ParseCallback(req.body);
        if (!digest.ok()) {
          count("malformed");
          ANCHORD_LOG(Warning) << "callback for " << name << " rejected: " << digest.status();
          return Answer(res, 400, std::string(digest.status().message()));
        }
        if (!engine->Hint(name, *digest)) {
          count("unknown_digest");
          ANCHORD_LOG(Warning) << "callback for " << name << " names " << digest->hex()
                               << ", which is not a pending proof here; ignored";
          return Answer(res, 404, "no pending proof of this hash");
        }
        count("accepted");
        ANCHORD_LOG(Info) << "callback for " << name << " names " << digest->hex()
                          << "; checking it";
        return Answer(res, 200, "Notification received; the proof will be checked.");
      });
  if (port == 0) {
    port = w->server_->bind_to_any_port(host);
    if (port <= 0)
      return absl::UnavailableError(absl::StrCat("--webhook-listen: cannot bind ", address));
  } else if (!w->server_->bind_to_port(host, port)) {
    return absl::UnavailableError(absl::StrCat("--webhook-listen: cannot bind ", address));
  }
  w->port_ = port;
  httplib::Server* server = w->server_.get();
  w->thread_ = std::thread([server] { server->listen_after_bind(); });
  // httplib's stop() is a no-op until the accept loop runs: wait for it (bounded), or a Stop()
  // right after Start() would leave listen running and the join hanging.
  for (int i = 0; i < 5000 && !server->is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!server->is_running()) {
    return absl::InternalError(
        absl::StrCat("--webhook-listen: HTTP server on ", address, " did not start"));
  }
  return w;
}

Webhook::~Webhook() { Stop(); }

void Webhook::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace anchord::poller
