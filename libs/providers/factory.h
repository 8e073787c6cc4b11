// Turns command-line flags into providers. Shared by the submitter and the poller so that both
// read the same flags the same way and pace under the same per-key budget.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/common/clock.h"
#include "libs/http/http_client.h"
#include "libs/providers/metrics.h"
#include "libs/providers/provider.h"
#include "libs/ratelimit/rate_limiter.h"

namespace CLI {
class App;
}

namespace anchord::providers {

struct ProviderSettings {
  std::string default_provider = "proofd";
  std::string proofd_url = "https://proofd.id";
  std::string proofd_api_key;
  std::string proofd_api_key_file;
  // This process's share of the per-key budget (documented: 30 creates and 120 requests a minute
  // per key). Two processes sharing a key must split it: the submitter's main defaults to 30/40,
  // the poller's to 0 creates/80.
  int proofd_create_limit = 30;
  int proofd_general_limit = 120;
  double proofd_window_seconds = 60;
  // Which program speaks ("submitter", "poller"): sent in the User-Agent, so the provider (and
  // the sandbox's accounting) can tell the processes sharing a key apart.
  std::string client_name = "anchord";
};

// --provider (ANCHORD_PROVIDER), --proofd-url (ANCHORD_PROOFD_URL), --proofd-api-key
// (ANCHORD_PROOFD_API_KEY), --proofd-api-key-file (ANCHORD_PROOFD_API_KEY_FILE),
// --proofd-create-limit (ANCHORD_PROOFD_CREATE_LIMIT), --proofd-general-limit
// (ANCHORD_PROOFD_GENERAL_LIMIT), --proofd-window-seconds (ANCHORD_PROOFD_WINDOW_SECONDS).
void AddProviderFlags(CLI::App& app, ProviderSettings* s);

using LimiterFactory = std::function<std::unique_ptr<ratelimit::RateLimiter>(
    const std::string& name, ratelimit::RateLimit)>;

// Owns the HTTP client, the limiters and the adapters. Thread-safe after Create.
class ProviderSet {
 public:
  // FAILED_PRECONDITION naming the flag when the API key is missing; INVALID_ARGUMENT for a bad
  // URL, limit or provider name. `metrics` may be null; `clock` must outlive the set.
  static absl::StatusOr<std::unique_ptr<ProviderSet>> Create(const ProviderSettings& settings,
                                                             ProviderMetrics* metrics,
                                                             LimiterFactory limiters = {},
                                                             Clock* clock = Clock::Real());
  ~ProviderSet();

  Provider* Get(const std::string& name);  // null if unknown
  Provider* Default();
  std::vector<Provider*> All();
  ratelimit::RateLimiter* limiter(const std::string& name);  // "proofd.create", "proofd.general"
  // Stops every adapter's pacing waits (shutdown).
  void Stop();

 private:
  ProviderSet() = default;
  std::unique_ptr<http::HttpClient> http_;
  std::map<std::string, std::unique_ptr<ratelimit::RateLimiter>> limiters_;
  std::map<std::string, std::unique_ptr<Provider>> providers_;
  std::string default_;
};

}  // namespace anchord::providers
