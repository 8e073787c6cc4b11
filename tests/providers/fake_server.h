// A canned-answer HTTP server on 127.0.0.1 for adapter tests: every request is recorded and
// answered by the test's handler (or the next queued answer).
#pragma once

#include <httplib.h>

#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "tests/testing/wait.h"

namespace anchord::testing {

struct Canned {
  int status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string content_type = "application/json";
};

struct Seen {
  std::string method;
  std::string path;
  std::multimap<std::string, std::string> params;
  httplib::Headers headers;
  std::string body;
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  std::string Param(const std::string& name) const {
    auto it = params.find(name);
    return it == params.end() ? "" : it->second;
  }
};

class FakeServer {
 public:
  using Handler = std::function<Canned(const Seen&)>;

  FakeServer() {
    auto h = [this](const httplib::Request& req, httplib::Response& res) {
      Seen seen{
          req.method, req.path, {req.params.begin(), req.params.end()}, req.headers, req.body};
      Canned c;
      {
        std::lock_guard<std::mutex> lock(mu_);
        seen_.push_back(seen);
        if (!queue_.empty()) {
          c = queue_.front();
          queue_.pop_front();
        } else if (handler_) {
          c = handler_(seen);
        } else {
          c.status = 500;
          c.body = R"({"error":{"code":"INTERNAL_ERROR","message":"no canned answer"}})";
        }
      }
      res.status = c.status;
      for (const auto& [k, v] : c.headers) res.set_header(k, v);
      res.set_content(c.body, c.content_type.c_str());
    };
    // Without it, headers and body leave in two segments and Nagle + delayed ACK add 40 ms.
    svr_.set_tcp_nodelay(true);
    svr_.Get(".*", h);
    svr_.Post(".*", h);
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    WaitUntil([this] { return svr_.is_running(); }, absl::Seconds(5));
  }
  ~FakeServer() { Shutdown(); }

  void Shutdown() {
    svr_.stop();
    if (thread_.joinable()) thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

  void Push(Canned c) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(c));
  }
  void SetHandler(Handler h) {
    std::lock_guard<std::mutex> lock(mu_);
    handler_ = std::move(h);
  }
  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  httplib::Server svr_;
  int port_ = -1;
  std::thread thread_;
  std::mutex mu_;
  std::deque<Canned> queue_;
  Handler handler_;
  std::vector<Seen> seen_;
};

}  // namespace anchord::testing
