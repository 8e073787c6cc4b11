#include "libs/http/http_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "tests/providers/fake_server.h"

namespace anchord::http {
namespace {

using anchord::testing::Canned;
using anchord::testing::FakeServer;
using anchord::testing::Seen;

TEST(CurlClient, SendsRequestAndReadsResponse) {
  FakeServer server;
  server.SetHandler([](const Seen& s) {
    Canned c;
    c.status = 418;
    c.body = s.method + " " + s.path + " " + s.Header("X-Test") + " " + s.body;
    c.headers = {{"X-Request-Id", "  abc  "}, {"X-Other", "1"}};
    c.content_type = "text/plain";
    return c;
  });
  auto client = MakeCurlClient();
  HttpRequest req;
  req.method = "POST";
  req.url = server.url() + "/p?q=1";
  req.headers = {{"X-Test", "hello"}, {"Content-Type", "application/json"}};
  req.body = "{}";
  auto resp = client->Do(req);
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->status, 418);
  EXPECT_EQ(resp->body, "POST /p hello {}");
  EXPECT_EQ(resp->Header("x-request-id"), "abc");
  EXPECT_EQ(resp->Header("X-REQUEST-ID"), "abc");
  EXPECT_EQ(resp->Header("missing"), "");
  for (const auto& [k, v] : resp->headers) EXPECT_EQ(k, absl::AsciiStrToLower(k));
}

TEST(CurlClient, ResponseSizeCap) {
  FakeServer server;
  server.SetHandler([](const Seen&) {
    Canned c;
    c.body = std::string(5000, 'x');
    return c;
  });
  CurlOptions options;
  options.max_response_bytes = 1000;
  auto client = MakeCurlClient(options);
  HttpRequest req;
  req.url = server.url() + "/big";
  auto resp = client->Do(req);
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kResourceExhausted) << resp.status();
}

TEST(CurlClient, ConnectionRefusedIsUnavailableNamingHostNotHeaders) {
  int port;
  {
    FakeServer server;
    port = server.port();
  }
  auto client = MakeCurlClient();
  HttpRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(port) + "/x?secret=1";
  req.headers = {{"Authorization", "Bearer very-secret-value"}};
  auto resp = client->Do(req);
  ASSERT_EQ(resp.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(resp.status().message(), "127.0.0.1")) << resp.status();
  EXPECT_FALSE(absl::StrContains(resp.status().message(), "very-secret-value"));
  EXPECT_FALSE(absl::StrContains(resp.status().message(), "secret=1"));
}

TEST(CurlClient, RejectsNonHttpSchemes) {
  auto client = MakeCurlClient();
  HttpRequest req;
  req.url = "file:///etc/passwd";
  auto resp = client->Do(req);
  EXPECT_FALSE(resp.ok());
}

TEST(CurlClient, ConcurrentCallsShareTheClient) {
  FakeServer server;
  server.SetHandler([](const Seen& s) {
    Canned c;
    c.body = s.path;
    return c;
  });
  auto client = MakeCurlClient();
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        HttpRequest req;
        const std::string path = "/t" + std::to_string(t) + "/" + std::to_string(i);
        req.url = server.url() + path;
        auto resp = client->Do(req);
        if (resp.ok() && resp->status == 200 && resp->body == path) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 100);
}

}  // namespace
}  // namespace anchord::http
