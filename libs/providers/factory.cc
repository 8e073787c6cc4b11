#include "libs/providers/factory.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/common/log.h"
#include "libs/common/secret.h"
#include "libs/providers/adapter_common.h"
#include "libs/providers/ots_calendar.h"
#include "libs/providers/proofd.h"
#include "libs/providers/proofledger.h"
#include "libs/providers/simpleproof.h"
#include "libs/providers/tsa.h"
#include "libs/tsa/tsa.h"
#include <fstream>
#include <sstream>

namespace anchord::providers {

namespace {

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(s, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) out.emplace_back(part);
  }
  return out;
}

absl::Status CheckUrl(const char* flag, const std::string& url) {
  if (!absl::StartsWith(url, "https://") && !absl::StartsWith(url, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": must start with https:// or http://"));
  }
  if (!internal::IsHttpUrl(url)) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": not a valid URL"));
  }
  return absl::OkStatus();
}

// A calendar URL must be a bare origin: the reference clients build request URLs differently
// from a URL with a path (docs/providers/ots.md), so only scheme://host[:port] is unambiguous.
absl::Status CheckOrigin(const char* flag, const std::string& url) {
  if (auto st = CheckUrl(flag, url); !st.ok()) return st;
  const std::string bare = internal::TrimTrailingSlashes(url);
  const size_t host = bare.find("://") + 3;
  if (bare.find_first_of("/?#;@", host) != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": \"", bare, "\" is not a bare origin (scheme://host[:port])"));
  }
  return absl::OkStatus();
}

absl::Status CheckLimit(const char* flag, int limit) {
  if (limit < 0) return absl::InvalidArgumentError(absl::StrCat(flag, ": must not be negative"));
  return absl::OkStatus();
}

absl::Status CheckSeconds(const char* flag, double seconds, double max) {
  if (!std::isfinite(seconds) || seconds <= 0 || seconds > max) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": must be in (0, ", max, "]"));
  }
  return absl::OkStatus();
}

