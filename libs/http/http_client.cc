#include "libs/http/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace anchord::http {

std::string HttpResponse::Header(absl::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (absl::EqualsIgnoreCase(k, name)) return v;
  }
  return "";
}

namespace {

// curl_global_init is not thread-safe and must run once before any handle exists; a function-local
// static gives exactly that. It is never cleaned up: handles may outlive static destruction order.
void GlobalInitOnce() {
  static const bool done = [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return true;
  }();
  (void)done;
}

// The host of `url` for error messages. Only the host: the path or query might carry something
// a caller did not mean to log.
std::string HostOf(const std::string& url) {
  std::string host = "unknown-host";
  CURLU* u = curl_url();
  if (u == nullptr) return host;
  if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK) {
    char* h = nullptr;
    if (curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK && h != nullptr) {
      host = h;
      curl_free(h);
    }
    char* p = nullptr;
    if (curl_url_get(u, CURLUPART_PORT, &p, 0) == CURLUE_OK && p != nullptr) {
      absl::StrAppend(&host, ":", p);
      curl_free(p);
    }
  }
  curl_url_cleanup(u);
  return host;
}

// Per-transfer state the curl callbacks write into.
struct Transfer {
  HttpResponse* response;
  size_t max_bytes;
  bool too_large = false;
};

size_t OnBody(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * nmemb;
  if (t->response->body.size() + n > t->max_bytes) {
    t->too_large = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  t->response->body.append(data, n);
  return n;
}

size_t OnHeader(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * nmemb;
  absl::string_view line(data, n);
  // A new status line starts a new header block (1xx interim answers): keep only the last one.
  if (absl::StartsWith(line, "HTTP/")) {
    t->response->headers.clear();
    return n;
  }
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return n;
  std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon)));
  std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  if (!name.empty() && t->response->headers.size() < 200) {
    t->response->headers.emplace_back(std::move(name), std::move(value));
  }
  return n;
}

class CurlClient final : public HttpClient {
 public:
  explicit CurlClient(const CurlOptions& options) : options_(options) { GlobalInitOnce(); }

  ~CurlClient() override {
    absl::MutexLock lock(&mu_);
    for (CURL* h : idle_) curl_easy_cleanup(h);
  }

  absl::StatusOr<HttpResponse> Do(const HttpRequest& request) override {
    CURL* h = Take();
    if (h == nullptr) return absl::InternalError("curl_easy_init failed");
    absl::StatusOr<HttpResponse> result = Perform(h, request);
    Give(h);
    return result;
  }

 private:
  // Easy handles are pooled: each keeps its own connection cache, so a handle handed back after a
  // call lets the next caller (any thread) reuse the kept-alive connection.
  CURL* Take() {
    {
      absl::MutexLock lock(&mu_);
      if (!idle_.empty()) {
        CURL* h = idle_.back();
        idle_.pop_back();
        return h;
      }
    }
    return curl_easy_init();
  }
  void Give(CURL* h) {
    absl::MutexLock lock(&mu_);
    if (idle_.size() < kMaxIdle) {
      idle_.push_back(h);
      return;
    }
    curl_easy_cleanup(h);
  }

  absl::StatusOr<HttpResponse> Perform(CURL* h, const HttpRequest& req) {
    // Reset clears options but keeps live connections, the DNS cache and TLS session ids.
    curl_easy_reset(h);
    HttpResponse response;
    Transfer transfer{&response, options_.max_response_bytes};
    char errbuf[CURL_ERROR_SIZE] = {0};

    curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // signals are unsafe with threads
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);  // never forward the bearer key elsewhere
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
    const int64_t timeout_ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(req.timeout));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE,
                     static_cast<curl_off_t>(options_.max_response_bytes));
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!options_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str());
    curl_easy_setopt(h, CURLOPT_USERAGENT, options_.user_agent.c_str());
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");  // any encoding curl can decode
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &OnBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &transfer);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &OnHeader);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &transfer);

    if (req.method == "GET") {
      curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (req.method == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
      if (req.method != "POST") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
      curl_easy_setopt(h, CURLOPT_POST, 1L);
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.data());
    }

    struct curl_slist* headers = nullptr;
    for (const auto& [k, v] : req.headers) {
      headers = curl_slist_append(headers, absl::StrCat(k, ": ", v).c_str());
    }
    // No "Expect: 100-continue" round trip for small JSON bodies.
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);

    const CURLcode rc = curl_easy_perform(h);
    // The slist must live until perform returns; the handle must not keep pointing at it.
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
    curl_slist_free_all(headers);

    if (transfer.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "response from ", HostOf(req.url), " exceeds ", options_.max_response_bytes, " bytes"));
    }
    if (rc != CURLE_OK) {
      // The curl error text names the cause (refused, timeout, TLS, ...); it never contains the
      // request's header values.
      const char* detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
      return absl::UnavailableError(absl::StrCat(req.method, " ", HostOf(req.url), ": ",
                                                 curl_easy_strerror(rc), " (", detail, ")"));
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    response.status = static_cast<int>(status);
    return response;
  }

  static constexpr size_t kMaxIdle = 16;
  const CurlOptions options_;
  absl::Mutex mu_;
  std::vector<CURL*> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<HttpClient> MakeCurlClient(const CurlOptions& options) {
  return std::make_unique<CurlClient>(options);
}

}  // namespace anchord::http
