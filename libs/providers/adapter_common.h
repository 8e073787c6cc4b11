// Plumbing shared by the provider adapters (internal to libs/providers): text that came from a
// server made safe to log, pacing with wait metrics, one HTTP exchange with its request metric,
// Retry-After gates, one paced destination. Each adapter keeps its own error classification,
// because that is where the providers differ.
#pragma once

#include <initializer_list>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/common/clock.h"
#include "libs/http/http_client.h"
#include "libs/ots/ots.h"
#include "libs/providers/metrics.h"
#include "libs/providers/provider.h"
#include "libs/ratelimit/rate_limiter.h"

namespace anchord::providers::internal {

// A misbehaving server must not hold every worker behind a gate for days: waits taken from
// Retry-After are capped.
inline constexpr absl::Duration kMaxGate = absl::Hours(1);

// Printable ASCII only, at most `max` bytes (then "..."): safe to log and store.
std::string Printable(absl::string_view s, size_t max);
// UPPER_SNAKE error codes pass; anything else becomes "" so it cannot smuggle text into logs.
std::string CleanCode(absl::string_view s);
std::string PercentEncode(absl::string_view s);
absl::StatusOr<absl::Time> ParseIsoTime(absl::string_view s);
// An absolute http(s) URL of printable ASCII without spaces, at most 2048 bytes, with a host.
bool IsHttpUrl(absl::string_view s);
std::string TrimTrailingSlashes(absl::string_view s);
// The max-age of a Cache-Control header value; nullopt when absent or malformed.
std::optional<absl::Duration> CacheMaxAge(absl::string_view cache_control);
// Lowercase hex of a valid SHA-256 hex string (either case); "" when `s` is not one.
std::string NormalizeDigestHex(absl::string_view s);

// The end of a rate-limit window from an X-RateLimit-Reset value: delta seconds, or a unix epoch
// for anything above 1e9 (1e9 s of delta would be 31 years); nullopt when absent or malformed.
std::optional<absl::Time> RateLimitReset(absl::string_view value, absl::Time now);

// For the adapters whose request carries the digest alone (calendars, TSAs, SimpleProof): the
// prepared create with the lowercase digest hex as its body. Never an error today; the StatusOr
// keeps the shape of Provider::PrepareCreate.
absl::StatusOr<PreparedCreate> PrepareDigestOnly(const CreateInput& input);

// The digest of a PrepareDigestOnly create, checked against its body (the row may have been
// stored by another version): `hex` lowercase, `raw` its 32 bytes. nullopt with *o set to a
// kPermanent INVALID_REQUEST (nothing is sent) when the body is not the digest's hex.
struct DigestOnly {
  std::string hex;
  std::string raw;
};
std::optional<DigestOnly> CheckDigestOnly(const PreparedCreate& request, CallOutcome* o);

// The answer of a provider that keeps no list of pending proofs (SupportsListPending() is false):
// a permanent UNSUPPORTED outcome carrying `why`.
ListPendingResult NoPendingList(const char* why);

// `bytes` parsed as a detached .ots of `digest` (file hash op sha256, that digest); an error
// naming what is wrong otherwise. Evidence is never returned without passing this.
absl::StatusOr<ots::DetachedFile> ParseEvidence(absl::string_view bytes, const Digest& digest);
// The lowest Bitcoin block height attested anywhere in `proof`; 0 when none.
int64_t LowestBitcoinHeight(const ots::DetachedFile& proof);

// One adapter's side of its HTTP exchanges. Thread-safe (holds no mutable state).
class Wire {
 public:
  // `secret` (may be empty) is scrubbed from every text that passes Redact.
  Wire(std::string provider, std::string secret, http::HttpClient* http, ProviderMetrics* metrics,
       Clock* clock);

  const std::string& provider() const { return provider_; }
  Clock* clock() const { return clock_; }

  // Printable, bounded, the key and every registered secret replaced by [REDACTED].
  std::string Redact(absl::string_view text) const;

  // Waits for `limiter` (null: no wait) and counts the wait under `bucket`. False once stopping.
  bool Pace(ratelimit::RateLimiter* limiter, const char* bucket) const;

  // Sends `req`, counting it under `endpoint`. On a transport failure returns nullopt and fills
  // `*o` (kRetry NETWORK_ERROR; MALFORMED_RESPONSE for a body over the client's size bound). On an
  // answer fills http_status and request_id (X-Request-Id) and returns the response.
  std::optional<http::HttpResponse> Do(const char* endpoint, const http::HttpRequest& req,
                                       CallOutcome* o) const;

  // `base` turned into a logged kRetry MALFORMED_RESPONSE naming the endpoint and `why`.
  CallOutcome Malformed(const char* endpoint, const CallOutcome& base, absl::string_view why) const;

  // kRetry CANCELLED: the adapter is stopping.
  static CallOutcome Cancelled();

  // For a 429: the gate from Retry-After (delta seconds or HTTP-date), `fallback` when absent or
  // unparsable, capped at kMaxGate; closes every non-null limiter until then and returns the wait.
  absl::Duration CloseGate(const http::HttpResponse& resp, absl::Duration fallback,
                           std::initializer_list<ratelimit::RateLimiter*> limiters) const;

  // Closes every non-null limiter until `until`, capped at kMaxGate from now; returns the wait.
  absl::Duration CloseGateUntil(absl::Time until,
                                std::initializer_list<ratelimit::RateLimiter*> limiters) const;

  // A Retry-After hint on a non-429 answer (503), capped; zero when absent.
  absl::Duration RetryHint(const http::HttpResponse& resp) const;

 private:
  absl::Duration Gate(absl::Time now, absl::Time until,
                      std::initializer_list<ratelimit::RateLimiter*> limiters) const;

  std::string provider_;
  std::string secret_;
  http::HttpClient* http_;
  ProviderMetrics* metrics_;
  Clock* clock_;
};

// One destination paced by a limiter of its own, with one request to it in flight at a time: a
// 429 closes its gate before the next request to it leaves, so no request of this process is sent
// past a Retry-After it was given. Thread-safe.
class PacedHost {
 public:
  explicit PacedHost(std::unique_ptr<ratelimit::RateLimiter> limiter);

  // Waits for the limiter (counted under `bucket`), then sends `req` through `wire` as Wire::Do
  // does. Stopping: nullopt with *o = Wire::Cancelled(). A 429 closes this host's gate (until
  // Retry-After, else `default_retry_after`) and returns the answer with o->kind kRateLimited,
  // o->code RATE_LIMITED and o->retry_after set; the caller words o->message.
  std::optional<http::HttpResponse> Send(const Wire& wire, const char* bucket, const char* endpoint,
                                         const http::HttpRequest& req,
                                         absl::Duration default_retry_after, CallOutcome* o)
      ABSL_LOCKS_EXCLUDED(in_flight_);

  // Wakes waiters; every later Send returns Cancelled.
  void Stop() { limiter_->Stop(); }

 private:
  const std::unique_ptr<ratelimit::RateLimiter> limiter_;
  // Held for a whole exchange; guards no data, only the order of requests.
  absl::Mutex in_flight_;
};

}  // namespace anchord::providers::internal
