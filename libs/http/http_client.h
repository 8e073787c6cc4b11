// The HTTP client providers are spoken through. The interface exists so that a provider adapter
// can be exercised against the sandbox over real loopback HTTP in tests and against the real
// provider in production with the same code.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace anchord::http {

struct HttpRequest {
  std::string method = "GET";  // GET, POST, ...
  std::string url;             // absolute URL, http:// or https://
  // Header name/value pairs, sent as given. Authorization values are never logged.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  absl::Duration timeout = absl::Seconds(30);
};

struct HttpResponse {
  int status = 0;
  // Header names lowercased; values with surrounding whitespace trimmed.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The value of the first header named `name` (case-insensitive), or "" when absent.
  std::string Header(absl::string_view name) const;
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // Sends the request and returns the response of any HTTP status. Errors are transport failures
  // only: UNAVAILABLE for connection refused/reset/timeout/truncated body, with a message that
  // names the URL's host and the cause (never a header value), RESOURCE_EXHAUSTED when the body
  // exceeds max_response_bytes. Thread-safe.
  virtual absl::StatusOr<HttpResponse> Do(const HttpRequest& request) = 0;
};

struct CurlOptions {
  // Bodies larger than this are refused (a hostile or broken server cannot exhaust memory).
  size_t max_response_bytes = 16 * 1024 * 1024;
  absl::Duration connect_timeout = absl::Seconds(10);
  // CA bundle for https; empty uses the system default.
  std::string ca_file;
  std::string user_agent = "anchord/0.1";
};

// libcurl-backed client. Connections are kept alive and reused across calls and threads.
std::unique_ptr<HttpClient> MakeCurlClient(const CurlOptions& options = {});

}  // namespace anchord::http
