// The RFC 3161 time-stamping adapter, provider name "tsa" (the protocol and the checks are in
// libs/tsa; docs/tsa.md describes the provider and the proof forms).
//
//  - Create sends one TimeStampReq (SHA-256 imprint of the digest, a fresh random nonce, certReq)
//    as `POST <url>` with Content-Type application/timestamp-query to the configured TSAs in
//    order: the first answer that passes tsa::Verify (granted, our imprint and nonce, signer with
//    the critical timeStamping EKU chaining to --tsa-ca-file, signature, genTime within
//    `max_skew` of now and not older than `max_age`) wins. The others are fail-overs: a TSA that
//    fails (network, 5xx, 429, an answer that does not verify) passes the request to the next one.
//    A token is final: the record is kConfirmed at once (confirmed_at = genTime), its evidence
//    the DER TimeStampResp, proof id "<serial hex>@<TSA host>".
//  - Idempotency: a TSA keeps no state per request, so nothing can be replayed; a re-sent request
//    (maybe_sent) gives a second valid token for the same digest, which is harmless.
//  - Lookup/DownloadProof serve the stored token (ref.evidence), re-checked structurally; there is
//    nothing to poll.
//  - Pacing: one RateLimiter and one request in flight per TSA; a 429 closes that TSA's gate.
//  - Credentials (optional): a file holding "Basic USER:PASSWORD" or "Bearer TOKEN"; sent as the
//    Authorization header, registered with the log scrubber, never logged.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "libs/common/clock.h"
#include "libs/http/http_client.h"
#include "libs/providers/metrics.h"
#include "libs/providers/ots_calendar.h"
#include "libs/providers/provider.h"

namespace anchord::providers {

struct TsaConfig {
  std::string name = "tsa";
  std::vector<std::string> urls;  // full URLs of the TSAs' RFC 3161 HTTP endpoints
  std::string ca_pem;             // trust anchors (required)
  std::string authorization;      // Authorization header value; empty: none
  absl::Duration timeout = absl::Seconds(10);
  ratelimit::RateLimit limit{60, absl::Minutes(1)};  // per TSA
  absl::Duration default_retry_after = absl::Seconds(60);
  absl::Duration max_skew = absl::Minutes(5);
  absl::Duration max_age = absl::Minutes(10);
};

struct TsaDeps {
  http::HttpClient* http = nullptr;  // not owned
  CalendarLimiterFactory limiters;   // "tsa.<url>"; null: in-process limiters
  ProviderMetrics* metrics = nullptr;
  Clock* clock = Clock::Real();
};

std::unique_ptr<Provider> MakeTsaProvider(const TsaConfig& config, const TsaDeps& deps);

// Parses a credentials file's text ("Basic USER:PASSWORD" or "Bearer TOKEN") into an
// Authorization header value. INVALID_ARGUMENT (never quoting the secret) otherwise.
absl::StatusOr<std::string> TsaAuthorization(const std::string& file_text);

}  // namespace anchord::providers
