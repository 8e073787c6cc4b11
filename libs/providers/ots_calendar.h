// The OpenTimestamps calendar adapter, provider name "ots" (docs/providers/ots.md: the protocol
// and anchord's choices where it is silent, which the sandbox's calendars serve). Free, no key.
//
//  - Create POSTs the raw 32 digest bytes to /digest of every configured calendar at once (the
//    four public aggregators listed in docs/providers/ots.md by default) and needs at least
//    `min_calendars` valid answers within the timeout, else kRetry. A valid answer is a Timestamp
//    rooted at the digest, at most 10000 bytes, carrying a pending attestation of a whitelisted
//    calendar. The answers are merged into one detached .ots (file hash op sha256, the digest)
//    returned in record.evidence: the caller must store it before anything else, because a
//    calendar cannot send a lost answer again (nothing on the calendar maps the digest to its
//    nonce). The proof id is the digest hex. maybe_sent needs no check: calendars are free, and
//    a re-send simply gives a second pending proof.
//  - Lookup(ref) reads ref.evidence and, for every pending attestation of a whitelisted calendar
//    (ots::DefaultCalendarWhitelist plus the configured calendars; nothing else is ever
//    contacted), asks GET /timestamp/<hex commitment at that node>, honouring the answer's
//    Cache-Control max-age (a per-commitment not-before kept in memory), and merges 200 answers.
//    kConfirmed (block_height = the lowest Bitcoin attestation, the merged .ots in evidence) once
//    a Bitcoin attestation is present, else kPending (evidence set if anything merged).
//  - DownloadProof(ref) returns ref.evidence once complete, kNotFound before.
//  - Politeness: one limiter per calendar and one request in flight per calendar, so a 429 (which
//    the reference server never sends, but a proxy in front of a public calendar may) closes that
//    calendar's gate before its next request leaves.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "libs/common/clock.h"
#include "libs/http/http_client.h"
#include "libs/providers/metrics.h"
#include "libs/providers/provider.h"
#include "libs/ratelimit/rate_limiter.h"

namespace anchord::providers {

// The `ots stamp` default aggregators (docs/providers/ots.md), bare origins.
std::vector<std::string> DefaultOtsCalendars();

struct OtsCalendarConfig {
  std::string name = "ots";
  std::vector<std::string> calendars = DefaultOtsCalendars();  // bare origins, no path
  int min_calendars = 2;                                       // like `ots stamp -m`
  absl::Duration timeout = absl::Seconds(5);                   // per create, like `--timeout`
  absl::Duration lookup_timeout = absl::Seconds(15);           // per GET /timestamp
  // Pacing per calendar (requests of both kinds). The reference client has none; this keeps a
  // large archive from hammering free public services.
  ratelimit::RateLimit calendar_limit{60, absl::Minutes(1)};
  absl::Duration default_retry_after = absl::Seconds(60);  // a 429 without Retry-After
  // Longest not-before taken from a Cache-Control max-age (a year for a complete answer would
  // only matter if the answer were lost).
  absl::Duration max_not_before = absl::Hours(1);
};

using CalendarLimiterFactory = ratelimit::LimiterFactory;

struct OtsCalendarDeps {
  http::HttpClient* http = nullptr;  // not owned
  // Makes the limiter of each calendar met ("ots.<origin>"); null: in-process limiters on clock.
  CalendarLimiterFactory limiters;
  ProviderMetrics* metrics = nullptr;  // not owned; may be null
  Clock* clock = Clock::Real();
};

std::unique_ptr<Provider> MakeOtsCalendarProvider(const OtsCalendarConfig& config,
                                                  const OtsCalendarDeps& deps);

}  // namespace anchord::providers
