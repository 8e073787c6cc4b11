// The SimpleProof adapter (docs/providers/simpleproof.md: the
// document and anchord's choices where it is silent, which the sandbox serves).
//
//  - Auth is `x-access-token`. Errors are {"ok": false, "msg"}: 400/401 permanent, 429 rate
//    limited (Retry-After when sent, else a configured default), 5xx retried.
//  - CreateBatch sends up to max_batch() (25, configurable lower) digests as ONE
//    POST /api/proof/timestamp/hashes, with callback_url when configured. The answer lists the
//    accepted hashes in `files`; a digest missing there is kRetry for that digest alone. The
//    answer carries no document id, so the proof id is the digest hex.
//  - SimpleProof has no idempotency key and charges per hash: a request marked maybe_sent is
//    first checked with POST /proof/verification, and a digest the account already holds is not
//    sent again.
//  - Lookup is POST /proof/verification. Once confirmed, the .ots behind ots_download_url (valid
//    for 1800 s only) is downloaded at once, without the token, validated (a detached .ots of
//    this digest) and returned in record.evidence; the verification page `url` is verify_url.
//  - ListPending walks GET /api/proof/document for pending_stamp, then pending, page by page;
//    the cursor carries status, page and page size.
//  - ParseCallback reads the documented callback body and returns the hash it names.
#pragma once

#include <memory>
#include <string>

#include "libs/common/clock.h"
#include "libs/http/http_client.h"
#include "libs/providers/metrics.h"
#include "libs/providers/provider.h"
#include "libs/ratelimit/rate_limiter.h"

namespace anchord::providers {

// The document's cap on hashes per request.
inline constexpr int kSimpleProofMaxBatch = 25;

struct SimpleProofConfig {
  std::string name = "simpleproof";
  std::string base_url = "https://app.simpleproof.com";  // scheme://host[:port], no path
  std::string api_key;                                   // the x-access-token; never logged
  std::string callback_url;                              // sent with every create when not empty
  int batch_size = kSimpleProofMaxBatch;                 // 1..25
  absl::Duration request_timeout = absl::Seconds(30);
  // Wait after a 429 without a usable Retry-After (the document gives no number).
  absl::Duration default_retry_after = absl::Seconds(60);
  // Pages walked per status by ListPending before it stops (bounds a walk over a lying
  // totalPages).
  int max_list_pages = 1000;
  // An .ots from a download URL larger than this is not evidence (real ones are a few KB).
  size_t max_ots_bytes = 1 << 20;
};

struct SimpleProofDeps {
  http::HttpClient* http = nullptr;           // not owned
  ratelimit::RateLimiter* limiter = nullptr;  // not owned; every API request
  ProviderMetrics* metrics = nullptr;         // not owned; may be null
  Clock* clock = Clock::Real();
};

std::unique_ptr<Provider> MakeSimpleProofProvider(const SimpleProofConfig& config,
                                                  const SimpleProofDeps& deps);

}  // namespace anchord::providers