// Every flag's value, whether or not its provider is enabled: a mistyped setting is a mistake
// either way, and finding it before the provider is switched on saves a failed deployment.
absl::Status CheckSettings(const ProviderSettings& s) {
  const absl::Status checks[] = {
      CheckUrl("--proofd-url", s.proofd_url),
      CheckLimit("--proofd-create-limit", s.proofd_create_limit),
      CheckLimit("--proofd-general-limit", s.proofd_general_limit),
      CheckSeconds("--proofd-window-seconds", s.proofd_window_seconds, 86400),
      CheckUrl("--proofledger-url", s.proofledger_url),
      CheckLimit("--proofledger-create-limit", s.proofledger_create_limit),
      CheckSeconds("--proofledger-window-seconds", s.proofledger_window_seconds, 86400),
      CheckLimit("--proofledger-verify-limit", s.proofledger_verify_limit),
      CheckSeconds("--proofledger-verify-window-seconds", s.proofledger_verify_window_seconds,
                   86400),
      CheckUrl("--simpleproof-url", s.simpleproof_url),
      CheckLimit("--simpleproof-limit", s.simpleproof_limit),
      CheckSeconds("--simpleproof-window-seconds", s.simpleproof_window_seconds, 86400),
      s.simpleproof_callback_url.empty()
          ? absl::OkStatus()
          : CheckUrl("--simpleproof-callback-url", s.simpleproof_callback_url),
      CheckLimit("--ots-calendar-limit", s.ots_calendar_limit),
      CheckSeconds("--ots-timeout-seconds", s.ots_timeout_seconds, 300),
      CheckLimit("--tsa-limit", s.tsa_limit),
      CheckSeconds("--tsa-window-seconds", s.tsa_window_seconds, 86400),
      CheckSeconds("--tsa-timeout-seconds", s.tsa_timeout_seconds, 300),
  };
  for (const absl::Status& st : checks) {
    if (!st.ok()) return st;
  }
  if (s.simpleproof_batch_size < 1 || s.simpleproof_batch_size > kSimpleProofMaxBatch) {
    return absl::InvalidArgumentError(
        absl::StrCat("--simpleproof-batch-size: must be in [1, ", kSimpleProofMaxBatch, "]"));
  }
  const std::vector<std::string> calendars =
      s.ots_calendars.empty() ? DefaultOtsCalendars() : SplitList(s.ots_calendars);
  if (calendars.empty()) {
    return absl::InvalidArgumentError("--ots-calendars: no calendar URL given");
  }
  for (const std::string& c : calendars) {
    if (auto st = CheckOrigin("--ots-calendars", c); !st.ok()) return st;
  }
  if (s.ots_min_calendars < 1 || s.ots_min_calendars > static_cast<int>(calendars.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--ots-min-calendars: must be in [1, ", calendars.size(), "] (the calendars configured)"));
  }
  for (const std::string& u : SplitList(s.tsa_urls)) {
    if (auto st = CheckUrl("--tsa-url", u); !st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadSmallFile(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  std::string data(1 << 20, '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<size_t>(in.gcount()));
  if (data.size() >= (1u << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is larger than 1 MiB"));
  }
  return data;
}

// FAILED_PRECONDITION naming both forms of an enabled provider's missing key flag.
absl::Status MissingKey(const std::string& provider, const std::string& flag,
                        const std::string& env) {
  return absl::FailedPreconditionError(absl::StrCat(provider, " API key missing: set --", flag,
                                                    "-file (", env, "_FILE) or --", flag, " (", env,
                                                    ")"));
}

}  // namespace

std::vector<std::string> KnownProviders() {
  return {"proofd", "proofledger", "simpleproof", "ots", "tsa"};
}

void AddProviderFlags(CLI::App& app, ProviderSettings* s) {
  app.add_option("--provider", s->default_provider,
                 "Provider new digests are anchored with (proofd, proofledger, simpleproof, ots, "
                 "tsa); "
                 "empty: proofd when a proofd key is configured, else ots (the free "
                 "OpenTimestamps calendars, no account needed)")
      ->envname("ANCHORD_PROVIDER")
      ->capture_default_str();
  app.add_option("--providers", s->providers,
                 "Comma-separated further providers to enable; providers whose key is configured "
                 "are enabled too")
      ->envname("ANCHORD_PROVIDERS");

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

  app.add_option("--proofledger-url", s->proofledger_url,
                 "ProofLedger base URL (scheme://host[:port])")
      ->envname("ANCHORD_PROOFLEDGER_URL")
      ->capture_default_str();
  app.add_option("--proofledger-api-key", s->proofledger_api_key,
                 "ProofLedger API key (prefer --proofledger-api-key-file)")
      ->envname("ANCHORD_PROOFLEDGER_API_KEY");
  app.add_option("--proofledger-api-key-file", s->proofledger_api_key_file,
                 "File holding the ProofLedger API key")
      ->envname("ANCHORD_PROOFLEDGER_API_KEY_FILE");
  app.add_option("--proofledger-create-limit", s->proofledger_create_limit,
                 "ProofLedger creates per window (undocumented by the provider; 0 disables)")
      ->envname("ANCHORD_PROOFLEDGER_CREATE_LIMIT")
      ->capture_default_str();
  app.add_option("--proofledger-window-seconds", s->proofledger_window_seconds,
                 "ProofLedger create window in seconds")
      ->envname("ANCHORD_PROOFLEDGER_WINDOW_SECONDS")
      ->capture_default_str();
  app.add_option("--proofledger-verify-limit", s->proofledger_verify_limit,
                 "Status checks on the public verify endpoint per verify window (documented: "
                 "120 per hour per IP, shared by every process on the host; 0 disables)")
      ->envname("ANCHORD_PROOFLEDGER_VERIFY_LIMIT")
      ->capture_default_str();
  app.add_option("--proofledger-verify-window-seconds", s->proofledger_verify_window_seconds,
                 "ProofLedger verify window in seconds")
      ->envname("ANCHORD_PROOFLEDGER_VERIFY_WINDOW_SECONDS")
      ->capture_default_str();

  app.add_option("--simpleproof-url", s->simpleproof_url,
                 "SimpleProof base URL (scheme://host[:port])")
      ->envname("ANCHORD_SIMPLEPROOF_URL")
      ->capture_default_str();
  app.add_option("--simpleproof-api-key", s->simpleproof_api_key,
                 "SimpleProof x-access-token (prefer --simpleproof-api-key-file)")
      ->envname("ANCHORD_SIMPLEPROOF_API_KEY");
  app.add_option("--simpleproof-api-key-file", s->simpleproof_api_key_file,
                 "File holding the SimpleProof x-access-token")
      ->envname("ANCHORD_SIMPLEPROOF_API_KEY_FILE");
  app.add_option("--simpleproof-limit", s->simpleproof_limit,
                 "SimpleProof requests per window (undocumented by the provider; 0 disables)")
      ->envname("ANCHORD_SIMPLEPROOF_LIMIT")
      ->capture_default_str();
  app.add_option("--simpleproof-window-seconds", s->simpleproof_window_seconds,
                 "SimpleProof rate window in seconds")
      ->envname("ANCHORD_SIMPLEPROOF_WINDOW_SECONDS")
      ->capture_default_str();
  app.add_option("--simpleproof-callback-url", s->simpleproof_callback_url,
                 "URL SimpleProof POSTs confirmations to (a hint; empty: none)")
      ->envname("ANCHORD_SIMPLEPROOF_CALLBACK_URL");
  app.add_option("--simpleproof-batch-size", s->simpleproof_batch_size,
                 "Digests per SimpleProof create request (at most 25)")
      ->envname("ANCHORD_SIMPLEPROOF_BATCH_SIZE")
      ->capture_default_str();

  app.add_option("--ots-calendars", s->ots_calendars,
                 "Comma-separated OpenTimestamps calendar origins (scheme://host[:port]); empty: "
                 "the four public aggregators")
      ->envname("ANCHORD_OTS_CALENDARS");
  app.add_option("--ots-min-calendars", s->ots_min_calendars,
                 "Calendars that must answer a create (like `ots stamp -m`)")
      ->envname("ANCHORD_OTS_MIN_CALENDARS")
      ->capture_default_str();
  app.add_option("--ots-timeout-seconds", s->ots_timeout_seconds,
                 "How long a create waits for the calendars")
      ->envname("ANCHORD_OTS_TIMEOUT_SECONDS")
      ->capture_default_str();
  app.add_option("--ots-calendar-limit", s->ots_calendar_limit,
                 "Requests per minute to each calendar (politeness; 0 disables)")
      ->envname("ANCHORD_OTS_CALENDAR_LIMIT")
      ->capture_default_str();

  app.add_option("--tsa-url", s->tsa_urls,
                 "Comma-separated RFC 3161 TSA endpoint URLs, tried in order (fail-over)")
      ->envname("ANCHORD_TSA_URL");
  app.add_option("--tsa-ca-file", s->tsa_ca_file,
                 "PEM file of the trust anchors the TSAs' tokens must chain to")
      ->envname("ANCHORD_TSA_CA_FILE");
  app.add_option(
         "--tsa-auth-file", s->tsa_auth_file,
         "File holding \"Basic USER:PASSWORD\" or \"Bearer TOKEN\" for the TSAs (never logged)")
      ->envname("ANCHORD_TSA_AUTH_FILE");
  app.add_option("--tsa-limit", s->tsa_limit, "Requests per window to each TSA (0 disables)")
      ->envname("ANCHORD_TSA_LIMIT")
      ->capture_default_str();
  app.add_option("--tsa-window-seconds", s->tsa_window_seconds, "TSA rate window in seconds")
      ->envname("ANCHORD_TSA_WINDOW_SECONDS")
      ->capture_default_str();
  app.add_option("--tsa-timeout-seconds", s->tsa_timeout_seconds, "Per-request TSA timeout")
      ->envname("ANCHORD_TSA_TIMEOUT_SECONDS")
      ->capture_default_str();
}

absl::StatusOr<std::unique_ptr<ProviderSet>> ProviderSet::Create(const ProviderSettings& settings,
                                                                 ProviderMetrics* metrics,
                                                                 LimiterFactory limiters,
                                                                 Clock* clock) {
  if (clock == nullptr) clock = Clock::Real();
  const std::vector<std::string> known = KnownProviders();
  auto is_known = [&](const std::string& n) {
    return std::find(known.begin(), known.end(), n) != known.end();
  };
  if (!settings.default_provider.empty() && !is_known(settings.default_provider)) {
    return absl::InvalidArgumentError(absl::StrCat("--provider: unknown provider \"",
                                                   settings.default_provider,
                                                   "\" (known: ", absl::StrJoin(known, ", "), ")"));
  }
  const std::vector<std::string> listed = SplitList(settings.providers);
  for (const std::string& n : listed) {
    if (!is_known(n)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--providers: unknown provider \"", n, "\" (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  if (auto st = CheckSettings(settings); !st.ok()) return st;

  auto proofd_key =
      LoadSecret("proofd API key", settings.proofd_api_key, settings.proofd_api_key_file);
  if (!proofd_key.ok()) return proofd_key.status();
  auto proofledger_key = LoadSecret("ProofLedger API key", settings.proofledger_api_key,
                                    settings.proofledger_api_key_file);
  if (!proofledger_key.ok()) return proofledger_key.status();
  auto simpleproof_key = LoadSecret("SimpleProof API key", settings.simpleproof_api_key,
                                    settings.simpleproof_api_key_file);
  if (!simpleproof_key.ok()) return simpleproof_key.status();

  // The enabled set: the default, the listed, and every provider whose key is configured. A user
  // without any account gets the free calendars.
  const std::string default_provider = !settings.default_provider.empty()
                                           ? settings.default_provider
                                           : (!proofd_key->empty() ? "proofd" : "ots");
  std::set<std::string> enabled(listed.begin(), listed.end());
  enabled.insert(default_provider);
  if (!proofd_key->empty()) enabled.insert("proofd");
  if (!proofledger_key->empty()) enabled.insert("proofledger");
  if (!simpleproof_key->empty()) enabled.insert("simpleproof");

  if (enabled.count("proofd") && proofd_key->empty()) {
    return MissingKey("proofd", "proofd-api-key", "ANCHORD_PROOFD_API_KEY");
  }
  if (enabled.count("proofledger") && proofledger_key->empty()) {
    return MissingKey("ProofLedger", "proofledger-api-key", "ANCHORD_PROOFLEDGER_API_KEY");
  }
  if (enabled.count("simpleproof") && simpleproof_key->empty()) {
    return MissingKey("SimpleProof", "simpleproof-api-key", "ANCHORD_SIMPLEPROOF_API_KEY");
  }
  if (enabled.count("proofd") &&
      (settings.proofd_create_limit > 30 || settings.proofd_general_limit > 120)) {
    ANCHORD_LOG(Warning) << "proofd limits above the documented per-key budget (30 creates, 120 "
                            "requests per minute); expect 429s";
  }
  if (enabled.count("proofledger") &&
      settings.proofledger_verify_limit * 3600.0 / settings.proofledger_verify_window_seconds >
          120.0 + 1e-9) {
    ANCHORD_LOG(Warning) << "ProofLedger verify limit above the documented 120 per hour per IP; "
                            "expect 429s";
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
  auto make = [&](const std::string& name, int limit, double window_s) -> ratelimit::RateLimiter* {
    auto l = limiters(name, ratelimit::RateLimit{limit, absl::Seconds(window_s)});
    if (l == nullptr) return nullptr;
    ratelimit::RateLimiter* raw = l.get();
    set->limiters_[name] = std::move(l);
    return raw;
  };
  auto null_limiter = [] { return absl::InternalError("limiter factory returned null"); };

  if (enabled.count("proofd")) {
    ProofdConfig config;
    config.name = "proofd";
    config.base_url = settings.proofd_url;
    config.api_key = *proofd_key;
    ProofdDeps deps;
    deps.http = set->http_.get();
    deps.create_limiter =
        make("proofd.create", settings.proofd_create_limit, settings.proofd_window_seconds);
    deps.general_limiter =
        make("proofd.general", settings.proofd_general_limit, settings.proofd_window_seconds);
    if (deps.create_limiter == nullptr || deps.general_limiter == nullptr) return null_limiter();
    deps.metrics = metrics;
    deps.clock = clock;
    set->providers_["proofd"] = MakeProofdProvider(config, deps);
    ANCHORD_LOG(Info) << "provider proofd at " << config.base_url << " account "
                      << SecretFingerprint(config.api_key) << " limits create "
                      << settings.proofd_create_limit << "/general "
                      << settings.proofd_general_limit << " per " << settings.proofd_window_seconds
                      << "s";
  }
  if (enabled.count("proofledger")) {
    ProofLedgerConfig config;
    config.base_url = settings.proofledger_url;
    config.api_key = *proofledger_key;
    config.verify_limit = settings.proofledger_verify_limit;
    config.verify_window = absl::Seconds(settings.proofledger_verify_window_seconds);
    ProofLedgerDeps deps;
    deps.http = set->http_.get();
    deps.create_limiter = make("proofledger.create", settings.proofledger_create_limit,
                               settings.proofledger_window_seconds);
    deps.verify_limiter = make("proofledger.verify", settings.proofledger_verify_limit,
                               settings.proofledger_verify_window_seconds);
    if (deps.create_limiter == nullptr || deps.verify_limiter == nullptr) return null_limiter();
    deps.metrics = metrics;
    deps.clock = clock;
    set->providers_["proofledger"] = MakeProofLedgerProvider(config, deps);
    ANCHORD_LOG(Info) << "provider proofledger at " << config.base_url << " account "
                      << SecretFingerprint(config.api_key) << " limits create "
                      << settings.proofledger_create_limit << " per "
                      << settings.proofledger_window_seconds << "s, verify "
                      << settings.proofledger_verify_limit << " per "
                      << settings.proofledger_verify_window_seconds << "s";
  }
  if (enabled.count("simpleproof")) {
    SimpleProofConfig config;
    config.base_url = settings.simpleproof_url;
    config.api_key = *simpleproof_key;
    config.callback_url = settings.simpleproof_callback_url;
    config.batch_size = settings.simpleproof_batch_size;
    SimpleProofDeps deps;
    deps.http = set->http_.get();
    deps.limiter = make("simpleproof.general", settings.simpleproof_limit,
                        settings.simpleproof_window_seconds);
    if (deps.limiter == nullptr) return null_limiter();
    deps.metrics = metrics;
    deps.clock = clock;
    set->providers_["simpleproof"] = MakeSimpleProofProvider(config, deps);
    ANCHORD_LOG(Info) << "provider simpleproof at " << config.base_url << " account "
                      << SecretFingerprint(config.api_key) << " limit "
                      << settings.simpleproof_limit << " per "
                      << settings.simpleproof_window_seconds << "s, batches of "
                      << config.batch_size << (config.callback_url.empty() ? "" : ", callbacks on");
  }
  if (enabled.count("ots")) {
    OtsCalendarConfig config;
    if (!settings.ots_calendars.empty()) {
      config.calendars.clear();
      for (const std::string& c : SplitList(settings.ots_calendars)) {
        config.calendars.push_back(internal::TrimTrailingSlashes(c));
      }
    }
    config.min_calendars = settings.ots_min_calendars;
    config.timeout = absl::Seconds(settings.ots_timeout_seconds);
    config.calendar_limit = ratelimit::RateLimit{settings.ots_calendar_limit, absl::Minutes(1)};
    OtsCalendarDeps deps;
    deps.http = set->http_.get();
    deps.limiters = limiters;
    deps.metrics = metrics;
    deps.clock = clock;
    set->providers_["ots"] = MakeOtsCalendarProvider(config, deps);
    ANCHORD_LOG(Info) << "provider ots: calendars " << absl::StrJoin(config.calendars, ", ")
                      << ", at least " << config.min_calendars << " within "
                      << settings.ots_timeout_seconds << "s";
  }
  if (enabled.count("tsa")) {
    TsaConfig config;
    config.urls = SplitList(settings.tsa_urls);
    if (config.urls.empty()) {
      return absl::FailedPreconditionError("tsa enabled but no --tsa-url (ANCHORD_TSA_URL) given");
    }
    if (settings.tsa_ca_file.empty()) {
      return absl::FailedPreconditionError(
          "tsa enabled but no --tsa-ca-file (ANCHORD_TSA_CA_FILE): tokens cannot be checked");
    }
    auto ca = ReadSmallFile("--tsa-ca-file", settings.tsa_ca_file);
    if (!ca.ok()) return ca.status();
    if (tsa::CountPemCertificates(*ca) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tsa-ca-file: no PEM certificate in ", settings.tsa_ca_file));
    }
    config.ca_pem = *std::move(ca);
    if (!settings.tsa_auth_file.empty()) {
      auto text = LoadSecret("TSA credentials", "", settings.tsa_auth_file);
      if (!text.ok()) return text.status();
      auto auth = TsaAuthorization(*text);
      if (!auth.ok()) return auth.status();
      config.authorization = *std::move(auth);
    }
    config.timeout = absl::Seconds(settings.tsa_timeout_seconds);
    config.limit =
        ratelimit::RateLimit{settings.tsa_limit, absl::Seconds(settings.tsa_window_seconds)};
    TsaDeps deps;
    deps.http = set->http_.get();
    deps.limiters = limiters;
    deps.metrics = metrics;
    deps.clock = clock;
    ANCHORD_LOG(Info) << "provider tsa: " << absl::StrJoin(config.urls, ", ") << ", "
                      << tsa::CountPemCertificates(config.ca_pem) << " trust anchor(s), limit "
                      << settings.tsa_limit << " per " << settings.tsa_window_seconds << "s per TSA"
                      << (config.authorization.empty() ? "" : ", credentials set");
    set->providers_["tsa"] = MakeTsaProvider(config, deps);
  }
  set->default_ = default_provider;
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
