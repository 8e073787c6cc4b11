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
  // The provider new digests are anchored with. Empty chooses by the rule below: "proofd" when a
  // proofd key is configured, else "ots" (free, no account needed).
  std::string default_provider;
  // Comma-separated names of further providers to enable. The enabled set is the default
  // provider, every name here, and every provider whose key is configured. An enabled provider
  // without its key fails Create (FAILED_PRECONDITION naming the flag).
  std::string providers;

  std::string proofd_url = "https://proofd.id";
  std::string proofd_api_key;
  std::string proofd_api_key_file;
  // This process's share of the per-key budget (documented: 30 creates and 120 requests a minute
  // per key). Two processes sharing a key must split it: the submitter's main defaults to 30/40,
  // the poller's to 0 creates/80.
  int proofd_create_limit = 30;
  int proofd_general_limit = 120;
  double proofd_window_seconds = 60;

  // ProofLedger v1. The create limit is not documented (the worker script runs 5 threads and
  // backs off on 429); the verify budget is the document's 120 per hour per IP, shared by every
  // process on the host.
  std::string proofledger_url = "https://proofledger.io";
  std::string proofledger_api_key;
  std::string proofledger_api_key_file;
  int proofledger_create_limit = 30;
  double proofledger_window_seconds = 60;
  int proofledger_verify_limit = 120;
  double proofledger_verify_window_seconds = 3600;

  // SimpleProof. The rate limit is not documented; every request counts.
  std::string simpleproof_url = "https://app.simpleproof.com";
  std::string simpleproof_api_key;
  std::string simpleproof_api_key_file;
  int simpleproof_limit = 60;
  double simpleproof_window_seconds = 60;
  std::string simpleproof_callback_url;  // empty: no callbacks
  int simpleproof_batch_size = 25;       // 1..25 digests per create request

  // OpenTimestamps calendars: comma-separated bare origins; empty means the four public
  // aggregators `ots stamp` uses.
  std::string ots_calendars;
  int ots_min_calendars = 2;
  double ots_timeout_seconds = 5;
  int ots_calendar_limit = 60;  // requests per minute per calendar (politeness)

  // RFC 3161 TSAs: comma-separated endpoint URLs tried in order (fail-over), the PEM trust anchors,
  // optional credentials file ("Basic USER:PASSWORD" or "Bearer TOKEN"), pacing per TSA.
  std::string tsa_urls;
  std::string tsa_ca_file;
  std::string tsa_auth_file;
  int tsa_limit = 60;  // requests per window per TSA
  double tsa_window_seconds = 60;
  double tsa_timeout_seconds = 10;

  // Which program speaks ("submitter", "poller"): sent in the User-Agent, so the provider (and
  // the sandbox's accounting) can tell the processes sharing a key apart.
  std::string client_name = "anchord";
};

// The names ProviderSet knows.
std::vector<std::string> KnownProviders();

// --provider (ANCHORD_PROVIDER), --providers (ANCHORD_PROVIDERS); proofd: --proofd-url,
// --proofd-api-key, --proofd-api-key-file, --proofd-create-limit, --proofd-general-limit,
// --proofd-window-seconds; ProofLedger: --proofledger-url, --proofledger-api-key,
// --proofledger-api-key-file, --proofledger-create-limit, --proofledger-window-seconds,
// --proofledger-verify-limit, --proofledger-verify-window-seconds; SimpleProof:
// --simpleproof-url, --simpleproof-api-key, --simpleproof-api-key-file, --simpleproof-limit,
// --simpleproof-window-seconds, --simpleproof-callback-url, --simpleproof-batch-size;
// calendars: --ots-calendars, --ots-min-calendars, --ots-timeout-seconds, --ots-calendar-limit;
// TSAs: --tsa-url, --tsa-ca-file, --tsa-auth-file, --tsa-limit, --tsa-window-seconds,
// --tsa-timeout-seconds.
// Each flag's environment variable is ANCHORD_ + the flag in upper snake case.
void AddProviderFlags(CLI::App& app, ProviderSettings* s);

using LimiterFactory = ratelimit::LimiterFactory;

// Owns the HTTP client, the limiters and the adapters. Thread-safe after Create.
class ProviderSet {
 public:
  // Enables the providers the settings name (see ProviderSettings). FAILED_PRECONDITION naming
  // the flag when an enabled provider's API key is missing; INVALID_ARGUMENT naming the flag for a
  // bad URL, limit or provider name. `metrics` may be null; `clock` must outlive the set.
  static absl::StatusOr<std::unique_ptr<ProviderSet>> Create(const ProviderSettings& settings,
                                                             ProviderMetrics* metrics,
                                                             LimiterFactory limiters = {},
                                                             Clock* clock = Clock::Real());
  ~ProviderSet();

  Provider* Get(const std::string& name);  // null if unknown
  Provider* Default();
  std::vector<Provider*> All();
  // "proofd.create", "proofd.general", "proofledger.create", "proofledger.verify",
  // "simpleproof.general" (the calendars' per-calendar limiters are made and owned by the adapter).
  ratelimit::RateLimiter* limiter(const std::string& name);
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
