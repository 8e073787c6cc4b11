// One interface for every anchoring provider. The submitter and the poller speak only this; each
// adapter (proofd.id v1 now; ProofLedger, SimpleProof and OpenTimestamps calendars next) maps its
// provider's API onto it, including the classification of every error, and paces itself under
// the provider's limits through the RateLimiters it is given.
//
// All calls block the calling thread (pacing waits included) and are thread-safe. No call throws;
// no call returns or logs the API key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace anchord::providers {

// How the caller must react to a provider answer.
enum class OutcomeKind {
  kOk,              // Success.
  kDuplicate,       // The provider already holds this digest; `record` is the original.
  kRetry,           // Transient (network, 5xx, in-progress, malformed answer): back off, retry.
  kRateLimited,     // 429: the adapter already closed its gate until retry_after; retry then.
  kQuotaExhausted,  // The account's quota is spent: pause, mark nothing failed, resume later.
  kPermanent,       // Retrying cannot fix it (bad key, plan, invalid field, key mismatch): stop.
  kNotFound,        // Lookup/download: the record or its evidence does not exist (yet).
};

const char* OutcomeKindName(OutcomeKind kind);

// What one call to the provider ended with.
struct CallOutcome {
  OutcomeKind kind = OutcomeKind::kOk;
  int http_status = 0;  // 0 when no HTTP answer arrived
  // Provider error code ("RATE_LIMITED", "INVALID_API_KEY") or one of ours: "NETWORK_ERROR",
  // "MALFORMED_RESPONSE", "HTTP_<status>".
  std::string code;
  std::string message;     // human-readable; never contains the API key
  std::string request_id;  // the provider's X-Request-Id, when sent
  absl::Duration retry_after = absl::ZeroDuration();  // for kRateLimited / kRetry hints

  bool ok() const { return kind == OutcomeKind::kOk || kind == OutcomeKind::kDuplicate; }
};

enum class RecordState { kPending, kConfirmed, kFailed };

// A provider's record of one anchored digest, validated by the adapter before it is returned.
struct ProviderRecord {
  std::string proof_id;    // provider's id (proofd: UUID)
  std::string digest_hex;  // lowercase hex of the SHA-256 the record anchors
  RecordState state = RecordState::kPending;
  std::string certificate_url;
  std::string verify_url;
  int64_t block_height = 0;
  std::string bitcoin_tx;
  absl::Time created_at = absl::InfinitePast();
  absl::Time confirmed_at = absl::InfinitePast();
};

// The input of a create: what is known of the file. Only the digest and metadata leave the machine.
struct CreateInput {
  std::string digest_hex;  // 64 lowercase hex chars
  std::string filename;
  int64_t size_bytes = 0;
  std::string mime_type;  // optional
};

// A create request frozen before it is sent. The submitter stores it durably first, so a retry
// after a crash sends the same bytes with the same idempotency key and the provider replays its
// original answer instead of spending a second quota unit.
struct PreparedCreate {
  std::string digest_hex;
  std::string idempotency_key;
  std::string body;  // exact request body
};

struct CreateResult {
  CallOutcome outcome;
  std::optional<ProviderRecord> record;  // set for kOk and kDuplicate
};

struct LookupResult {
  CallOutcome outcome;
  std::optional<ProviderRecord> record;  // set for kOk
};

struct ListPendingResult {
  CallOutcome outcome;
  std::vector<ProviderRecord> records;  // valid records of the page (invalid ones are logged, skipped)
  std::string next_cursor;              // empty on the last page
};

struct DownloadResult {
  CallOutcome outcome;
  std::string ots;  // the .ots bytes for kOk
};

class Provider {
 public:
  virtual ~Provider() = default;

  // The configured name ("proofd"), used in the ledger and in every metric's `provider` label.
  virtual const std::string& name() const = 0;

  // Validates the input and builds the exact request to send. Pure and deterministic: the same
  // input and account always give the same key and body. INVALID_ARGUMENT names the field.
  virtual absl::StatusOr<PreparedCreate> PrepareCreate(const CreateInput& input) const = 0;
  // Sends a prepared create. Waits for the create (and general) rate limiters first.
  virtual CreateResult Create(const PreparedCreate& request) = 0;
  // Fetches one record by the provider's id.
  virtual LookupResult Lookup(const std::string& proof_id) = 0;
  // True when ListPending is supported (one request covers many pending records).
  virtual bool SupportsListPending() const = 0;
  // One page of the account's pending records; `cursor` empty for the first page.
  virtual ListPendingResult ListPending(const std::string& cursor, int limit) = 0;
  // Downloads the .ots evidence of a record. kNotFound while the provider has none yet.
  virtual DownloadResult DownloadProof(const std::string& proof_id) = 0;
  // Stops pacing waits so that shutdown is not held up by a long Retry-After.
  virtual void Stop() = 0;
};

}  // namespace anchord::providers
