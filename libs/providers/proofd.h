// The proofd.id v1 adapter (docs/providers/proofd.md).
//
//  - POST /api/v1/timestamps with an Idempotency-Key derived from the account and the exact body.
//  - 409 DUPLICATE_TIMESTAMP is resolved to the original record (from an id in the error body if
//    the provider sends one, else by walking the account's list for the hash).
//  - Every documented error code is classified (see Classify in proofd.cc).
//  - Pacing: the create limiter (30/min per key) and the general limiter (120/min per key, every
//    request) are acquired before each request; 429 Retry-After and X-RateLimit-* close the gate.
//  - X-Request-Id is kept in every outcome and logged with every failure.
#pragma once

#include <memory>
#include <string>

#include "libs/common/clock.h"
#include "libs/http/http_client.h"
#include "libs/providers/metrics.h"
#include "libs/providers/provider.h"
#include "libs/ratelimit/rate_limiter.h"

namespace anchord::providers {

struct ProofdConfig {
  std::string name = "proofd";
  std::string base_url = "https://proofd.id";  // scheme://host[:port], no trailing path
  std::string api_key;                         // never logged; see libs/common/secret.h
  absl::Duration request_timeout = absl::Seconds(30);
};

struct ProofdDeps {
  http::HttpClient* http = nullptr;                   // not owned
  ratelimit::RateLimiter* create_limiter = nullptr;   // not owned; creates only
  ratelimit::RateLimiter* general_limiter = nullptr;  // not owned; every request
  ProviderMetrics* metrics = nullptr;                 // not owned; may be null
  Clock* clock = Clock::Real();
};

std::unique_ptr<Provider> MakeProofdProvider(const ProofdConfig& config, const ProofdDeps& deps);

// The idempotency key for `body` under the account holding `api_key`: "anchord-" followed by 40
// hex chars of SHA-256("anchord-idempotency-v1\n" + account fingerprint + "\n" + body). Exposed for
// tests.
std::string ProofdIdempotencyKey(const std::string& api_key, const std::string& body);

}  // namespace anchord::providers
