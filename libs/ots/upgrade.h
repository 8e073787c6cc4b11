// Upgrading pending OpenTimestamps proofs with calendar answers (docs/providers/ots.md, "Upgrade").
//
// A calendar answer is a serialized Timestamp (no magic/version/file-hash op) whose root message
// is the commitment at a pending attestation. Merging unions attestations and merges ops by op
// identity, like the reference Timestamp.merge; the pending attestation is kept (upgraded
// reference files carry both). Every merge is done on a copy that is serialized and re-parsed
// before it replaces the proof, so the proof is valid (parses within the reference limits) at
// every step, and a hostile answer can only be rejected, never half-applied.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/ots/ots.h"

namespace anchord::http {
class HttpClient;
}

namespace anchord::ots {

// The reference client reads at most 10000 bytes of a calendar answer.
inline constexpr size_t kMaxCalendarAnswer = 10000;

struct PendingPoint {
  std::string uri;
  std::string commitment;  // raw bytes: the message at the pending node
};

// Every pending attestation, searching each path only down to the first node that carries any
// attestation (as the reference's upgrade does), de-duplicated, in tree order.
std::vector<PendingPoint> PendingAttestations(const DetachedFile& proof);

// Deep copy (shared children become separate copies; fine for trees parsed from files).
std::shared_ptr<Timestamp> CloneTimestamp(const Timestamp& t);
absl::StatusOr<DetachedFile> CloneDetached(const DetachedFile& f);

// Merges a calendar answer into every node of `proof` whose message is `commitment`.
// InvalidArgument when the answer does not parse with root message `commitment`, when no node has
// that message, or when the merged proof would not parse (e.g. too deep). `proof` is unchanged on
// error.
absl::Status MergeCalendarAnswer(DetachedFile* proof, absl::string_view commitment,
                                 absl::string_view answer);

// true when any Bitcoin attestation is present (the reference's notion of "complete").
bool IsComplete(const DetachedFile& proof);

// fetch(uri, commitment): the calendar's answer bytes, std::nullopt when still pending (HTTP 404),
// an error for anything else.
using CalendarFetch = std::function<absl::StatusOr<std::optional<std::string>>(
    const std::string& uri, const std::string& commitment)>;

struct UpgradeOptions {
  // Glob patterns on calendar URLs (host glob; scheme, port and path must match). Empty = the
  // reference DEFAULT_CALENDAR_WHITELIST.
  std::vector<std::string> whitelist;
  // When not empty, every pending commitment is asked of these calendars instead of the URI in
  // the attestation (the reference's `-c`), whitelist not applied.
  std::vector<std::string> calendars;
};

struct UpgradeReport {
  int pending_total = 0;  // pending points found
  int upgraded = 0;       // answers merged
  int still_pending = 0;  // 404s
  int skipped = 0;        // URIs not whitelisted
  int errors = 0;         // fetch / merge failures
  bool changed = false;
  bool complete = false;              // IsComplete after the pass
  std::vector<std::string> messages;  // one line per event, for the CLI
};

// One upgrade pass over `proof` (modified in place only by successful merges).
UpgradeReport Upgrade(DetachedFile* proof, const CalendarFetch& fetch,
                      const UpgradeOptions& options = {});

std::vector<std::string> DefaultCalendarWhitelist();
// true when `url` matches one of `patterns` (see UpgradeOptions::whitelist).
bool CalendarWhitelisted(absl::string_view url, const std::vector<std::string>& patterns);

// GET {uri}/timestamp/{hex commitment} with libs/http; 200 -> bytes (at most kMaxCalendarAnswer),
// 404 -> nullopt, else Unavailable. `client` null makes a curl client.
CalendarFetch MakeHttpCalendarFetch(std::shared_ptr<http::HttpClient> client = nullptr);

}  // namespace anchord::ots
