// The pure parts of anchorctl: state names, argument checks, merging of service summaries, report
// rows and their CSV/JSON form, and the progress line. No I/O here, so all of it is unit-tested.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "anchord/v1/common.pb.h"
#include "libs/digest/digest.h"

namespace anchord::anchorctl {

// Exit codes of every command.
inline constexpr int kExitComplete = 0;
inline constexpr int kExitInternal = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitIncomplete = 3;
inline constexpr int kExitFilesFailed = 4;

// "CONFIRMED" for DIGEST_STATE_CONFIRMED; "UNKNOWN" for UNSPECIFIED or out-of-range values.
std::string StateName(int state);
// Parses "none|queued|submitted|confirmed" for --wait. The target is the poller state every digest
// must reach: 0 (none), QUEUED, PENDING (submitted = the provider accepted it), CONFIRMED.
absl::StatusOr<int> ParseWaitTarget(absl::string_view wait);

// A 64-hex digest argument; InvalidArgument naming `arg`.
absl::StatusOr<Digest> ParseDigestArg(absl::string_view hex, absl::string_view arg = "DIGEST");

// The path to send in HashTreeRequest.path for directory `dir` when the hasher's root is `root`
// (both already made absolute and canonical by the caller): "." for the root itself, else the
// relative path. InvalidArgument when `dir` is outside `root`.
absl::StatusOr<std::string> RelativeToRoot(absl::string_view dir, absl::string_view root);

// Merges the per-state digest counts of several services. A digest counted by several services is
// in its furthest state (higher enum value wins), so for every state s the number of digests at or
// beyond s is the largest such number any one service reports; exact counts follow by difference.
std::map<int, int64_t> MergeStateCounts(const std::vector<std::map<int, int64_t>>& per_service);
// Converts SummarizeJobResponse.digests_by_state keys ("DIGEST_STATE_QUEUED") to enum values;
// unknown keys are skipped.
std::map<int, int64_t> CountsFromSummary(const google::protobuf::Map<std::string, int64_t>& m);

// One line of `anchorctl report`.
struct ReportRow {
  std::string path;
  std::string digest_hex;
  int64_t size_bytes = 0;
  std::string provider;
  std::string proof_id;
  std::string status;  // state name, or FAILED for a file that could not be hashed
  std::string certificate_url;
  std::string verify_url;
  int64_t bitcoin_block_height = 0;
  std::string duplicate_of;
  std::string reason;       // machine-readable cause of a failure (FILE_UNREADABLE, ...)
  std::string error;        // human-readable message of a failure
  std::string merkle_root;  // hex of the batch root anchored for the file, when batched
  bool stalled = false;     // pending longer than the poller's stall limit
  // What the downloaded proof shows: "VERIFIED block N", "PENDING", "UNCHECKED ...",
  // "NO_PROOF_YET", "MISMATCH ...", "DIGEST_MISMATCH ...", "INVALID ...", or empty (not checked).
  std::string verification;
};

// RFC 4180 field quoting: quoted when it holds a comma, quote, CR, LF or leading/trailing space.
std::string CsvField(absl::string_view s);
// A report written a few rows at a time, byte for byte as ReportToCsv or ReportToJson writes all
// of them at once: `report` holds one page of rows, never the whole job's.
class ReportWriter {
 public:
  enum class Format { kCsv, kJson };
  explicit ReportWriter(Format format) : format_(format) {}
  // The text of the next rows (after the CSV header or the JSON array's opening before the first).
  std::string Rows(const std::vector<ReportRow>& rows);
  // The text that ends the report (the header alone, or "[]", when there was no row).
  std::string End();

 private:
  std::string Start();
  const Format format_;
  bool started_ = false;
  bool any_row_ = false;
};
// Header line plus one line per row, CRLF-free ("\n" line ends), every field quoted as needed.
std::string ReportToCsv(const std::vector<ReportRow>& rows);
// A JSON array of objects with the same keys as the CSV header. Invalid UTF-8 in paths is replaced
// rather than thrown on.
std::string ReportToJson(const std::vector<ReportRow>& rows);

// Counters shown while `archive` runs.
struct ProgressCounts {
  int64_t files_seen = 0;   // results received from HashTree
  int64_t files_total = 0;  // files the walk found so far
  bool walk_complete = false;
  int64_t hashed = 0;  // files with a digest
  int64_t unchanged = 0;
  int64_t duplicates = 0;
  int64_t problems = 0;  // files that could not be hashed
  int64_t distinct = 0;  // distinct digests
  int64_t queued = 0;    // distinct digests at QUEUED or SUBMITTED
  int64_t pending = 0;   // distinct digests PENDING at the poller
  int64_t confirmed = 0;
  int64_t failed = 0;     // distinct digests FAILED
  bool waiting = false;   // the hashing stream ended; now waiting for the target state
  int64_t wait_done = 0;  // digests that reached the target (or failed)
  std::string paused;     // the submitter's paused reason, when paused
};

// One progress line (no newline). `elapsed` is the time of the current phase (hashing or waiting)
// and drives the rate and the ETA.
std::string ProgressLine(const ProgressCounts& c, absl::Duration elapsed);

}  // namespace anchord::anchorctl
