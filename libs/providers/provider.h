// One interface for every anchoring provider. The submitter and the poller speak only this; each
// adapter (proofd.id v1, ProofLedger v1, SimpleProof, OpenTimestamps calendars) maps its
// provider's API onto it, including the classification of every error, and paces itself under
// the provider's limits through the RateLimiters it is given.
//
// The interface is shaped by what differs between the providers:
//  - some take one digest per request (proofd, ProofLedger, calendars), SimpleProof up to 25:
//    max_batch() and CreateBatch();
//  - some have idempotency keys (proofd), some answer a re-sent digest with the original record
//    (ProofLedger duplicate_of, SimpleProof), calendars are free and answer a new pending proof:
//    PreparedCreate::maybe_sent tells an adapter that the request may already have arrived;
//  - some identify records by an id of their own, some only by the digest, calendars by the
//    commitments inside the pending proof: ProofRef carries all three;
//  - some give an .ots only after confirmation (proofd, SimpleProof), calendars give a pending
//    one at creation that must be stored before anything else, ProofLedger none: evidence.
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
#include "libs/digest/digest.h"

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

// One word per OutcomeKind in a caller's vocabulary (log words, metric labels): each caller lists
// its words, OutcomeName does the matching. Header-only, so callers that do not link the adapters'
// library (the engines) use it too.
struct OutcomeNames {
  const char* ok;
  const char* duplicate;
  const char* retry;
  const char* rate_limited;
  const char* quota_exhausted;
  const char* permanent;
  const char* not_found;
  const char* unknown;  // a value outside the enum
};

constexpr const char* OutcomeName(OutcomeKind kind, const OutcomeNames& names) {
  switch (kind) {
    case OutcomeKind::kOk:
      return names.ok;
    case OutcomeKind::kDuplicate:
      return names.duplicate;
    case OutcomeKind::kRetry:
      return names.retry;
    case OutcomeKind::kRateLimited:
      return names.rate_limited;
    case OutcomeKind::kQuotaExhausted:
      return names.quota_exhausted;
    case OutcomeKind::kPermanent:
      return names.permanent;
    case OutcomeKind::kNotFound:
      return names.not_found;
  }
  return names.unknown;
}

// The kind's name in upper snake case ("RATE_LIMITED"), for logs.
const char* OutcomeKindName(OutcomeKind kind);

// What one call to the provider ended with.
struct CallOutcome {
  OutcomeKind kind = OutcomeKind::kOk;
  int http_status = 0;  // 0 when no HTTP answer arrived
  // Provider error code ("RATE_LIMITED", "INVALID_API_KEY") or one of ours: "NETWORK_ERROR",
  // "MALFORMED_RESPONSE", "HTTP_<status>".
  std::string code;
  std::string message;                                // human-readable; never contains the API key
  std::string request_id;                             // the provider's X-Request-Id, when sent
  absl::Duration retry_after = absl::ZeroDuration();  // for kRateLimited / kRetry hints

  bool ok() const { return kind == OutcomeKind::kOk || kind == OutcomeKind::kDuplicate; }
};

enum class RecordState { kPending, kConfirmed, kFailed };

// A provider's record of one anchored digest, validated by the adapter before it is returned.
struct ProviderRecord {
  std::string proof_id;  // provider's id (proofd: UUID)
  Digest digest;         // the SHA-256 the record anchors (parsed from the provider's answer)
  RecordState state = RecordState::kPending;
  std::string certificate_url;
  std::string verify_url;
  int64_t block_height = 0;
  std::string bitcoin_tx;
  absl::Time created_at = absl::InfinitePast();
  absl::Time confirmed_at = absl::InfinitePast();
  // The provider's id of the original record when it reported this digest as a duplicate
  // (ProofLedger duplicate_of); empty otherwise.
  std::string duplicate_of;
  // .ots bytes that came with the answer (calendars: the pending proof from a create, the
  // upgraded proof from a lookup). Validated by the adapter: a detached .ots of `digest`. The
  // caller must store them durably before acting on the record: a calendar cannot resend them.
  std::string evidence;
};

// What a caller holds of one proof: enough for any provider to find it again.
struct ProofRef {
  std::string
      proof_id;   // the provider's id (may equal the digest's hex for digest-keyed providers)
  Digest digest;  // the anchored digest
  std::string evidence;  // the .ots stored so far (calendars: the pending proof); may be empty
};

// The input of a create: what is known of the file. Only the digest and metadata leave the machine.
struct CreateInput {
  Digest digest;
  std::string filename;
  int64_t size_bytes = 0;
  std::string mime_type;  // optional
};

// A create request frozen before it is sent. The submitter stores it durably first, so a retry
// after a crash sends the same bytes with the same idempotency key and the provider replays its
// original answer instead of spending a second quota unit.
struct PreparedCreate {
  Digest digest;
  std::string idempotency_key;  // empty for providers without one
  std::string body;  // exact request body (batch providers: this digest's part of the request)
  // Set by the caller when this request may have reached the provider before (a retry, or a row
  // found SUBMITTING after a crash). Adapters without idempotency keys then ask the provider
  // whether it already holds the digest before sending, so no quota unit is spent twice.
  bool maybe_sent = false;
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
  std::vector<ProviderRecord>
      records;              // valid records of the page (invalid ones are logged, skipped)
  std::string next_cursor;  // empty on the last page
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
  // How many digests one create request may carry (SimpleProof: 25). 1 for most providers.
  virtual int max_batch() const { return 1; }
  // Sends up to max_batch() prepared creates as one request; one result per input, in order.
  // The default sends them one by one.
  virtual std::vector<CreateResult> CreateBatch(const std::vector<PreparedCreate>& requests) {
    std::vector<CreateResult> out;
    out.reserve(requests.size());
    for (const PreparedCreate& r : requests) out.push_back(Create(r));
    return out;
  }
  // Fetches the current state of one record. A calendar adapter returns the upgraded .ots in
  // record->evidence once a Bitcoin attestation arrived.
  virtual LookupResult Lookup(const ProofRef& ref) = 0;
  // True when ListPending is supported (one request covers many pending records).
  virtual bool SupportsListPending() const = 0;
  // One page of the account's pending records; `cursor` empty for the first page.
  virtual ListPendingResult ListPending(const std::string& cursor, int limit) = 0;
  // False for providers that never give an .ots (ProofLedger): the poller does not ask.
  virtual bool OffersOts() const { return true; }
  // Downloads the .ots evidence of a record. kNotFound while the provider has none yet.
  virtual DownloadResult DownloadProof(const ProofRef& ref) = 0;
  // Providers that notify a webhook (SimpleProof callback_url): parses a callback body and
  // returns the digest it names. A callback is only a hint: the caller confirms it through Lookup
  // before changing anything. INVALID_ARGUMENT for a malformed body; UNIMPLEMENTED for providers
  // without callbacks.
  virtual absl::StatusOr<Digest> ParseCallback(const std::string& body) const {
    (void)body;
    return absl::UnimplementedError(name() + " does not send callbacks");
  }
  // Lookups left in the provider's current status-check budget (ProofLedger's public verify
  // endpoint: 120 per hour per IP), or -1 when the provider has no such budget.
  virtual int64_t LookupBudgetRemaining() const { return -1; }
  // Stops pacing waits so that shutdown is not held up by a long Retry-After.
  virtual void Stop() = 0;
};

}  // namespace anchord::providers
