#include "libs/providers/factory.h"

#include <CLI/CLI.hpp>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/common/secret.h"
#include "libs/providers/proofd.h"

namespace anchord::providers {

void AddProviderFlags(CLI::App& app, ProviderSettings* s) {
  app.add_option("--provider", s->default_provider, "Provider new digests are anchored with")
      ->envname("ANCHORD_PROVIDER")
      ->capture_default_str();
  app.add_option("--proofd-url", s->proofd_url, "proofd.id base URL (scheme://host[:port])")
      ->envname("ANCHORD_PROOFD_URL")
      ->capture_default_str();
  app.add_option("--proofd-api-key", s->proofd_api_key,
                 "proofd.id API key (prefer --proofd-api-key-file)")
      ->envname("ANCHORD_PROOFD_API_KEY");
  app.add_option("--proofd-api-key-file", s->proofd_api_key_file,
                 "File holding the proofd.id API key (e.g. a mounted Kubernetes Secret)")
      ->envname("ANCHORD_PROOFD_API_KEY_FILE");
  app.add_option("--proofd-create-limit", s->proofd_create_limit,
                 "This process's share of the per-key create budget per window (0 disables)")
      ->envname("ANCHORD_PROOFD_CREATE_LIMIT")
      ->capture_default_str();
  app.add_option("--proofd-general-limit", s->proofd_general_limit,
                 "This process's share of the per-key request budget per window (0 disables)")
      ->envname("ANCHORD_PROOFD_GENERAL_LIMIT")
      ->capture_default_str();
  app.add_option("--proofd-window-seconds", s->proofd_window_seconds,
                 "Rate-limit window length in seconds")
      ->envname("ANCHORD_PROOFD_WINDOW_SECONDS")
      ->capture_default_str();
}

absl::StatusOr<std::unique_ptr<ProviderSet>> ProviderSet::Create(const ProviderSettings& settings,
                                                                 ProviderMetrics* metrics,
                                                                 LimiterFactory limiters,
                                                                 Clock* clock) {
  if (clock == nullptr) clock = Clock::Real();
  if (settings.default_provider != "proofd") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--provider: unknown provider \"", settings.default_provider, "\" (known: proofd)"));
  }
  if (!absl::StartsWith(settings.proofd_url, "https://") &&
      !absl::StartsWith(settings.proofd_url, "http://")) {
    return absl::InvalidArgumentError("--proofd-url: must start with https:// or http://");
  }
  if (settings.proofd_create_limit < 0 || settings.proofd_general_limit < 0) {
    return absl::InvalidArgumentError(
        "--proofd-create-limit/--proofd-general-limit: must not be negative");
  }
  if (!std::isfinite(settings.proofd_window_seconds) || settings.proofd_window_seconds <= 0 ||
      settings.proofd_window_seconds > 86400) {
    return absl::InvalidArgumentError("--proofd-window-seconds: must be in (0, 86400]");
  }
  auto key = LoadSecret("proofd API key", settings.proofd_api_key, settings.proofd_api_key_file);
  if (!key.ok()) return key.status();
  if (key->empty()) {
    return absl::FailedPreconditionError(
        "proofd API key missing: set --proofd-api-key-file (ANCHORD_PROOFD_API_KEY_FILE) or "
        "--proofd-api-key (ANCHORD_PROOFD_API_KEY)");
  }
  if (settings.proofd_create_limit > 30 || settings.proofd_general_limit > 120) {
    ANCHORD_LOG(Warning) << "proofd limits above the documented per-key budget (30 creates, 120 "
                            "requests per minute); expect 429s";
  }
  if (!limiters) {
    limiters = [clock](const std::string& name, ratelimit::RateLimit limit) {
      return ratelimit::MakeLocalRateLimiter(name, limit, clock);
    };
  }

  std::unique_ptr<ProviderSet> set(new ProviderSet());
  http::CurlOptions curl;
  curl.user_agent = absl::StrCat("anchord-", settings.client_name, "/0.1");
  set->http_ = http::MakeCurlClient(curl);
  const absl::Duration window = absl::Seconds(settings.proofd_window_seconds);
  ratelimit::RateLimit create{settings.proofd_create_limit, window};
  ratelimit::RateLimit general{settings.proofd_general_limit, window};
  auto create_limiter = limiters("proofd.create", create);
  auto general_limiter = limiters("proofd.general", general);
  if (create_limiter == nullptr || general_limiter == nullptr) {
    return absl::InternalError("limiter factory returned null");
  }

  ProofdConfig config;
  config.name = "proofd";
  config.base_url = settings.proofd_url;
  config.api_key = *key;
  ProofdDeps deps;
  deps.http = set->http_.get();
  deps.create_limiter = create_limiter.get();
  deps.general_limiter = general_limiter.get();
  deps.metrics = metrics;
  deps.clock = clock;
  set->limiters_["proofd.create"] = std::move(create_limiter);
  set->limiters_["proofd.general"] = std::move(general_limiter);
  set->providers_["proofd"] = MakeProofdProvider(config, deps);
  set->default_ = settings.default_provider;
  ANCHORD_LOG(Info) << "provider proofd at " << config.base_url << " account "
                    << SecretFingerprint(config.api_key) << " limits create "
                    << settings.proofd_create_limit << "/general "
                    << settings.proofd_general_limit << " per "
                    << settings.proofd_window_seconds << "s";
  return set;
}

ProviderSet::~ProviderSet() {
  Stop();
  // Adapters hold raw pointers to the limiters and the client: destroy them first.
  providers_.clear();
  limiters_.clear();
  http_.reset();
}

Provider* ProviderSet::Get(const std::string& name) {
  auto it = providers_.find(name);
  return it == providers_.end() ? nullptr : it->second.get();
}

Provider* ProviderSet::Default() { return Get(default_); }

std::vector<Provider*> ProviderSet::All() {
  std::vector<Provider*> out;
  for (auto& [name, p] : providers_) out.push_back(p.get());
  return out;
}

ratelimit::RateLimiter* ProviderSet::limiter(const std::string& name) {
  auto it = limiters_.find(name);
  return it == limiters_.end() ? nullptr : it->second.get();
}

void ProviderSet::Stop() {
  for (auto& [name, p] : providers_) p->Stop();
  for (auto& [name, l] : limiters_) l->Stop();
}

}  // namespace anchord::providers
