// The ProofLedger v1 adapter (docs/providers/proofledger.md: the
// document and anchord's choices where its worker script is silent, which the sandbox serves).
//
//  - POST /api/v1/proof {"sha256","filename"} with `Authorization: Bearer <key>`; 201 is a new
//    record. There is no idempotency key: a digest the provider already holds is answered with
//    `duplicate_of` naming the original, which becomes kDuplicate with the original as the record
//    (record.duplicate_of set). So a re-send after a crash costs no second anchor, and maybe_sent
//    needs no check before sending.
//  - 400/401/403 are permanent (the document's non-retryable group), 429 closes the create gate
//    until Retry-After, network errors and 5xx are retried.
//  - Status comes from the public GET /api/v1/verify?hash= (no Authorization header is sent
//    there), paced by its own limiter: the document's 120 requests per hour per IP.
//    LookupBudgetRemaining() reports what is left of it.
//  - ProofLedger gives no .ots (OffersOts() is false) and has no list of pending records.
#pragma once

#include <memory>
#include <string>

#include "libs/common/clock.h"
#include "libs/http/http_client.h"
#include "libs/providers/metrics.h"
#include "libs/providers/provider.h"
#include "libs/ratelimit/rate_limiter.h"

namespace anchord::providers {

struct ProofLedgerConfig {
  std::string name = "proofledger";
  std::string base_url = "https://proofledger.io";  // scheme://host[:port], no trailing path
  std::string api_key;                              // never logged; see libs/common/secret.h
  absl::Duration request_timeout = absl::Seconds(30);
  // The verify budget the verify limiter enforces (the document's 120 per hour per IP), repeated
  // here so that LookupBudgetRemaining can count what is left. limit <= 0: no budget (-1).
  int verify_limit = 120;
  absl::Duration verify_window = absl::Hours(1);
  // Wait after a 429 that carries no usable Retry-After (the worker script's fallback).
  absl::Duration default_retry_after = absl::Seconds(60);
};

struct ProofLedgerDeps {
  http::HttpClient* http = nullptr;                  // not owned
  ratelimit::RateLimiter* create_limiter = nullptr;  // not owned; POST /api/v1/proof
  ratelimit::RateLimiter* verify_limiter = nullptr;  // not owned; GET /api/v1/verify
  ProviderMetrics* metrics = nullptr;                // not owned; may be null
  Clock* clock = Clock::Real();
};

std::unique_ptr<Provider> MakeProofLedgerProvider(const ProofLedgerConfig& config,
                                                  const ProofLedgerDeps& deps);

}  // namespace anchord::providers
